"""Live views of a synthesis canvas for napari (no Qt here).

The engine writes its current clean-image estimate into ``preview`` (3, H, W)
after every step, and the final pixels into ``image`` and ``preview`` as
regions finish. :class:`LiveCanvas` exposes ``preview`` as dask arrays
(H, W, 3) over the zarr store: napari reads only what it shows, on every
refresh. Large canvases get a pyramid (``level1``, ``level2``... half size
each) that the worker thread keeps up to date region by region, so the
layer is multiscale and a refresh reads only the visible tiles of one level.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..masks.tools import Region
from ..sampling.store import ZarrStore

MULTISCALE_MIN_SIDE = 2048
LEVEL_MIN_SIDE = 512
CANVAS_CHUNK = 256

_CANVASES: dict[str, LiveCanvas] = {}
_TEMP_DIRS: list[str] = []


def new_canvas_folder() -> Path:
    """A temporary folder for a canvas store, removed when Python exits."""
    folder = tempfile.mkdtemp(prefix="histodiff-canvas-")
    _TEMP_DIRS.append(folder)
    return Path(folder)


@atexit.register
def _cleanup() -> None:  # pragma: no cover - runs at exit
    for folder in _TEMP_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def level_shapes(shape: tuple[int, int], min_side: int | None = None
                 ) -> list[tuple[int, int]]:
    """Pyramid level sizes (level 0 first); one level for canvases whose long
    side is at most ``min_side`` (default :data:`MULTISCALE_MIN_SIDE`)."""
    min_side = MULTISCALE_MIN_SIDE if min_side is None else min_side
    H, W = shape
    shapes = [(H, W)]
    if max(H, W) <= min_side:
        return shapes
    while max(shapes[-1]) > LEVEL_MIN_SIDE:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


class LiveCanvas:
    """The preview of a canvas store as napari layer data, with a pyramid.

    Parameters
    ----------
    store : ZarrStore
        A canvas store whose ``preview`` (3, H, W) uint8 exists or will exist.
    shape : (int, int)
        Image size in pixels.
    multiscale : bool, optional
        Force a pyramid (True) or a single level (False); by default large
        canvases get one.
    """

    def __init__(self, store: ZarrStore, shape: tuple[int, int],
                 multiscale: bool | None = None) -> None:
        self.store = store
        self.shape = (int(shape[0]), int(shape[1]))
        if multiscale is None:
            self.shapes = level_shapes(self.shape)
        else:
            self.shapes = level_shapes(self.shape, 0 if multiscale else 1 << 62)
        if multiscale and len(self.shapes) == 1:
            self.shapes.append(((self.shape[0] + 1) // 2, (self.shape[1] + 1) // 2))
        self._lock = threading.Lock()
        self.version = 0
        _CANVASES[str(store.path)] = self

    @property
    def multiscale(self) -> bool:
        return len(self.shapes) > 1

    @property
    def key(self) -> str:
        return str(self.store.path)

    def create_levels(self) -> None:
        """Create the pyramid arrays (call once ``preview`` exists)."""
        for i, (h, w) in enumerate(self.shapes[1:], start=1):
            self.store.create(f"level{i}", (3, h, w), np.uint8)

    def create_arrays(self) -> None:
        """Create ``preview`` and the pyramid before the engine starts.

        The engine creates ``preview`` again with the same shape, dtype and
        chunks, so dask arrays made now stay valid; they read zeros until
        the first step lands.
        """
        self.store.create("preview", (3, *self.shape), np.uint8)
        self.create_levels()

    def arrays(self) -> list:
        """The zarr arrays of all levels, full resolution first."""
        names = ["preview"] + [f"level{i}" for i in range(1, len(self.shapes))]
        return [self.store[n] for n in names]

    def layer_data(self):
        """(H, W, 3) dask array, or a list of them (multiscale)."""
        import dask.array as da

        levels = [da.moveaxis(da.from_zarr(a), 0, -1) for a in self.arrays()]
        return levels if self.multiscale else levels[0]

    def update(self, region: Region) -> None:
        """Recompute the pyramid under ``region`` (worker thread)."""
        if not self.multiscale:
            self.version += 1
            return
        with self._lock:
            arrays = self.arrays()
            y0, y1, x0, x1 = region
            for i in range(1, len(arrays)):
                # the box at level i-1, aligned to even pixels
                y0, x0 = y0 - y0 % 2, x0 - x0 % 2
                y1 = min(y1 + y1 % 2, arrays[i - 1].shape[1])
                x1 = min(x1 + x1 % 2, arrays[i - 1].shape[2])
                src = np.asarray(arrays[i - 1][:, y0:y1, x0:x1], dtype=np.float32)
                src = _pad_even(src)
                half = src.reshape(3, src.shape[1] // 2, 2, src.shape[2] // 2, 2)
                small = (half.mean(axis=(2, 4)) + 0.5).astype(np.uint8)
                y0, y1, x0, x1 = y0 // 2, (y1 + 1) // 2, x0 // 2, (x1 + 1) // 2
                arrays[i][:, y0:y1, x0:x1] = small[:, : y1 - y0, : x1 - x0]
            self.version += 1

    def write(self, region: Region, pixels: np.ndarray, final: bool = True) -> None:
        """Write (3, h, w) ``pixels`` into ``region`` of preview (and image)."""
        y0, y1, x0, x1 = region
        self.store["preview"][:, y0:y1, x0:x1] = pixels
        if final and "image" in self.store:
            self.store["image"][:, y0:y1, x0:x1] = pixels
        self.update(region)

    def read(self, region: Region | None = None) -> np.ndarray:
        """(3, h, w) pixels of ``preview`` in ``region`` (all by default)."""
        y0, y1, x0, x1 = region or (0, self.shape[0], 0, self.shape[1])
        return np.asarray(self.store["preview"][:, y0:y1, x0:x1])

    @classmethod
    def from_image(cls, image, folder: Path | None = None,
                   multiscale: bool | None = None) -> LiveCanvas:
        """A canvas holding an existing (H, W, 3) image (copied region by region)."""
        H, W = int(image.shape[0]), int(image.shape[1])
        store = ZarrStore(folder or new_canvas_folder(), chunk=CANVAS_CHUNK)
        store.create("preview", (3, H, W), np.uint8)
        store.create("image", (3, H, W), np.uint8)
        canvas = cls(store, (H, W), multiscale)
        canvas.create_levels()
        step = 2048
        for y in range(0, H, step):
            for x in range(0, W, step):
                tile = np.asarray(image[y : y + step, x : x + step])
                pix = np.moveaxis(tile.astype(np.uint8), -1, 0)
                region = (y, y + pix.shape[1], x, x + pix.shape[2])
                store["preview"][:, region[0]:region[1], region[2]:region[3]] = pix
                store["image"][:, region[0]:region[1], region[2]:region[3]] = pix
                canvas.update(region)
        return canvas


def canvas_of(layer) -> LiveCanvas | None:
    """The live canvas behind an image layer made by the widgets, if any."""
    key = getattr(layer, "metadata", {}).get("histodiff_canvas")
    return _CANVASES.get(key) if key else None


def _pad_even(a: np.ndarray) -> np.ndarray:
    pad = [(0, 0), (0, a.shape[1] % 2), (0, a.shape[2] % 2)]
    return np.pad(a, pad, mode="edge") if pad[1][1] or pad[2][1] else a
