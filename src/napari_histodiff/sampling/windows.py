"""Windows on a canvas: where they lie and how edge-crossing windows are filled.

A window may hang over the canvas edge. The part outside is filled by
mirroring the canvas at its edge (symmetric reflection, folded as often as
needed so that canvases smaller than the window work too). The UNet so sees
plausible content everywhere, never zeros: zero padding makes the band along
every edge speckled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import fold


@dataclass(frozen=True)
class Window:
    """A square window with top-left corner ``(y, x)`` (may be negative)."""

    y: int
    x: int
    size: int

    def indices(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Canvas rows and columns the window reads, folded into the canvas."""
        ys = fold(np.arange(self.y, self.y + self.size), height)
        xs = fold(np.arange(self.x, self.x + self.size), width)
        return ys, xs

    def inside(self, height: int, width: int) -> tuple[slice, slice, slice, slice]:
        """The part of the window on the canvas.

        Returns canvas row and column slices and the matching slices of the
        window array.
        """
        y0, x0 = max(self.y, 0), max(self.x, 0)
        y1 = min(self.y + self.size, height)
        x1 = min(self.x + self.size, width)
        return (
            slice(y0, y1),
            slice(x0, x1),
            slice(y0 - self.y, y1 - self.y),
            slice(x0 - self.x, x1 - self.x),
        )


def grid_windows(height: int, width: int, size: int, oy: int = 0, ox: int = 0,
                 stride: int | None = None) -> list[Window]:
    """Windows of a grid whose origin is shifted up-left by ``(oy, ox)``.

    With ``stride == size`` (default) the windows tile the canvas without
    overlap, so every pixel is covered exactly once; there are
    ``ceil((H + oy) / size) * ceil((W + ox) / size)`` of them. With a smaller
    stride they overlap (the last row and column are placed flush with the
    edge so that the canvas is covered).
    """
    stride = size if stride is None else stride
    if stride == size:
        ys = range(-oy, height, size)
        xs = range(-ox, width, size)
    else:
        ys = _strided_starts(height, size, stride)
        xs = _strided_starts(width, size, stride)
    return [Window(y, x, size) for y in ys for x in xs]


def _strided_starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def chunk_regions(height: int, width: int, chunk: int):
    """Non-overlapping ``(slice_y, slice_x)`` regions of at most chunk x chunk."""
    return [
        (slice(y, min(y + chunk, height)), slice(x, min(x + chunk, width)))
        for y in range(0, height, chunk)
        for x in range(0, width, chunk)
    ]


def blend_weight(size: int) -> np.ndarray:
    """(size, size) window weights that fall to zero at the window's edges.

    ``w(i) = sin^2(pi (i + 0.5) / size)`` along each axis, multiplied: about
    6e-4 at the edge pixels of a 64-pixel window, 1 at its centre. Outputs
    blended with these weights are continuous across every window border.
    """
    w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.outer(w, w).astype(np.float32)
