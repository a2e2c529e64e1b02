"""Export a synthetic image with its mask, whole or a region, with provenance.

Formats, chosen by the file suffix:

* ``.zarr`` (``.ome.zarr``): OME-Zarr with the mask as a label image
  (:func:`napari_histodiff.io.omezarr.write_synthesis`), multiscale when large.
* ``.tif`` / ``.tiff`` (``.ome.tif``): OME-TIFF RGB image, tiled and
  pyramidal (sub-IFDs) when the long side exceeds :data:`PYRAMID_MIN_SIDE`,
  and the mask beside it as ``<name>_mask.tif``.
* ``.png``: the image and the mask (8/16-bit class ids) as ``<name>_mask.png``.
* ``.geojson``: the mask as QuPath annotations (one polygon per connected
  region with its class name and colour; :mod:`napari_histodiff.io.geojson`).
  With ``.ome.tif`` under the same name this is what QuPath opens.

TIFFs are written for QuPath and other whole-slide viewers: tiles of
:data:`TILE` pixels with a pyramid of factor-2 sub-IFDs above
:data:`PYRAMID_MIN_SIDE`, BigTIFF above :data:`BIGTIFF_MIN_BYTES`, the
physical pixel size in µm, lossless (``zlib``) or ``jpeg`` compression.

Every export records the model, seed, the generation settings, the classes
and the exported region in the sidecar ``<name>.json``, so each synthetic
image can be traced and reproduced. The sidecar is shared by all the exports
under one name (``x.zarr``, ``x.tif``, ``x.png``, ``x.geojson``): its top
level describes the latest export (as sidecars of format version 1 did) and
``exports`` lists one record per export, each naming its ``files``;
:func:`read_sidecar` returns the record of the file it is given. Sidecars of
version 1 (one export, no ``exports``) are read as they are.
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
from ..outputs import TMP_MARK, atomic_output, check_output

Region = tuple[int, int, int, int]

SIDECAR_FORMAT = "napari-histodiff-export"
SIDECAR_VERSION = 2
PYRAMID_MIN_SIDE = 2048
#: Uncompressed bytes above which a TIFF is written as BigTIFF.
BIGTIFF_MIN_BYTES = 2**31
PNG_MAX_SIDE = 16384
#: Tile edge of tiled TIFFs (QuPath reads 512-pixel tiles best).
TILE = 512
HASH_MAX_PIXELS = 1 << 26
#: TIFF compressions: lossless ``zlib`` (default), ``jpeg`` (images only) or none.
COMPRESSIONS = ("zlib", "jpeg", "none")
_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", ".tiff", ".tif", ".png",
             ".geojson")
FORMATS = {".zarr": "ome-zarr", ".tif": "tiff", ".tiff": "tiff", ".png": "png",
           ".geojson": "geojson"}


@dataclass
class ExportResult:
    """Paths written by :func:`export_synthesis`."""

    image: Path
    mask: Path | None
    sidecar: Path
    format: str
    region: Region | None
    size: tuple[int, int]


def output_format(path: str | Path, argname: str = "path") -> str:
    """``ome-zarr``, ``tiff``, ``png`` or ``geojson`` from ``path``'s suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{argname}: {Path(path).name} has suffix {suffix or '(none)'!r}; export "
            "to .zarr (OME-Zarr), .tif (OME-TIFF), .png or .geojson (QuPath)"
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
    """Where the mask goes (None for OME-Zarr, which holds it as labels, and
    for GeoJSON, which is the mask)."""
    fmt = output_format(path)
    if fmt in ("ome-zarr", "geojson"):
        return None
    base = base_path(path)
    return base.with_name(base.name + ("_mask.png" if fmt == "png" else "_mask.tif"))


