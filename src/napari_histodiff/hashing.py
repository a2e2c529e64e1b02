"""SHA-256 of large arrays without a second copy of them in memory."""

from __future__ import annotations

import hashlib

import numpy as np


def row_blocks(shape: tuple[int, ...], max_items: int = 1 << 22):
    """Slices of the first axis covering about ``max_items`` items each."""
    if not shape:
        yield ()
        return
    rows = int(shape[0])
    per_row = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, max_items // per_row)
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def array_sha256(array) -> str:
    """Hex SHA-256 of the array's bytes in C order, read block by block.

    Equal to ``hashlib.sha256(np.ascontiguousarray(array).tobytes())`` but only
    one block of rows is copied at a time, and ``array`` may be anything that
    slices into numpy (zarr, dask).
    """
    digest = hashlib.sha256()
    for rows in row_blocks(tuple(array.shape)):
        digest.update(np.ascontiguousarray(np.asarray(array[rows])).tobytes())
    return digest.hexdigest()
