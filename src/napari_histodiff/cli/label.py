"""``histodiff label``: a class mask from a real image (colour deconvolution)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_mask_output, check_png_output, nonneg_float


def register(subparsers) -> None:
    from ..masks.labeller import CLASS_NAMES, HE_CLASS_NAMES

    def ids(names):
        return ", ".join(f"{i}={n}" for i, n in enumerate(names, start=1))

    p = subparsers.add_parser(
        "label", help="label a real RGB image automatically (H-DAB or H&E "
        "deconvolution)",
        description="Turn a bright-field RGB image into a class mask by colour "
        f"deconvolution, thresholds and morphology. H-DAB ids: {ids(CLASS_NAMES)}; "
        f"H&E ids: {ids(HE_CLASS_NAMES)} (0 = unknown is never written). The "
        "stain is measured; an image is never labelled with a stain it does "
        "not carry. Rough labels for training or for 'a mask from a real "
        "image', not a diagnosis.")
    p.add_argument("--stain", choices=("auto", "hdab", "he"), default="auto",
                   help="auto (default): measured from the image; hdab: "
                   "immunohistochemistry (hematoxylin + DAB); he: H&E")
    p.add_argument("--no-stain-check", action="store_true",
                   help="label with --stain even if the image looks otherwise")
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
    from ..masks.labeller import LabellerSettings, label_image
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
    mask, names, report = label_image(rgb, args.stain, settings,
                                      check=not args.no_stain_check)
    write_mask(out, overwrite=args.overwrite, mask=mask)
    counts = np.bincount(mask.ravel(), minlength=len(names) + 1)
    parts = ", ".join(f"{n} {100 * counts[i] / mask.size:.1f}%"
                      for i, n in enumerate(names, start=1))
    print(f"wrote {out} ({mask.shape[0]}x{mask.shape[1]}, labelled as "
          f"{report['labelled_as']}; H/E/DAB p90 {report['hematoxylin_p90']:.3f}/"
          f"{report['eosin_p90']:.3f}/{report['dab_p90']:.3f}): {parts}")
    if args.preview:
        from ..io.preview import colorize, save_png, side_by_side
        from ..models.classes import TissueClasses

        classes = TissueClasses.from_names(list(names))
        save_png(args.preview, side_by_side(rgb, colorize(mask, classes)),
                 overwrite=args.overwrite)
        print(f"wrote {args.preview}")
    return 0
