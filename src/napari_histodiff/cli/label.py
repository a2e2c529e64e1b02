"""``histodiff label``: a class mask from a real image (colour deconvolution)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_mask_output, check_png_output, nonneg_float


def register(subparsers) -> None:
    from ..masks.labeller import CLASS_NAMES

    names = ", ".join(f"{i}={n}" for i, n in enumerate(CLASS_NAMES, start=1))
    p = subparsers.add_parser(
        "label", help="label a real RGB image automatically (H-DAB deconvolution)",
        description="Turn a bright-field RGB image into a class mask by colour "
        f"deconvolution, thresholds and morphology. Ids: {names} (0 = unknown "
        "is never written). Rough labels for training or for 'a mask from a "
        "real image', not a diagnosis.")
    p.add_argument("image", help="RGB image (PNG, JPEG, TIFF)")
    p.add_argument("--out", required=True, help="mask to write (.png, .tif, .npy)")
    p.add_argument("--dab-threshold", type=nonneg_float, default=None,
                   help="DAB optical density threshold (default: Otsu)")
    p.add_argument("--hematoxylin-threshold", type=nonneg_float, default=None,
                   help="hematoxylin optical density threshold (default: Otsu)")
    p.add_argument("--background-brightness", type=nonneg_float, default=220.0,
                   help="mean RGB above which unstained pixels are background")
    p.add_argument("--preview", default=None,
                   help="also write a PNG of image | coloured mask")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.masks import write_mask
    from ..masks.labeller import CLASS_NAMES, LabellerSettings, auto_label
    from ..training.data import read_rgb

    out = Path(args.out)
    check_mask_output(out, args.overwrite, "out")
    if args.preview:
        check_png_output(Path(args.preview), args.overwrite, "preview")
    rgb = read_rgb(args.image, "image")
    settings = LabellerSettings(
        dab_threshold=args.dab_threshold,
        hematoxylin_threshold=args.hematoxylin_threshold,
        background_brightness=args.background_brightness)
    mask = auto_label(rgb, settings)
    write_mask(out, overwrite=args.overwrite, mask=mask)
    counts = np.bincount(mask.ravel(), minlength=len(CLASS_NAMES) + 1)
    parts = ", ".join(f"{n} {100 * counts[i] / mask.size:.1f}%"
                      for i, n in enumerate(CLASS_NAMES, start=1))
    print(f"wrote {out} ({mask.shape[0]}x{mask.shape[1]}): {parts}")
    if args.preview:
        from ..io.preview import colorize, save_png, side_by_side
        from ..models.classes import TissueClasses

        classes = TissueClasses.from_names(list(CLASS_NAMES))
        save_png(args.preview, side_by_side(rgb, colorize(mask, classes)),
                 overwrite=args.overwrite)
        print(f"wrote {args.preview}")
    return 0
