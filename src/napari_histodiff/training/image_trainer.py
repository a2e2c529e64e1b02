"""Training (or fine-tuning) the mask-conditioned image model.

A batch is a set of random crops: the image scaled to [-1, 1] is the clean
sample, and its mask as one channel per class is the condition. With
probability ``cond_dropout`` (and always for unlabelled crops) the condition
is the null mask, all class 0 (``unknown``), which the sampler's
classifier-free guidance contrasts with the real mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..errors import InputError
from ..models.classes import TissueClasses
from .augment import Augment
from .data import CropSampler, Sample, class_means, describe
from .loop import DiffusionTrainer, TrainSettings, step_rng
from .models import build_train_unet, count_parameters, load_unet


@dataclass
class ImageModelSpec:
    """The architecture of a new image model (ignored when fine-tuning)."""

    patch_size: int = 64
    size: str = "tiny"
    channels: tuple[int, ...] | None = None
    layers: int | None = None


@dataclass
class ImageTrainJob:
    """Everything one image-model training run needs.

    Parameters
    ----------
    samples : list of Sample
        Labelled and unlabelled images (see :mod:`.data`).
    classes : TissueClasses
    run_dir : path
        Checkpoints and loss logs.
    out : path
        The final model directory.
    settings : TrainSettings
    spec : ImageModelSpec
    init_model : path, optional
        Fine-tune the ``unet/`` of this model directory instead of a new one.
    augment : Augment
    unlabelled_fraction : float, optional
        Share of unlabelled crops (default: by area).
    provenance : dict
        Extra facts for the model card (e.g. the preset).
    """

    samples: list[Sample]
    classes: TissueClasses
    run_dir: Path
    out: Path
    settings: TrainSettings = field(default_factory=TrainSettings)
    spec: ImageModelSpec = field(default_factory=ImageModelSpec)
    init_model: Path | None = None
    augment: Augment = field(default_factory=Augment)
    unlabelled_fraction: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def onehot(masks: np.ndarray, num_classes: int) -> torch.Tensor:
    """(B, H, W) ids -> (B, K, H, W) float32 one-hot."""
    ids = torch.from_numpy(np.ascontiguousarray(masks).astype(np.int64))
    return torch.nn.functional.one_hot(ids, num_classes).permute(0, 3, 1, 2).float()


def image_batch_fn(sampler: CropSampler, num_classes: int, batch_size: int,
                   seed: int, cond_dropout: float, augment: Augment):
    """The batch function of :class:`DiffusionTrainer` for image models."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(seed, step, 1)
        images, masks, _ = sampler.sample(rng, batch_size)
        images, masks = augment(rng, images, masks)
        drop = rng.random(batch_size) < cond_dropout
        masks[drop] = 0  # the null condition: all unknown
        x0 = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
        return x0.permute(0, 3, 1, 2).contiguous(), onehot(masks, num_classes)

    return batch


def make_image_trainer(job: ImageTrainJob, device) -> DiffusionTrainer:
    """Build the UNet (new or fine-tuned), data and trainer of ``job``."""
    from ..models.factory import default_scheduler

    k = len(job.classes)
    if job.init_model is not None:
        from ..models.card import ModelCard

        card = ModelCard.load(job.init_model)
        if card.classes.names != job.classes.names:
            raise InputError(
                f"init-model: {job.init_model} has classes {card.classes.names}, "
                f"but the training masks use {job.classes.names}"
            )
        if card.space != "pixel":
            raise InputError(f"init-model: {job.init_model} is a latent model; "
                             "training supports pixel-space models")
        unet = load_unet(job.init_model, "unet")
        job.spec.patch_size = card.patch_size
    else:
        s = job.spec
        unet = build_train_unet(3 + k, 3, s.patch_size, s.size, s.channels, s.layers)
    sampler = CropSampler(job.samples, job.spec.patch_size, job.unlabelled_fraction)
    st = job.settings
    batch = image_batch_fn(sampler, k, st.batch_size, st.seed, st.cond_dropout,
                           job.augment)
    extra = {"kind": "image", "unet_config": dict(unet.config),
             "classes": job.classes.names, "spec": asdict(job.spec)}
    return DiffusionTrainer(unet, batch, default_scheduler(), st, job.run_dir,
                            device, extra)


def train_image_model(job: ImageTrainJob, device="cpu", resume: bool = False,
                      overwrite: bool = False, quiet: bool = False,
                      stop_after: int | None = None) -> dict[str, Any]:
    """Train, then write the model directory ``job.out`` with the EMA weights.

    Returns a summary: steps, last loss, seconds, output path (None when
    stopped early by ``stop_after``).
    """
    from ..outputs import check_output

    out = Path(job.out)
    if out.exists() and not overwrite and not resume:
        raise InputError(f"out: {out} exists; choose another path or pass "
                         "--overwrite")
    check_output(out, True, "out", folder=True, parents=True)
    trainer = make_image_trainer(job, device)
    result = trainer.fit(resume=resume, quiet=quiet, stop_after=stop_after)
    result["parameters"] = count_parameters(trainer.unet)
    if trainer.step < job.settings.steps:
        result["out"] = None
        return result
    save_image_model(job, trainer.ema, trainer.step)
    result["out"] = str(out)
    return result


def save_image_model(job: ImageTrainJob, unet, steps: int) -> Path:
    """Write ``job.out``: unet (EMA), scheduler and card; keep a ``mask_unet/``."""
    from ..models.card import ModelCard
    from ..models.directory import save_components
    from ..models.factory import default_scheduler

    out = Path(job.out)
    provenance = {
        "kind": "trained",
        "software": f"napari-histodiff {__version__}",
        "image_model": {
            "steps": int(steps),
            "seed": job.settings.seed,
            "settings": asdict(job.settings),
            "spec": asdict(job.spec),
            "init_model": str(job.init_model) if job.init_model else None,
            "data": describe(job.samples),
            "augment": asdict(job.augment),
            "parameters": count_parameters(unet),
        },
        **job.provenance,
    }
    old_card = None
    if (out / "histodiff.json").is_file():
        old_card = ModelCard.load(out)
        if "mask_model" in old_card.provenance:
            provenance["mask_model"] = old_card.provenance["mask_model"]
    card = ModelCard(classes=job.classes, patch_size=job.spec.patch_size,
                     provenance=provenance,
                     class_means=class_means(job.samples, len(job.classes)),
                     mask_resolution_factor=old_card.mask_resolution_factor
                     if old_card else 4)
    unet = unet.to("cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside and renamed into place; an existing model directory's
    # mask_unet/ is kept, anything that is not a model directory is refused
    save_components(out, card, overwrite=True, unet=unet,
                    scheduler=default_scheduler(),
                    keep=out if (out / "mask_unet").is_dir() else None)
    return out
