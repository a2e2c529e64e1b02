"""Selective augmentation: class-guided tiles, scored, kept by a rule.

HistoDiffusion adds to a small labelled set only the synthetic tiles that
look like their class. For every tile generated toward class ``c``
(:mod:`.class_tiles`) two scores are computed:

confidence
    ``p(c | x, t=0)`` of the model's noise-aware classifier on the tile
    (re-encoded from its 8-bit pixels, as a real tile would be);
distances
    Euclidean distance, in a feature space of
    :mod:`napari_histodiff.metrics.features` (``histo`` when a trained
    encoder is available, else ``random``; recorded), from the tile to the
    centroid of each class of the *real* labelled tiles; features are
    standardised with the real tiles' mean and standard deviation per
    dimension first.

**Selection rule** (:func:`select_tiles`): a tile is kept when

1. its nearest real-class centroid is its intended class ``c``, and
2. its confidence is at least ``min_confidence``;

of the tiles of class ``c`` that pass, at most ``max_per_class`` are kept,
those closest to the centroid of ``c`` first. (HistoDiffusion's code keeps
the 500 nearest with no confidence threshold.)

:func:`write_dataset` writes ``OUT/CLASS/*.png`` (the kept tiles, a
class-per-subfolder dataset that ``histodiff train classifier --images``
and :func:`~napari_histodiff.training.tiles.load_image_folder` read),
``OUT/scores.csv`` (every tile: scores, kept flag and why), ``OUT/sheet.png``
(kept and rejected examples per class) and ``OUT/augment.json`` (settings
and counts), into a temporary sibling renamed when complete.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..training.tiles import LabelledTiles, center_crop

SHEET_EXAMPLES = 8


# -- scores -------------------------------------------------------------------------
def classifier_probabilities(pipe, images: np.ndarray, batch: int = 64
                             ) -> np.ndarray:
    """Softmax of the model's classifier at ``t = 0`` for (N, S, S, 3) uint8
    tiles, (N, classes)."""
    import torch

    from ..training.classifier_trainer import encode_tiles

    classifier = pipe.classifier
    card = pipe.card
    canvases = encode_tiles(list(images), pipe.vae, card.latent_scaling,
                            card.vae_scale_factor)
    x = torch.stack(canvases)
    device = next(classifier.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = x[s:s + batch].to(device)
            logits = classifier(xb, torch.zeros(len(xb), device=device))
            out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def choose_extractor(features: str = "auto", encoder: str | Path | None = None,
                     seed: int = 0, device: str = "cpu"):
    """The feature extractor for the centroids: ``histo`` (a trained encoder:
    ``encoder``, or the shipped one) when ``features`` is ``auto`` and one is
    available, else ``random``; or the one named."""
    from ..metrics.features import ENCODER_WEIGHTS, SHIPPED_ENCODER, make_extractor

    if features == "auto":
        has = encoder is not None or (SHIPPED_ENCODER / ENCODER_WEIGHTS).is_file()
        features = "histo" if has else "random"
    if features not in ("random", "histo"):
        raise InputError(f"--features: {features!r} is not auto, histo or random")
    if features == "random" and encoder is not None:
        raise InputError(f"--encoder: {encoder} given with --features random; "
                         "the random features take no weights")
    return make_extractor(features, weights=encoder if features == "histo" else None,
                          seed=seed, device=device)


def centroid_distances(features: np.ndarray, real_features: np.ndarray,
                       real_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) Euclidean distances to the real classes' centroids, in
    features standardised by the real tiles' mean and std."""
    mean = real_features.mean(0)
    std = real_features.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    z_real = (real_features - mean) / std
    z = (features - mean) / std
    centroids = np.stack([z_real[real_labels == k].mean(0) for k in range(n_classes)])
    return np.sqrt(((z[:, None, :] - centroids[None]) ** 2).sum(-1))


# -- the rule -----------------------------------------------------------------------
@dataclass
class Selection:
    """The outcome of :func:`select_tiles` per tile.

    Attributes
    ----------
    kept : np.ndarray
        (N,) bool.
    nearest : np.ndarray
        (N,) index of the nearest centroid.
    rank : np.ndarray
        (N,) rank among the tiles of its class that passed both tests
        (0 = closest), -1 for the others.
    reason : list of str
        ``kept``, ``nearest centroid is X``, ``confidence below C`` or
        ``beyond the K closest``.
    """

    kept: np.ndarray
    nearest: np.ndarray
    rank: np.ndarray
    reason: list[str] = field(default_factory=list)


