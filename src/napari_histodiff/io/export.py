"""Export a synthetic image with its mask, whole or a region, with provenance.

Formats, chosen by the file suffix:

* ``.zarr`` (``.ome.zarr``): OME-Zarr with the mask as a label image
  (:func:`napari_histodiff.io.omezarr.write_synthesis`), multiscale when large.
* ``.tif`` / ``.tiff`` (``.ome.tif``): OME-TIFF RGB image, tiled and
  pyramidal (sub-IFDs) when the long side exceeds :data:`PYRAMID_MIN_SIDE`,
  and the mask beside it as ``<name>_mask.tif``.
* ``.png``: the image and the mask (8/16-bit class ids) as ``<name>_mask.png``.

Every export writes a sidecar ``<name>.json`` with the model, seed, the
generation settings, the classes and the exported region, so each synthetic
image can be traced and reproduced.
"""

from __future__ import annotations

import datetime as _dt
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError, OutputExistsError
from ..hashing import array_sha256
from ..models.classes import TissueClasses
from ..outputs import atomic_output, check_output

Region = tuple[int, int, int, int]

SIDECAR_FORMAT = "napari-histodiff-export"
PYRAMID_MIN_SIDE = 2048
PNG_MAX_SIDE = 16384
TILE = 256
HASH_MAX_PIXELS = 1 << 26
_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", ".tiff", ".tif", ".png")
FORMATS = {".zarr": "ome-zarr", ".tif": "tiff", ".tiff": "tiff", ".png": "png"}


@dataclass
class ExportResult:
    """Paths written by :func:`export_synthesis`."""

    image: Path
    mask: Path | None
    sidecar: Path
    format: str
    region: Region | None
    size: tuple[int, int]


