"""``histodiff export``: an output (or a real image) to OME-TIFF, PNG,
QuPath GeoJSON, OME-Zarr or a tile dataset.

The same core as the napari Export panel
(:func:`napari_histodiff.io.export.export_synthesis`) and, for ``--tiles``,
:func:`napari_histodiff.io.tiles.export_tiles`. Every ``--to`` is checked
before anything is written; each output is written to a temporary sibling
and renamed into place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import nonneg_float, positive_float, positive_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def region_xy(text: str) -> tuple[int, int, int, int]:
    """``x0,y0,x1,y1`` (pixels, x1 and y1 excluded)."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected x0,y0,x1,y1 in pixels like 0,0,512,512, got {text!r}"
        ) from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(
            f"expected four numbers x0,y0,x1,y1, got {text!r}")
    x0, y0, x1, y1 = values
    if min(values) < 0 or x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(
            f"expected 0 <= x0 < x1 and 0 <= y0 < y1, got {text!r}")
    return x0, y0, x1, y1


def fraction(text: str) -> float:
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export an output to OME-TIFF, PNG, QuPath GeoJSON or tiles",
        description="Export an OME-Zarr output of histodiff generate (or of the "
        "napari Export panel), or a real RGB image with its mask, to the "
        "formats of the Export panel, to QuPath (an .ome.tif and a .geojson "
        "of the mask's regions under one name) or to a tile dataset for "
        "training (--tiles). Provenance goes to NAME.json (one per name, "
        "listing every export) or DIR/dataset.json and DIR/manifest.csv.")
    p.add_argument("source", help="OME-Zarr output (.zarr), or an RGB image "
                   "(.png, .jpg, .tif) with --mask")
    p.add_argument("--to", action="append", required=True, metavar="FILE",
                   help="output: NAME.ome.tif, NAME.png, NAME.geojson, NAME.zarr, "
                   "or a folder with --tiles; repeat for several")
    p.add_argument("--region", type=region_xy, default=None,
                   metavar="x0,y0,x1,y1",
                   help="export this rectangle only (pixels; x1, y1 excluded)")
    p.add_argument("--mask", default=None,
                   help="mask of a real image (.png, .tif, .npy); found from the "
                   "export sidecar when the image has one")
    p.add_argument("--classes", default=None,
                   help="class names of the mask's ids 1, 2, ..., comma-separated "
                   "(0 is unknown); default: from the source")
    p.add_argument("--tiles", type=positive_int, default=None, metavar="SIZE",
                   help="write a tile dataset of SIZE x SIZE tiles to the --to "
                   "folder (images/, masks/, manifest.csv)")
    p.add_argument("--stride", type=positive_int, default=None,
                   help="tile grid step in pixels (default: SIZE, no overlap)")
    p.add_argument("--min-tissue", type=fraction, default=None,
                   help="keep tiles with at least this tissue fraction "
                   "(default 0.5; 0 keeps all)")
    p.add_argument("--compression", choices=("zlib", "jpeg", "none"),
                   default="zlib", help="TIFF image compression (default zlib, "
                   "lossless; masks are always lossless)")
    p.add_argument("--jpeg-quality", type=positive_int, default=90,
                   help="1-100 with --compression jpeg (default 90)")
    p.add_argument("--microns-per-pixel", type=positive_float, default=None,
                   help="physical pixel size (default: from the source)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs")
    p.set_defaults(func=run)