def select_tiles(intended: np.ndarray, confidence: np.ndarray,
                 distances: np.ndarray, min_confidence: float,
                 max_per_class: int | None,
                 class_names: Sequence[str] | None = None) -> Selection:
    """Apply the selection rule (module docstring).

    Parameters
    ----------
    intended : np.ndarray
        (N,) class index each tile was generated for (index into the
        centroid columns of ``distances``).
    confidence : np.ndarray
        (N,) classifier probability of the intended class.
    distances : np.ndarray
        (N, K) distance to each class centroid.
    min_confidence : float
        In [0, 1].
    max_per_class : int or None
        Cap per class (None: no cap).
    """
    intended = np.asarray(intended, np.int64)
    confidence = np.asarray(confidence, np.float64)
    distances = np.asarray(distances, np.float64)
    n = len(intended)
    if confidence.shape != (n,) or distances.ndim != 2 or len(distances) != n:
        raise InputError(f"scores: {n} tiles but confidence {confidence.shape} and "
                         f"distances {distances.shape}")
    names = list(class_names) if class_names is not None else \
        [str(k) for k in range(distances.shape[1])]
    nearest = distances.argmin(1)
    passed = (nearest == intended) & (confidence >= min_confidence)
    kept = np.zeros(n, bool)
    rank = np.full(n, -1, np.int64)
    for c in np.unique(intended):
        idx = np.flatnonzero(passed & (intended == c))
        order = idx[np.argsort(distances[idx, c], kind="stable")]
        rank[order] = np.arange(len(order))
        cap = len(order) if max_per_class is None else max_per_class
        kept[order[:cap]] = True
    reason = []
    for i in range(n):
        if kept[i]:
            reason.append("kept")
        elif nearest[i] != intended[i]:
            reason.append(f"nearest centroid is {names[nearest[i]]}")
        elif confidence[i] < min_confidence:
            reason.append(f"confidence below {min_confidence:g}")
        else:
            reason.append(f"beyond the {max_per_class} closest")
    return Selection(kept, nearest, rank, reason)


# -- the whole run ------------------------------------------------------------------
@dataclass
class AugmentResult:
    """Generated tiles with their scores and the selection."""

    images: np.ndarray  # (N, S, S, 3) uint8
    intended: np.ndarray  # (N,) index into class_names
    class_names: list[str]  # the requested classes
    centroid_classes: list[str]  # the real classes (columns of distances)
    confidence: np.ndarray
    probabilities: np.ndarray  # (N, classifier classes)
    distances: np.ndarray
    selection: Selection
    settings: dict[str, Any]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for k, name in enumerate(self.class_names):
            sel = self.intended == k
            out[name] = {"generated": int(sel.sum()),
                         "kept": int((sel & self.selection.kept).sum())}
        return out


def check_min_confidence(value) -> float:
    from ..checks import check_number

    value = check_number(value, "--min-confidence", minimum=0)
    if value > 1:
        raise InputError(f"--min-confidence: must be in [0, 1], got {value:g}")
    return value


def augment(pipe, class_names: Sequence[str], n: int, real: LabelledTiles,
            classifier_scale: float | None = None, min_confidence: float = 0.5,
            max_per_class: int | None = None, num_inference_steps: int = 25,
            scheduler: str = "dpm++", seed: int = 0, batch_size: int = 16,
            features: str = "auto", encoder: str | Path | None = None,
            progress: Callable[[str, int, int], None] | None = None
            ) -> AugmentResult:
    """Generate ``n`` tiles per class, score them against ``real``, select.

    Parameters
    ----------
    pipe : HistoDiffPipeline
        With a ``classifier/``.
    class_names : sequence of str
        Classes to generate (each a class of the classifier and of ``real``).
    n : int
        Tiles per class.
    real : LabelledTiles
        Real labelled tiles; their class centroids judge the synthetic ones
        (centre-cropped to the generated tile size).
    classifier_scale, num_inference_steps, scheduler, seed, batch_size
        See :func:`.class_tiles.generate_class_tiles`.
    min_confidence, max_per_class
        The selection rule (:func:`select_tiles`).
    features, encoder
        The feature space (:func:`choose_extractor`).
    progress : callable, optional
        ``progress(class_name, done, n)``.
    """
    from ..checks import check_int
    from .class_tiles import generate_class_tiles

    check_int(n, "--n", minimum=1)
    min_confidence = check_min_confidence(min_confidence)
    if max_per_class is not None:
        check_int(max_per_class, "--max-per-class", minimum=1)
    names = list(class_names)
    if not names:
        raise InputError("--class: name at least one class to generate")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise InputError(f"--class: {', '.join(dup)} given twice")
    known = pipe.classifier.config.class_names
    for name in names:
        if name not in known:
            raise InputError(
                f"--class: {name!r} is not a class of this model's classifier; "
                f"it knows {', '.join(known)}")
        if name not in real.class_names:
            raise InputError(
                f"--real: has no folder for class {name!r} (it has "
                f"{', '.join(real.class_names)}); its real tiles give the "
                "class centroids")
    size = pipe.card.patch_size
    small = [s for im, s in zip(real.images, real.sources or [""] * len(real),
                                strict=True) if min(im.shape[:2]) < size]
    if small:
        raise InputError(f"--real: {small[0]} is smaller than the {size}-pixel "
                         "tiles the model makes; give real tiles at least that "
                         "large (they are centre-cropped)")
    extractor = choose_extractor(features, encoder)
    real_images = np.stack([center_crop(im, size) for im in real.images])
    real_features = extractor(real_images)

    images, intended = [], []
    for k, name in enumerate(names):
        tiles = generate_class_tiles(
            pipe, name, n, classifier_scale, num_inference_steps, scheduler,
            seed, batch_size, first_index=k * n,
            progress=None if progress is None else
            (lambda done, total, name=name: progress(name, done, total)))
        images.append(tiles.images)
        intended += [k] * n
        gen_settings = tiles.settings
    images = np.concatenate(images)
    intended = np.asarray(intended, np.int64)
    probs = classifier_probabilities(pipe, images)
    target_cols = np.asarray([known.index(c) for c in names])
    confidence = probs[np.arange(len(images)), target_cols[intended]]
    dist = centroid_distances(extractor(images), real_features, real.labels,
                              len(real.class_names))
    real_cols = np.asarray([real.class_names.index(c) for c in names])
    selection = select_tiles(real_cols[intended], confidence, dist, min_confidence,
                             max_per_class, real.class_names)
    settings = {
        "model": pipe.source, "classes": names, "n_per_class": int(n),
        "classifier_scale": gen_settings["classifier_scale"],
        "num_inference_steps": int(num_inference_steps), "scheduler": scheduler,
        "seed": int(seed), "batch_size": int(batch_size),
        "tile_size": int(size), "min_confidence": float(min_confidence),
        "max_per_class": max_per_class,
        "rule": "nearest real centroid is the intended class AND confidence >= "
                "min_confidence; at most max_per_class per class, closest first",
        "features": extractor.info,
        "real_tiles_per_class": real.counts(),
        "classifier_classes": list(known),
        "classifier_heldout_accuracy": pipe.classifier.config.heldout_accuracy,
        "conditioning": gen_settings["conditioning"],
    }
    return AugmentResult(images, intended, names, list(real.class_names),
                         confidence, probs, dist, selection, settings)


