"""Reading windows from and writing model outputs to a canvas in blocks.

A non-overlapping window grid (``random-shift``, ``tiled``) comes as rows of
windows that share their canvas rows. Reading and writing each window on its
own costs one store access per window, which for a canvas in zarr chunks on
disk means decoding and re-encoding the chunks under it for every window.
:class:`RowBands` instead cuts each row of windows into groups of neighbours
about ``group_width`` pixels wide, reads the canvas block a group needs once,
serves its windows from memory, gathers their outputs in a buffer of the same
block, and writes the buffer to the store in one go when the last window of
the group is done. Memory is one or two blocks of ``window`` rows by
``group_width`` columns (plus the chunks the store decodes for them), whatever
the canvas size.

The values are the same as window-by-window access: windows still see the
canvas reflected at its edges (:func:`.windows.fold`).
"""

from __future__ import annotations

import numpy as np

from .windows import Window, fold

DEFAULT_GROUP_WIDTH = 1024


class RowBands:
    """Blockwise window access to ``source`` (read) and ``target`` (write).

    Parameters
    ----------
    source, target : array-like, (C, H, W)
        Numpy or zarr arrays; ``source`` is only read, ``target`` only written.
    windows : list of Window
        The windows of one step: a grid that covers each pixel exactly once,
        listed row by row (as :func:`.windows.grid_windows` lists them).
    group_width : int
        Canvas columns read and written in one store access, about.
    """

    def __init__(self, source, target, windows: list[Window],
                 group_width: int = DEFAULT_GROUP_WIDTH):
        self.source = source
        self.target = target
        _, self.height, self.width = (int(v) for v in target.shape)
        self._group: dict[tuple[int, int], int] = {}
        self._members: list[list[Window]] = []
        for win in windows:
            last = self._members[-1] if self._members else None
            if last is None or last[0].y != win.y or \
                    win.x + win.size - last[0].x > max(group_width, win.size):
                self._members.append([])
            self._members[-1].append(win)
            self._group[(win.y, win.x)] = len(self._members) - 1
        self._pending = [len(m) for m in self._members]
        self._reads: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}
        self._writes: dict[int, tuple[np.ndarray, int]] = {}

    def read(self, win: Window) -> np.ndarray:
        """The window's content (C, size, size), reflected at canvas edges."""
        g = self._group[(win.y, win.x)]
        entry = self._reads.get(g)
        if entry is None:
            members = self._members[g]
            ys = fold(np.arange(win.y, win.y + win.size), self.height)
            xs = fold(np.arange(members[0].x, members[-1].x + win.size), self.width)
            y0, y1 = int(ys.min()), int(ys.max()) + 1
            x0, x1 = int(xs.min()), int(xs.max()) + 1
            entry = (ys - y0, x0, np.asarray(self.source[:, y0:y1, x0:x1]))
            self._reads[g] = entry
        rows, x0, block = entry
        cols = fold(np.arange(win.x, win.x + win.size), self.width) - x0
        return block[:, rows[:, None], cols[None, :]]

    def write(self, win: Window, values: np.ndarray) -> None:
        """Put the on-canvas part of ``values`` (C, size, size) in place.

        The group goes to ``target`` once all its windows are written.
        """
        g = self._group[(win.y, win.x)]
        cy, cx, wy, wx = win.inside(self.height, self.width)
        entry = self._writes.get(g)
        if entry is None:
            members = self._members[g]
            x0 = max(members[0].x, 0)
            x1 = min(members[-1].x + win.size, self.width)
            buffer = np.zeros((values.shape[0], cy.stop - cy.start, x1 - x0),
                              np.float32)
            entry = self._writes[g] = (buffer, x0)
        buffer, x0 = entry
        buffer[:, :, cx.start - x0 : cx.stop - x0] = values[:, wy, wx]
        self._pending[g] -= 1
        if self._pending[g] == 0:
            self.target[:, cy, x0 : x0 + buffer.shape[-1]] = buffer
            del self._writes[g]
            self._reads.pop(g, None)
