"""``histodiff bench metrics``: how long the realism metrics take.

Builds three mosaics of ``tiles`` random ``tile_size`` crops (flipped and
rotated at random) of ``skimage.data.immunohistochemistry()``: *real* and
*train* from its left half, *synthetic* from its right half with a mild
stain jitter, and runs :func:`napari_histodiff.metrics.measure.measure_realism`
on them with the ``random`` features, the whole pipeline from tiling to the
closest pairs. Prints JSON with the wall time of each part, the tile counts
and the figures. The issue's target: 2,000 tiles of 64 x 64 in under 2
minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

DEFAULT_TILES = 2000
DEFAULT_TILE_SIZE = 64


def mosaic(image: np.ndarray, n: int, size: int, rng: np.random.Generator,
           jitter: float = 0.0) -> np.ndarray:
    """A square-ish mosaic of ``n`` random crops of ``image`` (side ``size``);
    the cells left over are filled with further crops too."""
    from ..training.augment import jitter_stains

    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.empty((rows * size, cols * size, 3), np.uint8)
    h, w = image.shape[:2]
    for r in range(rows):
        for c in range(cols):
            y = int(rng.integers(0, h - size + 1))
            x = int(rng.integers(0, w - size + 1))
            crop = np.rot90(image[y:y + size, x:x + size], int(rng.integers(0, 4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            if jitter:
                crop = jitter_stains(np.ascontiguousarray(crop), rng, jitter, 0.0)
            out[r * size:(r + 1) * size, c * size:(c + 1) * size] = crop
    return out


def run_metrics_benchmark(tiles: int = DEFAULT_TILES,
                          tile_size: int = DEFAULT_TILE_SIZE, *,
                          n_bootstrap: int = 50, seed: int = 0,
                          threads: int | None = None, train: bool = True
                          ) -> dict[str, Any]:
    """Time :func:`measure_realism` on ``tiles`` tiles per set; return JSON-ready
    figures (``seconds`` by part, ``counts``, the report)."""
    import torch
    from skimage.data import immunohistochemistry

    from ..metrics.measure import measure_realism

    if threads is not None:
        torch.set_num_threads(threads)
    img = immunohistochemistry()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    left, right = img[:, :256], img[:, 256:]
    sets = {"real": mosaic(left, tiles, tile_size, rng),
            "synthetic": mosaic(right, tiles, tile_size, rng, jitter=0.05)}
    if train:
        sets["train"] = mosaic(left, tiles, tile_size, rng)
    build = time.perf_counter() - t0
    report = measure_realism(
        [("real mosaic", sets["real"])], [("synthetic mosaic", sets["synthetic"])],
        train=[("train mosaic", sets["train"])] if train else None,
        tile_size=tile_size, min_tissue=0.0, n_bootstrap=n_bootstrap, seed=seed,
        seam_period=None)
    figures = report.to_dict()
    return {"benchmark": "metrics", "tiles_per_set": tiles, "tile_size": tile_size,
            "features": figures["extractor"], "n_bootstrap": n_bootstrap,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "seconds_building_inputs": round(build, 3),
            "seconds": figures["seconds"], "counts": figures["counts"],
            "figures": {k: figures[k] for k in (
                "fid", "fid_ci", "kid", "kid_ci", "precision", "recall",
                "density", "coverage")},
            "privacy": {k: v for k, v in (figures["privacy"] or {}).items()
                        if k != "cell_z"}}
