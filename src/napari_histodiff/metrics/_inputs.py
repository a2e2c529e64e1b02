"""Checks of the image sets that the realism metrics take."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def check_rgb_images(images: Sequence[np.ndarray], argname: str,
                     min_side: int = 1) -> list[np.ndarray]:
    """``images`` as a list of (H, W, 3) uint8 arrays, each side >= ``min_side``.

    Parameters
    ----------
    images : sequence of np.ndarray
        The image set. A single array is refused (wrap it in a list), so that
        an (N, H, W, 3) stack is never taken for something else by accident.
    argname : str
        The argument's name, used in the error messages (``real_images``).
    min_side : int
        The smallest height and width accepted.

    Returns
    -------
    list of np.ndarray
        The same arrays, unchanged.

    Raises
    ------
    InputError
        Naming the argument, the index of the first bad image, and its
        dtype or shape.
    """
    if isinstance(images, np.ndarray) or isinstance(images, str | bytes) or \
            not isinstance(images, Sequence):
        raise InputError(
            f"{argname}: expected a list of (H, W, 3) uint8 images, got "
            f"{type(images).__name__}; wrap a single image in a list")
    if len(images) == 0:
        raise InputError(f"{argname}: the list is empty; give at least one image")
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, np.ndarray):
            raise InputError(f"{argname}[{i}]: expected a numpy array, got "
                             f"{type(im).__name__}")
        if im.dtype != np.uint8:
            raise InputError(
                f"{argname}[{i}]: expected dtype uint8, got {im.dtype}; convert "
                "it to 0-255 uint8 yourself so that no value is changed silently")
        if im.ndim != 3 or im.shape[-1] != 3:
            raise InputError(f"{argname}[{i}]: expected shape (H, W, 3), got "
                             f"{im.shape}")
        if min(im.shape[:2]) < min_side:
            raise InputError(f"{argname}[{i}]: shape {im.shape} is too small; "
                             f"each side needs at least {min_side} pixels")
        out.append(im)
    return out
