"""Writing study outputs safely: temporary siblings renamed when complete.

Every file or folder a study writes (study folders, truth keys, reports and
their CSV tables, the terminal reader's ``case.png``) is first written under
a hidden temporary name next to its destination and renamed into place only
once complete, so an interrupted run leaves either the old state or the
complete new one. Operating-system errors (a read-only folder, a file where a
folder was expected) become :class:`~napari_histodiff.errors.InputError`
messages that name the path.

These helpers are local to :mod:`napari_histodiff.study` on purpose.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from ..outputs import swap_folder


def temporary_sibling(path: Path, purpose: str) -> Path:
    """A fresh hidden name next to ``path`` (``.NAME.PURPOSE-RANDOM``)."""
    return path.with_name(f".{path.name}.{purpose}-{secrets.token_hex(4)}")


@contextmanager
def writing(path: Path, what: str, option: str | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an InputError."""
    try:
        yield
    except OSError as exc:
        named = f"{option} {path}" if option else str(path)
        reason = exc.strerror or exc.__class__.__name__
        raise InputError(
            f"cannot write the {what} {named} ({reason}); choose a place you can "
            "write to (an existing folder, writable, with free space)."
        ) from exc


def write_bytes_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to a temporary sibling of ``path``, then rename it."""
    tmp = temporary_sibling(path, "tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_folder(staging: Path, target: Path, *, replace: bool) -> None:
    """Rename a complete ``staging`` folder to ``target``.

    With ``replace`` an existing ``target`` (one the caller has checked is its
    own output) is first renamed aside, and removed only once the new folder
    is in place; if the second rename fails the old folder is put back.
    """
    if not (replace and target.exists()):
        os.replace(staging, target)  # an empty target folder is replaced too
        return
    swap_folder(staging, target)


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (or is it), symlinks resolved."""
    resolved = Path(os.path.realpath(path))
    base = Path(os.path.realpath(folder))
    return resolved == base or base in resolved.parents


def check_parent(path: Path, what: str, option: str | None = None) -> None:
    """Refuse ``path`` if its nearest existing ancestor is not a folder.

    Raises
    ------
    InputError
        If a file stands where a folder of ``path`` would have to be made.
    """
    ancestor = Path(path).absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        named = f"{option} {path}" if option else str(path)
        raise InputError(
            f"cannot write the {what} {named}: {ancestor} is a file, not a "
            "folder. Choose a path in a folder."
        )
