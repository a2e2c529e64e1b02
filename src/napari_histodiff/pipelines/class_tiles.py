"""Class-guided tiles: a batch of independent windows toward one class.

>>> from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
>>> from napari_histodiff.pipelines.class_tiles import generate_class_tiles
>>> pipe = HistoDiffPipeline.from_pretrained("my-latent-model")
>>> out = generate_class_tiles(pipe, "tumour", n=64, classifier_scale=3.0)
>>> out.images.shape  # (64, window * factor, window * factor, 3) uint8

Each tile is one model window (``card.patch_size`` pixels), denoised on its
own: no canvas, no strategy, so ``batch_size`` windows share one UNet call
and one classifier gradient per step (the pipeline's
:class:`~napari_histodiff.conditioning.Denoiser` with a
:class:`~napari_histodiff.conditioning.ClassifierGuidance` term), and the
batch is decoded at once. An unconditional model (card conditioning
``none``) takes no condition; a mask-conditioned model is given the
all-``unknown`` mask, its unconditional mode (the null condition it was
trained with). Tile ``i``'s starting noise depends on ``seed`` and ``i``
only, so a tile is the same whatever ``batch_size`` is, and guided and
unguided tiles of the same seed start from the same noise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checks import check_int, check_number
from ..conditioning import ClassifierGuidance, Denoiser, MaskCondition
from ..defaults import (  # noqa: F401 (the tile defaults are re-exported)
    DEFAULT_CLASSIFIER_SCALE,
    DEFAULT_TILE_BATCH,
    DEFAULT_TILE_STEPS,
)
from ..errors import InputError
from ..sampling.schedulers import DEFAULT_SCHEDULER, make_scheduler
from ..training.loop import step_seed


@dataclass
class ClassTiles:
    """Tiles generated toward one class.

    Attributes
    ----------
    images : np.ndarray
        (N, S, S, 3) uint8.
    class_name : str or None
        The class guided toward (None: unguided).
    settings : dict
        Everything needed to make them again.
    """

    images: np.ndarray
    class_name: str | None
    settings: dict[str, Any] = field(default_factory=dict)


def tile_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise of tile ``index`` of ``seed``."""
    g = torch.Generator().manual_seed(step_seed(seed, index, 11))
    return torch.randn(shape, generator=g)


