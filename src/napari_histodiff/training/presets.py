"""Training presets. ``demo``: the models shipped as ``--model demo``;
``demo-latent``: the autoencoder and latent model shipped as
``--model demo-latent``; ``demo-text``: the text-and-mask latent model
shipped as ``--model demo-text`` (on demo-latent's autoencoder).

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

``demo-latent`` uses the same data: it trains the autoencoder (factor 4,
4 latent channels, size tiny) into ``RUN_DIR/autoencoder``, measuring PSNR
and SSIM on the held-out quadrant, then the latent image model (64-pixel
windows = 16 x 16 latents) into ``RUN_DIR/model``, and copies the shipped
pixel demo's mask generator (``mask_unet/``, which works on masks, not on
images, so it serves a latent model unchanged) into it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..masks.labeller import CLASS_NAMES, auto_label
from ..models.classes import TissueClasses
from .data import load_folder_pairs, read_rgb
from .image_trainer import ImageModelSpec, ImageTrainJob
from .loop import TrainSettings
from .mask_trainer import MaskModelSpec, MaskTrainJob
from .text_trainer import TextSpec
from .vae_trainer import VAEModelSpec, VAETrainJob, load_vae_images

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


# -- demo-latent ------------------------------------------------------------------
DEMO_LATENT_NAME = "demo-latent"
DEMO_LATENT_VAE_SETTINGS = TrainSettings(
    steps=3000, batch_size=4, learning_rate=1e-3, warmup=100,
    lr_schedule="cosine", final_lr_fraction=0.1, cond_dropout=0.0,
    ema_decay=0.995, seed=DEMO_SEED, checkpoint_every=200, log_every=10)
DEMO_LATENT_VAE_SPEC = VAEModelSpec(factor=4, latent_channels=4, size="tiny",
                                    patch_size=64)
DEMO_LATENT_IMAGE_SETTINGS = replace(DEMO_IMAGE_SETTINGS, steps=4000)
DEMO_LATENT_IMAGE_SPEC = ImageModelSpec(patch_size=64, size="tiny",
                                        channels=(32, 64, 64), layers=1)


def _latent_provenance(part: str) -> dict:
    return {**_provenance(part), "preset": DEMO_LATENT_NAME,
            "command": f"histodiff train --preset demo-latent --part {part}"}


def demo_vae_job(run_dir: str | Path, steps: int | None = None) -> VAETrainJob:
    """The autoencoder job of the demo-latent preset (data under ``run_dir``)."""
    run_dir = Path(run_dir)
    data = write_demo_data(run_dir)
    settings = DEMO_LATENT_VAE_SETTINGS if steps is None else replace(
        DEMO_LATENT_VAE_SETTINGS, steps=steps)
    spec = replace(DEMO_LATENT_VAE_SPEC)
    return VAETrainJob(
        samples=load_vae_images(data / "images", [], spec.patch_size),
        run_dir=run_dir / "vae", out=run_dir / "autoencoder", settings=settings,
        spec=spec, heldout=[data / "heldout" / "image.png"],
        provenance={"preset": _latent_provenance("vae")})


def demo_latent_image_job(run_dir: str | Path, steps: int | None = None
                          ) -> ImageTrainJob:
    """The latent image-model job of the demo-latent preset."""
    run_dir = Path(run_dir)
    data = write_demo_data(run_dir)
    classes = demo_classes()
    settings = DEMO_LATENT_IMAGE_SETTINGS if steps is None else replace(
        DEMO_LATENT_IMAGE_SETTINGS, steps=steps)
    return ImageTrainJob(
        samples=load_folder_pairs(data / "images", data / "masks", classes, 64),
        classes=classes, run_dir=run_dir / "image", out=run_dir / "model",
        settings=settings, spec=replace(DEMO_LATENT_IMAGE_SPEC),
        vae=run_dir / "autoencoder",
        provenance={"image_preset": _latent_provenance("image")})


# -- demo-text --------------------------------------------------------------------
DEMO_TEXT_NAME = "demo-text"
#: Mask dropout 0.5 (not 0.1): the model serves prompts without a mask too,
#: so the null mask with a caption must be common in training.
DEMO_TEXT_SETTINGS = replace(DEMO_IMAGE_SETTINGS, steps=3000, cond_dropout=0.5)
DEMO_TEXT_SPEC = ImageModelSpec(patch_size=64, size="tiny", channels=(32, 64, 64),
                                layers=1)
DEMO_TEXT = TextSpec(encoder="builtin", captions="composition", max_tokens=16,
                     caption_dropout=0.1, width=64, layers=2, heads=4)


def _text_provenance(part: str) -> dict:
    return {**_provenance(part), "preset": DEMO_TEXT_NAME,
            "command": f"histodiff train --preset demo-text --part {part}"}


def demo_text_vae() -> Path:
    """The autoencoder of the text demo: the shipped demo-latent's ``vae/``
    (both latent demos share it)."""
    from ..models import DEMO_LATENT_NAME, demo_model_path

    path = demo_model_path(DEMO_LATENT_NAME)
    if path is None or not (path / "vae").is_dir():
        raise InputError("vae: the demo-text preset trains on the latents of the "
                         "shipped demo-latent model, which this build lacks; "
                         "run `histodiff train --preset demo-latent --install` "
                         "first")
    return path


def demo_text_image_job(run_dir: str | Path, steps: int | None = None,
                        vae: str | Path | None = None) -> ImageTrainJob:
    """The text-and-mask latent image model of the demo-text preset:
    composition captions of every crop ("high dab; low nuclei; ..."), the
    builtin encoder trained with the UNet."""
    run_dir = Path(run_dir)
    data = write_demo_data(run_dir)
    classes = demo_classes()
    settings = DEMO_TEXT_SETTINGS if steps is None else replace(
        DEMO_TEXT_SETTINGS, steps=steps)
    return ImageTrainJob(
        samples=load_folder_pairs(data / "images", data / "masks", classes, 64),
        classes=classes, run_dir=run_dir / "image", out=run_dir / "model",
        settings=settings, spec=replace(DEMO_TEXT_SPEC),
        vae=Path(vae) if vae is not None else demo_text_vae(),
        text=replace(DEMO_TEXT),
        provenance={"image_preset": _text_provenance("image")})


def copy_demo_mask_model(run_dir: str | Path, source: str | Path | None = None,
                         preset: str = DEMO_LATENT_NAME) -> Path:
    """Copy the shipped demo's ``mask_unet/`` into ``RUN_DIR/model``.

    The mask generator makes label masks, whatever model then paints them,
    so the pixel demo's serves the latent demo as it is. Its provenance is
    recorded in the latent model's card, with where it was copied from.
    """
    import shutil

    from ..models import demo_model_path
    from ..models.card import ModelCard
    from ..outputs import atomic_output

    model = Path(run_dir) / "model"
    src = Path(source) if source is not None else demo_model_path()
    if src is None or not (src / "mask_unet").is_dir():
        raise InputError(f"mask: no shipped demo mask model to copy (looked in "
                         f"{src}); train it with `histodiff train --preset demo "
                         "--part mask` first")
    if not (model / "histodiff.json").is_file():
        raise InputError(f"mask: {model} holds no model yet; train the image part "
                         "first (--part image)")
    card, source_card = ModelCard.load(model), ModelCard.load(src)
    if card.classes.names != source_card.classes.names:
        raise InputError(f"mask: the demo mask model in {src} has classes "
                         f"{source_card.classes.names}, the model in {model} "
                         f"{card.classes.names}")
    with atomic_output(model / "mask_unet", True, "out", folder=True) as tmp:
        for f in (src / "mask_unet").iterdir():
            if f.suffix in (".json", ".safetensors"):
                shutil.copy2(f, tmp / f.name)
    card.mask_resolution_factor = source_card.mask_resolution_factor
    card.provenance["mask_model"] = {
        **source_card.provenance.get("mask_model", {}),
        "copied_from": "the shipped demo model (--model demo), mask_unet/",
        "copied_by": f"histodiff train --preset {preset} --part mask"}
    card.save(model)
    return model
