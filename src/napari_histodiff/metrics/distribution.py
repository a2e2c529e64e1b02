"""Distribution metrics between real and synthetic tile features.

* **FID** (Heusel et al. 2017) and **KID** (Binkowski et al. 2018), computed
  by torchmetrics (``FrechetInceptionDistance`` and
  ``KernelInceptionDistance`` with a custom feature module). The tiles are
  embedded once (:mod:`.features`); the module handed to torchmetrics passes
  those embeddings through, so the bootstrap does not embed again. The 95 %
  confidence intervals come from a bootstrap over tiles: both sets are
  resampled with replacement ``n_bootstrap`` times. FID is biased upwards in
  small samples, and a resample (with its repeated tiles) is a smaller
  sample, so the resampled FIDs lie above the estimate; the interval is
  therefore the bootstrap's 2.5 and 97.5 percentiles moved down by the
  bootstrap's estimate of that bias (mean of the resamples minus the
  estimate), reported as ``fid_bootstrap_bias``. KID is unbiased and its
  interval is the plain percentile one. Identical sets give a KID slightly
  below 0: KID's real and synthetic subsets are drawn independently and
  then share tiles.
* **Improved precision and recall** (Kynkaanniemi et al. 2019): the share of
  synthetic samples inside the real k-NN manifold (the union of balls around
  each real sample reaching its k-th nearest real neighbour), and of real
  samples inside the synthetic manifold.
* **Density and coverage** (Naeem et al. 2020): density counts how many real
  balls hold each synthetic sample (divided by k; about 1 for matching sets);
  coverage is the share of real samples whose ball holds a synthetic sample.

FID needs more samples than feature dimensions in each set (the covariance
is singular otherwise), KID at least two, the k-NN figures more than ``k``;
fewer raise an :class:`InputError` naming the count and the minimum.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import InputError

DEFAULT_K = 5
DEFAULT_BOOTSTRAP = 50
#: KID subsets drawn for each bootstrap resample.
BOOTSTRAP_KID_SUBSETS = 2


def require(count: int, minimum: int, side: str, what: str, hint: str = "") -> None:
    """Raise unless ``count >= minimum``."""
    if count < minimum:
        raise InputError(
            f"{side}: {count} tiles, but {what} needs at least {minimum}; "
            f"{hint or 'add images, or lower --tile-size or --min-tissue'}")


def _passthrough(dims: int):
    import torch
    from torch import nn

    class Precomputed(nn.Module):
        """Features already computed: handed to torchmetrics unchanged."""

        num_features = dims

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    return Precomputed()


def _fid(real: np.ndarray, fake: np.ndarray) -> float:
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_passthrough(real.shape[1]),
                                      reset_real_features=True)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    return float(metric.compute())


def _kid(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int,
         seed: int) -> tuple[float, float]:
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # "will save all extracted features": known
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_passthrough(real.shape[1]),
                                         subsets=subsets, subset_size=subset_size)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    # KID draws its subsets from torch's global generator: seed a private fork
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def fid_kid(real: np.ndarray, fake: np.ndarray, *, n_bootstrap: int = DEFAULT_BOOTSTRAP,
            seed: int = 0, kid_subsets: int = 50, kid_subset_size: int = 1000,
            extractor: str = "the features",
            names: tuple[str, str] = ("real", "synthetic")) -> dict[str, Any]:
    """FID and KID with bootstrap confidence intervals.

    Parameters
    ----------
    real, fake : np.ndarray
        ``(N, D)`` and ``(M, D)`` features.
    n_bootstrap : int
        Bootstrap resamples for the 95 % intervals (0: none).
    seed : int
        Seed of the resampling and of KID's subsets.
    kid_subsets, kid_subset_size : int
        KID's subsets (the size is capped at the smaller set); each bootstrap
        resample uses ``BOOTSTRAP_KID_SUBSETS`` of them.
    extractor : str
        Named in errors.
    names : (str, str)
        The two sets as errors name them (``--real``, ``--synthetic``).

    Returns
    -------
    dict
        ``fid``, ``fid_ci`` ([low, high] or None), ``fid_bootstrap_bias``,
        ``kid``, ``kid_std`` (over KID's subsets), ``kid_ci``,
        ``kid_subset_size``, ``kid_subsets``, ``n_bootstrap``.
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    dims = real.shape[1]
    hint = ("add images, lower --tile-size or --min-tissue, or use an extractor "
            "with fewer dimensions")
    for side, feats in zip(names, (real, fake), strict=True):
        require(len(feats), dims + 1, side,
                f"FID with {extractor} ({dims} dimensions)", hint)
    size = int(min(kid_subset_size, len(real), len(fake)))
    fid = _fid(real, fake)
    kid, kid_std = _kid(real, fake, kid_subsets, size, seed)
    out: dict[str, Any] = {"fid": fid, "fid_ci": None, "fid_bootstrap_bias": None,
                           "kid": kid, "kid_std": kid_std, "kid_ci": None,
                           "kid_subset_size": size, "kid_subsets": int(kid_subsets),
                           "n_bootstrap": int(n_bootstrap)}
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        fids, kids = [], []
        for b in range(n_bootstrap):
            r = real[rng.integers(0, len(real), len(real))]
            f = fake[rng.integers(0, len(fake), len(fake))]
            fids.append(_fid(r, f))
            kids.append(_kid(r, f, BOOTSTRAP_KID_SUBSETS, size, seed + 1 + b)[0])
        bias = float(np.mean(fids) - fid)
        low, high = np.percentile(fids, [2.5, 97.5]) - bias
        out["fid_ci"] = [max(0.0, float(low)), max(0.0, float(high))]
        out["fid_bootstrap_bias"] = bias
        out["kid_ci"] = [float(v) for v in np.percentile(kids, [2.5, 97.5])]
    return out


def kth_neighbour_distance(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each sample to its ``k``-th nearest other sample."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(features)
    dist, _ = nn.kneighbors(features)
    return dist[:, k]  # column 0 is the sample itself


def _ball_counts(points: np.ndarray, centres: np.ndarray, radii: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each point, how many balls (centre, radius) hold it; for each
    centre, whether its ball holds any point. Chunked: no N x M matrix."""
    from sklearn.metrics import pairwise_distances_chunked

    counts = np.zeros(len(points), np.int64)
    holds = np.zeros(len(centres), bool)
    start = 0
    for block in pairwise_distances_chunked(points, centres, working_memory=64):
        inside = block <= radii[None, :]
        counts[start:start + len(block)] = inside.sum(axis=1)
        holds |= inside.any(axis=0)
        start += len(block)
    return counts, holds


def precision_recall_density_coverage(real: np.ndarray, fake: np.ndarray,
                                      k: int = DEFAULT_K,
                                      names: tuple[str, str] = ("real", "synthetic"),
                                      ) -> dict[str, Any]:
    """Improved precision/recall and density/coverage with ``k`` neighbours.

    ``names`` are the two sets as errors name them.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``density``, ``coverage``, ``k``.
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"--k: expected an integer >= 1, got {k!r}")
    for side, feats in zip(names, (real, fake), strict=True):
        require(len(feats), k + 1, side, f"precision/recall with k={k} neighbours",
                "add images, lower --tile-size or --k")
    real_r = kth_neighbour_distance(real, k)
    fake_r = kth_neighbour_distance(fake, k)
    # precision, density: synthetic samples in real balls; coverage: real
    # balls holding a synthetic sample
    in_real, real_covered = _ball_counts(fake, real, real_r)
    # recall: real samples in synthetic balls
    in_fake, _ = _ball_counts(real, fake, fake_r)
    return {"precision": float((in_real > 0).mean()),
            "recall": float((in_fake > 0).mean()),
            "density": float(in_real.sum() / (k * len(fake))),
            "coverage": float(real_covered.mean()), "k": int(k)}
