"""Self-supervised training of the ``histo`` tile encoder (SimCLR).

Each step draws ``batch_size`` random tissue crops from the images, makes
two views of each with the augmentations of :mod:`.augment` (flips,
90-degree rotations, stain jitter; stronger jitter than for diffusion
training) plus a random shift of up to ``shift`` pixels, embeds both with
the :class:`~.encoder_net.TileEncoder` and a small projection head, and
minimises the NT-Xent loss (Chen et al. 2020): each view must pick out its
partner among the ``2 * batch_size - 1`` other views, at temperature
``temperature``. The encoder thus learns what stays when stain, orientation
and position change: tissue structure. Only the encoder is saved (the head
is dropped), as ``config.json`` + ``encoder.safetensors``, each written to a
temporary sibling and renamed into place.

>>> from napari_histodiff.training.encoder_trainer import (  # doctest: +SKIP
...     EncoderSettings, train_encoder)
>>> train_encoder(["slides/"], "my-encoder", EncoderSettings(steps=500))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.tissue import tissue_fraction
from ..study.images import RGBImage, open_sources
from .augment import Augment
from .encoder_format import (
    DEFAULT_WIDTHS,
    ENCODER_CONFIG,
    ENCODER_FORMAT,
    ENCODER_WEIGHTS,
)


@dataclass(frozen=True)
class EncoderSettings:
    """What one encoder training run does.

    Parameters
    ----------
    steps, batch_size : int
        Optimiser steps and crops per step (two views each).
    crop : int
        Crop edge in pixels (the metrics' tile size).
    lr : float
        Adam learning rate.
    temperature : float
        NT-Xent temperature.
    shift : int
        Largest random shift between the two views, in pixels.
    stain_jitter, stain_shift : float
        Stain augmentation (:class:`.augment.Augment`).
    min_tissue : float
        Fewest tissue pixels of a crop.
    widths : tuple of int
        The encoder's channels.
    seed : int
        Seed of weights, crops and augmentations.
    threads : int or None
        Torch CPU threads.
    """

    steps: int = 1000
    batch_size: int = 64
    crop: int = 64
    lr: float = 1e-3
    temperature: float = 0.2
    shift: int = 8
    stain_jitter: float = 0.15
    stain_shift: float = 0.03
    min_tissue: float = 0.5
    widths: tuple[int, ...] = field(default=DEFAULT_WIDTHS)
    seed: int = 0
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        for name in ("steps", "batch_size", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"--{name.replace('_', '-')}: expected an integer "
                                 f">= 1, got {value!r}")
        if self.batch_size < 2:
            raise InputError(f"--batch-size: contrastive training needs >= 2 crops "
                             f"a step, got {self.batch_size}")
        if self.crop < 16:
            raise InputError(f"--crop: expected >= 16 pixels, got {self.crop}")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise InputError(f"--{name}: expected a number > 0, got {value!r}")
        if not 0 <= self.min_tissue <= 1:
            raise InputError(f"--min-tissue: must lie in [0, 1], got "
                             f"{self.min_tissue}")


class CropSampler:
    """Random tissue crops (with a margin for the shift) from a set of images."""

    def __init__(self, images: Sequence[RGBImage], size: int, min_tissue: float,
                 rng: np.random.Generator):
        self.images = [im for im in images if min(im.shape) >= size]
        if not self.images:
            raise InputError(f"--images: no image is at least {size} px on each side; "
                             "lower --crop or add larger images")
        self.size, self.min_tissue, self.rng = size, min_tissue, rng
        # small images are read once; a large OME-Zarr is read crop by crop
        self.cache = {id(im): im.read_all() for im in self.images
                      if im.height * im.width <= 4096 * 4096}

    def crop(self) -> np.ndarray:
        """One crop with at least ``min_tissue`` tissue (50 tries, then any)."""
        best = None
        for _ in range(50):
            im = self.images[int(self.rng.integers(len(self.images)))]
            y = int(self.rng.integers(0, im.height - self.size + 1))
            x = int(self.rng.integers(0, im.width - self.size + 1))
            whole = self.cache.get(id(im))
            tile = (whole[y:y + self.size, x:x + self.size] if whole is not None
                    else im.read(y, x, self.size, self.size))
            if tissue_fraction(tile) >= self.min_tissue:
                return np.ascontiguousarray(tile)
            best = tile
        return np.ascontiguousarray(best)


def _views(sampler: CropSampler, settings: EncoderSettings, augment: Augment,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented, shifted views of ``batch_size`` crops: (B, c, c, 3) each."""
    c, s = settings.crop, settings.shift
    big = np.stack([sampler.crop() for _ in range(settings.batch_size)])
    views = []
    for _ in range(2):
        ys = rng.integers(0, s + 1, len(big))
        xs = rng.integers(0, s + 1, len(big))
        crops = np.stack([b[y:y + c, x:x + c] for b, y, x in zip(big, ys, xs,
                                                                  strict=True)])
        crops, _ = augment(rng, crops, np.zeros(crops.shape[:3], np.uint8))
        views.append(np.ascontiguousarray(crops))
    return views[0], views[1]


def nt_xent(z1, z2, temperature: float):
    """The NT-Xent (InfoNCE) loss of two batches of paired projections."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device),
                          float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def train_encoder(images: Sequence[Any], out: str | Path,
                  settings: EncoderSettings | None = None, *,
                  overwrite: bool = False,
                  log: Callable[[int, float], None] | None = None
                  ) -> dict[str, Any]:
    """Train a :class:`TileEncoder` on ``images``; write it to the folder ``out``.

    Parameters
    ----------
    images : sequence
        Paths (files, folders, OME-Zarr) or :class:`RGBImage`.
    out : path
        The encoder folder (created; its two files are replaced only with
        ``overwrite``).
    settings : EncoderSettings
        The run.
    log : callable, optional
        Called as ``log(step, loss)`` every 10 steps and at the end.

    Returns
    -------
    dict
        The ``config.json`` written (with the run's settings, final loss and
        seconds under ``training``).
    """
    import torch
    from safetensors.torch import save_file
    from torch import nn

    from ..outputs import atomic_output, check_output
    from .encoder_net import TileEncoder

    settings = settings or EncoderSettings()
    settings.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a folder for the encoder")
    for name in (ENCODER_CONFIG, ENCODER_WEIGHTS):
        check_output(out / name, overwrite, "--out", parents=True)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    sources = open_sources(list(images), "--images")
    rng = np.random.default_rng(settings.seed)
    sampler = CropSampler(sources, settings.crop + settings.shift,
                          settings.min_tissue, rng)
    augment = Augment(flips=True, rotations=True, stain_jitter=settings.stain_jitter,
                      stain_shift=settings.stain_shift)
    torch.manual_seed(settings.seed)
    encoder = TileEncoder(settings.widths)
    dims = encoder.num_features
    head = nn.Sequential(nn.Linear(dims, dims), nn.ReLU(), nn.Linear(dims, 32))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=settings.lr)
    t0 = time.perf_counter()
    loss_value = float("nan")
    losses: list[float] = []
    for step in range(1, settings.steps + 1):
        v1, v2 = _views(sampler, settings, augment, rng)
        x1 = torch.from_numpy(v1.transpose(0, 3, 1, 2).copy())
        x2 = torch.from_numpy(v2.transpose(0, 3, 1, 2).copy())
        loss = nt_xent(head(encoder(x1)), head(encoder(x2)), settings.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        if not np.isfinite(loss_value):
            raise InputError(f"--lr: the loss became {loss_value} at step {step}; "
                             f"lower --lr (now {settings.lr})")
        losses.append(loss_value)
        if log is not None and (step % 10 == 0 or step == settings.steps):
            log(step, float(np.mean(losses[-10:])))
    seconds = time.perf_counter() - t0
    training = {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(settings).items()}
    training.update({"objective": "SimCLR NT-Xent",
                     "final_loss": float(np.mean(losses[-10:])),
                     "chance_loss": float(np.log(2 * settings.batch_size - 1)),
                     "seconds": round(seconds, 1),
                     "images": [im.name for im in sources]})
    config = {"format": ENCODER_FORMAT, **encoder.config(), "training": training}
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_output(out / ENCODER_WEIGHTS, overwrite, "--out") as tmp:
        save_file(state, str(tmp))
    with atomic_output(out / ENCODER_CONFIG, overwrite, "--out") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return config
