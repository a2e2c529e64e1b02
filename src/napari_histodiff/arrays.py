"""Array helpers shared by the conditioning and the sampling code.

Both read windows of canvases that may be numpy or zarr arrays and may hang
over the canvas edge; these two functions are the one place that does it.
"""

from __future__ import annotations

import numpy as np


def fold(indices: np.ndarray, length: int) -> np.ndarray:
    """Map any integer indices into ``[0, length)`` by mirroring at the edges.

    ``-1 -> 0``, ``-2 -> 1``, ``length -> length - 1``: the edge pixel is
    repeated once (symmetric padding), which works for any ``length >= 1``.
    """
    period = 2 * length
    j = np.mod(indices, period)
    return np.where(j >= length, period - 1 - j, j)


def take_2d(array, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``array[..., ys, :][..., xs]`` reading only the bounding block.

    Works on numpy and zarr arrays alike (zarr reads only the chunks it needs).
    """
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    block = np.asarray(array[..., y0:y1, x0:x1])
    return block[..., ys - y0, :][..., xs - x0]
