"""Training the mask generator (``mask_unet/``).

The mask model is a diffusion model over masks at a reduced resolution
(``mask_resolution_factor`` image pixels per mask pixel, 4 by default). A
mask becomes K channels: the area fraction of each class in every
``factor x factor`` block, scaled from [0, 1] to [-1, 1]. The condition is
the *set of classes present* in the crop, a multi-hot vector given to the
UNet as K constant channels concatenated to its input; the null condition
(classifier-free guidance) is all zeros.
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
from .data import CropSampler, Sample, describe
from .image_trainer import onehot
from .loop import DiffusionTrainer, TrainSettings, step_rng
from .models import build_train_unet, count_parameters, load_unet

#: A class counts as present in a crop from this area fraction on.
PRESENT_FRACTION = 0.01


@dataclass
class MaskModelSpec:
    """Architecture of a new mask model.

    ``window`` is the side of the UNet input in mask pixels; one window
    covers ``window * factor`` image pixels.
    """

    window: int = 32
    factor: int = 4
    size: str = "tiny"
    channels: tuple[int, ...] | None = None
    layers: int | None = None


@dataclass
class MaskTrainJob:
    """Everything one mask-model training run needs (see ImageTrainJob)."""

    samples: list[Sample]
    classes: TissueClasses
    run_dir: Path
    out: Path
    settings: TrainSettings = field(default_factory=TrainSettings)
    spec: MaskModelSpec = field(default_factory=MaskModelSpec)
    init_model: Path | None = None
    augment: Augment = field(
        default_factory=lambda: Augment(stain_jitter=0.0, stain_shift=0.0))
    provenance: dict[str, Any] = field(default_factory=dict)


def mask_to_fractions(masks: np.ndarray, num_classes: int, factor: int
                      ) -> torch.Tensor:
    """(B, H, W) ids -> (B, K, H/f, W/f) class area fractions in [0, 1]."""
    oh = onehot(masks, num_classes)
    if factor > 1:
        oh = torch.nn.functional.avg_pool2d(oh, factor)
    return oh


def class_set(fractions: torch.Tensor, threshold: float = PRESENT_FRACTION
              ) -> torch.Tensor:
    """(B, K, h, w) fractions -> (B, K) multi-hot of the classes present."""
    return (fractions.mean(dim=(2, 3)) >= threshold).float()


def set_channels(multi_hot: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, K) -> (B, K, height, width) constant condition channels."""
    return multi_hot[:, :, None, None].expand(-1, -1, height, width).contiguous()


def mask_batch_fn(sampler: CropSampler, num_classes: int, factor: int,
                  batch_size: int, seed: int, cond_dropout: float,
                  augment: Augment):
    """The batch function of :class:`DiffusionTrainer` for mask models."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(seed, step, 2)
        images, masks, _ = sampler.sample(rng, batch_size)
        _, masks = augment(rng, images, masks)
        frac = mask_to_fractions(masks, num_classes, factor)
        present = class_set(frac)
        drop = torch.from_numpy(rng.random(batch_size) < cond_dropout)
        present[drop] = 0.0
        return frac * 2.0 - 1.0, set_channels(present, *frac.shape[-2:])

    return batch


def make_mask_trainer(job: MaskTrainJob, device) -> DiffusionTrainer:
    """Build the mask UNet (new or fine-tuned), data and trainer of ``job``."""
    from ..models.factory import default_scheduler

    k = len(job.classes)
    labelled = [s for s in job.samples if s.mask is not None]
    if not labelled:
        raise InputError("masks: the mask model needs labelled images (masks); "
                         "unlabelled images cannot train it")
    s = job.spec
    if s.factor < 1 or s.window < 8 or s.window % 8:
        raise InputError(f"mask window/factor: window must be a multiple of 8 and "
                         f"factor >= 1, got {s.window} and {s.factor}")
    if job.init_model is not None:
        unet = load_unet(job.init_model, "mask_unet")
        if unet.config.in_channels != 2 * k:
            raise InputError(
                f"init-model: {job.init_model}/mask_unet takes "
                f"{unet.config.in_channels} channels, not {2 * k} for {k} classes")
        s.window = int(unet.config.sample_size)
    else:
        unet = build_train_unet(2 * k, k, s.window, s.size, s.channels, s.layers)
    sampler = CropSampler(labelled, s.window * s.factor, 0.0)
    st = job.settings
    batch = mask_batch_fn(sampler, k, s.factor, st.batch_size, st.seed,
                          st.cond_dropout, job.augment)
    extra = {"kind": "mask", "unet_config": dict(unet.config),
             "classes": job.classes.names, "spec": asdict(s)}
    return DiffusionTrainer(unet, batch, default_scheduler(), st, job.run_dir,
                            device, extra)


def train_mask_model(job: MaskTrainJob, device="cpu", resume: bool = False,
                     overwrite: bool = False, quiet: bool = False,
                     stop_after: int | None = None) -> dict[str, Any]:
    """Train, then write ``job.out/mask_unet`` (EMA weights) and the card."""
    out = Path(job.out)
    if (out / "mask_unet").exists() and not overwrite and not resume:
        raise InputError(f"out: {out / 'mask_unet'} exists; pass --overwrite to "
                         "replace it")
    from ..outputs import check_output

    # a new folder, an empty one, or a model directory (mask_unet/ goes into it)
    check_output(out, True, "out", folder=True, parents=True)
    trainer = make_mask_trainer(job, device)
    result = trainer.fit(resume=resume, quiet=quiet, stop_after=stop_after)
    result["parameters"] = count_parameters(trainer.unet)
    if trainer.step < job.settings.steps:
        result["out"] = None
        return result
    save_mask_model(job, trainer.ema, trainer.step)
    result["out"] = str(out)
    return result


def save_mask_model(job: MaskTrainJob, unet, steps: int) -> Path:
    """Write ``mask_unet/`` into ``job.out`` and record it in the card.

    If ``job.out`` already holds a model card, its classes must match; else a
    card is written (the image model can be trained into the same folder
    later).
    """
    from ..models.card import ModelCard

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "software": f"napari-histodiff {__version__}",
        "steps": int(steps),
        "seed": job.settings.seed,
        "settings": asdict(job.settings),
        "spec": asdict(job.spec),
        "data": describe([s for s in job.samples if s.mask is not None]),
        "parameters": count_parameters(unet),
        **job.provenance,
    }
    if (out / "histodiff.json").is_file():
        card = ModelCard.load(out)
        if card.classes.names != job.classes.names:
            raise InputError(
                f"out: {out} is a model with classes {card.classes.names}, but the "
                f"masks use {job.classes.names}")
        card.mask_resolution_factor = job.spec.factor
        card.provenance["mask_model"] = info
    else:
        card = ModelCard(classes=job.classes, mask_resolution_factor=job.spec.factor,
                         provenance={"kind": "trained", "mask_model": info})
    from ..outputs import atomic_output

    with atomic_output(out / "mask_unet", True, "out", folder=True) as tmp:
        unet.to("cpu").save_pretrained(tmp, safe_serialization=True)
    card.save(out)
    return out
