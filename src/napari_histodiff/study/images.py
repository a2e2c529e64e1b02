"""Reading the RGB images a reader study samples its tiles from.

Supported inputs:

* PNG, TIFF and JPEG files holding 8-bit RGB (``uint8``). An alpha channel
  is dropped. Grayscale, 16-bit or float images are refused with an
  :class:`~napari_histodiff.errors.InputError`: a study must compare like with
  like, so convert them yourself, the same way for both sides.
* OME-Zarr images written by this package: a directory ``*.zarr`` whose
  multiscales metadata names the full-resolution level (``s0`` as written by
  ``histodiff generate``; ``"0"`` for plain groups) with shape ``(c, y, x)``,
  ``c`` = 3 (or 4 with alpha), ``uint8``. It is read region by region, so a
  large canvas is never loaded whole.
* Arrays already in memory (e.g. napari layers), ``(y, x, 3|4)`` ``uint8``.
* Folders: every supported file and ``*.zarr`` directory directly inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: File name endings read as image files (case-insensitive).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")

_HOW_TO_FIX = (
    "Reader studies need 8-bit RGB images; convert it to RGB uint8 the same "
    "way for real and synthetic images, or leave it out."
)


class RGBImage:
    """An RGB image that can be read region by region.

    Parameters
    ----------
    array : array-like
        Pixel data supporting numpy-style slicing: ``(y, x, c)`` or, with
        ``channel_first=True``, ``(c, y, x)``; ``c`` is 3 or 4 (alpha is
        dropped) and the dtype is ``uint8``.
    name : str
        Where the image came from (a path or a layer name). It goes into the
        truth key only, never into what a reader sees.
    channel_first : bool, optional
        Whether the channel axis comes first.

    Raises
    ------
    InputError
        If the array is not 8-bit RGB(A).
    """

    def __init__(self, array: Any, name: str, *, channel_first: bool = False):
        shape = tuple(int(s) for s in array.shape)
        dtype = np.dtype(array.dtype)
        channels = shape[0] if channel_first else shape[-1]
        if len(shape) == 2 or (len(shape) == 3 and channels == 1):
            raise InputError(
                f"image {name!r} is grayscale (shape {shape}). {_HOW_TO_FIX}"
            )
        if len(shape) != 3 or channels not in (3, 4):
            raise InputError(
                f"image {name!r} has shape {shape}; expected (y, x, 3) RGB or "
                f"(y, x, 4) RGBA. {_HOW_TO_FIX}"
            )
        if dtype != np.uint8:
            raise InputError(f"image {name!r} has dtype {dtype}. {_HOW_TO_FIX}")
        self._array = array
        self._channel_first = channel_first
        self.name = name
        self.height, self.width = shape[1:] if channel_first else shape[:2]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.height, self.width

    def read(self, y: int, x: int, height: int, width: int) -> np.ndarray:
        """Read a region as a ``(height, width, 3)`` ``uint8`` array."""
        if self._channel_first:
            region = np.asarray(self._array[:3, y : y + height, x : x + width])
            region = np.moveaxis(region, 0, -1)
        else:
            region = np.asarray(self._array[y : y + height, x : x + width, :3])
        return np.ascontiguousarray(region, dtype=np.uint8)

    def read_all(self) -> np.ndarray:
        """Read the whole image as a ``(height, width, 3)`` ``uint8`` array."""
        return self.read(0, 0, self.height, self.width)

    def __repr__(self) -> str:
        return f"RGBImage({self.name!r}, {self.height}x{self.width})"


def is_zarr_dir(path: Path) -> bool:
    """Whether ``path`` is a directory that looks like a Zarr group."""
    return path.is_dir() and (
        path.suffix.lower() == ".zarr"
        or (path / "zarr.json").is_file()
        or (path / ".zgroup").is_file()
    )


def _open_zarr(path: Path) -> RGBImage:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        array = group[_full_resolution_path(group)]
    except Exception as exc:  # zarr raises several types for a bad store
        raise InputError(
            f"{path} is not an OME-Zarr image of this package (no readable "
            f"full-resolution array: {exc}). Pass the .zarr folder written by "
            "`histodiff generate`, or image files."
        ) from exc
    return RGBImage(array, str(path), channel_first=True)


def _full_resolution_path(group) -> str:
    """Path of the first multiscale level (NGFF 0.4 or 0.5), else ``"0"``."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get(
        "multiscales"
    )
    if multiscales:
        return multiscales[0]["datasets"][0]["path"]
    return "0"