# -- outputs ------------------------------------------------------------------------
def tile_file(result: AugmentResult, i: int) -> str:
    name = result.class_names[result.intended[i]]
    return f"{name}/{name}-{i:05d}.png"


def write_dataset(result: AugmentResult, out: str | Path,
                  overwrite: bool = False) -> Path:
    """Write the kept tiles as ``OUT/CLASS/*.png`` with ``scores.csv``,
    ``sheet.png`` and ``augment.json``, whole or not at all."""
    from PIL import Image

    from ..outputs import atomic_output

    out = Path(out)
    sel = result.selection
    with atomic_output(out, overwrite, "--out", folder=True) as tmp:
        # a class with no kept tile gets no folder (an empty class folder is
        # refused by the loaders); augment.json lists its counts
        for i in np.flatnonzero(sel.kept):
            (tmp / tile_file(result, i)).parent.mkdir(exist_ok=True)
            Image.fromarray(result.images[i]).save(tmp / tile_file(result, i))
        with open(tmp / "scores.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["tile", "class", "file", "confidence", "nearest",
                             *[f"distance_{c}" for c in result.centroid_classes],
                             "rank", "kept", "reason"])
            for i in range(len(result.images)):
                writer.writerow([
                    i, result.class_names[result.intended[i]],
                    tile_file(result, i) if sel.kept[i] else "",
                    f"{result.confidence[i]:.6f}",
                    result.centroid_classes[sel.nearest[i]],
                    *[f"{d:.6f}" for d in result.distances[i]],
                    int(sel.rank[i]), int(sel.kept[i]), sel.reason[i]])
        Image.fromarray(contact_sheet(result)).save(tmp / "sheet.png")
        summary = {"settings": result.settings, "counts": result.counts()}
        (tmp / "augment.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def contact_sheet(result: AugmentResult, examples: int = SHEET_EXAMPLES
                  ) -> np.ndarray:
    """One row per class: up to ``examples`` kept tiles (closest first), a
    gap, then up to ``examples`` rejected ones (most confident first), under
    a line of text."""
    from PIL import Image, ImageDraw

    size = result.images.shape[1]
    cell = max(size, 64)
    gap, label = 16, 14
    width = (2 * examples) * cell + gap
    rows = len(result.class_names)
    sheet = Image.new("RGB", (width, rows * (cell + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    sel = result.selection
    for k, name in enumerate(result.class_names):
        mine = result.intended == k
        kept = np.flatnonzero(mine & sel.kept)
        kept = kept[np.argsort(sel.rank[kept], kind="stable")][:examples]
        rejected = np.flatnonzero(mine & ~sel.kept)
        rejected = rejected[np.argsort(-result.confidence[rejected],
                                       kind="stable")][:examples]
        y = k * (cell + label)
        draw.text((2, y + 1), f"{name}: kept {int((mine & sel.kept).sum())} "
                  f"of {int(mine.sum())} (left), rejected (right)", fill=(0, 0, 0))
        for j, i in enumerate(kept):
            tile = Image.fromarray(result.images[i]).resize((cell, cell),
                                                           Image.NEAREST)
            sheet.paste(tile, (j * cell, y + label))
        for j, i in enumerate(rejected):
            tile = Image.fromarray(result.images[i]).resize((cell, cell),
                                                           Image.NEAREST)
            sheet.paste(tile, (examples * cell + gap + j * cell, y + label))
    return np.asarray(sheet)
