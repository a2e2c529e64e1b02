"""How much memory (or disk) a canvas needs, checked before anything is allocated.

A 100000 x 100000 mask would otherwise die with a ``MemoryError`` part-way.
The estimate counts the canvas-sized arrays the engine keeps (latents, model
output, the solver's saved outputs, the blend weights, previews and the
image); small per-window buffers are left out. It is an upper bound for the
disk store too: float canvases of noise hardly compress.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ResourceError

#: Canvas-sized float arrays of the solver's state besides latents and model
#: output (DPM-Solver++ and UniPC keep earlier outputs; two is their order).
SOLVER_ARRAYS = 2
GIB = 1024 ** 3


def canvas_bytes(canvas_shape: tuple[int, int, int], image_shape: tuple[int, int],
                 latent: bool = False, preview_channels: int = 3) -> int:
    """Bytes of the canvas-sized arrays of one synthesis."""
    c, h, w = (int(v) for v in canvas_shape)
    H, W = (int(v) for v in image_shape)
    floats = c * h * w * 4 * (2 + SOLVER_ARRAYS + (1 if latent else 0))
    weight = h * w * 4
    pixels = 2 * preview_channels * H * W  # preview + image, uint8
    return floats + weight + pixels


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (None if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(need: int, share: float = 0.5) -> bool:
    """Whether ``need`` bytes fit in ``share`` of the available memory."""
    avail = available_memory()
    return avail is None or need <= share * avail


def require_memory(need: int, argname: str, what: str, hint: str) -> None:
    """Refuse a run whose arrays cannot fit in the available memory."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise ResourceError(
            f"{argname}: {what} needs about {need / GIB:.1f} GiB of memory, but "
            f"{avail / GIB:.1f} GiB are available; {hint}")


def require_disk(need: int, folder: str | Path, argname: str) -> None:
    """Refuse a disk canvas that cannot fit in the free space of ``folder``."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise ResourceError(
            f"{argname}: the canvas needs up to {need / GIB:.1f} GiB on disk, but "
            f"{folder} has {free / GIB:.1f} GiB free; choose a folder on a larger "
            "disk (store_path / --canvas-dir) or a smaller mask")
