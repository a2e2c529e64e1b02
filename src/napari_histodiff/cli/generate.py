"""``histodiff generate``: synthesise an image from a mask."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from pathlib import Path

from ..defaults import (
    DEFAULT_CLASSIFIER_SCALE,
    DEFAULT_GUIDANCE,
    DEFAULT_TEXT_GUIDANCE,
    NOISE_MEANS,
)
from ..errors import InputError
from ..sampling.engine import DEFAULT_WINDOW_BATCH
from ..sampling.schedulers import DEFAULT_SCHEDULER, DEFAULT_STEPS, scheduler_names
from ..sampling.strategies import DEFAULT_STRATEGY, STRATEGIES, get_strategy
from ._common import (
    add_device_args,
    check_output,
    check_png_output,
    nonneg_float,
    nonneg_int,
    positive_int,
    progress,
)


def _size(text: str) -> tuple[int, int]:
    """``HxW`` (or one number for a square) as (height, width)."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x256, got "
                                         f"{text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 8 or max(values) > 1_000_000:
        raise argparse.ArgumentTypeError(f"expected HxW with sides from 8 to "
                                         f"1000000, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="synthesise an image that follows a mask",
        description="Synthesise a histology image that follows a label mask and "
        "write it as OME-Zarr with the mask as its label image.")
    p.add_argument("--model", required=True,
        help="model directory or a shipped model (demo, demo-latent, demo-text)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mask", help="label mask: PNG/TIFF of integer ids, or .npy")
    what.add_argument("--size", type=_size, default=None, metavar="HxW",
                      help="no mask: an all-unknown one of this size (for "
                      "unconditional and class-guided models), e.g. 256x256")
    p.add_argument("--out", required=True, help="output OME-Zarr folder (OUT.zarr)")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS,
                   help=f"denoising steps (default {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=nonneg_float, default=DEFAULT_GUIDANCE,
                   help="classifier-free guidance scale w >= 0; 1 = plain "
                   "conditional, 0 ignores the mask (default 2)")
    p.add_argument("--scheduler", default=DEFAULT_SCHEDULER,
                   help=f"one of {', '.join(scheduler_names())} or a diffusers "
                   f"scheduler class (default {DEFAULT_SCHEDULER})")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=list(STRATEGIES),
                   help=f"window strategy (default {DEFAULT_STRATEGY})")
    p.add_argument("--stride", type=positive_int, default=None,
                   help="window stride of multidiffusion (default half a window)")
    p.add_argument("--blend-steps", type=nonneg_int, default=None,
                   help="random-shift: final steps that blend three offset grids "
                   "so no window border shows (default 2; 0 = none)")
    p.add_argument("--window-batch", type=positive_int, default=DEFAULT_WINDOW_BATCH,
                   help=f"windows per UNet call (default {DEFAULT_WINDOW_BATCH})")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                   help="steer toward this class of the model's noise-aware "
                   "classifier (classifier/; `histodiff train classifier`)")
    p.add_argument("--classifier-scale", type=nonneg_float, default=None,
                   help="strength of --class guidance (default "
                   f"{DEFAULT_CLASSIFIER_SCALE:g}; 0 = off)")
    p.add_argument("--prompt", default=None,
                   help="text models: what the image should show, e.g. 'high "
                   "dab; low nuclei' (`histodiff model info` shows what the "
                   "model's captions meant); with --mask or --size")
    p.add_argument("--negative-prompt", default=None,
                   help="text models: what the text guidance pushes away from "
                   "(default the empty prompt)")
    p.add_argument("--text-guidance", type=float, default=None,
                   help="text models: classifier-free guidance on the prompt "
                   f"(default {DEFAULT_TEXT_GUIDANCE:g}; 1 = plain conditional, "
                   "0 ignores it)")
    p.add_argument("--noise-mean", choices=NOISE_MEANS, default="auto",
                   help="centre the initial noise on the class means of the "
                   "model card ('classes'), or not ('zero'); auto: classes when "
                   "the card has them")
    p.add_argument("--store", choices=("auto", "memory", "zarr"), default="auto",
                   help="where the canvas lives while it is denoised; auto puts "
                   "large canvases on disk beside the output")
    p.add_argument("--preview", default=None, help="also write a PNG preview")
    p.add_argument("--side-by-side", default=None,
                   help="also write a PNG of mask | image")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.masks import read_mask

    out = Path(args.out)
    # Check everything cheap before the model loads: every output can be
    # written (folder exists and is writable, no unwanted replacement).
    check_output(out, args.overwrite, "out", folder=True)
    for name in ("preview", "side_by_side"):
        if getattr(args, name):
            check_png_output(Path(getattr(args, name)), args.overwrite,
                             name.replace("_", "-"))
    strategy = get_strategy(args.strategy, stride=args.stride,
                            blend_steps=args.blend_steps)
    if args.classifier_scale is not None and args.class_name is None:
        raise InputError(f"--classifier-scale: {args.classifier_scale:g} given "
                         "without --class NAME")
    if args.mask is not None:
        mask = read_mask(args.mask)
    else:
        import numpy as np

        mask = np.zeros(args.size, np.int32)
    result = generate_to_files(
        model=args.model, mask=mask, out=out, steps=args.steps,
        guidance=args.guidance, scheduler=args.scheduler, strategy=strategy,
        stride=None, window_batch=args.window_batch, seed=args.seed,
        store=args.store, device=args.device, fp16=args.fp16,
        noise_mean=args.noise_mean, preview=args.preview,
        side_by_side=args.side_by_side, overwrite=args.overwrite, quiet=args.quiet,
        class_name=args.class_name, classifier_scale=args.classifier_scale,
        prompt=args.prompt, negative_prompt=args.negative_prompt,
        text_guidance=args.text_guidance)
    s = result["stats"]
    guided = ("" if args.class_name is None else
              f", class {args.class_name!r}")
    if args.prompt:
        guided += f", prompt {args.prompt!r}"
    print(f"wrote {out} ({mask.shape[0]}x{mask.shape[1]}, {args.strategy}, "
          f"{args.steps} steps, guidance {args.guidance}{guided}, seed "
          f"{args.seed}) in "
          f"{s['seconds']:.1f} s, {s['windows']} windows")
    for name in ("preview", "side_by_side"):
        if result.get(name):
            print(f"wrote {result[name]}")
    return 0


