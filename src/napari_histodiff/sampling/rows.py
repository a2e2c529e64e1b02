"""Reading windows from and writing model outputs to a canvas row by row.

A non-overlapping window grid (``random-shift``, ``tiled``) comes as rows of
windows that share their canvas rows. Reading and writing each window on its
own costs one store access per window, which for a canvas in zarr chunks on
disk means decoding and re-encoding the chunks under it for every window.
:class:`RowBands` instead reads the canvas rows a row of windows needs once,
full width, serves every window of that row from memory, gathers their
outputs in a buffer of the same rows, and writes the buffer to the store in
one go when the last window of the row is done. Memory is one or two bands of
``window`` rows by the canvas width, whatever the canvas height.

The values are the same as window-by-window access: windows still see the
canvas reflected at its edges (:func:`.windows.fold`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .windows import Window, fold


class RowBands:
    """Row-wise window access to ``source`` (read) and ``target`` (write).

    Parameters
    ----------
    source, target : array-like, (C, H, W)
        Numpy or zarr arrays; ``source`` is only read, ``target`` only written.
    windows : list of Window
        The windows of one step: a grid that covers each pixel exactly once,
        listed row by row (as :func:`.windows.grid_windows` lists them).
    """

    def __init__(self, source, target, windows: list[Window]):
        self.source = source
        self.target = target
        _, self.height, self.width = (int(v) for v in target.shape)
        self._pending = Counter(win.y for win in windows)
        self._reads: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._writes: dict[int, np.ndarray] = {}

    def read(self, win: Window) -> np.ndarray:
        """The window's content (C, size, size), reflected at canvas edges."""
        entry = self._reads.get(win.y)
        if entry is None:
            ys = fold(np.arange(win.y, win.y + win.size), self.height)
            y0, y1 = int(ys.min()), int(ys.max()) + 1
            entry = (ys - y0, np.asarray(self.source[:, y0:y1, :]))
            self._reads[win.y] = entry
        rows, block = entry
        xs = fold(np.arange(win.x, win.x + win.size), self.width)
        return block[:, rows[:, None], xs[None, :]]

    def write(self, win: Window, values: np.ndarray) -> None:
        """Put the on-canvas part of ``values`` (C, size, size) in place.

        The row goes to ``target`` once all its windows are written.
        """
        cy, cx, wy, wx = win.inside(self.height, self.width)
        buffer = self._writes.get(win.y)
        if buffer is None:
            buffer = np.zeros((values.shape[0], cy.stop - cy.start, self.width),
                              np.float32)
            self._writes[win.y] = buffer
        buffer[:, :, cx] = values[:, wy, wx]
        self._pending[win.y] -= 1
        if self._pending[win.y] == 0:
            self.target[:, cy, :] = buffer
            del self._writes[win.y]
            self._reads.pop(win.y, None)
