"""``histodiff train encoder``: the self-supervised ``histo`` tile encoder.

::

    histodiff train encoder --images SLIDES... --out ENCODER [--steps 1000] \\
        [--crop 64] [--batch-size 64] [--threads 1]

Writes ``ENCODER/config.json`` and ``ENCODER/encoder.safetensors``, the
folder that ``histodiff metrics --features histo --weights ENCODER`` reads.
See :mod:`napari_histodiff.training.encoder_trainer`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import nonneg_float, nonneg_int, positive_float, positive_int


def register(train_subparsers) -> None:
    """Add ``encoder`` under ``histodiff train``."""
    from ..training.encoder_trainer import EncoderSettings

    d = EncoderSettings()
    p = train_subparsers.add_parser(
        "encoder", help="train the 'histo' tile encoder of the metrics (SimCLR)",
        description="Train the small tile encoder that `histodiff metrics "
        "--features histo` uses, self-supervised (SimCLR: two views of each "
        "crop under flips, rotations, stain jitter and shifts must find each "
        "other). Writes OUT/config.json and OUT/encoder.safetensors.")
    p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="histology images (files, folders, .zarr)")
    p.add_argument("--out", type=Path, required=True, help="the encoder folder")
    p.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help=f"crops per step (default {d.batch_size})")
    p.add_argument("--crop", type=positive_int, default=d.crop,
                   help=f"crop edge in pixels, the metrics' tile size (default "
                   f"{d.crop})")
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--temperature", type=positive_float, default=d.temperature)
    p.add_argument("--min-tissue", type=nonneg_float, default=d.min_tissue)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the encoder files in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and write the encoder; print its config as JSON."""
    from ..training.encoder_trainer import EncoderSettings, train_encoder

    settings = EncoderSettings(steps=args.steps, batch_size=args.batch_size,
                               crop=args.crop, lr=args.lr,
                               temperature=args.temperature,
                               min_tissue=args.min_tissue, seed=args.seed,
                               threads=args.threads)

    def log(step: int, loss: float) -> None:
        if not args.quiet:
            print(f"histodiff train encoder: step {step}/{args.steps} loss "
                  f"{loss:.3f}", file=sys.stderr, flush=True)

    config = train_encoder(args.images, args.out, settings,
                           overwrite=args.overwrite, log=log)
    print(json.dumps(config, indent=2))
    return 0
