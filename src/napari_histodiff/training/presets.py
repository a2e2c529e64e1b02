"""Training presets. ``demo``: the models shipped as ``--model demo``.

The demo models learn from ``skimage.data.immunohistochemistry()``, a real
512x512 H-DAB image that scikit-image ships. Its labels come from the
automatic labeller (:mod:`napari_histodiff.masks.labeller`). The bottom-right
quadrant (rows and columns 256-511) is held out for evaluation; the other
three quadrants are the training images. The preset writes the data it uses
into ``RUN_DIR/data`` so that every step can be inspected or repeated with
the general commands::

    RUN_DIR/data/images/{top-left,top-right,bottom-left}.png
    RUN_DIR/data/masks/{top-left,top-right,bottom-left}.png
    RUN_DIR/data/heldout/{image,mask}.png
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..masks.labeller import CLASS_NAMES, auto_label
from ..models.classes import TissueClasses
from .data import load_folder_pairs, read_rgb
from .image_trainer import ImageModelSpec, ImageTrainJob
from .loop import TrainSettings
from .mask_trainer import MaskModelSpec, MaskTrainJob

QUADRANTS = {
    "top-left": (slice(0, 256), slice(0, 256)),
    "top-right": (slice(0, 256), slice(256, 512)),
    "bottom-left": (slice(256, 512), slice(0, 256)),
    "bottom-right": (slice(256, 512), slice(256, 512)),
}
HELDOUT = "bottom-right"
DEMO_SEED = 0

DEMO_IMAGE_SETTINGS = TrainSettings(
    steps=4000, batch_size=16, learning_rate=5e-4, warmup=200,
    lr_schedule="cosine", final_lr_fraction=0.1,
    cond_dropout=0.1, ema_decay=0.999, seed=DEMO_SEED, checkpoint_every=200,
    log_every=10)
DEMO_IMAGE_SPEC = ImageModelSpec(patch_size=64, size="tiny", channels=(32, 64, 64),
                                 layers=1)
DEMO_MASK_SETTINGS = TrainSettings(
    steps=3000, batch_size=32, learning_rate=5e-4, warmup=200,
    lr_schedule="cosine", final_lr_fraction=0.1,
    cond_dropout=0.15, ema_decay=0.999, seed=DEMO_SEED, checkpoint_every=200,
    log_every=10)
DEMO_MASK_SPEC = MaskModelSpec(window=32, factor=4, size="tiny",
                               channels=(32, 64, 64), layers=1)


def demo_classes() -> TissueClasses:
    """``unknown`` + the labeller's classes."""
    return TissueClasses.from_names(",".join(CLASS_NAMES))


def write_demo_data(run_dir: str | Path) -> Path:
    """Split the IHC image into training quadrants and the held-out one.

    Returns the data folder. Existing files are rewritten identically.
    """
    from skimage.data import immunohistochemistry

    from ..io.masks import write_mask
    from ..io.preview import save_png

    data = Path(run_dir) / "data"
    for sub in ("images", "masks", "heldout"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    rgb = immunohistochemistry()
    mask = auto_label(rgb)
    tmp = data / f".writing-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    for name, (ys, xs) in QUADRANTS.items():
        if name == HELDOUT:
            image_path = data / "heldout" / "image.png"
            mask_path = data / "heldout" / "mask.png"
        else:
            image_path = data / "images" / f"{name}.png"
            mask_path = data / "masks" / f"{name}.png"
        # write beside and rename: runs started together never read half a file
        tmp_image = tmp / f"{name}-image.png"
        tmp_mask = tmp / f"{name}-mask.png"
        save_png(tmp_image, rgb[ys, xs], overwrite=True)
        write_mask(tmp_mask, mask[ys, xs], overwrite=True)
        os.replace(tmp_image, image_path)
        os.replace(tmp_mask, mask_path)
    tmp.rmdir()
    return data


def heldout(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The held-out quadrant: (RGB image, label mask)."""
    from ..io.masks import read_mask

    data = write_demo_data(run_dir)
    return (read_rgb(data / "heldout" / "image.png"),
            read_mask(data / "heldout" / "mask.png"))


def _provenance(part: str) -> dict:
    return {"preset": "demo", "dataset": "skimage.data.immunohistochemistry()",
            "labels": "napari_histodiff.masks.labeller.auto_label",
            "heldout": f"{HELDOUT} quadrant (rows/cols 256-511)",
            "command": f"histodiff train --preset demo --part {part}"}


def demo_image_job(run_dir: str | Path, steps: int | None = None) -> ImageTrainJob:
    """The image-model job of the demo preset (data under ``run_dir``)."""
    run_dir = Path(run_dir)
    data = write_demo_data(run_dir)
    classes = demo_classes()
    settings = DEMO_IMAGE_SETTINGS if steps is None else replace(
        DEMO_IMAGE_SETTINGS, steps=steps)
    return ImageTrainJob(
        samples=load_folder_pairs(data / "images", data / "masks", classes, 64),
        classes=classes, run_dir=run_dir / "image", out=run_dir / "model",
        settings=settings, spec=replace(DEMO_IMAGE_SPEC),
        provenance={"image_preset": _provenance("image")})


def demo_mask_job(run_dir: str | Path, steps: int | None = None) -> MaskTrainJob:
    """The mask-model job of the demo preset (written into the same model)."""
    run_dir = Path(run_dir)
    data = write_demo_data(run_dir)
    classes = demo_classes()
    settings = DEMO_MASK_SETTINGS if steps is None else replace(
        DEMO_MASK_SETTINGS, steps=steps)
    return MaskTrainJob(
        samples=load_folder_pairs(data / "images", data / "masks", classes, 64),
        classes=classes, run_dir=run_dir / "mask", out=run_dir / "model",
        settings=settings, spec=replace(DEMO_MASK_SPEC),
        provenance={"preset": _provenance("mask")})