def _open_tiff(path: Path) -> RGBImage:
    import tifffile

    try:
        array = tifffile.imread(path)
    except Exception as exc:
        raise InputError(f"cannot read TIFF file {path}: {exc}") from exc
    if array.ndim == 3 and array.shape[-1] not in (3, 4) and array.shape[0] in (3, 4):
        return RGBImage(array, str(path), channel_first=True)
    return RGBImage(array, str(path))


def _open_pillow(path: Path) -> RGBImage:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P":  # a palette image is colour: expand it
                image = image.convert("RGBA")
            array = np.asarray(image)
    except Exception as exc:
        raise InputError(f"cannot read image file {path}: {exc}") from exc
    return RGBImage(array, str(path))


def open_rgb(path: str | Path) -> RGBImage:
    """Open an image file or OME-Zarr folder for region-wise reading.

    Parameters
    ----------
    path : str or Path
        A PNG, TIFF or JPEG file, or an OME-Zarr ``.zarr`` directory.

    Returns
    -------
    RGBImage

    Raises
    ------
    InputError
        If the path does not exist, has an unsupported format, or does not
        hold 8-bit RGB(A).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image {path} does not exist; check the path.")
    if is_zarr_dir(path):
        return _open_zarr(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in (".tif", ".tiff"):
        return _open_tiff(path)
    if path.is_file() and suffix in IMAGE_SUFFIXES:
        return _open_pillow(path)
    raise InputError(
        f"{path} is not a supported image; use PNG, TIFF or JPEG files "
        "or OME-Zarr (.zarr) folders."
    )


def load_rgb(path: str | Path) -> np.ndarray:
    """Load an image as a ``(height, width, 3)`` ``uint8`` array.

    Alpha is dropped; anything that is not 8-bit RGB(A) raises
    :class:`~napari_histodiff.errors.InputError` (see :func:`open_rgb`).
    """
    return open_rgb(path).read_all()


def expand_paths(paths: Iterable[str | Path], argument: str = "images") -> list[Path]:
    """List the images named by files and folders.

    A folder that is not itself a Zarr image stands for the supported files
    and ``.zarr`` folders directly inside it (sorted by name; hidden files
    are skipped).

    Parameters
    ----------
    paths : iterable of str or Path
        Files and folders.
    argument : str
        Name of the argument, for error messages.

    Raises
    ------
    InputError
        If a path does not exist, or a folder or the whole list holds no
        supported image.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{argument}: {path} does not exist; check the path.")
        if path.is_dir() and not is_zarr_dir(path):
            inside = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".")
                and (
                    (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                    or is_zarr_dir(p)
                )
            )
            if not inside:
                raise InputError(
                    f"{argument}: folder {path} holds no PNG, TIFF, JPEG or "
                    ".zarr images; point at the folder that holds them."
                )
            found.extend(inside)
        else:
            found.append(path)
    if not found:
        raise InputError(f"{argument}: no images given; pass files or folders.")
    return found


def open_sources(
    sources: Sequence[str | Path | RGBImage], argument: str = "images"
) -> list[RGBImage]:
    """Open paths (files or folders) and pass :class:`RGBImage` through."""
    images: list[RGBImage] = []
    for source in sources:
        if isinstance(source, RGBImage):
            images.append(source)
        else:
            images.extend(open_rgb(p) for p in expand_paths([source], argument))
    if not images:
        raise InputError(f"{argument}: no images given; pass files or folders.")
    return images