def output_format(path: str | Path) -> str:
    """``ome-zarr``, ``tiff`` or ``png`` from the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"path: {Path(path).name} has suffix {suffix or '(none)'!r}; export to "
            ".zarr (OME-Zarr), .tif (OME-TIFF) or .png"
        )
    return FORMATS[suffix]


def base_path(path: str | Path) -> Path:
    """``path`` without its format suffixes (``a/x.ome.tif`` -> ``a/x``)."""
    path = Path(path)
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_name(path.stem)


def sidecar_path(path: str | Path) -> Path:
    """The provenance JSON written beside an export."""
    base = base_path(path)
    return base.with_name(base.name + ".json")


def mask_path(path: str | Path) -> Path | None:
    """Where the mask goes (None for OME-Zarr, which holds it as labels)."""
    fmt = output_format(path)
    if fmt == "ome-zarr":
        return None
    base = base_path(path)
    return base.with_name(base.name + ("_mask.png" if fmt == "png" else "_mask.tif"))


def crop(array, region: Region | None):
    """``array[y0:y1, x0:x1]`` (any array type, leading axes are rows, columns)."""
    if region is None:
        return array
    y0, y1, x0, x1 = region
    return array[y0:y1, x0:x1]


def check_region(region: Region | None, shape: tuple[int, ...]) -> Region | None:
    """Validate a region ``(y0, y1, x0, x1)`` against an image of ``shape``."""
    if region is None:
        return None
    y0, y1, x0, x1 = (int(v) for v in region)
    H, W = int(shape[0]), int(shape[1])
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise InputError(f"region: {(y0, y1, x0, x1)} is not inside the {H}x{W} "
                         "image; draw the rectangle over the image")
    return y0, y1, x0, x1


def export_synthesis(
    path: str | Path,
    image,
    mask=None,
    classes: TissueClasses | None = None,
    settings: dict[str, Any] | None = None,
    region: Region | None = None,
    microns_per_pixel: float | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write an image (and its mask) in the format of ``path``'s suffix.

    Parameters
    ----------
    path : path
        ``.zarr``, ``.tif``/``.tiff`` or ``.png``.
    image : array-like
        (H, W, 3) uint8: numpy, dask or zarr; read region by region.
    mask : array-like, optional
        (H, W) class ids of the same size; required for OME-Zarr.
    classes : TissueClasses, optional
        The model's classes (names and colours); required with a mask.
    settings : dict, optional
        The generation settings (model, seed, ...) recorded in the sidecar.
    region : (y0, y1, x0, x1), optional
        Export only this box (pixel coordinates of ``image``).
    microns_per_pixel : float, optional
        Physical pixel size recorded in the metadata.
    overwrite : bool
        Replace existing outputs; otherwise an existing one is an error.

    Returns
    -------
    ExportResult
    """
    fmt = output_format(path)
    path = Path(path)
    if image is None or len(image.shape) != 3 or image.shape[-1] != 3:
        raise InputError(f"image: expected an RGB image (H, W, 3), got shape "
                         f"{getattr(image, 'shape', None)}")
    if mask is not None:
        if tuple(mask.shape) != tuple(image.shape[:2]):
            raise InputError(f"mask: shape {tuple(mask.shape)} differs from the "
                             f"image's {tuple(image.shape[:2])}; pick the mask the "
                             "image was generated from")
        if classes is None:
            raise InputError("classes: give the model's classes with the mask")
    elif fmt == "ome-zarr":
        raise InputError("mask: an OME-Zarr export holds the image with its mask; "
                         "pick the mask layer, or export to .tif or .png")
    region = check_region(region, image.shape)
    img = crop(image, region)
    msk = crop(mask, region) if mask is not None else None
    H, W = int(img.shape[0]), int(img.shape[1])
    if fmt == "png" and max(H, W) > PNG_MAX_SIDE:
        raise InputError(f"path: a {H}x{W} image is too large for PNG; export it "
                         "to .tif (pyramidal OME-TIFF) or .zarr")
    mpath = mask_path(path) if msk is not None else None
    side = sidecar_path(path)
    _prepare([p for p in (path, mpath, side) if p is not None], overwrite,
             fmt == "ome-zarr")
    record = sidecar_record(path, img, msk, classes, settings, region,
                            microns_per_pixel, fmt, mpath)
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"

    # Everything is written to temporary siblings, renamed into place together
    # at the end: a failure leaves no half export behind.
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(
            path, overwrite, "path", folder=fmt == "ome-zarr", parents=True))
        tmp_mask = (stack.enter_context(atomic_output(mpath, overwrite, "path"))
                    if mpath is not None else None)
        tmp_side = stack.enter_context(atomic_output(side, overwrite, "path"))
        if fmt == "ome-zarr":
            from .omezarr import _write_synthesis

            _write_synthesis(tmp, _dask(img).transpose(2, 0, 1), _dask(msk),
                             classes, settings or {}, microns_per_pixel)
        elif fmt == "tiff":
            _write_tiff(tmp, _dask(img), microns_per_pixel, rgb=True)
            if msk is not None:
                _write_tiff(tmp_mask, _dask(msk), microns_per_pixel, rgb=False)
        else:
            from PIL import Image

            Image.fromarray(np.ascontiguousarray(np.asarray(img))).save(
                tmp, format="PNG")
            if msk is not None:
                _write_png_mask(tmp_mask, np.asarray(msk))
        tmp_side.write_text(text)
    return ExportResult(path, mpath, side, fmt, region, (H, W))


def _write_png_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    from .masks import check_mask_array

    mask = check_mask_array(mask)
    if mask.max(initial=0) > 65535:
        raise InputError(f"mask: a PNG holds ids up to 65535, this mask has "
                         f"{int(mask.max())}; export to .tif or .zarr")
    dtype = np.uint8 if mask.max(initial=0) < 256 else np.uint16
    Image.fromarray(mask.astype(dtype)).save(path, format="PNG")


