"""Tile datasets: an image (and its mask) cut into tiles for training.

:func:`export_tiles` writes a folder in the layout the trainers read
(``histodiff train --images DIR/images --masks DIR/masks``: images and masks
of the same names)::

    DIR/
      images/NAME_y000256_x000512.png    RGB tiles of SIZE x SIZE pixels
      masks/NAME_y000256_x000512.png     their class ids (8/16-bit PNG)
      manifest.csv                       one row per tile (below)
      dataset.json                       format, classes, provenance

The tiles lie on a grid of step ``stride`` (default: the tile size, no
overlap) over the image or the exported region; tiles that do not fit whole
are left out. A tile is kept when its tissue fraction (the tissue filter of
:mod:`napari_histodiff.io.tissue`, the one the reader studies and the
realism metrics use) is at least ``min_tissue``.

``manifest.csv`` columns: ``image``, ``mask`` (paths relative to DIR),
``source``, ``x``, ``y`` (top-left corner in pixels of the whole source
image), ``size``, ``tissue_fraction``, ``dominant_class`` (the most frequent
class other than ``unknown``, empty when there is none), ``fraction_<class>``
for every class, then ``model`` and ``seed`` of the synthesis (empty for a
real image). ``dataset.json`` holds the classes, the settings, the region,
the filter and the counts, so that a dataset can be traced to its source.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..models.classes import TissueClasses
from ..outputs import atomic_output
from .tissue import (
    DEFAULT_MIN_TISSUE,
    MAX_BACKGROUND_LUMA,
    MIN_SATURATION,
    MIN_VALUE,
    tissue_fraction,
)

TILES_FORMAT = "napari-histodiff-tiles"
DATASET_JSON = "dataset.json"
MANIFEST = "manifest.csv"
MIN_TILE = 16

Region = tuple[int, int, int, int]


@dataclass
class TileDataset:
    """What :func:`export_tiles` wrote.

    Attributes
    ----------
    folder : Path
    written : int
        Tiles written.
    skipped : int
        Tiles left out by the tissue filter.
    size : int
        Tile edge in pixels.
    """

    folder: Path
    written: int
    skipped: int
    size: int

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


def _stem(source: str) -> str:
    name = Path(source).name if source else "tile"
    for suffix in (".ome.zarr", ".ome.tif", ".zarr", ".tif", ".tiff", ".png",
                   ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "tile"


def tile_grid(region: Region, size: int, stride: int
              ) -> tuple[list[int], list[int]]:
    """Rows and columns of the top-left corners of the whole tiles of a grid
    over ``region`` ``(y0, y1, x0, x1)``."""
    y0, y1, x0, x1 = region
    return (list(range(y0, y1 - size + 1, stride)),
            list(range(x0, x1 - size + 1, stride)))


def export_tiles(
    out: str | Path,
    image,
    mask=None,
    classes: TissueClasses | None = None,
    size: int = 256,
    *,
    stride: int | None = None,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    region: Region | None = None,
    settings: dict[str, Any] | None = None,
    source: str = "",
    microns_per_pixel: float | None = None,
    overwrite: bool = False,
    argname: str = "out",
) -> TileDataset:
    """Cut an image (and its mask) into a tile dataset folder.

    Parameters
    ----------
    out : path
        The dataset folder (written whole or not at all).
    image : array-like
        (H, W, 3) uint8: numpy, dask or zarr; read a row of tiles at a time.
    mask : array-like, optional
        (H, W) class ids; without it only ``images/`` is written (unlabelled
        tiles).
    classes : TissueClasses, optional
        Names of the ids; required with a mask.
    size : int
        Tile edge in pixels.
    stride : int, optional
        Grid step (default ``size``: tiles do not overlap).
    min_tissue : float
        Minimum tissue fraction of a kept tile, in [0, 1]; 0 keeps all.
    region : (y0, y1, x0, x1), optional
        Cut tiles from this box only.
    settings : dict, optional
        Generation settings (model, seed, ...) for the provenance.
    source : str
        Where the image came from (a path), recorded and used in tile names.
    microns_per_pixel : float, optional
        Recorded in ``dataset.json``.
    overwrite : bool
        Replace an existing tile dataset this project wrote.
    argname : str
        The argument named in errors about ``out``.

    Returns
    -------
    TileDataset

    Raises
    ------
    InputError
        Bad size, stride, filter, region or mask; no tile passes the filter.
    """
    from .export import check_region

    if image is None or len(image.shape) != 3 or image.shape[-1] != 3:
        raise InputError(f"image: expected an RGB image (H, W, 3), got shape "
                         f"{getattr(image, 'shape', None)}")
    H, W = int(image.shape[0]), int(image.shape[1])
    size = int(size)
    stride = size if stride is None else int(stride)
    if size < MIN_TILE:
        raise InputError(f"tiles: {size} px is too small; tiles are at least "
                         f"{MIN_TILE} px")
    if stride < 1:
        raise InputError(f"stride: {stride} must be at least 1 pixel")
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"min_tissue: {min_tissue} must lie between 0 and 1")
    if mask is not None:
        if tuple(mask.shape) != (H, W):
            raise InputError(f"mask: shape {tuple(mask.shape)} differs from the "
                             f"image's {(H, W)}; give the image's own mask")
        if classes is None:
            raise InputError("classes: give the class names with the mask")
    region = check_region(region, image.shape) or (0, H, 0, W)
    y0, y1, x0, x1 = region
    if y1 - y0 < size or x1 - x0 < size:
        raise InputError(f"tiles: {size} px tiles do not fit in the "
                         f"{y1 - y0}x{x1 - x0} image or region; choose a smaller "
                         "tile size")
    ys, xs = tile_grid(region, size, stride)
    settings = dict(settings or {})
    stem = _stem(source)
    names = classes.names if classes is not None else []
    rows: list[dict[str, Any]] = []
    skipped = 0
    with atomic_output(out, overwrite, argname, folder=True, parents=True) as tmp:
        (tmp / "images").mkdir()
        if mask is not None:
            (tmp / "masks").mkdir()
        for y in ys:
            band = np.asarray(image[y : y + size, x0:x1])
            mband = (np.asarray(mask[y : y + size, x0:x1])
                     if mask is not None else None)
            for x in xs:
                tile = np.ascontiguousarray(band[:, x - x0 : x - x0 + size])
                fraction = tissue_fraction(tile)
                if fraction < min_tissue:
                    skipped += 1
                    continue
                name = f"{stem}_y{y:06d}_x{x:06d}.png"
                row = _write_pair(tmp, name, tile,
                                  None if mband is None else
                                  mband[:, x - x0 : x - x0 + size], classes)
                row.update(source=source, x=x, y=y, size=size,
                           tissue_fraction=round(fraction, 4),
                           model=settings.get("model") or "",
                           seed="" if settings.get("seed") is None
                           else settings["seed"])
                rows.append(row)
        if not rows:
            raise InputError(
                f"min_tissue: none of the {len(ys) * len(xs)} tiles of {size} px has "
                f"at least {min_tissue:.0%} tissue; lower the minimum tissue "
                "fraction (--min-tissue) or check the image")
        _write_manifest(tmp / MANIFEST, rows, names)
        record = {
            "format": TILES_FORMAT,
            "format_version": 1,
            "software": f"napari-histodiff {__version__}",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"),
            "source": source,
            "source_size": [H, W],
            "region": list(region),
            "tile_size": size,
            "stride": stride,
            "tiles": len(rows),
            "skipped": skipped,
            "tissue_filter": {"min_tissue": float(min_tissue),
                              "min_value": MIN_VALUE,
                              "min_saturation": MIN_SATURATION,
                              "max_background_luma": MAX_BACKGROUND_LUMA},
            "images": "images",
            "masks": "masks" if mask is not None else None,
            "classes": classes.to_list() if classes is not None else None,
            "model": settings.get("model"),
            "seed": settings.get("seed"),
            "settings": settings,
            "microns_per_pixel": microns_per_pixel,
        }
        (tmp / DATASET_JSON).write_text(
            json.dumps(record, indent=2, allow_nan=False) + "\n")
    return TileDataset(Path(out), len(rows), skipped, size)


def _write_pair(folder: Path, name: str, tile: np.ndarray, mask: np.ndarray | None,
                classes: TissueClasses | None) -> dict[str, Any]:
    from PIL import Image

    Image.fromarray(tile).save(folder / "images" / name, format="PNG")
    row: dict[str, Any] = {"image": f"images/{name}", "mask": ""}
    if mask is None or classes is None:
        return row
    mask = np.asarray(mask)
    if not np.issubdtype(mask.dtype, np.integer) or (mask.size and mask.min() < 0):
        raise InputError(f"mask: expected non-negative integer class ids, got "
                         f"dtype {mask.dtype}")
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    if len(counts) > len(classes):
        bad = sorted(int(i) for i in np.nonzero(counts[len(classes):])[0]
                     + len(classes))
        raise InputError(f"mask: label ids {bad} are not classes of "
                         f"{classes.names}; give the mask's own classes")
    dtype = np.uint8 if len(classes) <= 256 else np.uint16
    Image.fromarray(mask.astype(dtype)).save(folder / "masks" / name, format="PNG")
    fractions = counts / max(mask.size, 1)
    labelled = counts.copy()
    labelled[0] = 0  # unknown
    row["mask"] = f"masks/{name}"
    row["dominant_class"] = classes[int(np.argmax(labelled))].name \
        if labelled.any() else ""
    for cls in classes:
        row[f"fraction_{cls.name}"] = round(float(fractions[cls.index]), 4)
    return row


def _write_manifest(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    columns = ["image", "mask", "source", "x", "y", "size", "tissue_fraction",
               "dominant_class", *[f"fraction_{n}" for n in names], "model", "seed"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(folder: str | Path) -> list[dict[str, str]]:
    """The rows of a tile dataset's ``manifest.csv`` (values as text)."""
    path = Path(folder) / MANIFEST
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"folder: cannot read {path} ({exc.strerror or exc})"
                         ) from exc
