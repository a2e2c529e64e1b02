"""Undo of region regenerations (no Qt, no napari here).

Before a regenerated region lands for good, the widget keeps the region's
old pixels and the image's list of regeneration records. Undo writes the
pixels back into the canvas (preview, final image and pyramid) and restores
the list, so the export sidecar's ``runs`` are as before. Entries are kept
per canvas, newest last, until undone, until their image layer is removed,
or until the stack is over its size: then the oldest entries are dropped
(the image keeps its pixels; only the chance to undo that far back goes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..masks.tools import Region
    from ._live import LiveCanvas

#: at most this many regenerations can be undone per image
UNDO_DEPTH = 16
#: and their old pixels take at most this many bytes (all images together)
UNDO_BYTES = 512 * 2**20


@dataclass
class UndoEntry:
    """One regeneration, as it can be undone.

    Attributes
    ----------
    region : (y0, y1, x0, x1)
        The rectangle that was regenerated (image pixels).
    pixels : np.ndarray
        (3, h, w) uint8: the rectangle's pixels before the regeneration.
    records : list of dict or None
        The image's ``regenerated`` records before it (None: there were none).
    """

    region: Region
    pixels: np.ndarray
    records: list[dict[str, Any]] | None

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


@dataclass
class RegionUndoStack:
    """The undoable regenerations of every canvas, newest last."""

    depth: int = UNDO_DEPTH
    max_bytes: int = UNDO_BYTES
    _entries: dict[str, list[UndoEntry]] = field(default_factory=dict)
    _order: list[tuple[str, UndoEntry]] = field(default_factory=list)

    def push(self, key: str, region: Region, pixels: np.ndarray,
             records: list[dict[str, Any]] | None) -> UndoEntry:
        """Remember ``pixels`` (copied) of ``region`` of canvas ``key``."""
        y0, y1, x0, x1 = (int(v) for v in region)
        pixels = np.array(pixels, dtype=np.uint8, copy=True)
        if pixels.shape != (3, y1 - y0, x1 - x0):
            raise ValueError(f"pixels {pixels.shape} do not fit region "
                             f"{(y0, y1, x0, x1)}")
        entry = UndoEntry((y0, y1, x0, x1), pixels,
                          None if records is None else copy.deepcopy(records))
        self._entries.setdefault(key, []).append(entry)
        self._order.append((key, entry))
        self._trim()
        return entry

    def _trim(self) -> None:
        for key in list(self._entries):
            while len(self._entries[key]) > self.depth:
                self._drop(key, self._entries[key][0])
        while self.nbytes > self.max_bytes and len(self._order) > 1:
            self._drop(*self._order[0])

    def _drop(self, key: str, entry: UndoEntry) -> None:
        self._entries[key] = [e for e in self._entries[key] if e is not entry]
        self._order = [(k, e) for k, e in self._order if e is not entry]

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for _, e in self._order)

    def count(self, key: str | None) -> int:
        """How many regenerations of canvas ``key`` can be undone."""
        return len(self._entries.get(key, [])) if key else 0

    def pop(self, key: str) -> UndoEntry | None:
        """The newest entry of canvas ``key``, removed (None: nothing to undo)."""
        entries = self._entries.get(key)
        if not entries:
            return None
        entry = entries[-1]
        self._drop(key, entry)
        return entry

    def forget(self, key: str) -> None:
        """Drop every entry of canvas ``key`` (its layer is gone)."""
        for entry in list(self._entries.pop(key, [])):
            self._order = [(k, e) for k, e in self._order if e is not entry]

    def keys(self) -> list[str]:
        return [k for k, v in self._entries.items() if v]


def undo_into(canvas: LiveCanvas, settings: dict[str, Any],
              entry: UndoEntry) -> None:
    """Write ``entry``'s pixels back into ``canvas`` and restore ``settings``'
    regeneration records (in place)."""
    canvas.write(entry.region, entry.pixels, final=True)
    if entry.records is None:
        settings.pop("regenerated", None)
    else:
        settings["regenerated"] = copy.deepcopy(entry.records)
