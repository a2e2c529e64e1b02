"""Reading label masks from PNG, TIFF or ``.npy`` files, and writing them.

A mask is a 2-D integer image of class ids. Nothing is converted silently:
an RGB image, a float array or a non-integer file is refused with a message
that says what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


def read_mask(path: str | Path, argname: str = "mask") -> np.ndarray:
    """Read a 2-D integer label image.

    Parameters
    ----------
    path : path
        A ``.png``, ``.tif``/``.tiff`` or ``.npy`` file (never unpickled).
    argname : str
        Name used in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{argname}: {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            mask = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            mask = tifffile.imread(path)
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                if im.mode not in ("L", "I", "I;16", "P", "1"):
                    raise InputError(
                        f"{argname}: {path} is a {im.mode} image; a mask is one "
                        "channel of integer class ids (e.g. an 8-bit grayscale "
                        "PNG with values 0, 1, 2, ...)"
                    )
                if im.mode == "P":
                    mask = np.asarray(im)  # palette indices are the class ids
                else:
                    mask = np.asarray(im)
        else:
            raise InputError(
                f"{argname}: {path} has suffix {suffix!r}; use one of "
                f"{', '.join(MASK_SUFFIXES)}"
            )
    except InputError:
        raise
    except (ValueError, OSError) as exc:
        raise InputError(f"{argname}: cannot read {path}: {exc}") from exc
    return check_mask_array(mask, f"{argname} {path}")


def check_mask_array(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Check a mask is a 2-D integer array; return it unchanged."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D label image, got shape {mask.shape}; "
            "a mask has one integer class id per pixel"
        )
    if mask.dtype == bool or not np.issubdtype(mask.dtype, np.integer):
        raise InputError(
            f"{name}: expected integer class ids, got dtype {mask.dtype}; "
            "convert it yourself so that no label changes silently"
        )
    if mask.size and mask.min() < 0:
        raise InputError(f"{name}: holds negative ids ({int(mask.min())})")
    return mask


def check_mask_path(path: str | Path, argname: str = "out") -> Path:
    """Check that ``path`` names a mask format by its suffix."""
    path = Path(path)
    if path.suffix.lower() not in MASK_SUFFIXES:
        raise InputError(f"{argname}: {path} has suffix {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join(MASK_SUFFIXES)}")
    return path


def write_mask(path: str | Path, mask: np.ndarray, overwrite: bool = False,
               argname: str = "out") -> Path:
    """Write a mask as PNG (8/16-bit), TIFF or ``.npy`` by suffix.

    The file is written whole or not at all (a temporary sibling renamed
    into place); an existing ``path`` is an error unless ``overwrite``.
    """
    from ..outputs import atomic_output

    path = check_mask_path(path, argname)
    mask = check_mask_array(mask)
    suffix = path.suffix.lower()
    if suffix == ".png" and mask.max(initial=0) > 65535:
        raise InputError(f"{argname}: {path}: a PNG holds ids up to 65535, this "
                         f"mask has {int(mask.max())}; write .tif or .npy")
    with atomic_output(path, overwrite, argname) as tmp:
        if suffix == ".npy":
            np.save(tmp, mask)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, mask)
        else:
            from PIL import Image

            dtype = np.uint8 if mask.max(initial=0) < 256 else np.uint16
            Image.fromarray(mask.astype(dtype)).save(tmp, format="PNG")
    return path