def check_export(path: str | Path, with_mask: bool, overwrite: bool = False,
                 argname: str = "path") -> dict[str, Any] | None:
    """Check, before any work, that an export to ``path`` can be written.

    Parameters
    ----------
    path : path
        The export (its suffix picks the format).
    with_mask : bool
        A mask file is written beside the image (TIFF, PNG).
    overwrite : bool
        Existing outputs may be replaced.
    argname : str
        The argument named in error messages.

    Returns
    -------
    dict or None
        The sidecar already under this name (the export is added to it).

    Raises
    ------
    InputError
        Unknown suffix.
    OutputExistsError
        An output exists and ``overwrite`` is false.
    """
    fmt = output_format(path, argname)
    path = Path(path)
    mpath = mask_path(path) if with_mask else None
    _prepare([p for p in (path, mpath) if p is not None], overwrite,
             fmt == "ome-zarr", argname)
    return _previous_sidecar(sidecar_path(path), overwrite, argname)


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
    *,
    compression: str = "zlib",
    jpeg_quality: int = 90,
    argname: str = "path",
) -> ExportResult:
    """Write an image (and its mask) in the format of ``path``'s suffix.

    Parameters
    ----------
    path : path
        ``.zarr``, ``.tif``/``.tiff``, ``.png`` or ``.geojson`` (the mask only,
        as QuPath annotations).
    image : array-like
        (H, W, 3) uint8: numpy, dask or zarr; read region by region.
    mask : array-like, optional
        (H, W) class ids of the same size; required for OME-Zarr and GeoJSON.
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
    compression : {"zlib", "jpeg", "none"}
        TIFF image compression (masks are always lossless).
    jpeg_quality : int
        1-100, with ``compression="jpeg"``.
    argname : str
        The argument named in error messages about ``path``.

    Returns
    -------
    ExportResult
    """
    fmt = output_format(path, argname)
    path = Path(path)
    if compression not in COMPRESSIONS:
        raise InputError(f"compression: {compression!r} is not one of "
                         f"{', '.join(COMPRESSIONS)}")
    if compression == "jpeg" and not 1 <= int(jpeg_quality) <= 100:
        raise InputError(f"jpeg_quality: {jpeg_quality} is not between 1 and 100")
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
    elif fmt == "geojson":
        raise InputError("mask: a GeoJSON export holds the mask's regions as "
                         "QuPath annotations; pick the mask layer")
    region = check_region(region, image.shape)
    img = crop(image, region)
    msk = crop(mask, region) if mask is not None else None
    H, W = int(img.shape[0]), int(img.shape[1])
    if fmt == "png" and max(H, W) > PNG_MAX_SIDE:
        raise InputError(f"{argname}: a {H}x{W} image is too large for PNG; export "
                         "it to .tif (pyramidal OME-TIFF) or .zarr")
    if fmt == "tiff" and compression == "jpeg":
        _check_jpeg()
    mpath = mask_path(path) if msk is not None else None
    side = sidecar_path(path)
    previous = check_export(path, msk is not None, overwrite, argname)
    record = sidecar_record(path, img, msk, classes, settings, region,
                            microns_per_pixel, fmt, mpath)
    if fmt == "tiff":
        record["compression"] = compression
    text = json.dumps(merge_sidecar(previous, record), indent=2,
                      allow_nan=False) + "\n"

    # Everything is written to temporary siblings, renamed into place together
    # at the end: a failure leaves no half export behind.
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(
            path, overwrite, argname, folder=fmt == "ome-zarr", parents=True))
        tmp_mask = (stack.enter_context(atomic_output(mpath, overwrite, argname))
                    if mpath is not None else None)
        tmp_side = stack.enter_context(atomic_output(side, True, argname))
        if fmt == "ome-zarr":
            from .omezarr import _write_synthesis

            _write_synthesis(tmp, _dask(img).transpose(2, 0, 1), _dask(msk),
                             classes, settings or {}, microns_per_pixel)
        elif fmt == "tiff":
            _write_tiff(tmp, _dask(img), microns_per_pixel, rgb=True,
                        compression=compression, jpeg_quality=jpeg_quality)
            if msk is not None:
                _write_tiff(tmp_mask, _dask(msk), microns_per_pixel, rgb=False)
        elif fmt == "geojson":
            from .geojson import write_geojson

            write_geojson(tmp, np.asarray(msk), classes)
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
    """The provenance of one export (an entry of the sidecar's ``exports``)."""
    settings = dict(settings or {})
    H, W = int(image.shape[0]), int(image.shape[1])
    if fmt == "geojson":
        image_name, mask_name = None, path.name
    else:
        image_name = path.name
        mask_name = mpath.name if mpath is not None else (
            "labels/mask (inside the OME-Zarr)" if mask is not None else None)
    files = [p.name for p in (path, mpath) if p is not None]
    runs = provenance_runs(settings, region, (H, W))
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "software": f"napari-histodiff {__version__}",
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "image": image_name,
        "mask": mask_name,
        "files": files,
        "file_format": fmt,
        "size": [H, W],
        "region": list(region) if region is not None else None,
        "model": settings.get("model"),
        "seed": _single_seed(runs),
        "runs": runs,
        "settings": settings,
        "classes": classes.to_list() if classes is not None else None,
        "microns_per_pixel": microns_per_pixel,
        "image_sha256": _sha256(image) if fmt != "geojson" else None,
        "mask_sha256": _sha256(mask) if mask is not None else None,
    }


