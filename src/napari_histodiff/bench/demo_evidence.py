"""The demo model's evidence: pictures and figures for docs/demo-model.md.

``python -m napari_histodiff.bench.demo_evidence --model demo --out docs/images``
writes the comparison sheet, the Dice table at guidance scales 0, 1, 2 and 4,
and generated masks beside the real one with their statistics
(:mod:`napari_histodiff.metrics.mask_fidelity`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.mask_fidelity import (
    dice_per_class,
    fidelity,
    fidelity_table,
    mask_statistics,
    mask_table,
    mean_mask_statistics,
)


def comparison_sheet(real: np.ndarray, synthetic: np.ndarray, mask_rgb: np.ndarray,
                     crop: int = 128, gap: int = 6) -> np.ndarray:
    """Rows: mask crops, real crops, synthetic crops of the same places.

    ``real``, ``synthetic`` and ``mask_rgb`` are (H, W, 3) uint8 of one size.
    """
    h, w = real.shape[:2]
    starts = [(y, x) for y in range(0, h - crop + 1, crop)
              for x in range(0, w - crop + 1, crop)]
    n = len(starts)
    sheet = np.full((3 * crop + 2 * gap, n * crop + (n - 1) * gap, 3), 255, np.uint8)
    for j, (y, x) in enumerate(starts):
        x0 = j * (crop + gap)
        for i, src in enumerate((mask_rgb, real, synthetic)):
            y0 = i * (crop + gap)
            sheet[y0:y0 + crop, x0:x0 + crop] = src[y:y + crop, x:x + crop]
    return sheet


def side_by_side(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """RGB images of one height in a row, ``gap`` white pixels apart."""
    white = np.full((images[0].shape[0], gap, 3), 255, np.uint8)
    parts = [part for im in images for part in (im, white)][:-1]
    return np.concatenate(parts, axis=1)


def generated_masks(model: str | Path, classes: Sequence[str], shape: tuple[int, int],
                    seeds: Sequence[int], steps: int | None = None,
                    ) -> list[np.ndarray]:
    """Masks from the mask generator of ``model``, one per seed (``steps``:
    the generator's default when None)."""
    from ..defaults import DEFAULT_MASK_STEPS
    from ..pipelines.mask_generation import HistoDiffMaskPipeline

    pipe = HistoDiffMaskPipeline.from_pretrained(model)
    return [pipe(list(classes), height=shape[0], width=shape[1], seed=int(s),
                 num_inference_steps=steps or DEFAULT_MASK_STEPS).mask
            for s in seeds]


def demo_evidence(model: str | Path, run_dir: str | Path, out_dir: str | Path,
                  guidance_scales: Sequence[float] = (0, 1, 2, 4),
                  steps: int = 20, seed: int = 0,
                  mask_seeds: Sequence[int] = (0, 1, 2, 3),
                  mask_steps: int | None = None) -> dict[str, Any]:
    """Write the demo model's evidence into ``out_dir``.

    Files: ``demo-heldout-sheet.png`` (masks | real | synthetic crops of the
    held-out quadrant), ``demo-guidance.png`` (the synthetic quadrant at each
    guidance scale), ``demo-fidelity.json`` and ``demo-fidelity.md``; with
    ``mask_seeds``, ``demo-masks.png`` (the held-out mask, then masks of its
    size and classes from the mask generator, ``mask_steps`` steps) and
    ``demo-masks.md``.
    """
    from dataclasses import asdict

    from ..io.preview import colorize, save_png
    from ..masks.labeller import auto_label, fit_thresholds
    from ..pipelines.mask_to_image import HistoDiffPipeline
    from ..training.presets import heldout

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    real, mask = heldout(run_dir)
    # one ruler: the thresholds the labeller picks on the real quadrant
    ruler = fit_thresholds(real)
    pipe = HistoDiffPipeline.from_pretrained(model)
    rows = fidelity(pipe, mask, guidance_scales, steps, seed, labeller=ruler)
    names = pipe.card.classes.names
    ids = [int(i) for i in np.unique(mask) if i > 0]
    real_scores = {names[k]: v for k, v in
                   dice_per_class(auto_label(real, ruler), mask, ids).items()}
    mask_rgb = colorize(mask, pipe.card.classes)
    best = next((r for r in rows if r["guidance"] == 2.0), rows[-1])
    save_png(out_dir / "demo-heldout-sheet.png",
             comparison_sheet(real, best["image"], mask_rgb), overwrite=True)
    save_png(out_dir / "demo-guidance.png",
             side_by_side([mask_rgb, real] + [r["image"] for r in rows]),
             overwrite=True)
    table = fidelity_table(rows, real_scores)
    (out_dir / "demo-fidelity.md").write_text(table + "\n")
    summary = {
        "model": str(model), "steps": steps, "seed": seed,
        "provenance": pipe.card.provenance,
        "rows": [{k: v for k, v in r.items() if k != "image"} for r in rows],
        "real_image_dice": real_scores,
        "labeller": asdict(ruler),
    }
    if mask_seeds:
        summary["masks"] = _mask_evidence(model, run_dir, mask, names, mask_seeds,
                                          mask_steps, pipe.card.classes, out_dir)
    (out_dir / "demo-fidelity.json").write_text(json.dumps(summary, indent=1))
    return summary


def _mask_evidence(model, run_dir, mask, names, seeds, steps, classes, out_dir
                   ) -> dict[str, Any]:
    from ..io.masks import read_mask
    from ..io.preview import colorize, save_png

    present = [names[k] for k in np.unique(mask) if k > 0]
    made = generated_masks(model, present, mask.shape, seeds, steps)
    real = [mask] + [read_mask(f) for f in
                     sorted((Path(run_dir) / "data" / "masks").glob("*.png"))]
    result = {
        "classes": present, "seeds": [int(s) for s in seeds],
        "real": mean_mask_statistics([mask_statistics(m, names) for m in real]),
        "generated": mean_mask_statistics([mask_statistics(m, names)
                                           for m in made]),
    }
    save_png(out_dir / "demo-masks.png",
             side_by_side([colorize(m, classes) for m in [mask, *made]]),
             overwrite=True)
    (out_dir / "demo-masks.md").write_text(
        mask_table(result["real"], result["generated"]) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m napari_histodiff.bench.demo_evidence",
                                description=demo_evidence.__doc__)
    p.add_argument("--model", default="demo")
    p.add_argument("--run-dir", default="training-runs/demo",
                   help="where the demo preset keeps its data (re-created if absent)")
    p.add_argument("--out", default="docs/images")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    summary = demo_evidence(args.model, args.run_dir, args.out, steps=args.steps,
                            seed=args.seed)
    for r in summary["rows"]:
        print(f"guidance {r['guidance']:g}: mean Dice {r['mean_dice']:.3f} "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["dice"].items())
              + f" (own thresholds: {r['mean_dice_own_thresholds']:.3f})")
    for kind in ("real", "generated"):
        st = summary["masks"][kind]
        print(f"{kind} masks: boundary {st['boundary']:.3f}, "
              f"{st['regions_per_mpx']:.0f} regions/Mpx, "
              f"a random pixel's region {st['region_px']:.0f} px")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