def generate_class_tiles(
    pipe,
    class_name: str | None,
    n: int,
    classifier_scale: float | None = None,
    num_inference_steps: int = DEFAULT_TILE_STEPS,
    scheduler: str = DEFAULT_SCHEDULER,
    seed: int = 0,
    batch_size: int = DEFAULT_TILE_BATCH,
    first_index: int = 0,
    progress: Callable[[int, int], None] | None = None,
    noise_mean: str = "auto",
) -> ClassTiles:
    """Generate ``n`` window-sized tiles steered toward ``class_name``.

    Parameters
    ----------
    pipe : HistoDiffPipeline
        Loaded from a model directory with a ``classifier/`` (for
        ``class_name``).
    class_name : str or None
        A class of the classifier; None generates unguided tiles.
    n : int
        Tiles to make.
    classifier_scale : float, optional
        Strength of the class guidance (default
        :data:`~napari_histodiff.defaults.DEFAULT_CLASSIFIER_SCALE`).
    num_inference_steps : int
    scheduler : str
        Any scheduler :func:`~..sampling.schedulers.make_scheduler` knows.
    seed : int
    batch_size : int
        Windows per UNet call.
    first_index : int
        Index of the first tile (tiles ``first_index ... + n - 1`` of ``seed``).
    progress : callable, optional
        ``progress(done, n)`` after each batch.
    noise_mean : {"auto", "classes", "zero"}
        ``classes``: the starting noise is centred where the forward process
        puts the card's mean of ``unknown`` (``class_means[0]``, the mean of
        all the training data), as the pipeline does for an all-unknown mask;
        ``zero``: plain noise; ``auto`` (default): ``classes`` when the card
        has class means.
    """
    check_int(n, "n", minimum=1)
    check_int(num_inference_steps, "num_inference_steps", minimum=1)
    check_int(seed, "seed", minimum=0)
    check_int(batch_size, "batch_size", minimum=1)
    check_int(first_index, "first_index", minimum=0)
    card = pipe.card
    terms = []
    scale = DEFAULT_CLASSIFIER_SCALE if classifier_scale is None \
        else classifier_scale
    check_number(scale, "classifier_scale", minimum=0)
    if class_name is not None:
        if not isinstance(class_name, str):
            raise InputError(f"class_name: expected a class name, got "
                             f"{class_name!r}")
        classifier = pipe.classifier
        terms = [ClassifierGuidance(classifier, classifier.config.index(class_name),
                                    float(scale), name=class_name)]
    elif classifier_scale is not None:
        raise InputError(f"classifier_scale: {classifier_scale!r} given without "
                         "class_name; name the class to guide toward")
    max_steps = pipe.scheduler.config.num_train_timesteps
    if num_inference_steps > max_steps:
        raise InputError(f"num_inference_steps: at most {max_steps} (the training "
                         f"steps), got {num_inference_steps}")
    f = card.vae_scale_factor
    w = card.latent_patch_size
    conditions = []
    if card.conditioning != "none":
        conditions = [MaskCondition(np.zeros((w * f, w * f), np.int32),
                                    card.num_classes, factor=f)]
    unet = pipe.unet
    denoiser = Denoiser(unet, conditions=conditions, guidance=terms,
                        device=unet.device, dtype=unet.dtype,
                        alphas_cumprod=pipe.scheduler.alphas_cumprod.numpy())
    denoiser.check_window(w)
    channels = unet.config.out_channels
    mean = _start_mean(card, channels, noise_mean)
    images = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        sampler = make_scheduler(scheduler, pipe.scheduler.config)
        sampler.set_timesteps(int(num_inference_steps))
        x = torch.stack([tile_noise(seed, first_index + start + i, (channels, w, w))
                         for i in range(count)]) * float(sampler.init_noise_sigma)
        if mean is not None:  # where add_noise puts a clean canvas of ``mean``
            one = torch.ones(1, 1, 1, 1)
            scale = float(sampler.add_noise(one, torch.zeros_like(one),
                                            sampler.timesteps[:1]).item())
            x = x + scale * mean
        windows = [(np.arange(w), np.arange(w))] * count
        g = torch.Generator().manual_seed(step_seed(seed, first_index + start, 12))
        takes_generator = "generator" in inspect.signature(sampler.step).parameters
        for t in sampler.timesteps:
            x_in = sampler.scale_model_input(x, t)
            eps = torch.from_numpy(denoiser(x_in.numpy().astype(np.float32), t,
                                            windows))
            kwargs = {"generator": g} if takes_generator else {}
            x = sampler.step(eps, t, x, **kwargs).prev_sample.float()
        images.append(_to_pixels(pipe, x))
        if progress is not None:
            progress(start + count, n)
    settings = {
        "model": pipe.source, "class_name": class_name,
        "classifier_scale": float(scale) if class_name is not None else None,
        "num_inference_steps": int(num_inference_steps), "scheduler": scheduler,
        "seed": int(seed), "first_index": int(first_index), "n": int(n),
        "batch_size": int(batch_size), "tile_size": int(w * f),
        "noise_mean": "zero" if mean is None else "classes",
        "conditioning": ("none" if card.conditioning == "none"
                         else "all-unknown mask (the model's null condition)"),
        **denoiser.settings(),
    }
    return ClassTiles(np.concatenate(images), class_name, settings)


def _start_mean(card, channels: int, noise_mean: str) -> torch.Tensor | None:
    """(1, C, 1, 1) mean of ``unknown`` to centre the noise on, or None."""
    if noise_mean not in ("auto", "classes", "zero"):
        raise InputError(f"noise_mean: {noise_mean!r} is not one of auto, "
                         "classes, zero")
    means = card.class_means
    if noise_mean == "zero" or (noise_mean == "auto" and means is None):
        return None
    if means is None:
        raise InputError("noise_mean: 'classes' needs class_means in the model "
                         "card; this model has none. Use 'zero' or 'auto'.")
    if len(means[0]) != channels:
        raise InputError(f"noise_mean: the card's class_means have "
                         f"{len(means[0])} values per class, the UNet makes "
                         f"{channels} channels")
    return torch.tensor(means[0], dtype=torch.float32).view(1, -1, 1, 1)


def _to_pixels(pipe, x: torch.Tensor) -> np.ndarray:
    """Canvas batch (B, C, h, w) -> (B, H, W, 3) uint8 (decoded if latent)."""
    if pipe.vae is not None:
        p = next(pipe.vae.parameters())
        with torch.no_grad():
            x = pipe.vae.decode((x / pipe.card.latent_scaling).to(p.device, p.dtype)
                                ).sample.float().cpu()
    pix = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pix.permute(0, 2, 3, 1).numpy()
