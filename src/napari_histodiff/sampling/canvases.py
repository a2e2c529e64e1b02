"""Canvas stores left on disk: find them, tell stale ones, remove those.

A zarr canvas (:class:`.store.ZarrStore`) records the pid and hostname of
the process that made it in ``attrs["histodiff_canvas"]``. A canvas is
*stale* when it was made on this host by a process that is no longer
running (killed, crashed): nobody will finish or remove it. Only folders
with these attributes are touched; canvases of other hosts are reported,
never removed (their process cannot be checked from here).
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from ..outputs import zarr_attrs
from .store import CANVAS_ATTR


@dataclass
class CanvasInfo:
    """A canvas store found on disk."""

    path: Path
    pid: int | None
    hostname: str | None
    created: str | None
    status: str | None
    step: int | None
    total_steps: int | None
    state: str  # "running", "stale" or "other host"

    def describe(self) -> str:
        progress = ""
        if self.step is not None:
            progress = f", step {self.step}/{self.total_steps or '?'}"
        return (f"{self.path}: {self.state} (pid {self.pid} on {self.hostname}, "
                f"status {self.status or 'new'}{progress}, created {self.created})")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def canvas_info(path: str | Path) -> CanvasInfo | None:
    """The canvas at ``path``, or None if it is not a canvas of this project."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None
    attrs = zarr_attrs(path)
    owner = attrs.get(CANVAS_ATTR)
    if not isinstance(owner, dict):
        return None
    pid = owner.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    host = owner.get("hostname")
    if host != socket.gethostname():
        state = "other host"
    elif pid is not None and pid_alive(pid) and pid != os.getpid():
        state = "running"
    elif pid == os.getpid():
        state = "running"  # this very process (e.g. the napari session)
    else:
        state = "stale"
    step = attrs.get("step")
    total = attrs.get("total_steps")
    return CanvasInfo(path, pid, host if isinstance(host, str) else None,
                      owner.get("created"), attrs.get("status"),
                      step if isinstance(step, int) else None,
                      total if isinstance(total, int) else None, state)


def find_canvases(folder: str | Path) -> list[CanvasInfo]:
    """Canvases of this project directly inside ``folder`` (sorted by name)."""
    folder = Path(folder)
    found = []
    for child in sorted(folder.iterdir()):
        info = canvas_info(child)
        if info is not None:
            found.append(info)
    return found


def clean_stale_canvases(folder: str | Path) -> list[CanvasInfo]:
    """Remove the stale canvases in ``folder``; return those removed."""
    removed = []
    for info in find_canvases(folder):
        if info.state == "stale":
            shutil.rmtree(info.path)
            removed.append(info)
    return removed