def provenance_runs(settings: dict[str, Any], region: Region | None,
                    shape: tuple[int, int]) -> list[dict[str, Any]]:
    """Which synthesis made which pixels of an export, in order.

    The first run made the whole image; each region regeneration recorded in
    ``settings["regenerated"]`` (its ``region`` as rows y0, y1 and columns
    x0, x1 of the image) overwrote its rectangle. Regions are given in the
    exported pixels' coordinates (``region`` is the exported part of the
    image, None for all of it); runs that touch no exported pixel are left
    out.
    """
    if not settings:
        return []
    y0, y1, x0, x1 = region if region is not None else (0, shape[0], 0, shape[1])
    first = {k: v for k, v in settings.items() if k != "regenerated"}
    runs = [{"region": [0, y1 - y0, 0, x1 - x0], "seed": first.get("seed"),
             "kind": "synthesis", "settings": first}]
    for record in settings.get("regenerated") or []:
        if not isinstance(record, dict) or len(record.get("region") or []) != 4:
            continue
        ry0, ry1, rx0, rx1 = (int(v) for v in record["region"])
        cy0, cy1 = max(ry0, y0), min(ry1, y1)
        cx0, cx1 = max(rx0, x0), min(rx1, x1)
        if cy0 >= cy1 or cx0 >= cx1:
            continue
        runs.append({"region": [cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0],
                     "seed": record.get("seed"), "kind": "regeneration",
                     "settings": record})
    return runs


def _single_seed(runs: list[dict[str, Any]]):
    """The seed of the exported pixels when one run made them all, else None
    (``runs`` then says which seed made which pixels)."""
    if not runs:
        return None
    whole = runs[0]["region"]
    for run in runs[1:]:
        if run["region"] == whole:  # a regeneration replaced every pixel
            return run["seed"]
    return runs[0]["seed"] if len(runs) == 1 else None


def _record_files(record: dict[str, Any]) -> list[str]:
    """The files of a sidecar record (version 1 records have no ``files``)."""
    files = record.get("files")
    if isinstance(files, list):
        return [str(f) for f in files]
    names = [record.get("image"), record.get("mask")]
    return [n for n in names if isinstance(n, str) and "(" not in n]


def sidecar_exports(sidecar: dict[str, Any]) -> list[dict[str, Any]]:
    """Every export a sidecar records, oldest first (one for version 1)."""
    exports = sidecar.get("exports")
    if isinstance(exports, list):
        return [e for e in exports if isinstance(e, dict)]
    return [{k: v for k, v in sidecar.items() if k != "exports"}]


def merge_sidecar(previous: dict[str, Any] | None,
                  record: dict[str, Any]) -> dict[str, Any]:
    """The sidecar after ``record``: the record at the top, and every export.

    An earlier export of the same files (overwritten) is dropped from the list.
    """
    earlier = sidecar_exports(previous) if previous else []
    mine = set(_record_files(record))
    kept = [e for e in earlier if not mine & set(_record_files(e))]
    return {**record, "exports": [*kept, record]}


