"""PNG previews: the image from a low pyramid level, and mask | image sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models.classes import TissueClasses


def colorize(mask: np.ndarray, classes: TissueClasses) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 using the class colours."""
    lut = np.zeros((max(len(classes), int(mask.max(initial=0)) + 1), 3), np.uint8)
    for c in classes:
        lut[c.index] = c.color
    return lut[mask]


def save_png(path: str | Path, rgb: np.ndarray, overwrite: bool = False,
             argname: str = "preview") -> Path:
    """Write an RGB (or gray) image as PNG, whole or not at all.

    An existing ``path`` is an error unless ``overwrite``.
    """
    from PIL import Image

    from ..outputs import atomic_output

    path = Path(path)
    if path.suffix.lower() != ".png":
        from ..errors import InputError

        raise InputError(f"{argname}: {path} does not end in .png; a preview is "
                         "a PNG file, name it NAME.png")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_output(path, overwrite, argname) as tmp:
        image.save(tmp, format="PNG")
    return path


def side_by_side(mask_rgb: np.ndarray, image: np.ndarray, gap: int = 8) -> np.ndarray:
    """Mask colours | image, with a white gap."""
    h = max(mask_rgb.shape[0], image.shape[0])
    sheet = np.full((h, mask_rgb.shape[1] + gap + image.shape[1], 3), 255, np.uint8)
    sheet[: mask_rgb.shape[0], : mask_rgb.shape[1]] = mask_rgb
    sheet[: image.shape[0], mask_rgb.shape[1] + gap :] = image
    return sheet


def preview_from_omezarr(zarr_path: str | Path, out: str | Path,
                         with_mask: bool = False, overwrite: bool = False) -> Path:
    """Write the lowest pyramid level (<= 1024 px) of an output as PNG."""
    from .omezarr import read_synthesis

    data = read_synthesis(zarr_path)
    img = np.moveaxis(np.asarray(data["image"][-1]), 0, -1)
    if with_mask:
        mask = np.asarray(data["mask"][-1])
        img = side_by_side(colorize(mask, data["classes"]), img)
    return save_png(out, img, overwrite=overwrite)
