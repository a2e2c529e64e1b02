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

The demo model's evidence made with these figures is written by
:mod:`napari_histodiff.bench.demo_evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError


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
    from ..masks.labeller import auto_label

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