def _previous_sidecar(side: Path, overwrite: bool,
                      argname: str) -> dict[str, Any] | None:
    """The sidecar already at ``side`` (to add to), or None; a file that is not
    an export sidecar is replaced only with ``overwrite``."""
    if not (side.exists() or side.is_symlink()):
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT:
        return data
    if not overwrite:
        raise OutputExistsError(
            f"{argname}: {side} exists and is not a napari-histodiff export "
            "sidecar; choose another name or allow overwriting")
    return None


def find_sidecar(path: str | Path) -> Path | None:
    """The sidecar of an exported image or mask file, or None if there is none.

    ``x.tif`` and ``x_mask.tif`` both have ``x.json``.
    """
    p = Path(path)
    base = base_path(p)
    names = [base.name]
    if base.name.endswith("_mask"):
        names.append(base.name[: -len("_mask")])
    for name in names:
        side = p.with_name(name + ".json")
        if side.is_file():
            return side
    return None


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The provenance of an export: give the exported file or the sidecar.

    For an exported file the record of that export is returned (sidecars list
    every export under one name); for the JSON itself, its whole content.
    """
    p = Path(path)
    side = p if p.suffix.lower() == ".json" else find_sidecar(p) or sidecar_path(p)
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"path: cannot read the sidecar {side} ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"path: {side} is not an export sidecar")
    if side is p:
        return data
    for record in reversed(sidecar_exports(data)):
        if p.name in _record_files(record):
            return record
    return data


# -- helpers -----------------------------------------------------------------
def _prepare(paths: list[Path], overwrite: bool, zarr: bool,
             argname: str = "path") -> None:
    """Check every output before anything is written."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{argname}: {', '.join(str(p) for p in existing)} exists; choose "
            "another name or allow overwriting (--overwrite)"
        )
    for i, p in enumerate(paths):
        check_output(p, overwrite, argname, folder=zarr and i == 0, parents=True)


def _check_jpeg() -> None:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        raise InputError("compression: 'jpeg' TIFFs need the imagecodecs package "
                         "(pip install imagecodecs); or use 'zlib' (lossless)"
                         ) from None


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
                rgb: bool, compression: str = "zlib", jpeg_quality: int = 90
                ) -> None:
    """(Pyramidal, tiled when large) OME-TIFF written tile by tile.

    Above :data:`PYRAMID_MIN_SIDE` the image is tiled (:data:`TILE`) with
    factor-2 levels as sub-IFDs down to 1024 pixels; BigTIFF when the pixels
    exceed :data:`BIGTIFF_MIN_BYTES`. The OME-XML holds the size, the pixel
    size in µm and the channel (``RGB`` or ``class id``); the TIFF resolution
    tags the pixel size too, for readers without OME support.
    """
    import tifffile

    H, W = level0.shape[:2]
    large = max(H, W) > PYRAMID_MIN_SIDE
    levels = [level0]
    while large and max(levels[-1].shape[:2]) > 1024:
        levels.append(_downsample(levels[-1], rgb))
    metadata: dict[str, Any] = {
        "axes": "YXS" if rgb else "YX",
        "Name": path.name.split(TMP_MARK)[0].lstrip(".") or path.name,
        "Channel": {"Name": ["RGB" if rgb else "class id"]},
    }
    if microns_per_pixel:
        metadata.update(PhysicalSizeX=microns_per_pixel,
                        PhysicalSizeY=microns_per_pixel,
                        PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    options: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
    if rgb and compression == "jpeg":
        options.update(compression="jpeg",
                       compressionargs={"level": int(jpeg_quality)})
    elif compression != "none" or not rgb:
        options["compression"] = "zlib"
    nbytes = H * W * (3 if rgb else 1) * np.dtype(level0.dtype).itemsize
    with tifffile.TiffWriter(path, bigtiff=nbytes > BIGTIFF_MIN_BYTES,
                             ome=True) as tw:
        for i, level in enumerate(levels):
            kw = dict(options)
            if microns_per_pixel:
                per_cm = 1e4 / (microns_per_pixel * 2**i)
                kw.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
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
