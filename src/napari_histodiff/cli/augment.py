"""``histodiff augment``: class-guided synthetic tiles, selected, as a dataset.

::

    histodiff augment --model MODEL --class tumour --class stroma --n 200 \\
        --real LABELLED_TILES --out SYNTHETIC [--classifier-scale 3] \\
        [--min-confidence 0.5] [--max-per-class 100]

Generates ``--n`` tiles per class with the model's classifier guiding the
model, scores each (classifier confidence; distance to the class centroids
of the real tiles of ``--real``), keeps those whose nearest centroid is
their class and whose confidence is at least ``--min-confidence`` (at most
``--max-per-class``, closest first), and writes ``OUT/CLASS/*.png``,
``OUT/scores.csv``, ``OUT/sheet.png`` and ``OUT/augment.json``. See
:mod:`napari_histodiff.pipelines.augment`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError
from ._common import add_device_args, nonneg_float, nonneg_int, positive_int


def _probability(text: str) -> float:
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register(subparsers) -> None:
    """Add the ``augment`` subcommand."""
    from ..defaults import (
        DEFAULT_CLASSIFIER_SCALE,
        DEFAULT_TILE_BATCH,
        DEFAULT_TILE_STEPS,
    )

    p = subparsers.add_parser(
        "augment", help="class-guided synthetic tiles, selected, as a dataset",
        description="Generate --n tiles per --class with the model's noise-aware "
        "classifier guiding it (HistoDiffusion), score each tile (classifier "
        "confidence; distance to the centroids of the real classes of --real in "
        "a feature space), keep a tile when its nearest centroid is its class "
        "and its confidence >= --min-confidence (at most --max-per-class per "
        "class, closest first), and write OUT/CLASS/*.png, OUT/scores.csv (every "
        "tile), OUT/sheet.png and OUT/augment.json.")
    p.add_argument("--model", required=True,
                   help="model directory with a classifier/ (histodiff train "
                   "classifier)")
    p.add_argument("--class", dest="classes", action="append", required=True,
                   metavar="NAME", help="a class to generate (repeatable)")
    p.add_argument("--n", type=positive_int, required=True,
                   help="tiles to generate per class")
    p.add_argument("--real", required=True,
                   help="real labelled tiles, one subfolder per class "
                   "(DIR/tumour/*.png): the class centroids")
    p.add_argument("--out", type=Path, required=True,
                   help="the dataset folder to write (must not exist)")
    p.add_argument("--classifier-scale", type=nonneg_float, default=None,
                   help=f"class guidance strength (default "
                   f"{DEFAULT_CLASSIFIER_SCALE:g})")
    p.add_argument("--min-confidence", type=_probability, default=0.5,
                   help="keep tiles whose classifier probability of their class "
                   "is at least this (default 0.5)")
    p.add_argument("--max-per-class", type=positive_int, default=None,
                   help="keep at most this many per class, closest to the class "
                   "centroid first (default: no cap)")
    p.add_argument("--features", choices=("auto", "histo", "random"),
                   default="auto",
                   help="feature space of the centroids: histo (a trained "
                   "encoder, --encoder or the shipped one), random, or auto "
                   "(histo when available; default)")
    p.add_argument("--encoder", default=None,
                   help="folder of a 'histo' encoder (histodiff train encoder)")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_TILE_STEPS,
                   help=f"denoising steps (default {DEFAULT_TILE_STEPS})")
    p.add_argument("--scheduler", default="dpm++", help="default dpm++")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_TILE_BATCH,
                   help=f"tiles per UNet call (default {DEFAULT_TILE_BATCH})")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    add_device_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, score, select, write; print a JSON summary."""
    import torch

    from ..models import resolve_model_path
    from ..models.classifier import CLASSIFIER_DIR
    from ..models.directory import check_model_dir
    from ..outputs import check_output
    from ..pipelines.augment import augment, write_dataset
    from ..pipelines.mask_to_image import HistoDiffPipeline
    from ..training.tiles import count_listing, load_image_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    check_output(args.out, False, "--out", folder=True)
    model = check_model_dir(resolve_model_path(args.model))
    if not (model / CLASSIFIER_DIR).is_dir():
        raise InputError(
            f"--model: {args.model} has no classifier/ for class guidance; train "
            f"one with `histodiff train classifier --model {args.model} --images "
            "DIR`")
    if args.features == "random" and args.encoder:
        raise InputError(f"--encoder: {args.encoder} given with --features "
                         "random, which takes no weights")
    real = load_image_folder(args.real, "--real")
    print(count_listing(real, "real tiles"), file=sys.stderr)
    pipe = HistoDiffPipeline.from_pretrained(model, device=args.device,
                                             fp16=args.fp16)

    def progress(name: str, done: int, total: int) -> None:
        if not args.quiet:
            print(f"histodiff augment: {name} {done}/{total}", file=sys.stderr,
                  flush=True)

    result = augment(pipe, args.classes, args.n, real,
                     classifier_scale=args.classifier_scale,
                     min_confidence=args.min_confidence,
                     max_per_class=args.max_per_class,
                     num_inference_steps=args.steps, scheduler=args.scheduler,
                     seed=args.seed, batch_size=args.batch_size,
                     features=args.features, encoder=args.encoder,
                     progress=progress)
    out = write_dataset(result, args.out)
    summary = {"out": str(out), "counts": result.counts(),
               "features": result.settings["features"]["name"],
               "mean_confidence": {
                   name: round(float(result.confidence[result.intended == k]
                                     .mean()), 4)
                   for k, name in enumerate(result.class_names)},
               "settings": result.settings}
    print(json.dumps(summary, indent=2))
    return 0
