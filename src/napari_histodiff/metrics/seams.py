"""A seam score: do the lines of a window grid stand out in an image?

Tiling a canvas with independent windows leaves seams along the window
borders: the intensity jumps across a border more than it does elsewhere.
The score compares the mean absolute intensity step *across* the lines of a
fixed grid with the mean step everywhere else::

    score = mean |I[line] - I[line - 1]|  /  mean |I[j] - I[j - 1]| (j off the lines)

taken over both axes of the grey-level image. 1.0 means the grid lines are
like any other place (no seams); above 1 the grid shows as edges, below 1 as
suspiciously smooth bands. The score is a ratio of means, so it is noisy on
small images: measure it on canvases of 1024 x 1024 pixels or more, and
average over several seeds.
"""

from __future__ import annotations

import numpy as np


def grid_line_positions(length: int, period: int, offset: int = 0) -> np.ndarray:
    """Indices ``j`` (``1 <= j < length``) where a grid line runs between
    pixel ``j - 1`` and pixel ``j``: ``j = offset + k * period``."""
    if period < 1:
        raise ValueError(f"period: must be >= 1, got {period}")
    first = offset % period or period
    return np.arange(first, length, period)


def seam_score(image: np.ndarray, period: int, offset: tuple[int, int] = (0, 0)
               ) -> float:
    """Mean absolute step across grid lines divided by the mean step elsewhere.

    Parameters
    ----------
    image : np.ndarray
        (H, W) grey or (H, W, C) colour image, any numeric dtype; colour is
        averaged over channels first.
    period : int
        Grid spacing in pixels: the window size of the sampler.
    offset : (int, int)
        Row and column of the first grid line (the grid origin).

    Returns
    -------
    float
        1.0 when the grid lines look like everywhere else; NaN when the image
        has no grid line or is flat off the lines.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"image: expected (H, W) or (H, W, C), got {image.shape}")
    dy = np.abs(np.diff(img, axis=0))  # dy[j - 1]: step between rows j-1 and j
    dx = np.abs(np.diff(img, axis=1))
    rows = grid_line_positions(img.shape[0], period, offset[0]) - 1
    cols = grid_line_positions(img.shape[1], period, offset[1]) - 1
    on_sum = dy[rows].sum() + dx[:, cols].sum()
    on_n = dy[rows].size + dx[:, cols].size
    off_sum = dy.sum() + dx.sum() - on_sum
    off_n = dy.size + dx.size - on_n
    if on_n == 0 or off_n == 0 or off_sum == 0:
        return float("nan")
    return float((on_sum / on_n) / (off_sum / off_n))
