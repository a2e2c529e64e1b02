"""``histodiff bench metrics``: time the realism metrics, print JSON.

See :mod:`napari_histodiff.bench.metrics` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import nonneg_int, positive_int


def register(bench_parser: argparse.ArgumentParser) -> None:
    """Add ``metrics`` under the ``bench`` subcommand."""
    from ..bench.metrics import DEFAULT_TILE_SIZE, DEFAULT_TILES

    sub = next((a for a in bench_parser._actions
                if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:  # the first to register makes it; others add to it
        sub = bench_parser.add_subparsers(dest="bench_what", metavar="{metrics}")
    elif sub.metavar:
        sub.metavar = sub.metavar.rstrip("}") + ",metrics}"
    p = sub.add_parser(
        "metrics", help="time histodiff metrics on IHC mosaics (JSON)",
        description="Time the realism metrics (tiling, random features, FID/KID "
        "with bootstrap, precision/recall/density/coverage, privacy) on three "
        "mosaics of random crops of skimage's IHC image; print JSON.")
    p.add_argument("--tiles", type=positive_int, default=DEFAULT_TILES,
                   help=f"tiles per set (default {DEFAULT_TILES})")
    p.add_argument("--tile-size", type=positive_int, default=DEFAULT_TILE_SIZE,
                   help=f"tile edge in pixels (default {DEFAULT_TILE_SIZE})")
    p.add_argument("--bootstrap", type=nonneg_int, default=50,
                   help="bootstrap resamples (default 50)")
    p.add_argument("--no-train", action="store_true",
                   help="skip the training set and the privacy figures")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its JSON."""
    from ..bench.metrics import run_metrics_benchmark
    from ..outputs import atomic_output, check_output

    if args.out is not None:
        check_output(args.out, args.overwrite, "--out", parents=True)
    result = run_metrics_benchmark(args.tiles, args.tile_size,
                                   n_bootstrap=args.bootstrap, seed=args.seed,
                                   threads=args.threads, train=not args.no_train)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        with atomic_output(args.out, args.overwrite, "--out", parents=True) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0
