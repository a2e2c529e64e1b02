"""How the mask reaches the UNet, and classifier-free guidance.

The image UNet sees the mask as one channel per class, concatenated to the
noisy input: one forward pass serves a window whatever classes it holds. The
null condition is the all-``unknown`` mask (channel 0 everywhere).

Conditioning is pluggable: a :class:`Conditioning` turns a window of the
canvas into extra input channels and extra UNet keyword arguments, for the
conditional and the null branch. Class labels, text embeddings or classifier
gradients can join later as further conditionings or as guidance terms
without changing the samplers, which only call :class:`GuidedDenoiser`.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np


class Conditioning(Protocol):
    """A source of per-window conditioning."""

    channels: int

    def window(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Conditional channels (K, len(ys), len(xs)) for canvas rows/cols."""

    def null(self, height: int, width: int) -> np.ndarray:
        """Null-condition channels (K, height, width)."""


class MaskConditioning:
    """One-hot (pixel models) or area-fraction (latent models) class channels.

    Parameters
    ----------
    mask : array-like, (H, W) integer
        Label image at pixel resolution (numpy or zarr array).
    num_classes : int
        Number of classes, including ``unknown`` at 0.
    factor : int
        Pixels per canvas pixel along a side (the VAE factor; 1 in pixel space).
    """

    def __init__(self, mask, num_classes: int, factor: int = 1):
        self.mask = mask
        self.channels = int(num_classes)
        self.factor = int(factor)

    def window(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        f = self.factor
        if f > 1:  # canvas pixel -> the f x f image pixels it spans
            from .sampling.windows import fold

            height, width = self.mask.shape[-2:]
            ys = fold((ys[:, None] * f + np.arange(f)).ravel(), height)
            xs = fold((xs[:, None] * f + np.arange(f)).ravel(), width)
        labels = take_2d(self.mask, ys, xs)
        onehot = (labels[None] == np.arange(self.channels)[:, None, None]).astype(
            np.float32
        )
        if f > 1:
            k, h, w = onehot.shape
            onehot = onehot.reshape(k, h // f, f, w // f, f).mean(axis=(2, 4))
        return onehot

    def mean_canvas(self, rows: slice, cols: slice, means) -> np.ndarray:
        """Expected clean canvas over ``rows`` x ``cols`` given the mask.

        ``means`` is (classes, C): the mean canvas value of each class (the
        model card's ``class_means``). Each canvas pixel gets the means of
        the classes under it, weighted by their area (one class per pixel in
        pixel space). Returns (C, h, w) float32.
        """
        means = np.asarray(means, np.float32)
        weights = self.window(np.arange(rows.start, rows.stop),
                              np.arange(cols.start, cols.stop))
        return np.tensordot(means.T, weights, axes=1).astype(np.float32)

    def null(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((self.channels, height, width), np.float32)
        out[0] = 1.0
        return out


def take_2d(array, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``array[..., ys, :][..., xs]`` reading only the bounding block.

    Works on numpy and zarr arrays alike (zarr reads only the chunks it needs).
    """
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    block = np.asarray(array[..., y0:y1, x0:x1])
    return block[..., ys - y0, :][..., xs - x0]


class GuidedDenoiser:
    """The UNet with classifier-free guidance over batches of windows.

    ``prediction = null + w * (cond - null)``; ``w = 1`` is plain conditional
    (the null branch is skipped), ``w = 0`` unconditional (the conditional
    branch is skipped). Otherwise both branches run in one batched call.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
    guidance_scale : float
        ``w >= 0``.
    device, dtype : torch device and dtype for the UNet inputs.

    Attributes
    ----------
    unet_seconds : float
        Wall time spent inside UNet calls (for the benchmark).
    evaluations : int
        Windows evaluated (a window counts once even with both branches).
    """

    def __init__(self, unet, guidance_scale: float, device, dtype):
        self.unet = unet
        self.guidance_scale = float(guidance_scale)
        self.device = device
        self.dtype = dtype
        self.unet_seconds = 0.0
        self.evaluations = 0
        self.unet_calls = 0

    def __call__(self, x: np.ndarray, t, cond: np.ndarray, null: np.ndarray):
        """Guided model output for windows ``x`` (B, C, h, w) at timestep ``t``.

        ``cond`` and ``null`` are (B, K, h, w) condition channels.
        """
        import torch

        w = self.guidance_scale
        if w == 1.0:
            xs, cs = x, cond
        elif w == 0.0:
            xs, cs = x, null
        else:
            xs, cs = np.concatenate([x, x]), np.concatenate([cond, null])
        inp = torch.from_numpy(np.concatenate([xs, cs], axis=1)).to(
            self.device, self.dtype
        )
        tt = torch.full((inp.shape[0],), int(t), device=self.device, dtype=torch.long)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = self.unet(inp, tt).sample
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.unet_seconds += time.perf_counter() - start
        self.unet_calls += 1
        self.evaluations += x.shape[0]
        out = out.float()
        if w not in (0.0, 1.0):
            c, n = out.chunk(2)
            out = n + w * (c - n)
        return out.cpu().numpy()
