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


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as PNG (8/16-bit), TIFF or ``.npy`` by suffix."""
    path = Path(path)
    mask = check_mask_array(mask)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, mask)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, mask)
    elif suffix == ".png":
        from PIL import Image

        dtype = np.uint8 if mask.max(initial=0) < 256 else np.uint16
        Image.fromarray(mask.astype(dtype)).save(path)
    else:
        raise InputError(f"out: {path} has suffix {suffix!r}; use one of "
                         f"{', '.join(MASK_SUFFIXES)}")
    return path
