"""The tissue mask as input channels.

The image UNet sees the mask as one channel per class, concatenated to the
noisy input: one forward pass serves a window whatever classes it holds. The
null condition is the all-``unknown`` mask (channel 0 everywhere). Latent
models see, per latent pixel, the area fraction of each class among the
``f x f`` image pixels it spans.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import fold, take_2d
from ..errors import InputError
from .base import Condition, ConditionInputs, WindowIndices


class MaskCondition(Condition):
    """One-hot (pixel models) or area-fraction (latent models) class channels.

    Parameters
    ----------
    mask : array-like, (H, W) integer
        Label image at pixel resolution (numpy or zarr array).
    num_classes : int
        Number of classes, including ``unknown`` at 0.
    factor : int
        Pixels per canvas pixel along a side (the VAE factor; 1 in pixel space).
    name : str
        How guidance terms refer to it (default ``mask``).
    """

    kind = "channels"

    def __init__(self, mask, num_classes: int, factor: int = 1,
                 name: str = "mask"):
        self.mask = mask
        self.channels = int(num_classes)
        self.factor = int(factor)
        self.name = name

    def window(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Class channels (K, len(ys), len(xs)) of canvas rows/cols."""
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

    def null(self, height: int, width: int) -> np.ndarray:
        """Null-condition channels (K, height, width): all ``unknown``."""
        out = np.zeros((self.channels, height, width), np.float32)
        out[0] = 1.0
        return out

    def inputs(self, windows: WindowIndices, size: int, null: bool
               ) -> ConditionInputs:
        if null:
            one = self.null(size, size)
            return ConditionInputs(channels=np.broadcast_to(
                one, (len(windows), *one.shape)))
        return ConditionInputs(channels=np.stack(
            [self.window(ys, xs) for ys, xs in windows]))

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

    def settings(self) -> dict[str, Any]:
        # the mask's hash is in the output's settings already (mask_sha256)
        return {"name": self.name, "kind": "mask", "classes": self.channels,
                "factor": self.factor}


class ClassSetCondition(Condition):
    """A set of wanted classes as K constant channels (null: all zeros).

    The mask generator's condition: which classes the generated mask may hold.

    Parameters
    ----------
    multi_hot : np.ndarray
        (K,) 0/1 vector of the classes to include.
    name : str
    """

    kind = "channels"

    def __init__(self, multi_hot: np.ndarray, name: str = "classes"):
        self.vector = np.asarray(multi_hot, np.float32)
        if self.vector.ndim != 1:
            raise InputError(f"multi_hot: expected a (K,) vector, got shape "
                             f"{self.vector.shape}")
        self.channels = int(self.vector.shape[0])
        self.name = name

    def window(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.vector[:, None, None],
                               (self.channels, len(ys), len(xs))).copy()

    def null(self, height: int, width: int) -> np.ndarray:
        return np.zeros((self.channels, height, width), np.float32)

    def inputs(self, windows: WindowIndices, size: int, null: bool
               ) -> ConditionInputs:
        one = self.null(size, size) if null else self.window(
            np.arange(size), np.arange(size))
        return ConditionInputs(channels=np.broadcast_to(
            one, (len(windows), *one.shape)))

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "class-set",
                "classes": [int(i) for i in np.flatnonzero(self.vector)]}