def generate_to_files(*, model, mask, out: Path, steps, guidance, scheduler,
                      strategy, stride, window_batch, seed, store, device, fp16,
                      noise_mean="auto", preview=None, side_by_side=None,
                      overwrite=False, quiet=False, class_name=None,
                      classifier_scale=None, prompt=None, negative_prompt=None,
                      text_guidance=None) -> dict:
    """Load the model, synthesise, write OME-Zarr (and PNGs); return a summary."""
    import numpy as np

    from ..io.omezarr import write_synthesis
    from ..io.preview import colorize, save_png
    from ..io.preview import side_by_side as sheet
    from ..outputs import check_output
    from ..pipelines.mask_to_image import HistoDiffPipeline
    from ..sampling.canvases import clean_stale_canvases
    from ..sampling.events import StepEvent, WindowsEvent
    from ..sampling.store import CANVAS_PREFIX, DISK_THRESHOLD_PIXELS

    out = Path(out)
    check_output(out, overwrite, "out", folder=True)
    pipe = HistoDiffPipeline.from_pretrained(model, device=device, fp16=fp16)
    pipe.card.classes.validate_mask(mask, "mask")
    folder = out.absolute().parent
    for info in clean_stale_canvases(folder):
        print(f"removed a stale canvas of an earlier run: {info.describe()}; "
              "this run starts again from the first step (resuming an "
              "interrupted canvas is not supported yet)", file=sys.stderr)
    work = None
    if store == "zarr" or (store == "auto" and mask.size > DISK_THRESHOLD_PIXELS):
        # made (with its pid and host in the attributes) when the store opens
        work = folder / f"{CANVAS_PREFIX}{secrets.token_hex(4)}"
    try:
        run = pipe.stream(mask, guidance_scale=guidance, num_inference_steps=steps,
                          scheduler=scheduler, strategy=strategy, stride=stride,
                          seed=seed, window_batch=window_batch, store=store,
                          store_path=work, noise_mean=noise_mean,
                          class_name=class_name, classifier_scale=classifier_scale,
                          prompt=prompt, negative_prompt=negative_prompt,
                          text_guidance=text_guidance)
        with progress(steps, "denoising", quiet) as bar:
            for event in run.events():
                if isinstance(event, StepEvent):
                    bar.update(1)
                elif isinstance(event, WindowsEvent) and event.total:
                    bar.set_postfix_str(f"windows {event.done}/{event.total}")
        output = run.output()
        write_synthesis(out, run.store["image"], mask, pipe.card.classes,
                        output.settings, pipe.card.microns_per_pixel,
                        overwrite=overwrite)
        result = {"out": str(out), "stats": output.stats}
        if preview or side_by_side:
            from ..io.omezarr import read_synthesis

            data = read_synthesis(out)
            small = np.moveaxis(np.asarray(data["image"][-1]), 0, -1)
            if preview:
                result["preview"] = str(save_png(preview, small,
                                                 overwrite=overwrite))
            if side_by_side:
                small_mask = np.asarray(data["mask"][-1])
                result["side_by_side"] = str(save_png(
                    side_by_side, sheet(colorize(small_mask, pipe.card.classes),
                                        small), overwrite=overwrite,
                    argname="side-by-side"))
        return result
    finally:
        if work is not None and work.exists():
            shutil.rmtree(work, ignore_errors=True)
