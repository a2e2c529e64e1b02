"""Privacy metrics: does a model copy its training tiles?

All distances are Euclidean between tile features (:mod:`.features`).

* **Authenticity** (Alaa et al. 2022): a synthetic sample is *not
  authentic* when it is closer to its nearest training sample than that
  training sample is to its own nearest training neighbour; authenticity is
  the share of authentic synthetic samples. Copies of training tiles score
  near 0. A fresh real sample from the same tissue scores about 0.5 or a
  little above (it is as likely as not to fall inside its neighbour's
  radius), so compare with ``authenticity_heldout``, the same figure for the
  held-out real set.
* **Data-copying test** ``C_T`` (Meehan et al. 2020): the training features
  are cut into ``cells`` by k-means; in each cell the distances of the
  held-out real samples to their nearest training sample are compared with
  those of the synthetic samples by a Mann-Whitney U test, turned into a
  z-score, and the z-scores are averaged with the held-out share of each
  cell as weight, over the cells that hold at least ``min_cell`` synthetic
  and held-out samples. ``C_T`` well below 0 (e.g. < -3) means the synthetic
  tiles are closer to the training tiles than new real tiles are: copying;
  about 0 is what an honest model gives; well above 0 means under-fitting.
* **Nearest-neighbour distance ratio**: the median distance of synthetic
  samples to their nearest training sample over the median of held-out real
  samples; below 1 means the synthetic tiles sit closer to the training set
  than new real tissue does.
* **Closest pairs**: the synthetic tiles nearest to a training tile, with
  that tile, for a person to look at (:func:`pairs_sheet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .distribution import require

DEFAULT_CELLS = 10
DEFAULT_MIN_CELL = 5


def nearest(reference: np.ndarray, queries: np.ndarray, exclude_self: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of the nearest ``reference`` sample of each query.

    With ``exclude_self`` the queries are the reference itself and each
    sample's own entry is skipped.
    """
    from sklearn.neighbors import NearestNeighbors

    k = 2 if exclude_self else 1
    nn = NearestNeighbors(n_neighbors=k).fit(reference)
    dist, idx = nn.kneighbors(queries)
    return dist[:, k - 1], idx[:, k - 1]


def authenticity(train: np.ndarray, synthetic: np.ndarray) -> float:
    """Share of synthetic samples farther from their nearest training sample
    than that sample's nearest training neighbour (Alaa et al. 2022)."""
    require(len(train), 2, "--train", "authenticity")
    radius, _ = nearest(train, train, exclude_self=True)
    dist, idx = nearest(train, synthetic)
    return float((dist > radius[idx]).mean())


def mann_whitney_z(x: np.ndarray, y: np.ndarray) -> float:
    """z-score of the Mann-Whitney U of ``x`` against ``y``.

    ``U`` counts the pairs with ``x > y`` (ties count one half), from
    :func:`scipy.stats.mannwhitneyu`; ``z = (U - m n / 2) / sqrt(m n (m + n +
    1) / 12)``, negative when ``x`` tends to be smaller.
    """
    from scipy.stats import mannwhitneyu

    m, n = len(x), len(y)
    u = mannwhitneyu(x, y, alternative="two-sided").statistic
    return float((u - m * n / 2.0) / np.sqrt(m * n * (m + n + 1) / 12.0))


