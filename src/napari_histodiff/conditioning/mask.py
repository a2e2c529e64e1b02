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

from typing import Protocol

import numpy as np

from ..arrays import fold, take_2d


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
