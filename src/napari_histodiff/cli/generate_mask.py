"""``histodiff generate-mask``: a label mask with chosen classes (mask model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..defaults import DEFAULT_MASK_GUIDANCE, DEFAULT_MASK_STEPS
from ._common import (
    check_mask_output,
    check_png_output,
    nonneg_float,
    nonneg_int,
    positive_int,
    size_hw,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate-mask", help="generate a label mask holding chosen classes",
        description="Generate a label mask with the model's mask generator "
        "(mask_unet/), conditioned on the set of classes to include. Any size: "
        "large masks are denoised window by window.")
    p.add_argument("--model", required=True,
        help="model directory or a shipped model (demo, demo-latent, demo-text)")
    p.add_argument("--classes", required=True,
                   help="comma-separated class names to include, e.g. tumor,stroma")
    p.add_argument("--size", type=size_hw, default=(512, 512),
                   help="HEIGHTxWIDTH in pixels (default 512x512)")
    p.add_argument("--out", required=True, help="mask file (.png, .tif, .npy)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--steps", type=positive_int, default=DEFAULT_MASK_STEPS)
    p.add_argument("--guidance", type=nonneg_float, default=DEFAULT_MASK_GUIDANCE,
                   help="classifier-free guidance on the class set (default "
                   f"{DEFAULT_MASK_GUIDANCE})")
    p.add_argument("--smoothing", type=nonneg_float, default=None,
                   help="Gaussian sigma in pixels for the class boundaries "
                   "(default: half the mask-model resolution factor)")
    p.add_argument("--preview", default=None, help="also write a coloured PNG")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..io.masks import write_mask
    from ..pipelines.mask_generation import HistoDiffMaskPipeline

    out = Path(args.out)
    check_mask_output(out, args.overwrite, "out")
    if args.preview:
        check_png_output(Path(args.preview), args.overwrite, "preview")
    start = time.perf_counter()
    pipe = HistoDiffMaskPipeline.from_pretrained(args.model, device=args.device)
    result = pipe(args.classes, height=args.size[0], width=args.size[1],
                  guidance_scale=args.guidance, num_inference_steps=args.steps,
                  seed=args.seed, smoothing=args.smoothing)
    write_mask(out, overwrite=args.overwrite, mask=result.mask)
    names = pipe.card.classes.names
    counts = np.bincount(result.mask.ravel(), minlength=len(names))
    parts = ", ".join(f"{names[i]} {100 * counts[i] / result.mask.size:.1f}%"
                      for i in np.flatnonzero(counts))
    print(f"wrote {out} ({args.size[0]}x{args.size[1]}, seed {args.seed}) in "
          f"{time.perf_counter() - start:.1f} s: {parts}")
    if args.preview:
        from ..io.preview import colorize, save_png

        save_png(args.preview, colorize(result.mask, pipe.card.classes),
                 overwrite=args.overwrite)
        print(f"wrote {args.preview}")
    return 0
