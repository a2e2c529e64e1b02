"""Output paths: checked before the work, written whole or not at all.

Every output (a file, an OME-Zarr folder, a model directory) is written to a
temporary sibling ``.NAME.histodiff-tmp-XXXXXXXX`` and renamed into place
when complete (:func:`atomic_output`), so a failure (full disk, a crash)
never leaves a half-written ``NAME`` that blocks the next run. An existing
output is replaced only when asked (``overwrite``), and a folder only when
this project wrote it (:func:`project_output`): a model directory (its
``histodiff.json`` has format ``napari-histodiff-model``), an OME-Zarr of
``histodiff generate`` (``histodiff`` settings in its attributes) or a canvas
store (``histodiff_canvas`` in its attributes) or a tile dataset (its
``dataset.json`` has format ``napari-histodiff-tiles``). The old one is moved
aside, the new one renamed into place, and only then is the old one removed.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import (
    HistodiffError,
    OutputExistsError,
    OutputNotOursError,
    OutputWriteError,
)

MODEL_CARD_NAME = "histodiff.json"
MODEL_CARD_FORMAT = "napari-histodiff-model"
MODEL_COMPONENTS = ("unet", "scheduler", "vae", "mask_unet", "classifier")
TMP_MARK = ".histodiff-tmp-"
OLD_MARK = ".histodiff-old-"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def zarr_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of the zarr group at ``path`` (v3 or v2); {} if none."""
    path = Path(path)
    meta = _read_json(path / "zarr.json")
    if isinstance(meta, dict) and meta.get("node_type") == "group":
        attrs = meta.get("attributes")
        return attrs if isinstance(attrs, dict) else {}
    if (path / ".zgroup").is_file():
        attrs = _read_json(path / ".zattrs")
        return attrs if isinstance(attrs, dict) else {}
    return {}


def project_output(path: str | Path) -> str | None:
    """What this project wrote at ``path`` (a folder), or None if not ours.

    ``"model"``, ``"model component"`` (``unet/`` ... of a model directory),
    ``"ome-zarr"`` (``histodiff generate`` / export), ``"canvas"`` or
    ``"tiles"`` (a tile dataset of ``histodiff export --tiles``).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None
    card = _read_json(path / MODEL_CARD_NAME)
    if isinstance(card, dict) and card.get("format") == MODEL_CARD_FORMAT:
        return "model"
    attrs = zarr_attrs(path)
    meta = attrs.get("histodiff")
    if isinstance(meta, dict) and "settings" in meta and "classes" in meta:
        return "ome-zarr"
    if isinstance(attrs.get("histodiff_canvas"), dict):
        return "canvas"
    dataset = _read_json(path / "dataset.json")
    if isinstance(dataset, dict) and dataset.get("format") == "napari-histodiff-tiles":
        return "tiles"
    if path.name in MODEL_COMPONENTS and project_output(path.parent) == "model":
        return "model component"
    return None


def _check_existing(path: Path, overwrite: bool, argname: str, folder: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(
            f"{argname}: {path} exists; choose another path or pass --overwrite")
    is_dir = path.is_dir() and not path.is_symlink()
    if not folder and is_dir:
        raise OutputNotOursError(
            f"{argname}: {path} is a folder; --overwrite replaces a file, not a "
            "folder. Give the path of a file.")
    if folder and not is_dir:
        raise OutputNotOursError(
            f"{argname}: {path} is a file, not a folder napari-histodiff wrote; "
            "--overwrite does not replace it. Choose another path or remove it "
            "yourself.")
    if folder and any(path.iterdir()) and project_output(path) is None:
        raise OutputNotOursError(
            f"{argname}: {path} exists and napari-histodiff did not write it (no "
            "model card histodiff.json, no histodiff OME-Zarr attributes); "
            "--overwrite replaces only this project's outputs. Choose another "
            "path or remove the folder yourself.")


def check_writable(folder: Path, argname: str) -> None:
    """Raise :class:`OutputWriteError` unless files can be created in ``folder``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".histodiff-probe-", dir=folder)
    except OSError as exc:
        raise OutputWriteError(
            f"{argname}: cannot write in {folder} ({exc.strerror or exc}); choose "
            "a folder you can write to") from exc
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | Path, overwrite: bool, argname: str, *,
                 folder: bool = False, parents: bool = False) -> Path:
    """Check before any work that ``path`` can be written; return it as a Path.

    Parameters
    ----------
    path : path
        The output (a file, or a folder when ``folder``).
    overwrite : bool
        Replace an existing file, or an existing folder this project wrote.
    argname : str
        The argument named in error messages.
    folder : bool
        The output is a folder (OME-Zarr, model directory).
    parents : bool
        Missing parent folders will be made; otherwise they are an error.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false, or it cannot be replaced.
    OutputWriteError
        The parent folder is missing (and ``parents`` is false) or read-only.
    """
    path = Path(path)
    _check_existing(path, overwrite, argname, folder)
    parent = path.absolute().parent
    if not parent.is_dir():
        existing = next((p for p in parent.parents if p.exists()), None)
        if not parents or existing is None or not existing.is_dir():
            raise OutputWriteError(
                f"{argname}: the folder {path.parent} does not exist; create it "
                f"first or choose another path for {path.name}")
        parent = existing
    check_writable(parent, argname)
    return path


def temporary_sibling(path: Path, folder: bool) -> Path:
    """``.NAME.histodiff-tmp-XXXXXXXX`` beside ``path`` (files keep their suffix,
    which writers read to choose the format)."""
    suffix = "" if folder else "".join(path.suffixes)
    return path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(4)}{suffix}")


def write_error(exc: OSError, path: Path, argname: str) -> OutputWriteError:
    """A message for an OSError met while writing ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space or choose another disk, then run again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a folder you can write to"
    else:
        hint = "check the folder and run again"
    return OutputWriteError(
        f"{argname}: writing {path} failed ({reason}); {hint}. {path} was left "
        "as it was and the partial output was removed.")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - best effort
            pass


def _commit(tmp: Path, path: Path, overwrite: bool, argname: str,
            folder: bool) -> None:
    _check_existing(path, overwrite, argname, folder)  # again: time has passed
    if folder and path.is_dir() and not path.is_symlink():
        swap_folder(tmp, path)
    else:
        os.replace(tmp, path)


def swap_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` in place of the existing ``target``.

    ``target`` (which the caller has checked is its own output) is renamed
    aside first and removed only once ``new`` is in place; if that rename
    fails, or is interrupted, the old folder is put back.
    """
    old = target.with_name(f".{target.name}{OLD_MARK}{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, argname: str = "out",
                  *, folder: bool = False, parents: bool = False) -> Iterator[Path]:
    """Write ``path`` whole or not at all: yield a temporary sibling to write.

    The output is checked first (:func:`check_output`). When the block ends
    the temporary is renamed to ``path`` (a folder this project wrote is moved
    aside, replaced, then removed). When the block fails, the temporary is
    removed and ``path`` is left as it was; an :class:`OSError` (full disk,
    read-only folder) becomes an :class:`OutputWriteError` naming ``path``.

    >>> with atomic_output("mask.png", overwrite=False) as tmp:  # doctest: +SKIP
    ...     image.save(tmp)
    """
    path = Path(path)
    check_output(path, overwrite, argname, folder=folder, parents=parents)
    tmp = temporary_sibling(path, folder)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            tmp.mkdir()
        yield tmp
        _commit(tmp, path, overwrite, argname, folder)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, HistodiffError):
            raise write_error(exc, path, argname) from exc
        raise
