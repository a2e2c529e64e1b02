"""``histodiff bench augment``: the selective-augmentation benchmark, JSON.

See :mod:`napari_histodiff.bench.augment` and ``docs/histodiffusion.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import nonneg_float, positive_int


def _subparsers(parser: argparse.ArgumentParser):
    """The subcommand action of ``parser`` (made by the first registrant)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="bench_what")


def _probability(text: str) -> float:
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register(bench_parser: argparse.ArgumentParser) -> None:
    """Add ``augment`` under the ``bench`` subcommand."""
    from ..bench.augment import AugmentBenchSettings

    d = AugmentBenchSettings()
    sub = _subparsers(bench_parser)
    if sub.metavar:
        sub.metavar = sub.metavar.rstrip("}") + ",augment}"
    p = sub.add_parser(
        "augment", help="does selective class-guided augmentation help a tile "
        "classifier? (IHC quadrants, JSON)",
        description="Train a noise-aware classifier for --model on tiles of the "
        "IHC image's three training quadrants, generate class-guided tiles, "
        "select them, and train a small CNN on (a) the real tiles, (b) + all "
        "synthetic, (c) + the selected synthetic; accuracy and balanced "
        "accuracy on the held-out quadrant with 95 percent intervals over --seeds.")
    p.add_argument("--model", default=d.model,
                   help=f"generator model (default {d.model}; a working copy "
                   "gets the classifier)")
    p.add_argument("--seeds", type=positive_int, default=d.seeds,
                   help=f"downstream training seeds (default {d.seeds})")
    p.add_argument("--n-per-class", type=positive_int,
                   default=d.n_per_class,
                   help=f"synthetic tiles per class (default {d.n_per_class})")
    p.add_argument("--classifier-scale", type=nonneg_float,
                   default=d.classifier_scale)
    p.add_argument("--min-confidence", type=_probability, default=d.min_confidence)
    p.add_argument("--max-per-class", type=positive_int, default=d.max_per_class)
    p.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"denoising steps (default {d.steps})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--classifier-steps", type=positive_int,
                   default=d.classifier_steps)
    p.add_argument("--downstream-steps", type=positive_int,
                   default=d.downstream_steps)
    p.add_argument("--features", choices=("auto", "histo", "random"),
                   default=d.features)
    p.add_argument("--encoder", default=None, help="a 'histo' encoder folder")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda (default cpu)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print (and write) its JSON."""
    from ..bench.augment import AugmentBenchSettings, run_augment_benchmark
    from ..outputs import atomic_output, check_output

    if args.out is not None:
        check_output(args.out, args.overwrite, "--out", parents=True)
    settings = AugmentBenchSettings(
        model=args.model, seeds=args.seeds, n_per_class=args.n_per_class,
        classifier_scale=args.classifier_scale,
        min_confidence=args.min_confidence, max_per_class=args.max_per_class,
        steps=args.steps, batch_size=args.batch_size,
        classifier_steps=args.classifier_steps,
        downstream_steps=args.downstream_steps, features=args.features,
        encoder=args.encoder, threads=args.threads, device=args.device)

    def log(text: str) -> None:
        if not args.quiet:
            print(f"histodiff bench augment: {text}", file=sys.stderr, flush=True)

    result = run_augment_benchmark(settings, log=log)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        with atomic_output(args.out, args.overwrite, "--out", parents=True) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0