def load_source(path: str | Path, mask: str | Path | None = None,
                class_names: str | None = None) -> dict[str, Any]:
    """Image, mask, classes, settings and pixel size of an export source.

    ``path`` is an OME-Zarr output, or an RGB image (its mask from ``mask``
    or from its export sidecar).
    """
    from ..io.export import find_sidecar, read_sidecar
    from ..io.masks import read_mask
    from ..models.classes import TissueClasses

    p = Path(path)
    classes = (TissueClasses.from_names(class_names)
               if class_names is not None else None)
    if p.is_dir():
        from ..io.omezarr import read_synthesis

        if mask is not None:
            raise InputError(f"mask: {mask} was given, but {p.name} is an OME-Zarr "
                             "that holds its mask; leave --mask out")
        data = read_synthesis(p)
        return {
            "image": data["image"][0].transpose(1, 2, 0),
            "mask": data["mask"][0],
            "classes": classes or data["classes"],
            "settings": data["settings"],
            "microns_per_pixel": data["microns_per_pixel"],
            "source": str(p.resolve()),
        }
    if not p.is_file():
        raise InputError(f"source: {p} does not exist; give an OME-Zarr output "
                         "or an RGB image")
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"source: {p.name} has suffix {p.suffix or '(none)'!r}; "
                         "give a .zarr output or an image "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    from ..training.data import read_rgb

    image = read_rgb(p, "source")
    record: dict[str, Any] = {}
    if find_sidecar(p) is not None:
        record = read_sidecar(p)
    if mask is None and record.get("mask") and p.suffix.lower() != ".jpg":
        # an exported image: its mask is the one its sidecar names
        candidate = p.with_name(str(record["mask"]))
        if record.get("image") == p.name and candidate.is_file():
            mask = candidate
    mask_array = read_mask(mask, "mask") if mask is not None else None
    if classes is None and record.get("classes"):
        classes = TissueClasses.from_list(record["classes"])
    if mask_array is not None and classes is None:
        top = int(mask_array.max(initial=0))
        classes = TissueClasses.from_names(
            [f"class{i}" for i in range(1, max(top, 1) + 1)])
        print(f"histodiff export: note: no class names for {mask}; using "
              f"{', '.join(classes.names[1:])} (give --classes)", file=sys.stderr)
    if mask_array is not None:
        classes.validate_mask(mask_array, f"mask {mask}")
    return {
        "image": image,
        "mask": mask_array,
        "classes": classes,
        "settings": dict(record.get("settings") or {}),
        "microns_per_pixel": record.get("microns_per_pixel"),
        "source": str(p.resolve()),
    }


def _region(args: argparse.Namespace, shape) -> tuple[int, int, int, int] | None:
    if args.region is None:
        return None
    x0, y0, x1, y1 = args.region
    H, W = int(shape[0]), int(shape[1])
    if x1 > W or y1 > H:
        raise InputError(
            f"--region: x {x0}-{x1}, y {y0}-{y1} is not inside the {W}x{H} "
            f"(width x height) image (x 0-{W}, y 0-{H}); give x0,y0,x1,y1 within it")
    return y0, y1, x0, x1


def _check_targets(args: argparse.Namespace, with_mask: bool) -> list[Path]:
    from ..io.export import check_export
    from ..outputs import check_output

    targets = [Path(t) for t in args.to]
    seen: set[Path] = set()
    for t in targets:
        if t.absolute() in seen:
            raise InputError(f"--to: {t} is given twice")
        seen.add(t.absolute())
        if args.tiles:
            check_output(t, args.overwrite, "--to", folder=True, parents=True)
        else:
            if not t.suffix:
                raise InputError(
                    f"--to: {t} has no suffix; give NAME.ome.tif, NAME.png, "
                    "NAME.geojson or NAME.zarr, or --tiles SIZE for a folder of "
                    "tiles")
            check_export(t, with_mask, args.overwrite, "--to")
    if args.tiles is None and (args.stride or args.min_tissue is not None):
        raise InputError("--stride/--min-tissue: these are for tile datasets; "
                         "add --tiles SIZE")
    return targets


def run(args: argparse.Namespace) -> int:
    from ..io.export import export_synthesis
    from ..io.tiles import DEFAULT_MIN_TISSUE, export_tiles

    if not 1 <= args.jpeg_quality <= 100:
        raise InputError(f"--jpeg-quality: {args.jpeg_quality} is not between 1 "
                         "and 100")
    src = load_source(args.source, args.mask, args.classes)
    targets = _check_targets(args, src["mask"] is not None)
    region = _region(args, src["image"].shape)
    mpp = args.microns_per_pixel or src["microns_per_pixel"]
    for target in targets:
        if args.tiles:
            result = export_tiles(
                target, src["image"], src["mask"], src["classes"], args.tiles,
                stride=args.stride,
                min_tissue=(DEFAULT_MIN_TISSUE if args.min_tissue is None
                            else args.min_tissue),
                region=region, settings=src["settings"], source=src["source"],
                microns_per_pixel=mpp, overwrite=args.overwrite, argname="--to")
            print(f"wrote {result.folder}: {result.written} tile(s) of "
                  f"{result.size} px ({result.skipped} left out by the tissue "
                  f"filter), {result.manifest.name}")
            continue
        result = export_synthesis(
            target, src["image"], src["mask"], src["classes"], src["settings"],
            region=region, microns_per_pixel=mpp, overwrite=args.overwrite,
            compression=args.compression, jpeg_quality=args.jpeg_quality,
            argname="--to")
        names = ", ".join(p.name for p in (result.image, result.mask,
                                            result.sidecar) if p is not None)
        H, W = result.size
        print(f"wrote {names} ({W}x{H}) in {result.image.parent}")
    return 0
