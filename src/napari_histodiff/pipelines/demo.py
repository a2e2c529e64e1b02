"""The demo: a mask, then an image that follows it, written to a folder.

Used by ``make demo`` and ``histodiff demo``. With the shipped demo model the
mask comes from its mask generator (``mask_unet/``), conditioned on the
chosen classes; without one (a build that ships no trained model) a freshly
initialised tiny model is used with a blob mask, and the demo says plainly
that its picture is untrained noise.
"""

from __future__ import annotations

import numpy as np

from ..masks.tools import blob_mask


def demo_mask(model, class_names: list[str], shape: tuple[int, int], seed: int = 0,
              steps: int = 20, guidance: float = 2.0) -> tuple[np.ndarray, str]:
    """A mask with ``class_names`` for the demo, and how it was made.

    Uses the model's mask generator when it has one, else :func:`blob_mask`.

    Returns
    -------
    mask : np.ndarray
        (H, W) uint8 class ids.
    source : str
        ``"mask model"`` or ``"random blobs"``.
    """
    from pathlib import Path

    from ..models.card import ModelCard

    classes = ModelCard.load(model).classes
    ids = [classes.index_of(name) for name in class_names]
    if (Path(model) / "mask_unet" / "config.json").is_file():
        from .mask_generation import HistoDiffMaskPipeline

        pipe = HistoDiffMaskPipeline.from_pretrained(model)
        out = pipe(ids, height=shape[0], width=shape[1], guidance_scale=guidance,
                   num_inference_steps=steps, seed=seed)
        return out.mask, "mask model"
    return blob_mask(shape, ids, seed=seed), "random blobs"