def data_copying(train: np.ndarray, heldout: np.ndarray, synthetic: np.ndarray, *,
                 cells: int = DEFAULT_CELLS, min_cell: int = DEFAULT_MIN_CELL,
                 seed: int = 0) -> dict[str, Any]:
    """Meehan et al.'s ``C_T`` statistic.

    Parameters
    ----------
    train, heldout, synthetic : np.ndarray
        Features of the training, held-out real and synthetic tiles.
    cells : int
        k-means cells on the training features.
    min_cell : int
        Cells with fewer held-out or synthetic samples are left out.
    seed : int
        Seed of k-means.

    Returns
    -------
    dict
        ``C_T``, ``cells`` (asked), ``cells_used``, ``cell_z`` (z-score per
        used cell), ``heldout_share_used`` (share of held-out samples in used
        cells).
    """
    from sklearn.cluster import KMeans

    if isinstance(cells, bool) or not isinstance(cells, int | np.integer) or \
            cells < 1:
        raise InputError(f"--cells: expected an integer >= 1, got {cells!r}")
    require(len(train), cells, "--train", f"the data-copying test with {cells} cells",
            "add training images or lower --cells")
    require(len(heldout), min_cell, "--heldout", "the data-copying test")
    require(len(synthetic), min_cell, "--synthetic", "the data-copying test")
    km = KMeans(n_clusters=int(cells), n_init=4, random_state=seed).fit(train)
    d_held, _ = nearest(train, heldout)
    d_syn, _ = nearest(train, synthetic)
    c_held = km.predict(heldout)
    c_syn = km.predict(synthetic)
    zs, weights, used = [], [], []
    for c in range(int(cells)):
        h, s = d_held[c_held == c], d_syn[c_syn == c]
        if len(h) < min_cell or len(s) < min_cell:
            continue
        zs.append(mann_whitney_z(s, h))
        weights.append(len(h))
        used.append(c)
    if not zs:
        raise InputError(
            f"--cells: no k-means cell of the {cells} holds {min_cell} held-out and "
            f"{min_cell} synthetic tiles; lower --cells or add tiles")
    w = np.asarray(weights, np.float64)
    return {"C_T": float(np.sum(w * np.asarray(zs)) / w.sum()),
            "cells": int(cells), "cells_used": len(used),
            "cell_z": {str(c): float(z) for c, z in zip(used, zs, strict=True)},
            "heldout_share_used": float(w.sum() / len(heldout))}


def distance_ratio(train: np.ndarray, heldout: np.ndarray, synthetic: np.ndarray
                   ) -> dict[str, float]:
    """Median nearest-training distances of synthetic and held-out samples and
    their ratio (synthetic over held-out)."""
    d_syn, _ = nearest(train, synthetic)
    d_held, _ = nearest(train, heldout)
    med_syn, med_held = float(np.median(d_syn)), float(np.median(d_held))
    return {"nn_distance_synthetic": med_syn, "nn_distance_heldout": med_held,
            "nn_distance_ratio": med_syn / med_held if med_held > 0 else float("nan")}


def closest_pairs(train: np.ndarray, synthetic: np.ndarray, n: int = 16
                  ) -> list[tuple[int, int, float]]:
    """The ``n`` synthetic samples nearest to a training sample:
    ``(synthetic index, training index, distance)``, nearest first."""
    dist, idx = nearest(train, synthetic)
    order = np.argsort(dist, kind="stable")[:n]
    return [(int(i), int(idx[i]), float(dist[i])) for i in order]


def pairs_sheet(pairs: Sequence[tuple[int, int, float]], synthetic_tiles: np.ndarray,
                train_tiles: np.ndarray, path: str | Path, *,
                overwrite: bool = False, argname: str = "--out",
                columns: int = 4, scale: int = 2) -> Path:
    """Write a PNG sheet of closest pairs: synthetic tile (left) and its nearest
    training tile (right), with the distance under each pair.

    Written to a temporary sibling and renamed into place
    (:func:`napari_histodiff.outputs.atomic_output`).
    """
    from ..outputs import atomic_output

    image = pairs_image(pairs, synthetic_tiles, train_tiles, columns=columns,
                        scale=scale)
    path = Path(path)
    with atomic_output(path, overwrite, argname) as tmp:
        image.save(tmp, format="PNG")
    return path


def pairs_image(pairs: Sequence[tuple[int, int, float]], synthetic_tiles: np.ndarray,
                train_tiles: np.ndarray, *, columns: int = 4, scale: int = 2):
    """The sheet of :func:`pairs_sheet` as a PIL image."""
    from PIL import Image, ImageDraw

    if not pairs:
        raise InputError("pairs: no closest pairs to draw")
    tile = int(synthetic_tiles.shape[1])
    size = max(tile * scale, 96)  # small tiles are enlarged (nearest) to 96 px
    gap, label = 6, 14
    cell_w, cell_h = 2 * size + gap, size + label
    rows = (len(pairs) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * gap,
                              rows * cell_h + (rows + 1) * gap + label), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((gap, 2), "left: synthetic tile, right: its nearest training tile "
              "(closest first)", fill="black")
    for n, (s, t, d) in enumerate(pairs):
        r, c = divmod(n, columns)
        x = gap + c * (cell_w + gap)
        y = label + gap + r * (cell_h + gap)
        for k, tile in enumerate((synthetic_tiles[s], train_tiles[t])):
            img = Image.fromarray(np.asarray(tile, np.uint8)).resize(
                (size, size), Image.NEAREST)
            sheet.paste(img, (x + k * size, y))
        draw.text((x, y + size + 1), f"{n + 1}: distance {d:.3g}", fill="black")
    return sheet
