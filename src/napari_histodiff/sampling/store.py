"""Canvas stores: the named arrays of one synthesis, in memory or on disk.

The engine reads and writes every array by region, so the same code runs on
numpy arrays (small canvases) and on zarr arrays in chunks on disk (large
canvases, where peak memory is then set by the window batch and the step
chunk, not by the canvas). Both give the same pixels for the same seed.

Arrays a synthesis keeps (C = canvas channels, H x W = canvas size):
``latents`` (C, H, W) float32, ``model_output`` (C, H, W), solver history
under ``state/``, ``preview`` and ``image`` (3, h, w) uint8 at pixel
resolution, ``mask`` (h, w) at pixel resolution. ``attrs`` holds progress
(``status``, ``step``), settings and anything JSON-serialisable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# Canvases with more pixels than this go to disk unless told otherwise.
DISK_THRESHOLD_PIXELS = 4096 * 4096
# attrs key of a zarr canvas: who made it (see canvas_owner)
CANVAS_ATTR = "histodiff_canvas"
# name prefix of the canvas folders this project makes
CANVAS_PREFIX = ".histodiff-canvas-"


def canvas_owner() -> dict[str, Any]:
    """What a canvas records about the process that made it."""
    import datetime as _dt
    import os
    import socket

    return {"pid": os.getpid(), "hostname": socket.gethostname(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds")}


class CanvasStore:
    """Interface of a canvas store (see :class:`MemoryStore`, :class:`ZarrStore`)."""

    kind = "abstract"

    def create(self, name: str, shape: tuple[int, ...], dtype, fill=0):
        raise NotImplementedError

    def __getitem__(self, name: str):
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    @property
    def attrs(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_attrs(self, **values: Any) -> None:
        raise NotImplementedError


class MemoryStore(CanvasStore):
    """Arrays held as numpy arrays."""

    kind = "memory"

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._attrs: dict[str, Any] = {}

    def create(self, name, shape, dtype, fill=0):
        self._arrays[name] = np.full(shape, fill, dtype=dtype)
        return self._arrays[name]

    def __getitem__(self, name):
        return self._arrays[name]

    def __contains__(self, name):
        return name in self._arrays

    def delete(self, name):
        self._arrays.pop(name, None)

    @property
    def attrs(self):
        return dict(self._attrs)

    def set_attrs(self, **values):
        json.dumps(values)  # the same values must be storable on disk
        self._attrs.update(values)


class ZarrStore(CanvasStore):
    """Arrays held in a zarr group on disk, in square chunks.

    A new store records who made it in ``attrs["histodiff_canvas"]`` (pid,
    hostname, start time), so that a canvas left behind by a killed process
    can be recognised and removed (:mod:`.canvases`, ``histodiff canvases``).

    Parameters
    ----------
    path : path
        Folder of the zarr group (created if missing).
    chunk : int
        Chunk side in canvas pixels.
    """

    kind = "zarr"

    def __init__(self, path: str | Path, chunk: int = 256) -> None:
        import zarr

        self.path = Path(path)
        self.chunk = int(chunk)
        self._group = zarr.open_group(str(self.path), mode="a")
        if CANVAS_ATTR not in self._group.attrs and not len(self._group):
            self._group.attrs[CANVAS_ATTR] = canvas_owner()

    def create(self, name, shape, dtype, fill=0):
        chunks = tuple(shape[:-2]) + tuple(min(self.chunk, s) for s in shape[-2:])
        # Noisy float canvases barely compress (about 10 %) and are rewritten
        # every step: store them raw, which saves a third of the store time.
        compressors = None if np.dtype(dtype).kind == "f" else "auto"
        return self._group.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks, fill_value=fill,
            overwrite=True, compressors=compressors,
        )

    def __getitem__(self, name):
        return self._group[name]

    def __contains__(self, name):
        return name in self._group

    def delete(self, name):
        if name in self._group:
            del self._group[name]

    @property
    def attrs(self):
        return dict(self._group.attrs)

    def set_attrs(self, **values):
        self._group.attrs.update(values)


def open_store(kind: str, shape: tuple[int, int], path: str | Path | None = None,
               chunk: int = 256, overwrite: bool = False) -> CanvasStore:
    """A store for a canvas of ``shape`` (pixel H, W).

    ``kind`` is ``memory``, ``zarr`` or ``auto`` (zarr on disk above
    :data:`DISK_THRESHOLD_PIXELS`; without ``path`` in a new temporary
    folder). ``path`` must not exist, or be an empty folder; an existing
    canvas of this project is reused (its arrays and settings replaced) only
    with ``overwrite``, and anything else there is refused.
    """
    from ..errors import InputError, OutputExistsError

    if kind not in ("auto", "memory", "zarr"):
        raise InputError(f"store: {kind!r} is not one of auto, memory, zarr")
    if kind == "auto":
        kind = "zarr" if shape[0] * shape[1] > DISK_THRESHOLD_PIXELS else "memory"
        if kind == "zarr" and path is None:
            import tempfile

            path = tempfile.mkdtemp(prefix=CANVAS_PREFIX)
    if kind == "memory":
        return MemoryStore()
    if path is None:
        raise InputError("store: a zarr canvas store needs a folder path "
                         "(store_path)")
    path = Path(path)
    if path.exists() or path.is_symlink():
        from ..outputs import project_output

        empty = path.is_dir() and not path.is_symlink() and not any(path.iterdir())
        if not empty:
            if not overwrite:
                raise OutputExistsError(
                    f"store_path: {path} exists and is not empty; give a new or "
                    "empty folder for the canvas (or ask to overwrite a canvas "
                    "store)")
            if project_output(path) != "canvas":
                raise OutputExistsError(
                    f"store_path: {path} is not a canvas store of napari-histodiff "
                    "(no 'histodiff_canvas' attributes); it is not overwritten. "
                    "Give a new or empty folder")
    else:
        from ..outputs import check_output

        check_output(path, False, "store_path", folder=True, parents=True)
    try:
        return ZarrStore(path, chunk=chunk)
    except OSError as exc:
        from ..outputs import write_error

        raise write_error(exc, path, "store_path") from exc
