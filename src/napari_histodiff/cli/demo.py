"""``histodiff demo``: the main job end to end, headless (used by ``make demo``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..defaults import DEFAULT_GUIDANCE
from ._common import nonneg_float, nonneg_int, positive_int, size_hw


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="make a mask and synthesise an image from it (headless)",
        description="Make a mask with the chosen classes and synthesise the "
        "image beside it with the demo model; write OME-Zarr, the mask and a "
        "side-by-side PNG (mask | image) into OUT.")
    p.add_argument("--out", default="demo-output", help="output folder")
    p.add_argument("--size", type=size_hw, default=(256, 256),
                   help="HEIGHTxWIDTH in pixels (default 256x256)")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes to include (default: all)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--guidance", type=nonneg_float, default=DEFAULT_GUIDANCE,
                   help=f"classifier-free guidance (default {DEFAULT_GUIDANCE})")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of an earlier demo in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.masks import write_mask
    from ..models import demo_model_path
    from ..models.factory import init_model
    from ..outputs import check_output, check_writable
    from ..pipelines.demo import demo_mask
    from .generate import generate_to_files

    start = time.perf_counter()
    threads = cpu_threads()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"out: {out} is a file; the demo writes a folder, give "
                         "the path of a folder")
    # every output is checked before the work starts
    mask_path, sheet_path = out / "mask.png", out / "mask_and_image.png"
    if not out.exists():
        check_output(out, False, "out", folder=True, parents=True)
        out.mkdir(parents=True)
    else:
        check_writable(out, "out")
        _fresh(mask_path, args.overwrite)
        check_output(out / "synthetic.zarr", args.overwrite, "out", folder=True)
        _fresh(sheet_path, args.overwrite)
    model = demo_model_path()
    if model is None:
        model = out / "untrained-tiny-model"
        print("NOTE: this build ships no trained demo model yet, so the demo uses a "
              "freshly initialised tiny model: the image will be structured noise, "
              "not tissue. It shows the whole path (mask -> diffusion -> OME-Zarr "
              "-> PNG) working.")
        init_model(model, "background,nuclei,dab,tissue", patch_size=64,
                   size="tiny", seed=args.seed, overwrite=True)
    from ..models.card import ModelCard

    classes = ModelCard.load(model).classes
    wanted = (classes.names[1:] if args.classes is None
              else [c.strip() for c in args.classes.split(",") if c.strip()])
    mask, how = demo_mask(model, wanted, args.size, seed=args.seed)
    write_mask(mask_path, mask, overwrite=args.overwrite)
    print(f"mask ({how}): {args.size[0]}x{args.size[1]} with classes "
          f"{', '.join(wanted)} -> {mask_path} "
          f"[{time.perf_counter() - start:.0f} s]")
    result = generate_to_files(
        model=model, mask=mask, out=out / "synthetic.zarr", steps=args.steps,
        guidance=args.guidance, scheduler="dpm++", strategy="random-shift",
        stride=None, window_batch=8, seed=args.seed, store="memory",
        device="auto", fp16=False, quiet=args.quiet,
        side_by_side=sheet_path,
        overwrite=args.overwrite)
    print(f"image: {result['out']} (OME-Zarr, mask as label image)")
    print(f"side by side: {result['side_by_side']}")
    print(f"done in {time.perf_counter() - start:.0f} s ({threads} CPU thread"
          f"{'s' if threads > 1 else ''})")
    return 0


def cpu_threads() -> int:
    """Use one torch thread when the CPUs are already busy; return the count.

    With more runnable processes than cores, several torch threads wait on
    each other at every operation and a run can be many times slower than
    with one thread.
    """
    import os

    import torch

    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:  # not available on this platform
        busy = False
    if busy:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _fresh(path: Path, overwrite: bool) -> Path:
    from ._common import check_new_output

    check_new_output(path, overwrite, "out")
    return path
