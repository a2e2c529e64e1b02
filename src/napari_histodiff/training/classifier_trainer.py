"""Train the noise-aware classifier of a model (``MODEL/classifier/``).

HistoDiffusion guides an unconditional latent model with a classifier's
gradient on *noisy* latents; a classifier trained on clean latents only (as
its released code does) says little about ``x_t`` at large ``t``. Here:

1. every labelled tile is encoded once with the model's frozen VAE (the
   posterior mean times the card's ``latent_scaling``, the canvas the UNet
   denoises); a pixel model's canvas is the pixels in [-1, 1];
2. each step draws a class-balanced batch of tiles (a class uniformly, then
   one of its tiles), a random window of the model's window size
   (``card.latent_patch_size`` canvas pixels) from each, a random flip and
   quarter turn, and a timestep uniformly from the model's training schedule
   (``0 ... num_train_timesteps - 1``), and noises the window as the forward
   process does: ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` with
   ``a_t = scheduler.alphas_cumprod[t]``;
3. :class:`~napari_histodiff.models.classifier.NoiseAwareClassifier` learns
   ``p(class | x_t, t)`` by cross-entropy (AdamW).

Every random number of step ``n`` comes from generators seeded by
``(seed, n)`` (:func:`.loop.step_rng`), so a run is repeatable.

Accuracy is measured on held-out tiles at ``t`` = 0, 250, 500 and 750 (the
central window of each tile, fixed noise), and written into the
classifier's config with the provenance of the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .tiles import LabelledTiles, align_classes

#: Noise levels at which held-out accuracy is reported.
EVAL_TIMESTEPS = (0, 250, 500, 750)


@dataclass
class ClassifierTrainSettings:
    """Settings of a classifier training run.

    Parameters
    ----------
    steps : int
        Optimiser steps.
    batch_size : int
    lr : float
        AdamW learning rate (constant after a linear warm-up of
        ``min(100, steps // 10)`` steps).
    weight_decay : float
    seed : int
    channels : list of int
        Feature channels per classifier block (multiples of 8).
    time_dim : int
        Width of the timestep embedding.
    flips : bool
        Random flips and quarter turns of each window.
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    time_dim: int = 64
    flips: bool = True

    def check(self) -> None:
        for name in ("steps", "batch_size", "time_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be an integer "
                                 f">= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or \
                self.seed < 0:
            raise InputError(f"--seed: must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr)
                and self.lr > 0):
            raise InputError(f"--lr: must be a finite number > 0, got {self.lr!r}")


# -- the canvas of a tile ---------------------------------------------------------
def encode_tiles(images: Sequence[np.ndarray], vae, latent_scaling: float,
                 factor: int, device=None, batch: int = 16) -> list:
    """Each tile as the canvas the model denoises: (C, h, w) float32 tensors.

    Latent models: the VAE's posterior mean times ``latent_scaling`` (tiles
    are cropped to a multiple of ``factor`` first); pixel models
    (``vae=None``): the pixels in [-1, 1].
    """
    import torch

    out: list = []
    if vae is None:
        for im in images:
            x = torch.from_numpy(np.ascontiguousarray(im).astype(np.float32))
            out.append((x / 127.5 - 1.0).permute(2, 0, 1).contiguous())
        return out
    p = next(vae.parameters())
    device = p.device if device is None else device
    # group by size so tiles of one size are encoded together
    order = sorted(range(len(images)), key=lambda i: images[i].shape[:2])
    result: dict[int, Any] = {}
    start = 0
    while start < len(order):
        shape = images[order[start]].shape[:2]
        stop = start
        while stop < len(order) and stop - start < batch and \
                images[order[stop]].shape[:2] == shape:
            stop += 1
        idx = order[start:stop]
        h, w = (shape[0] // factor) * factor, (shape[1] // factor) * factor
        pix = np.stack([images[i][:h, :w] for i in idx]).astype(np.float32)
        x = torch.from_numpy(pix / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            z = vae.encode(x.to(device, p.dtype)).latent_dist.mean
        z = (z.float() * float(latent_scaling)).cpu()
        for k, i in enumerate(idx):
            result[i] = z[k]
        start = stop
    return [result[i] for i in range(len(images))]


def _augment(x, rng: np.random.Generator):
    import torch

    k = int(rng.integers(4))
    if k:
        x = torch.rot90(x, k, dims=(-2, -1))
    if rng.random() < 0.5:
        x = torch.flip(x, dims=(-1,))
    return x


def _window(z, size: int, rng: np.random.Generator | None):
    """A ``size`` window of a (C, h, w) canvas: random, or central (rng None)."""
    h, w = z.shape[-2:]
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
    else:
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return z[:, y:y + size, x:x + size]


def noise_to(x0, t, alphas_cumprod, generator):
    """``x_t`` of clean windows ``x0`` (B, C, h, w) at integer timesteps ``t``."""
    import torch

    abar = alphas_cumprod[t].to(x0.dtype).view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def evaluate(module, canvases: Sequence, labels: np.ndarray, window: int,
             alphas_cumprod, timesteps: Sequence[int] = EVAL_TIMESTEPS,
             seed: int = 0, batch: int = 64) -> dict[str, float]:
    """Accuracy on the central window of each canvas at each timestep
    (fixed noise from ``seed``); keys ``"t=0"``, ``"t=250"`` ..."""
    import torch

    from .loop import step_seed  # torch-heavy: not at import

    x0 = torch.stack([_window(z, window, None) for z in canvases])
    y = torch.as_tensor(labels)
    device = next(module.parameters()).device
    out = {}
    was_training = module.training
    module.eval()
    last = len(alphas_cumprod) - 1
    for t in timesteps:
        t = min(int(t), last)
        g = torch.Generator().manual_seed(step_seed(seed, t, 7))
        tt = torch.full((len(x0),), t, dtype=torch.long)
        xt = noise_to(x0, tt, alphas_cumprod, g) if t > 0 else x0
        correct = 0
        with torch.no_grad():
            for s in range(0, len(xt), batch):
                logits = module(xt[s:s + batch].to(device),
                                tt[s:s + batch].to(device))
                correct += int((logits.argmax(1).cpu() == y[s:s + batch]).sum())
        out[f"t={t}"] = correct / max(1, len(x0))
    module.train(was_training)
    return out


# -- training ---------------------------------------------------------------------
@dataclass
class ClassifierTrainResult:
    """What :func:`train_classifier` gives back."""

    module: Any
    heldout_accuracy: dict[str, float]
    train_accuracy: dict[str, float]
    seconds: float
    counts: dict[str, int]
    path: Path | None = None

    def summary(self) -> dict[str, Any]:
        return {"classifier": str(self.path) if self.path else None,
                "classes": self.module.config.class_names,
                "tiles_per_class": self.counts,
                "heldout_accuracy": self.heldout_accuracy,
                "train_accuracy": self.train_accuracy,
                "seconds": round(self.seconds, 2)}


def check_tiles(tiles: LabelledTiles, pixels: int, argname: str) -> None:
    """Refuse tiles smaller than the classifier's window (``pixels`` image
    pixels), naming the first such tile."""
    for im, src in zip(tiles.images, tiles.sources or [""] * len(tiles),
                       strict=True):
        if min(im.shape[:2]) < pixels:
            raise InputError(
                f"{argname}: the tile {src or ''} is {im.shape[0]}x{im.shape[1]} "
                f"pixels, smaller than the model's {pixels}-pixel window; use "
                "larger tiles (or a larger --tile-size)")


def train_classifier(model_dir: str | Path, tiles: LabelledTiles,
                     settings: ClassifierTrainSettings | None = None,
                     heldout: LabelledTiles | None = None, device=None,
                     save: bool = True, overwrite: bool = False,
                     log: Callable[[int, float], None] | None = None,
                     provenance: dict[str, Any] | None = None
                     ) -> ClassifierTrainResult:
    """Train the noise-aware classifier of ``model_dir`` on ``tiles``.

    Parameters
    ----------
    model_dir : path
        A model directory (latent or pixel); its VAE, window and training
        schedule are used, nothing in it is changed but ``classifier/``.
    tiles : LabelledTiles
        Training tiles; their class names become the classifier's classes.
    settings : ClassifierTrainSettings, optional
    heldout : LabelledTiles, optional
        Tiles of the same classes for the accuracy per noise level.
    device : torch.device, optional
        Default CPU.
    save : bool
        Write ``MODEL/classifier/`` (atomically; an existing one only with
        ``overwrite``).
    log : callable, optional
        ``log(step, loss)`` every 50 steps and at the end.
    provenance : dict, optional
        Extra facts recorded in the config (data paths, command).
    """
    import torch

    from ..models.classifier import (
        CLASSIFIER_DIR,
        ClassifierConfig,
        NoiseAwareClassifier,
        autoencoder_fingerprint,
        save_classifier,
    )
    from ..models.directory import load_components
    from ..outputs import check_output
    from .loop import step_rng, step_seed  # torch-heavy: not at import

    settings = settings or ClassifierTrainSettings()
    settings.check()
    device = torch.device("cpu") if device is None else torch.device(device)
    model_dir = Path(model_dir)
    if save:
        check_output(model_dir / CLASSIFIER_DIR, overwrite, "--overwrite",
                     folder=True)
    parts = load_components(model_dir)
    card, scheduler, vae = parts["card"], parts["scheduler"], parts["vae"]
    channels = int(parts["unet"].config.out_channels)  # the canvas channels
    del parts
    factor = int(card.vae_scale_factor)
    window = int(card.latent_patch_size)
    check_tiles(tiles, window * factor, "--images")
    if heldout is not None:
        heldout = align_classes(heldout, tiles.class_names)
        check_tiles(heldout, window * factor, "--heldout")
    counts = tiles.counts()
    empty = [n for n, c in counts.items() if c == 0]
    if empty:
        raise InputError(f"--images: no tiles of class {', '.join(empty)}")

    start = time.perf_counter()
    if vae is not None:
        vae = vae.to(device).eval().requires_grad_(False)
    canvases = encode_tiles(tiles.images, vae, card.latent_scaling, factor, device)
    held = None if heldout is None else encode_tiles(
        heldout.images, vae, card.latent_scaling, factor, device)
    acp = scheduler.alphas_cumprod.float()
    T = int(scheduler.config.num_train_timesteps)

    config = ClassifierConfig(
        class_names=list(tiles.class_names), in_channels=channels,
        sample_size=window, factor=factor,
        autoencoder_sha256=autoencoder_fingerprint(model_dir),
        channels=list(settings.channels), time_dim=settings.time_dim,
        num_train_timesteps=T)
    torch.manual_seed(step_seed(settings.seed, 0, 99))
    module = NoiseAwareClassifier(config).to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    warmup = min(100, settings.steps // 10)
    by_class = [np.flatnonzero(tiles.labels == k) for k in range(len(counts))]
    module.train()
    running = []
    for step in range(settings.steps):
        rng = step_rng(settings.seed, step)
        cls = rng.integers(len(by_class), size=settings.batch_size)
        idx = [int(rng.choice(by_class[c])) for c in cls]
        xs = []
        for i in idx:
            x = _window(canvases[i], window, rng)
            xs.append(_augment(x, rng) if settings.flips else x)
        x0 = torch.stack(xs)
        t = torch.as_tensor(rng.integers(0, T, size=settings.batch_size))
        g = torch.Generator().manual_seed(step_seed(settings.seed, step, 1))
        xt = noise_to(x0, t, acp, g)
        y = torch.as_tensor(cls, dtype=torch.long)
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(1, warmup))
        logits = module(xt.to(device), t.to(device))
        loss = torch.nn.functional.cross_entropy(logits, y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        running.append(float(loss.detach()))
        if log is not None and ((step + 1) % 50 == 0 or step + 1 == settings.steps):
            log(step + 1, float(np.mean(running[-50:])))
    module.eval()
    train_acc = evaluate(module, canvases, tiles.labels, window, acp,
                         seed=settings.seed)
    held_acc = {} if held is None else evaluate(module, held, heldout.labels,
                                                window, acp, seed=settings.seed)
    seconds = time.perf_counter() - start
    config.heldout_accuracy = held_acc
    config.provenance = {
        "kind": "noise-aware classifier (histodiff train classifier)",
        "training": asdict(settings),
        "tiles_per_class": counts,
        "heldout_tiles_per_class": None if heldout is None else heldout.counts(),
        "train_accuracy": train_acc,
        "timesteps": f"uniform over 0...{T - 1} of the model's schedule",
        "canvas": ("VAE posterior mean x latent_scaling" if vae is not None
                   else "pixels in [-1, 1]"),
        "seconds": round(seconds, 2),
        **(provenance or {}),
    }
    module.config = config
    result = ClassifierTrainResult(module.cpu(), held_acc, train_acc, seconds,
                                   counts)
    if save:
        result.path = save_classifier(model_dir, module, overwrite=overwrite)
    return result