def sidecar_record(path: Path, image, mask, classes: TissueClasses | None,
                   settings: dict[str, Any] | None, region: Region | None,
                   microns_per_pixel: float | None, fmt: str,
                   mpath: Path | None) -> dict[str, Any]:
    """The provenance written to ``<name>.json``."""
    settings = dict(settings or {})
    H, W = int(image.shape[0]), int(image.shape[1])
    return {
        "format": SIDECAR_FORMAT,
        "format_version": 1,
        "software": f"napari-histodiff {__version__}",
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "image": path.name,
        "mask": mpath.name if mpath is not None else (
            "labels/mask (inside the OME-Zarr)" if mask is not None else None),
        "file_format": fmt,
        "size": [H, W],
        "region": list(region) if region is not None else None,
        "model": settings.get("model"),
        "seed": settings.get("seed"),
        "settings": settings,
        "classes": classes.to_list() if classes is not None else None,
        "microns_per_pixel": microns_per_pixel,
        "image_sha256": _sha256(image),
        "mask_sha256": _sha256(mask) if mask is not None else None,
    }


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of an export (give the export's path or the JSON's)."""
    p = Path(path)
    side = p if p.suffix == ".json" else sidecar_path(p)
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"path: cannot read the sidecar {side} ({exc})") from exc


# -- helpers -----------------------------------------------------------------
def _prepare(paths: list[Path], overwrite: bool, zarr: bool) -> None:
    """Check every output before anything is written."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"path: {', '.join(str(p) for p in existing)} exists; choose another "
            "name or allow overwriting"
        )
    for i, p in enumerate(paths):
        check_output(p, overwrite, "path", folder=zarr and i == 0, parents=True)


def _dask(array):
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    chunks = (1024, 1024) + tuple(array.shape[2:])
    return da.from_array(array, chunks=chunks)


def _sha256(array) -> str | None:
    if array is None or int(np.prod(array.shape)) > HASH_MAX_PIXELS * 3:
        return None
    return array_sha256(array)


def _downsample(level, rgb: bool):
    """Half size: mean of 2x2 blocks for images, every other pixel for masks."""
    import dask.array as da

    if not rgb:
        return level[::2, ::2]
    pad = [(0, level.shape[0] % 2), (0, level.shape[1] % 2), (0, 0)]
    if pad[0][1] or pad[1][1]:
        level = da.pad(level, pad, mode="edge")
    level = da.coarsen(np.mean, level.astype(np.float32), {0: 2, 1: 2})
    return (level + 0.5).astype(np.uint8)


def _tiles(level, tile: int, rows: int = 4):
    """Tiles in row-major order, computed a band of ``rows`` tile rows at a time."""
    H, W = level.shape[:2]
    band = tile * rows
    for y in range(0, H, band):
        data = np.asarray(level[y : y + band])
        for ty in range(0, data.shape[0], tile):
            for x in range(0, W, tile):
                yield np.ascontiguousarray(data[ty : ty + tile, x : x + tile])


def _write_tiff(path: Path, level0, microns_per_pixel: float | None,
                rgb: bool) -> None:
    """(Pyramidal, tiled when large) OME-TIFF written tile by tile."""
    import tifffile

    H, W = level0.shape[:2]
    large = max(H, W) > PYRAMID_MIN_SIDE
    levels = [level0]
    while large and max(levels[-1].shape[:2]) > 1024:
        levels.append(_downsample(levels[-1], rgb))
    metadata: dict[str, Any] = {"axes": "YXS" if rgb else "YX"}
    if microns_per_pixel:
        metadata.update(PhysicalSizeX=microns_per_pixel,
                        PhysicalSizeY=microns_per_pixel,
                        PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    options: dict[str, Any] = {
        "photometric": "rgb" if rgb else "minisblack",
        "compression": "zlib",
    }
    with tifffile.TiffWriter(path, bigtiff=H * W * 3 > 2**31, ome=True) as tw:
        for i, level in enumerate(levels):
            kw = dict(options)
            if large:
                kw.update(tile=(TILE, TILE), shape=level.shape, dtype=level.dtype)
                data = _tiles(level, TILE)
            else:
                data = np.ascontiguousarray(np.asarray(level))
            if i == 0:
                kw.update(subifds=len(levels) - 1, metadata=metadata)
            else:
                kw.update(subfiletype=1, metadata=None)
            tw.write(data, **kw)
