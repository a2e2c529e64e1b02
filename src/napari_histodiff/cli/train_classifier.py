"""``histodiff train classifier``: the noise-aware classifier of a model.

::

    histodiff train classifier --model MODEL --images TILES [--heldout TILES]
    histodiff train classifier --model MODEL --images IMAGES --masks MASKS \\
        --tile-size 64 [--rule dab>=0.3] [--classes a,b,c]

``--images`` alone is a class-per-subfolder folder (``TILES/tumour/*.png``);
with ``--masks`` it is a folder of images whose tiles take their class from
the mask of the same name (:mod:`napari_histodiff.training.tiles`). Writes
``MODEL/classifier/`` (config.json + model.safetensors) and prints JSON with
the held-out accuracy per noise level. See
:mod:`napari_histodiff.training.classifier_trainer`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from ._common import nonneg_int, positive_float, positive_int


def _channels(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 32,64,128, got {text!r}"
        ) from None
    if not values or any(v < 8 or v % 8 for v in values):
        raise argparse.ArgumentTypeError(f"expected multiples of 8, got {text!r}")
    return values


def register(train_subparsers) -> None:
    """Add ``classifier`` under ``histodiff train``."""
    from ..training.classifier_trainer import ClassifierTrainSettings

    d = ClassifierTrainSettings()
    p = train_subparsers.add_parser(
        "classifier", help="train the noise-aware classifier for class guidance",
        description="Train a timestep-conditioned classifier on the model's "
        "canvas (latents of its frozen VAE, or pixels) noised at random "
        "timesteps of its training schedule, for HistoDiffusion-style class "
        "guidance (histodiff generate --class NAME). Writes MODEL/classifier/ "
        "and prints JSON with the held-out accuracy at t = 0, 250, 500, 750.")
    g = p.add_argument_group("data")
    p.add_argument("--model", required=True, help="model directory (its VAE, "
                   "window and noise schedule are used; classifier/ is written "
                   "into it)")
    g.add_argument("--images", required=True, help="class-per-subfolder tiles "
                   "(DIR/tumour/*.png), or with --masks a folder of images")
    g.add_argument("--masks", help="label masks of the --images, same file names: "
                   "tiles are cut on a grid and classed by their masks")
    g.add_argument("--tile-size", type=positive_int, default=None,
                   help="with --masks: tile side in pixels (default: the model's "
                   "window)")
    g.add_argument("--stride", type=positive_int, default=None,
                   help="with --masks: grid step (default: --tile-size)")
    g.add_argument("--rule", default=None,
                   help="with --masks: class by rule instead of the dominant "
                   "class, e.g. 'dab>=0.3' (clauses NAME>=F, first match wins; "
                   "other tiles: dominant class among the classes not named)")
    g.add_argument("--classes", default=None,
                   help="with --masks: names of the label ids 1, 2, ... "
                   "(default: the model's classes)")
    g.add_argument("--heldout", help="held-out tiles, same layout as --images")
    g.add_argument("--heldout-masks", help="masks of --heldout (with --masks)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"optimiser steps (default {d.steps})")
    o.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    o.add_argument("--lr", type=positive_float, default=d.lr,
                   help=f"AdamW learning rate (default {d.lr:g})")
    o.add_argument("--channels", type=_channels, default=None,
                   help="classifier widths per block, e.g. 32,64,128 (default)")
    o.add_argument("--no-flips", action="store_true",
                   help="no random flips and quarter turns")
    o.add_argument("--seed", type=nonneg_int, default=0)
    o.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    o.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing MODEL/classifier/")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def _tiles(images, masks, args, card, argname: str):
    from ..training.tiles import load_image_folder, load_mask_folder_tiles

    if masks is None:
        for name in ("tile_size", "stride", "rule", "classes"):
            if getattr(args, name) is not None:
                raise InputError(f"--{name.replace('_', '-')}: applies to tiles "
                                 "cut from --masks; give --masks or leave it out")
        return load_image_folder(images, argname)
    if args.classes:
        names = ["unknown", *[n.strip() for n in args.classes.split(",")
                              if n.strip() != "unknown"]]
    else:
        names = card.classes.names
        if len(names) < 3:
            raise InputError(
                f"--classes: the model's card names {names}; give the names of "
                "the mask ids 1, 2, ... with --classes (e.g. tumour,stroma)")
    size = args.tile_size or card.patch_size
    return load_mask_folder_tiles(images, masks, names, size, args.rule,
                                  args.stride)


def run(args: argparse.Namespace) -> int:
    """Train, write MODEL/classifier/, print JSON."""
    import torch

    from ..devices import resolve_device
    from ..models import resolve_model_path
    from ..models.card import ModelCard
    from ..models.directory import check_model_dir
    from ..training.classifier_trainer import (
        ClassifierTrainSettings,
        train_classifier,
    )
    from ..training.tiles import count_listing

    if args.threads:
        torch.set_num_threads(args.threads)
    model = check_model_dir(resolve_model_path(args.model))
    card = ModelCard.load(model)
    if args.heldout_masks and not args.heldout:
        raise InputError("--heldout-masks: give --heldout (the images) too")
    if args.heldout and bool(args.heldout_masks) != bool(args.masks):
        raise InputError("--heldout-masks: give it exactly when --masks is given "
                         "(held-out tiles in the layout of the training tiles)")
    tiles = _tiles(args.images, args.masks, args, card, "--images")
    heldout = None if not args.heldout else _tiles(
        args.heldout, args.heldout_masks, args, card, "--heldout")
    device = resolve_device(args.device)
    settings = ClassifierTrainSettings(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        flips=not args.no_flips,
        **({"channels": args.channels} if args.channels else {}))
    print(count_listing(tiles, "training tiles"), file=sys.stderr)
    if heldout is not None:
        print(count_listing(heldout, "held-out tiles"), file=sys.stderr)

    def log(step: int, loss: float) -> None:
        if not args.quiet:
            print(f"histodiff train classifier: step {step}/{args.steps} loss "
                  f"{loss:.3f}", file=sys.stderr, flush=True)

    result = train_classifier(
        model, tiles, settings, heldout, device=device, overwrite=args.overwrite,
        log=log, provenance={"images": str(args.images), "masks": args.masks,
                             "heldout": args.heldout, "rule": args.rule,
                             "command": "histodiff train classifier"})
    print(json.dumps(result.summary(), indent=2))
    return 0
