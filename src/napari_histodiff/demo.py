"""The demo: a mask, then an image that follows it, written to a folder.

Used by ``make demo`` and ``histodiff demo``. With the shipped demo model the
mask comes from its mask generator; without one (a build that ships no trained
model) a freshly initialised tiny model is used, and the demo says plainly
that its picture is untrained noise.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def blob_mask(shape: tuple[int, int], class_ids: list[int], seed: int = 0,
              scale: float = 24.0) -> np.ndarray:
    """A mask of smooth random regions, one per class id (no model needed).

    Smoothed Gaussian noise per class; each pixel takes the class with the
    largest value, which gives rounded, tissue-like regions of about
    ``scale`` pixels.
    """
    from scipy.ndimage import gaussian_filter

    if not class_ids:
        raise InputError("classes: give at least one class for the mask")
    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.standard_normal(shape), scale,
                                       mode="wrap") for _ in class_ids])
    return np.asarray(class_ids, dtype=np.uint8)[np.argmax(fields, axis=0)]
