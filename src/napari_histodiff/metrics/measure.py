"""Measure synthetic images against real ones: every figure in one call.

>>> from napari_histodiff.metrics import measure_realism      # doctest: +SKIP
>>> report = measure_realism(["real/"], ["synthetic.zarr"], train=["train/"])
>>> print(report.to_markdown())

The sets are tiled (:mod:`.imagesets`), embedded once (:mod:`.features`),
and compared (:mod:`.distribution`, :mod:`.privacy`); seams, mask fidelity,
the spectral comparison and, when asked, the classifier two-sample test are
added. See :class:`.report.MetricsReport` for what each figure means.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.tissue import DEFAULT_MIN_TISSUE
from ..study.images import RGBImage
from .distribution import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_K,
    fid_kid,
    precision_recall_density_coverage,
)
from .features import FeatureExtractor, make_extractor
from .imagesets import DEFAULT_TILE_SIZE, TileSet, _as_images, load_tiles
from .privacy import (
    DEFAULT_CELLS,
    DEFAULT_MIN_CELL,
    authenticity,
    closest_pairs,
    data_copying,
    distance_ratio,
)
from .report import MetricsReport

#: Default grid period of the seam score (the demo model's window).
DEFAULT_SEAM_PERIOD = 64
#: Closest pairs kept for the sheet.
DEFAULT_PAIRS = 16


def _log(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def measure_realism(
    real: Sequence[Any],
    synthetic: Sequence[Any],
    *,
    train: Sequence[Any] | None = None,
    heldout: Sequence[Any] | None = None,
    features: str | FeatureExtractor = "random",
    weights: str | Path | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    max_tiles: int | None = None,
    seed: int = 0,
    k: int = DEFAULT_K,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    cells: int = DEFAULT_CELLS,
    min_cell: int = DEFAULT_MIN_CELL,
    pairs: int = DEFAULT_PAIRS,
    masks: Sequence[Any] | None = None,
    seam_period: int | None = DEFAULT_SEAM_PERIOD,
    spectral: bool = True,
    c2st: bool = False,
    c2st_options: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> MetricsReport:
    """Compare synthetic with real images; return a :class:`MetricsReport`.

    Parameters
    ----------
    real, synthetic : sequence
        Image sets: paths (PNG/TIFF/JPEG files, folders, OME-Zarr outputs),
        ``(H, W, 3)`` ``uint8`` arrays, or ``(name, array)`` pairs.
    train : sequence, optional
        The model's training images: enables the privacy figures.
    heldout : sequence, optional
        Real images the model did not see, for ``C_T`` and the distance ratio;
        default ``real`` (which must then be disjoint from ``train``).
    features : str or FeatureExtractor
        ``random``, ``histo``, ``inception`` or ``torchvision:NAME``
        (:func:`.features.make_extractor`), or an extractor.
    weights : path, optional
        Weights of the extractor.
    tile_size, min_tissue, max_tiles : int, float, int
        Tiling (:func:`.imagesets.load_tiles`); ``max_tiles`` caps each set.
    seed : int
        Seed of everything random (the ``random`` network, bootstrap, KID
        subsets, k-means, tile draws).
    k : int
        Neighbours of precision/recall/density/coverage.
    n_bootstrap : int
        Bootstrap resamples of the FID/KID intervals (0: none).
    cells, min_cell : int
        k-means cells of the data-copying test and the fewest samples a cell
        needs to count.
    pairs : int
        Closest synthetic-training pairs kept for the sheet.
    masks : sequence, optional
        One label mask (path or array) per synthetic image, in order, for
        mask fidelity; OME-Zarr outputs bring their own mask.
    seam_period : int or None
        Grid period of the seam score; None skips it.
    spectral : bool
        Add the spectral comparison (:mod:`.spectral`) when it is available.
    c2st : bool
        Run the classifier two-sample test (:mod:`.c2st`) on the whole images;
        with ``heldout`` (else ``train``) also real against those, the
        real-vs-real floor.
    c2st_options : dict, optional
        Keyword arguments of the two-sample test (``seeds``, ...).
    device : str
        Torch device of the feature extractor.
    progress : callable, optional
        Called with a short message as each part starts.

    Raises
    ------
    InputError
        Bad images or settings, or too few tiles for a statistic (naming the
        count and the minimum).
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(features, FeatureExtractor):
        extractor = features
    else:
        extractor = make_extractor(features, weights=weights, seed=seed, device=device)
    opts = {"tile_size": tile_size, "min_tissue": min_tissue, "max_tiles": max_tiles,
            "seed": seed}
    real_images = _as_images(real, "--real")
    syn_images = _as_images(synthetic, "--synthetic")
    if masks is not None and len(masks) != len(syn_images):  # before the work
        raise InputError(f"--masks: {len(masks)} mask(s) for {len(syn_images)} "
                         "synthetic image(s); give one mask per synthetic image, "
                         "in the same order")
    _log(progress, "tiling")
    sets: dict[str, TileSet] = {
        "real": load_tiles(real_images, "real", **opts),
        "synthetic": load_tiles(syn_images, "synthetic", **opts)}
    if train is not None:
        sets["train"] = load_tiles(train, "train", **opts)
    if heldout is not None:
        if train is None:
            raise InputError("--heldout: held-out real images serve the privacy "
                             "figures, which need --train as well")
        sets["heldout"] = load_tiles(heldout, "heldout", **opts)
    seconds["tiling"] = time.perf_counter() - t0

    t = time.perf_counter()
    _log(progress, f"features ({extractor.name})")
    feats = {name: extractor(s.tiles) for name, s in sets.items()}
    seconds["features"] = time.perf_counter() - t

    t = time.perf_counter()
    _log(progress, "FID and KID")
    dist = fid_kid(feats["real"], feats["synthetic"], n_bootstrap=n_bootstrap,
                   seed=seed, extractor=f"the {extractor.name} features",
                   names=("--real", "--synthetic"))
    seconds["fid_kid"] = time.perf_counter() - t
    t = time.perf_counter()
    _log(progress, "precision, recall, density, coverage")
    prdc = precision_recall_density_coverage(feats["real"], feats["synthetic"], k,
                                             names=("--real", "--synthetic"))
    seconds["prdc"] = time.perf_counter() - t

    privacy, pair_rows, pair_tiles = None, [], None
    if "train" in sets:
        t = time.perf_counter()
        _log(progress, "privacy")
        held_name = "heldout" if "heldout" in sets else "real"
        tr, ho, sy = feats["train"], feats[held_name], feats["synthetic"]
        privacy = {"heldout_source": held_name,
                   "authenticity": authenticity(tr, sy),
                   "authenticity_heldout": authenticity(tr, ho)}
        privacy.update(data_copying(tr, ho, sy, cells=cells, min_cell=min_cell,
                                    seed=seed))
        privacy.update(distance_ratio(tr, ho, sy))
        found = closest_pairs(tr, sy, pairs)
        syn_set, train_set = sets["synthetic"], sets["train"]
        for s, r, d in found:
            pair_rows.append({
                "synthetic": {"image": syn_set.sources[s],
                              "y": int(syn_set.positions[s, 0]),
                              "x": int(syn_set.positions[s, 1])},
                "train": {"image": train_set.sources[r],
                          "y": int(train_set.positions[r, 0]),
                          "x": int(train_set.positions[r, 1])},
                "distance": d})
        if found:
            pair_tiles = (syn_set.tiles[[s for s, _, _ in found]],
                          train_set.tiles[[r for _, r, _ in found]])
        seconds["privacy"] = time.perf_counter() - t

    seams = None
    if seam_period is not None:
        t = time.perf_counter()
        _log(progress, "seams")
        seams = seam_scores(real_images, syn_images, int(seam_period))
        seconds["seams"] = time.perf_counter() - t
    fidelity = None
    if masks is not None or any(_zarr_mask(im) is not None for im in syn_images):
        t = time.perf_counter()
        _log(progress, "mask fidelity")
        fidelity = mask_fidelity(real_images, syn_images, masks)
        seconds["mask_fidelity"] = time.perf_counter() - t
    spectral_figures = None
    if spectral:
        t = time.perf_counter()
        _log(progress, "spectral comparison")
        spectral_figures = _spectral(real_images, syn_images)
        seconds["spectral"] = time.perf_counter() - t
    c2st_figures = None
    if c2st:
        t = time.perf_counter()
        _log(progress, "classifier two-sample test")
        floor = heldout if heldout is not None else train
        c2st_figures = run_c2st(real_images, syn_images, tile_size, seed,
                                c2st_options or {},
                                _as_images(floor, "--heldout" if heldout is not None
                                           else "--train") if floor is not None
                                else None)
        seconds["c2st"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0

    return MetricsReport(
        extractor=dict(extractor.info), seed=int(seed), tile_size=int(tile_size),
        min_tissue=float(min_tissue),
        counts={name: s.describe() for name, s in sets.items()},
        fid=dist["fid"], fid_ci=dist["fid_ci"],
        fid_bootstrap_bias=dist["fid_bootstrap_bias"], kid=dist["kid"],
        kid_std=dist["kid_std"], kid_ci=dist["kid_ci"],
        kid_subset_size=dist["kid_subset_size"], n_bootstrap=dist["n_bootstrap"],
        precision=prdc["precision"], recall=prdc["recall"],
        density=prdc["density"], coverage=prdc["coverage"], k=prdc["k"],
        privacy=privacy, closest_pairs=pair_rows, seams=seams,
        mask_fidelity=fidelity, spectral=spectral_figures, c2st=c2st_figures,
        seconds={key: round(v, 3) for key, v in seconds.items()},
        pair_tiles=pair_tiles)


def seam_scores(real: Sequence[RGBImage], synthetic: Sequence[RGBImage],
                period: int) -> dict[str, Any]:
    """Mean :func:`.seams.seam_score` of each set at one grid (origin 0).

    The real images give the reference (about 1: real tissue has no grid).
    """
    from .seams import seam_score

    if period < 2:
        raise InputError(f"--seam-period: expected an integer >= 2, got {period}")

    def mean(images: Sequence[RGBImage]) -> float | None:
        scores = [seam_score(im.read_all(), period) for im in images]
        scores = [s for s in scores if np.isfinite(s)]
        return float(np.mean(scores)) if scores else None

    return {"period": period, "synthetic": mean(synthetic), "real": mean(real)}


def _zarr_mask(image: RGBImage):
    """The mask inside an OME-Zarr output of this project, else None."""
    from ..study.images import is_zarr_dir

    path = Path(image.name)
    if not is_zarr_dir(path):
        return None
    try:
        from ..io.omezarr import read_synthesis

        return read_synthesis(path)["mask"][0]
    except (InputError, KeyError):
        return None


def mask_fidelity(real: Sequence[RGBImage], synthetic: Sequence[RGBImage],
                  masks: Sequence[Any] | None) -> dict[str, Any]:
    """Mean Dice of the automatic labeller on each synthetic image against its mask.

    The labeller's thresholds are fitted once on the first real image
    (:func:`..masks.labeller.fit_thresholds`) and used for every synthetic
    image; the masks must use the labeller's class ids (1 background,
    2 nuclei, 3 dab, 4 tissue), as the demo model's masks do.
    """
    from ..io.masks import read_mask
    from ..masks.labeller import auto_label, fit_thresholds
    from .mask_fidelity import dice_per_class, mean_dice

    if masks is not None and len(masks) != len(synthetic):
        raise InputError(f"--masks: {len(masks)} mask(s) for {len(synthetic)} "
                         "synthetic image(s); give one mask per synthetic image, "
                         "in the same order")
    thresholds = fit_thresholds(real[0].read_all())
    per_image = []
    for i, image in enumerate(synthetic):
        if masks is not None:
            given = masks[i]
            mask = read_mask(given, "--masks") if isinstance(given, str | Path) \
                else np.asarray(given)
        else:
            mask = _zarr_mask(image)
            if mask is None:
                continue
            mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise InputError(f"--masks: mask {i} has shape {mask.shape} but image "
                             f"{image.name} is {image.shape}; give the mask the "
                             "image was generated from")
        ids = [int(c) for c in np.unique(mask) if c > 0]
        scores = dice_per_class(auto_label(image.read_all(), thresholds), mask, ids)
        per_image.append({"image": image.name, "mean_dice": mean_dice(scores),
                          "dice": {str(c): v for c, v in scores.items()}})
    values = [r["mean_dice"] for r in per_image if np.isfinite(r["mean_dice"])]
    return {"mean_dice": float(np.mean(values)) if values else None,
            "images": per_image}


def _spectral(real: Sequence[RGBImage], synthetic: Sequence[RGBImage]
              ) -> dict[str, Any] | None:
    """The spectral comparison (:mod:`.spectral`) of the whole images, when that
    module is present."""
    try:
        from .spectral import spectral_comparison
    except ImportError:
        return None
    return spectral_comparison([im.read_all() for im in real],
                               [im.read_all() for im in synthetic])


def run_c2st(real: Sequence[RGBImage], synthetic: Sequence[RGBImage],
             tile_size: int, seed: int, options: dict[str, Any],
             floor: Sequence[RGBImage] | None = None) -> dict[str, Any]:
    """The classifier two-sample test (:mod:`.c2st`) on whole images.

    With ``floor`` (the held-out real images, else the training images) the
    same test of real against those gives the real-vs-real floor.
    """
    try:
        from .c2st import classifier_two_sample_test
    except ImportError as exc:
        raise InputError(f"--c2st: the two-sample test is not available ({exc})"
                         ) from exc
    options = {"tile_size": tile_size,
               "seeds": (seed, seed + 1, seed + 2), **options}
    if floor is not None:
        options.setdefault("floor_images", [im.read_all() for im in floor])
    result = classifier_two_sample_test([im.read_all() for im in real],
                                        [im.read_all() for im in synthetic],
                                        **options)
    return result.to_dict()
