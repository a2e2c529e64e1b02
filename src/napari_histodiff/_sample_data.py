"""Sample data: the IHC image with its automatic mask, and a synthetic pair.

``ihc_sample``: scikit-image's immunohistochemistry image (offline, shipped
with scikit-image) and the automatic labeller's mask of it.
``synthetic_sample``: a random-blob mask and the image the demo model makes
from it (cached after the first time).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SYNTH_SIZE = (128, 128)
SYNTH_STEPS = 10


def _labels_kwargs(classes, name: str, **kwargs: Any) -> dict[str, Any]:
    from napari.utils.colormaps import DirectLabelColormap

    from .masks.tools import class_features, label_colors

    return {"name": name, "colormap": DirectLabelColormap(
        color_dict=label_colors(classes)), "features": class_features(classes),
        "metadata": {"histodiff_classes": classes.to_list()}, **kwargs}


def ihc_sample() -> list[tuple]:
    """The IHC image (RGB) and its automatic tissue mask."""
    from skimage import data

    from .masks.labeller import CLASS_NAMES, auto_label
    from .models.classes import TissueClasses

    rgb = data.immunohistochemistry()
    classes = TissueClasses.from_names(list(CLASS_NAMES))
    mask = auto_label(rgb)
    return [
        (rgb, {"name": "IHC", "rgb": True}, "image"),
        (mask, _labels_kwargs(classes, "IHC mask", opacity=0.5), "labels"),
    ]


def synthetic_sample() -> list[tuple]:
    """A blob mask and its synthetic image from the demo model.

    napari runs sample functions on its UI thread, so the pair is cached in
    the user cache directory after the first time (about 10-30 s on a 2-core
    CPU); it is made again when the demo model changes.
    """
    import numpy as np

    from .masks.tools import random_blobs
    from .pipelines.cache import MODEL_CACHE

    pipe = MODEL_CACHE.get("demo")
    classes = pipe.card.classes
    cache = _cache_file(pipe.source)
    try:
        with np.load(cache, allow_pickle=False) as saved:
            mask, image = saved["mask"], saved["image"]
            settings = json.loads(str(saved["settings"]))
    except (OSError, KeyError, ValueError):
        mask = random_blobs(SYNTH_SIZE, list(range(1, len(classes))), seed=0)
        out = pipe(mask, num_inference_steps=SYNTH_STEPS, seed=0, store="memory")
        image, settings = out.image, out.settings
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, mask=mask, image=image,
                                settings=json.dumps(settings))
        except OSError:
            pass  # no cache: made again next time
    width = mask.shape[1]
    return [
        (mask, _labels_kwargs(classes, "synthetic mask"), "labels"),
        (image, {"name": "synthetic image", "rgb": True,
                 "translate": (0, width + 8),
                 "metadata": {"histodiff": settings,
                              "mask_layer": "synthetic mask"}}, "image"),
    ]


def _cache_file(model_folder: str) -> Path:
    """Where the sample pair of this model version and these settings is kept."""
    weights = sorted(Path(model_folder).glob("unet/*.safetensors"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]
    key = hashlib.sha256(json.dumps([str(model_folder), stamp, SYNTH_SIZE,
                                     SYNTH_STEPS]).encode()).hexdigest()[:16]
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("napari-histodiff", appauthor=False))
    except ImportError:
        base = Path.home() / ".cache" / "napari-histodiff"
    return base / f"sample-pair-{key}.npz"
