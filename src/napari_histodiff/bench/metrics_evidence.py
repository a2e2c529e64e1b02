"""Realism and privacy figures of the demo model, for docs/metrics.md.

``python -m napari_histodiff.bench.metrics_evidence --out EVIDENCE.json``
measures with :func:`napari_histodiff.metrics.measure.measure_realism`, on
``skimage.data.immunohistochemistry()`` split as the demo preset splits it
(the bottom-right quadrant held out, the other three the training images):

* ``floor``: the real held-out quadrant (as "real") against 240 tiles of the
  real training quadrants (as "synthetic"): what an ideal model would score;
* ``guidance G``: images generated from the held-out quadrant's automatic
  mask at guidance 0, 1, 2 and 4 (``--steps`` steps, seeds 0..``--seeds``-1,
  random-shift) against the real held-out quadrant, with the privacy figures
  against the training quadrants;
* ``tiled`` and ``random-shift`` at ``--big`` pixels (default 1024: the IHC
  mask mirrored 2 x 2; 512: the IHC mask itself), guidance 2, against the
  whole real image, with their seam scores.

Each row is written to ``--out`` as soon as it is measured.

Tiles are small (16 px) because the data is one 512 x 512 image: the
64-dimension ``random`` features need more than 64 tiles a set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUADRANTS = {"q00": (slice(0, 256), slice(0, 256)),
             "q01": (slice(0, 256), slice(256, 512)),
             "q10": (slice(256, 512), slice(0, 256))}
HELDOUT = (slice(256, 512), slice(256, 512))
#: Training tiles drawn for the floor: about as many as one generated quadrant.
FLOOR_TILES = 240
KEYS = ("fid", "fid_ci", "kid", "precision", "recall", "density", "coverage")


def _summary(report) -> dict[str, Any]:
    d = report.to_dict()
    out = {k: d[k] for k in KEYS}
    out["tiles"] = {k: v["tiles"] for k, v in d["counts"].items()}
    if d["privacy"]:
        out.update({k: d["privacy"][k] for k in (
            "authenticity", "authenticity_heldout", "C_T", "nn_distance_ratio")})
    if d["seams"]:
        out["seam_synthetic"] = d["seams"]["synthetic"]
        out["seam_real"] = d["seams"]["real"]
    if d["spectral"]:
        out["spectral"] = {k: v for k, v in d["spectral"].items()
                           if isinstance(v, int | float)}
    out["seconds"] = d["seconds"]["total"]
    return out


def _split():
    """The IHC image, its training quadrants and its held-out quadrant."""
    from skimage.data import immunohistochemistry

    rgb = immunohistochemistry()
    train = [(f"train {k}", rgb[ys, xs]) for k, (ys, xs) in QUADRANTS.items()]
    held = [("heldout q11", rgb[HELDOUT])]
    return rgb, train, held


def floor_row(tile_size: int = 16, max_tiles: int = FLOOR_TILES) -> dict[str, Any]:
    """The real held-out quadrant as "real", ``max_tiles`` tiles of the real
    training quadrants as "synthetic": what a model that reproduced the
    tissue's distribution without copying would score (the sets' roles and
    sizes as in the guidance rows)."""
    from ..metrics.measure import measure_realism

    _, train, held = _split()
    return _summary(measure_realism(held, train, tile_size=tile_size,
                                    n_bootstrap=50, seam_period=64,
                                    max_tiles=max_tiles))


def run(model: str = "demo", steps: int = 20, seeds: int = 2, tile_size: int = 16,
        big: int | None = 1024, log=print, save=None) -> dict[str, Any]:
    """Every row of the evidence table (see the module docstring); ``save`` is
    called with the rows so far after each one."""
    from ..masks.labeller import auto_label
    from ..metrics.measure import measure_realism
    from ..pipelines.mask_to_image import HistoDiffPipeline

    rgb, train, held = _split()
    mask = auto_label(rgb)
    opts = {"tile_size": tile_size, "n_bootstrap": 50, "seam_period": 64}
    rows: dict[str, Any] = {"settings": {"model": model, "steps": steps,
                                         "seeds": list(range(seeds)),
                                         "tile_size": tile_size,
                                         "features": "random (seed 0)"}}
    log("floor: held-out quadrant vs training quadrants")
    rows["floor"] = floor_row(tile_size)
    if save:
        save(rows)
    pipe = HistoDiffPipeline.from_pretrained(model)
    for g in (0.0, 1.0, 2.0, 4.0):
        t = time.perf_counter()
        images = [(f"g{g:g} seed {s}", pipe(mask[HELDOUT], guidance_scale=g,
                                            num_inference_steps=steps, seed=s,
                                            store="memory").image)
                  for s in range(seeds)]
        log(f"guidance {g:g}: generated in {time.perf_counter() - t:.0f} s")
        rows[f"guidance {g:g}"] = _summary(measure_realism(
            held, images, train=train, **opts))
        rows[f"guidance {g:g}"]["seconds_generating"] = round(
            time.perf_counter() - t, 1)
        if save:
            save(rows)
    if big:
        big_mask = np.block([[mask, mask[:, ::-1]], [mask[::-1], mask[::-1, ::-1]]])
        big_rgb = np.block([[[rgb], [rgb[:, ::-1]]], [[rgb[::-1]], [rgb[::-1, ::-1]]]])
        if big == 512:
            big_mask, big_rgb = mask, rgb
        elif big != 1024:
            raise ValueError(f"--big: 512 or 1024, got {big}")
        for strategy in ("tiled", "random-shift"):
            t = time.perf_counter()
            image = pipe(big_mask, guidance_scale=2.0, num_inference_steps=steps,
                         strategy=strategy, seed=0, store="memory").image
            log(f"{strategy} {big}: generated in {time.perf_counter() - t:.0f} s")
            rows[f"{strategy} {big}"] = _summary(measure_realism(
                [("ihc", big_rgb)], [(strategy, image)], **opts))
            if save:
                save(rows)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--big", type=int, default=1024, choices=(0, 512, 1024),
                   help="side of the strategy rows (0: skip them)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    def save(rows: dict) -> None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")

    rows = run(args.model, args.steps, args.seeds, big=args.big or None,
               log=lambda m: print(m, file=sys.stderr, flush=True), save=save)
    save(rows)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
