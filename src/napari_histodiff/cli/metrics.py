"""``histodiff metrics``: realism and privacy of synthetic images, as JSON.

::

    histodiff metrics --real REAL... --synthetic SYN... [--train TRAIN...] \\
        [--heldout HELD...] [--features random|histo|inception|torchvision:NAME] \\
        [--weights FILE] [--tile-size 64] [--masks MASK...] [--c2st] --out DIR

Prints the report's JSON (:class:`napari_histodiff.metrics.report.MetricsReport`)
and writes ``DIR/metrics.json``, ``DIR/metrics.md`` (a Markdown table) and,
with ``--train``, ``DIR/closest_pairs.png``. Bad input exits with status 2
and a message naming the argument and the value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ._common import nonneg_float, nonneg_int, positive_int

JSON_NAME = "metrics.json"
TABLE_NAME = "metrics.md"
SHEET_NAME = "closest_pairs.png"


def _tile_size(text: str) -> int:
    value = positive_int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be >= 16, got {value}")
    return value


def _fraction(text: str) -> float:
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``histodiff metrics`` (shared with the benchmark)."""
    g = p.add_argument_group("features and statistics")
    g.add_argument("--features", default="random",
                   help="feature extractor: random (seeded random CNN, default), "
                   "histo (our self-supervised tile encoder), inception (FID "
                   "InceptionV3 from --weights), torchvision:NAME (from --weights)")
    g.add_argument("--weights", type=Path, default=None,
                   help="local weights: a .safetensors file (inception, "
                   "torchvision:NAME) or an encoder folder (histo)")
    g.add_argument("--tile-size", type=_tile_size, default=64,
                   help="tile edge in pixels (default 64)")
    g.add_argument("--min-tissue", type=_fraction, default=0.5,
                   help="fewest tissue pixels of a kept tile, 0-1 (default 0.5)")
    g.add_argument("--max-tiles", type=positive_int, default=None,
                   help="keep at most this many tiles of each set (random draw)")
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.add_argument("--k", type=positive_int, default=5,
                   help="neighbours of precision/recall/density/coverage (default 5)")
    g.add_argument("--bootstrap", type=nonneg_int, default=50,
                   help="bootstrap resamples of the FID/KID intervals (default 50)")
    g.add_argument("--cells", type=positive_int, default=10,
                   help="k-means cells of the data-copying test (default 10)")
    g.add_argument("--pairs", type=positive_int, default=16,
                   help="closest synthetic/training pairs on the sheet (default 16)")
    g.add_argument("--seam-period", type=positive_int, default=64,
                   help="grid period of the seam score (default 64)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")


def register(subparsers) -> None:
    """Add the ``metrics`` subcommand."""
    p = subparsers.add_parser(
        "metrics", help="FID, KID, precision/recall, density/coverage, privacy",
        description="Compare synthetic with real images: FID and KID with "
        "bootstrap intervals, improved precision/recall, density/coverage, the "
        "seam score and the spectral comparison; with --train the privacy "
        "figures (authenticity, the data-copying test C_T, the nearest-neighbour "
        "distance ratio) and a sheet of the closest synthetic/training pairs; "
        "with --masks mask fidelity. Images are PNG/TIFF/JPEG files, folders "
        "or OME-Zarr outputs, cut into tissue tiles. Prints JSON.")
    g = p.add_argument_group("image sets")
    g.add_argument("--real", nargs="+", required=True, metavar="PATH",
                   help="real images (files, folders, .zarr)")
    g.add_argument("--synthetic", nargs="+", required=True, metavar="PATH",
                   help="synthetic images")
    g.add_argument("--train", nargs="+", default=None, metavar="PATH",
                   help="the model's training images (privacy figures)")
    g.add_argument("--heldout", nargs="+", default=None, metavar="PATH",
                   help="real images the model never saw (default: --real)")
    g.add_argument("--masks", nargs="+", default=None, metavar="PATH",
                   help="one label mask per synthetic image, in order (mask "
                   "fidelity; OME-Zarr outputs bring their own)")
    add_arguments(p)
    p.add_argument("--c2st", action="store_true",
                   help="also run the classifier two-sample test (trains small "
                   "CNNs: minutes)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for metrics.json, metrics.md, closest_pairs.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace those files if they exist")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)


def _check_out(out: Path, overwrite: bool, sheet: bool) -> list[Path]:
    from ..outputs import check_output

    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a folder")
    names = [JSON_NAME, TABLE_NAME] + ([SHEET_NAME] if sheet else [])
    paths = [out / n for n in names]
    for path in paths:
        check_output(path, overwrite, "--out", parents=True)
    return paths


def run(args: argparse.Namespace) -> int:
    """Measure; print the JSON; write the table, JSON and sheet into --out."""
    from ..devices import resolve_device
    from ..metrics.measure import measure_realism
    from ..outputs import atomic_output

    paths = _check_out(args.out, args.overwrite, args.train is not None)
    device = str(resolve_device(args.device))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"histodiff metrics: {message}", file=sys.stderr, flush=True)

    report = measure_realism(
        args.real, args.synthetic, train=args.train, heldout=args.heldout,
        features=args.features, weights=args.weights, tile_size=args.tile_size,
        min_tissue=args.min_tissue, max_tiles=args.max_tiles, seed=args.seed,
        k=args.k, n_bootstrap=args.bootstrap, cells=args.cells, pairs=args.pairs,
        masks=args.masks, seam_period=args.seam_period, c2st=args.c2st,
        device=device, progress=log)
    text = report.to_json()
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(paths[0], args.overwrite, "--out") as tmp:
        tmp.write_text(text + "\n")
    with atomic_output(paths[1], args.overwrite, "--out") as tmp:
        tmp.write_text(report.to_markdown())
    sheet = report.sheet_image()
    if sheet is not None:
        with atomic_output(paths[2], args.overwrite, "--out") as tmp:
            sheet.save(tmp, format="PNG")
    log(f"wrote {', '.join(str(p) for p in paths[:3 if sheet is not None else 2])}")
    print(text)
    return 0
