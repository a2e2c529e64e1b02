"""``histodiff model``: create and inspect model directories."""

from __future__ import annotations

import argparse
import json

from ..models.factory import MAX_PATCH_SIZE, UNET_SIZES
from ._common import nonneg_int, positive_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "model", help="create or inspect a model directory",
        description="Create a randomly initialised model directory, or print "
        "what a model directory holds.")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True

    init = sub.add_parser(
        "init", help="write a randomly initialised model directory",
        description="Write a randomly initialised model (the start of training "
        "and of tests). Index 0 'unknown' is added if absent.")
    init.add_argument("out", help="directory to create")
    init.add_argument("--classes", required=True,
                      help="comma-separated class names, e.g. "
                      "unknown,tumor,stroma,necrosis")
    init.add_argument("--patch-size", type=positive_int, default=64,
                      help="window side in pixels, a multiple of 8 up to "
                      f"{MAX_PATCH_SIZE} (default 64)")
    init.add_argument("--size", choices=list(UNET_SIZES), default="tiny",
                      help="UNet size (default tiny, ~1.1M parameters)")
    init.add_argument("--latent", action="store_true",
                      help="add a VAE and diffuse in its latent space (factor 4)")
    init.add_argument("--microns-per-pixel", type=positive_float, default=None,
                      help="physical pixel size of the images (> 0), if known")
    init.add_argument("--seed", type=nonneg_int, default=0)
    init.add_argument("--overwrite", action="store_true")
    init.set_defaults(func=run_init)

    info = sub.add_parser("info", help="print the model card and parameter counts")
    info.add_argument("model",
        help="model directory or a shipped model (demo, demo-latent, demo-text)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def run_init(args: argparse.Namespace) -> int:
    from ..models.factory import init_model

    parts = init_model(args.out, args.classes, patch_size=args.patch_size,
                       size=args.size, latent=args.latent, seed=args.seed,
                       overwrite=args.overwrite,
                       microns_per_pixel=args.microns_per_pixel)
    n = sum(p.numel() for p in parts["unet"].parameters())
    print(f"wrote {args.out}: untrained {args.size} model, {n:,} UNet parameters, "
          f"classes {', '.join(parts['card'].classes.names)}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..pipelines.mask_to_image import HistoDiffPipeline

    pipe = HistoDiffPipeline.from_pretrained(args.model, device="cpu")
    counts = {name: sum(p.numel() for p in comp.parameters())
              for name, comp in (("unet", pipe.unet), ("vae", pipe.vae),
                                 ("mask_unet", pipe.mask_unet),
                                 ("text_encoder", getattr(pipe.text, "encoder",
                                                          None)))
              if comp is not None}
    card = pipe.card.to_dict()
    if args.json:
        print(json.dumps({"path": pipe.source, "card": card, "parameters": counts,
                          "scheduler": type(pipe.scheduler).__name__}, indent=2))
        return 0
    print(f"model: {pipe.source}")
    print(f"space: {card['space']} (VAE factor {card['vae_scale_factor']}), "
          f"patch size {card['patch_size']} px, conditioning {card['conditioning']}")
    print(f"microns per pixel: {card['microns_per_pixel']}")
    print("classes:")
    for c in pipe.card.classes:
        print(f"  {c.index:3d}  {c.name:<16} rgb{c.color}")
    if pipe.card.text is not None:
        text = pipe.card.text
        enc = text["encoder"]
        print(f"text: prompts through the {enc.get('kind')} encoder "
              f"({enc.get('source')}, {enc.get('hidden_size')}-wide tokens, "
              f"{enc.get('max_length')} per prompt); captions: "
              f"{text.get('captions')}, at most {text.get('max_tokens')} tokens")
        if text.get("meaning"):
            print(f"  {text['meaning']}")
        if text.get("levels"):
            print("  levels: " + ", ".join(f"{w} >= {t:g}" for t, w in
                                           text["levels"]))
    print("parameters:")
    for name, n in counts.items():
        print(f"  {name:<10} {n:>12,}")
    print(f"training schedule: {type(pipe.scheduler).__name__}, "
          f"{pipe.scheduler.config.num_train_timesteps} steps, "
          f"{pipe.scheduler.config.prediction_type} prediction")
    print(f"provenance: {json.dumps(card['provenance'])}")
    return 0
