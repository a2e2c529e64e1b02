"""How real does the demo model's tissue look? One JSON object on stdout.

The synthetic image is the demo model's held-out quadrant (the bottom-right
256 x 256 pixels of ``skimage.data.immunohistochemistry()``) generated from
that quadrant's own mask (the automatic labeller's), by default with the
shipped model, 20 steps, guidance 2, seed 0. It is compared with the real
quadrant by

- the classifier two-sample test
  (:func:`napari_histodiff.metrics.c2st.classifier_two_sample_test`: 64-px
  tiles, seeds 0, 1, 2), with real-vs-real floors: the held-out quadrant
  against each training quadrant;
- the spectral report (:func:`napari_histodiff.metrics.spectral.spectral_comparison`):
  band power ratios synthetic/real and the 3x3 high-pass std;
- mask fidelity (:mod:`napari_histodiff.metrics.mask_fidelity`): the
  labeller, with thresholds fitted on the real quadrant, applied to the
  synthetic image and compared with the mask (mean Dice);
- sampler diagnostics: the timesteps, the noise level the last step ends at,
  how much the final image differs from the last step's clean estimate, and
  how much of the canvas was clipped to [-1, 1].

Examples::

    python benchmarks/realism.py                          # the shipped demo
    python benchmarks/realism.py --steps 50 --scheduler ddim --floor none
    python benchmarks/realism.py --scheduler-option final_sigmas_type=sigma_min
    python benchmarks/realism.py --strategy random-shift --blend-steps 0
    python benchmarks/realism.py --image synthetic.png   # measure an image

``--scheduler-option KEY=VALUE`` overrides an entry of the sampling
scheduler's config (``final_sigmas_type``, ``lower_order_final``,
``timestep_spacing``, ``euler_at_final``, ``solver_order``...): the script
wraps the pipeline's scheduler factory for its own run, so sampling
experiments need no change to the package. See docs/realism.md for the
figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FLOOR_QUADRANTS = ("top-left", "top-right", "bottom-left")


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``false``, ``3``),
    else as a string."""
    if "=" not in text:
        raise SystemExit(f"--scheduler-option: expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def generate(args, mask: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The synthetic quadrant and the sampler's diagnostics."""
    import torch

    from napari_histodiff import HistoDiffPipeline
    from napari_histodiff.pipelines import mask_to_image
    from napari_histodiff.sampling.decode import to_uint8
    from napari_histodiff.sampling.events import StepEvent
    from napari_histodiff.sampling.strategies import get_strategy

    overrides = dict(parse_option(o) for o in args.scheduler_option)
    factory = mask_to_image.make_scheduler

    def make(name, config):  # the package's factory, then the overrides
        sched = factory(name, config)
        if overrides:
            sched = type(sched).from_config(sched.config, **overrides)
            lost = {k: v for k, v in overrides.items() if sched.config.get(k) != v}
            if lost:
                raise SystemExit(f"--scheduler-option: {type(sched).__name__} "
                                 f"does not take {lost}")
        return sched

    mask_to_image.make_scheduler = make
    restore = _guidance_interval(args.guidance_low, args.guidance_low_below,
                                 args.guidance)
    undo_eta = _ddim_eta(args.ddim_eta)
    try:
        pipe = HistoDiffPipeline.from_pretrained(args.model, device=args.device)
        strategy = get_strategy(args.strategy, stride=args.stride,
                                blend_steps=args.blend_steps)
        run = pipe.stream(mask, guidance_scale=args.guidance,
                          num_inference_steps=args.steps, scheduler=args.scheduler,
                          strategy=strategy, seed=args.seed, store="memory")
        x0_last = x0_before = None
        start = time.perf_counter()
        with torch.no_grad():
            for event in run.events():
                if isinstance(event, StepEvent):
                    # pixel models: the preview is this step's clean estimate
                    x0_before = x0_last
                    x0_last = np.asarray(run.store["preview"]).copy()
        seconds = time.perf_counter() - start
        out = run.output()
    finally:
        mask_to_image.make_scheduler = factory
        restore()
        undo_eta()
    sched = run.engine.scheduler
    canvas = np.asarray(run.store["latents"], dtype=np.float64)
    image_chw = np.moveaxis(out.image, -1, 0).astype(np.float64)
    diag = {
        "scheduler_class": type(sched).__name__,
        "scheduler_config": {k: v for k, v in dict(sched.config).items()
                             if isinstance(v, bool | int | float | str)
                             or v is None},
        "timesteps": [int(t) for t in sched.timesteps],
        "final_sigma": _final_sigma(sched),
        "windows": out.stats.get("windows"),
        "seconds": round(seconds, 1),
        # grey levels: the final image against the last steps' x0 estimates
        "final_minus_last_x0_std": float(np.std(image_chw - x0_last)),
        "last_x0_minus_previous_x0_std": (None if x0_before is None else float(
            np.std(x0_last.astype(np.float64) - x0_before))),
        "clipped_fraction": float(np.mean(np.abs(canvas) > 1.0)),
        "clip_excess_mean": float(np.mean(np.clip(np.abs(canvas) - 1.0, 0, None))),
        "canvas_min": float(canvas.min()), "canvas_max": float(canvas.max()),
        "image_is_clipped_canvas": bool(np.array_equal(
            to_uint8(canvas), np.moveaxis(out.image, -1, 0))),
    }
    return out.image, {"settings": _plain(out.settings), "sampler": diag}


def _guidance_interval(low: float | None, below: int | None, scale: float):
    """Use guidance ``low`` instead of ``scale`` at timesteps ``t < below``
    (a guidance interval, Kynkaanniemi et al. 2024), by wrapping the
    Denoiser for this run only. Returns the function that undoes it."""
    from napari_histodiff.conditioning.denoiser import Denoiser

    if low is None or below is None:
        return lambda: None
    call, combine = Denoiser.__call__, Denoiser._combine

    def guided_call(self, x, t, windows):
        self._realism_t = float(t)
        return call(self, x, t, windows)

    def guided_combine(self, outs):
        if getattr(self, "_realism_t", below) >= below:
            return combine(self, outs)
        saved = self.branches
        self.branches = {k: (low if v == scale else v) for k, v in saved.items()}
        try:
            return combine(self, outs)
        finally:
            self.branches = saved

    Denoiser.__call__, Denoiser._combine = guided_call, guided_combine

    def restore():
        Denoiser.__call__, Denoiser._combine = call, combine

    return restore


def _ddim_eta(eta: float | None):
    """Make DDIM steps take ``eta`` (0: deterministic, 1: DDPM-like noise) for
    this run only. Returns the function that undoes it."""
    if eta is None:
        return lambda: None
    from diffusers import DDIMScheduler

    step = DDIMScheduler.step

    def step_with_eta(self, model_output, timestep, sample, eta_=None,
                      use_clipped_model_output=False, generator=None,
                      variance_noise=None, return_dict=True):
        return step(self, model_output, timestep, sample, eta=eta,
                    use_clipped_model_output=use_clipped_model_output,
                    generator=generator, variance_noise=variance_noise,
                    return_dict=return_dict)

    DDIMScheduler.step = step_with_eta

    def restore():
        DDIMScheduler.step = step

    return restore


def _final_sigma(sched) -> float | None:
    """Noise level (std of the noise, relative to signal 1) after the last step."""
    sigmas = getattr(sched, "sigmas", None)
    if sigmas is not None and len(sigmas):
        return float(sigmas[-1])
    a = getattr(sched, "final_alpha_cumprod", None)
    if a is not None:  # DDIM
        a = float(a)
        return float(np.sqrt((1 - a) / a))
    return 0.0  # DDPM's last step (t=0) adds no noise


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def measure(args, real, mask, synthetic, floors) -> dict[str, Any]:
    from napari_histodiff.masks.labeller import auto_label, fit_thresholds
    from napari_histodiff.metrics.c2st import classifier_two_sample_test
    from napari_histodiff.metrics.mask_fidelity import dice_per_class, mean_dice
    from napari_histodiff.metrics.spectral import spectral_comparison

    seeds = [int(s) for s in args.c2st_seeds.split(",")]
    kw = {"tile_size": args.tile_size, "seeds": seeds,
          "train_steps": args.c2st_steps}
    t = time.perf_counter()
    c2st = classifier_two_sample_test([real], [synthetic], **kw)
    result: dict[str, Any] = {"c2st": _c2st_summary(c2st)}
    result["c2st_floor"] = {
        name: _c2st_summary(classifier_two_sample_test([real], [img], **kw))
        for name, img in floors.items()}
    result["c2st_seconds"] = round(time.perf_counter() - t, 1)
    spec = spectral_comparison([real], [synthetic])
    result["spectral"] = {
        "bands": spec["bands"],
        "band_ratio": spec["band_ratio"],
        "highest_band_ratio": spec["highest_band_ratio"],
        "highpass_std": spec["highpass_std"],
        "highpass_std_ratio": spec["highpass_std_ratio"],
        "per_channel_highest_band_ratio": {
            k: v["highest_band_ratio"] for k, v in spec["channels"].items()},
    }
    result["ycbcr_band_power"] = {"real": ycbcr_band_power(real),
                                  "synthetic": ycbcr_band_power(synthetic)}
    ruler = fit_thresholds(real)
    ids = [int(i) for i in np.unique(mask) if i > 0]
    dice = dice_per_class(auto_label(synthetic, ruler), mask, ids)
    ceiling = dice_per_class(auto_label(real, ruler), mask, ids)
    result["mask_fidelity"] = {"mean_dice": mean_dice(dice),
                               "dice": {str(k): v for k, v in dice.items()},
                               "real_image_mean_dice": mean_dice(ceiling)}
    return result


def ycbcr_band_power(image: np.ndarray, n_bands: int = 4) -> dict[str, list]:
    """Band powers (as in the spectral report) of the luma (Y) and chroma
    (Cb, Cr) planes of ``image`` (ITU-R BT.601, skimage's ``rgb2ycbcr``):
    colour speckle shows as chroma power where real tissue has almost none."""
    from skimage.color import rgb2ycbcr

    from napari_histodiff.metrics.spectral import power_spectrum, ring_means

    ycc = rgb2ycbcr(image)
    edges = np.linspace(0.0, 0.5, n_bands + 1)
    out = {}
    for i, name in enumerate(("Y", "Cb", "Cr")):
        power, r = power_spectrum(ycc[..., i])
        out[name] = [float(v) for v in ring_means(power, r, edges)]
    return out


def _c2st_summary(res) -> dict[str, Any]:
    d = res.to_dict()
    return {k: d[k] for k in ("auc", "auc_std", "auc_min", "auc_max",
                              "per_seed_auc", "counts")} | {
        "test_parts": [r["test_parts"] for r in d["per_seed"]]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("synthesis")
    g.add_argument("--model", default="demo")
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--guidance", type=float, default=2.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--guidance-low", type=float, default=None,
                   help="guidance used below --guidance-low-below (an interval)")
    g.add_argument("--guidance-low-below", type=int, default=None, metavar="T",
                   help="timestep below which --guidance-low applies")
    g.add_argument("--ddim-eta", type=float, default=None,
                   help="with --scheduler ddim: the eta of every step")
    g.add_argument("--scheduler", default="dpm++")
    g.add_argument("--scheduler-option", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a sampling scheduler config entry (repeatable)")
    g.add_argument("--strategy", default="random-shift")
    g.add_argument("--blend-steps", type=int, default=None,
                   help="random-shift: final steps that blend three grids")
    g.add_argument("--stride", type=int, default=None, help="multidiffusion stride")
    g.add_argument("--device", default="cpu")
    g.add_argument("--image", type=Path, default=None,
                   help="measure this 256x256 RGB image instead of generating")
    g.add_argument("--image-out", type=Path, default=None,
                   help="also write the synthetic image here (PNG)")
    m = p.add_argument_group("measurement")
    m.add_argument("--c2st-seeds", default="0,1,2")
    m.add_argument("--c2st-steps", type=int, default=300)
    m.add_argument("--tile-size", type=int, default=64)
    m.add_argument("--floor", default=",".join(FLOOR_QUADRANTS),
                   help="training quadrants for the real-vs-real floor, or 'none'")
    m.add_argument("--run-dir", default="training-runs/demo",
                   help="where the demo preset keeps its data")
    m.add_argument("--threads", type=int, default=1, help="torch threads")
    m.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    import torch
    from skimage.data import immunohistochemistry

    from napari_histodiff.training.data import read_rgb
    from napari_histodiff.training.presets import QUADRANTS, heldout

    torch.set_num_threads(args.threads)
    real, mask = heldout(args.run_dir)
    slide = immunohistochemistry()
    names = [] if args.floor == "none" else args.floor.split(",")
    floors = {n: np.ascontiguousarray(slide[QUADRANTS[n]]) for n in names}
    report: dict[str, Any] = {"model": args.model, "argv": sys.argv[1:]}
    if args.image is not None:
        synthetic = read_rgb(args.image, "--image")
        report["image"] = str(args.image)
    else:
        synthetic, info = generate(args, mask)
        report.update(info)
        if args.image_out is not None:
            from napari_histodiff.io.preview import save_png

            save_png(args.image_out, synthetic, overwrite=True, argname="--image-out")
    report.update(measure(args, real, mask, synthetic, floors))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
