"""Mask fidelity: does a synthetic image follow its conditioning mask?

The automatic labeller (:mod:`.labeller`) is run on the synthetic image and
its labels are compared with the mask the image was generated from, class by
class, with the Dice coefficient ``2|A∩B| / (|A| + |B|)``. The labeller is
itself rough, so these figures are a lower bound on how well the model
follows the mask: the labeller applied to the *real* image of a mask gives
the ceiling (``real`` row of :func:`fidelity_table`). The labeller's Otsu
thresholds are fitted once on the real image and used unchanged on every
synthetic image (:func:`.labeller.fit_thresholds`): thresholds fitted on each
image move with its content, and then two images of nearly the same colours
can get very different labels.

The mask generator is judged by the shape of what it makes:
:func:`mask_statistics` measures class areas, how much of the mask is class
boundary, and the size of the connected regions, for real and generated
masks alike.

``python -m napari_histodiff.evaluation --model demo --out docs/images``
writes the demo model's evidence: the comparison sheet, the Dice table at
guidance scales 0, 1, 2 and 4, and generated masks beside the real one with
their statistics.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def dice_per_class(pred: np.ndarray, target: np.ndarray,
                   class_ids: Sequence[int]) -> dict[int, float]:
    """Dice of each class id; NaN where the class is in neither mask."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"pred: shape {pred.shape} differs from target "
                         f"{target.shape}")
    out = {}
    for k in class_ids:
        a, b = pred == k, target == k
        denom = int(a.sum()) + int(b.sum())
        out[int(k)] = float("nan") if denom == 0 else 2.0 * (a & b).sum() / denom
    return out


def mean_dice(scores: dict[int, float]) -> float:
    values = [v for v in scores.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def fidelity(pipe, mask: np.ndarray, guidance_scales: Sequence[float],
             steps: int = 20, seed: int = 0, labeller=None) -> list[dict[str, Any]]:
    """Generate from ``mask`` at each guidance scale and score the labels.

    Parameters
    ----------
    labeller : LabellerSettings, optional
        Settings of :func:`.labeller.auto_label`; give fixed thresholds
        (:func:`.labeller.fit_thresholds` on the real image) to label every
        synthetic image with the same ruler.

    Returns one row per scale: ``guidance``, ``dice`` (by class name),
    ``mean_dice``, ``mean_dice_own_thresholds`` (each image labelled with
    thresholds fitted on itself, for comparison) and the ``image``
    (H, W, 3) uint8.
    """
    from .labeller import auto_label

    names = pipe.card.classes.names
    ids = [int(i) for i in np.unique(mask) if i > 0]
    rows = []
    for w in guidance_scales:
        out = pipe(mask, guidance_scale=float(w), num_inference_steps=steps,
                   seed=seed, store="memory")
        scores = dice_per_class(auto_label(out.image, labeller), mask, ids)
        own = dice_per_class(auto_label(out.image), mask, ids)
        rows.append({"guidance": float(w),
                     "dice": {names[k]: v for k, v in scores.items()},
                     "mean_dice": mean_dice(scores),
                     "mean_dice_own_thresholds": mean_dice(own),
                     "image": out.image})
    return rows


def mask_statistics(mask: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Shape statistics of a label mask.

    Parameters
    ----------
    mask : (H, W) integer array
        Class ids; 0 (``unknown``) is counted like any other id.
    names : sequence of str
        Class names by id.

    Returns
    -------
    dict
        ``boundary``: the fraction of horizontally or vertically adjacent
        pixel pairs whose classes differ (0 for one region; fine speckle
        raises it). ``area``: the fraction of pixels of each class present.
        ``mean_region_px``: the mean area in pixels of the 4-connected regions
        of each class present. ``regions_per_mpx``: regions of all classes per
        million pixels. ``region_px``: the mean area of the region that a
        pixel drawn at random lies in (large regions count by their area, so
        a few specks do not swamp it).
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise InputError(f"mask: expected a non-empty 2-D label image, got shape "
                         f"{mask.shape}")
    pairs = mask[:, 1:].size + mask[1:, :].size
    changes = int((mask[:, 1:] != mask[:, :-1]).sum()
                  + (mask[1:, :] != mask[:-1, :]).sum())
    area, region_px, regions, squares = {}, {}, 0, 0
    for k in np.unique(mask):
        name = names[k] if k < len(names) else str(int(k))
        inside = mask == k
        labels, n = ndimage.label(inside)
        sizes = np.bincount(labels.ravel())[1:]
        regions += n
        squares += int((sizes.astype(np.int64) ** 2).sum())
        area[name] = float(inside.mean())
        region_px[name] = float(inside.sum() / n)
    return {"boundary": changes / pairs if pairs else 0.0, "area": area,
            "mean_region_px": region_px,
            "regions_per_mpx": regions / mask.size * 1e6,
            "region_px": squares / mask.size}


def mean_mask_statistics(stats: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``boundary``, ``regions_per_mpx`` and ``region_px`` of
    :func:`mask_statistics`, averaged over several masks."""
    return {key: float(np.mean([s[key] for s in stats]))
            for key in ("boundary", "regions_per_mpx", "region_px")}


def fidelity_table(rows: list[dict[str, Any]], real: dict[str, float] | None,
                   ) -> str:
    """A Markdown table of per-class Dice by guidance scale."""
    names = list(rows[0]["dice"])
    lines = ["| guidance | " + " | ".join(names) + " | mean |",
             "|---" * (len(names) + 2) + "|"]
    for r in rows:
        cells = [f"{r['dice'][n]:.2f}" for n in names]
        lines.append(f"| {r['guidance']:g} | " + " | ".join(cells)
                     + f" | **{r['mean_dice']:.2f}** |")
    if real is not None:
        cells = [f"{real[n]:.2f}" for n in names]
        mean = np.nanmean(list(real.values()))
        lines.append("| real image (labeller ceiling) | " + " | ".join(cells)
                     + f" | {mean:.2f} |")
    return "\n".join(lines)


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
    from .defaults import DEFAULT_MASK_STEPS
    from .mask_pipeline import HistoDiffMaskPipeline

    pipe = HistoDiffMaskPipeline.from_pretrained(model)
    return [pipe(list(classes), height=shape[0], width=shape[1], seed=int(s),
                 num_inference_steps=steps or DEFAULT_MASK_STEPS).mask
            for s in seeds]


def mask_table(real: dict[str, float], generated: dict[str, float]) -> str:
    """A Markdown table of :func:`mean_mask_statistics` of real and generated masks."""
    lines = ["| masks | boundary fraction | regions per Mpx | "
             "area of a random pixel's region (px) |",
             "|---|---|---|---|"]
    for label, st in (("real (labeller on the IHC image)", real),
                      ("generated", generated)):
        lines.append(f"| {label} | {st['boundary']:.3f} | "
                     f"{st['regions_per_mpx']:.0f} | {st['region_px']:.0f} |")
    return "\n".join(lines)


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

    from .io.preview import colorize, save_png
    from .labeller import auto_label, fit_thresholds
    from .pipeline import HistoDiffPipeline
    from .training.presets import heldout

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
             comparison_sheet(real, best["image"], mask_rgb))
    save_png(out_dir / "demo-guidance.png",
             side_by_side([mask_rgb, real] + [r["image"] for r in rows]))
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
    from .io.masks import read_mask
    from .io.preview import colorize, save_png

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
             side_by_side([colorize(m, classes) for m in [mask, *made]]))
    (out_dir / "demo-masks.md").write_text(
        mask_table(result["real"], result["generated"]) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m napari_histodiff.evaluation",
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
