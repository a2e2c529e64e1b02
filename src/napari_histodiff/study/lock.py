"""One live session per reader: an operating-system lock on a small file.

A :class:`~napari_histodiff.study.session.ReaderSession` holds an exclusive,
non-blocking lock on ``STUDY/.sessions/<hash>.lock`` (one file per reader
name and mode) for as long as it is open. A second session of the same
reader (another napari window, another terminal) finds the lock taken and is
refused, whatever the study allows: two windows writing under one name would
otherwise overwrite each other's answers. The operating system releases the
lock when the session closes or its process dies (even with ``kill -9``), so
a crashed session never blocks the reader. The lock files hold nothing and
are left in place (removing them would race with a session taking them).

Locks work between processes and between windows of one process; they need
a local file system (like the answers database, see :mod:`.answers`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import InputError

LOCK_DIR = ".sessions"

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class ReaderLock:
    """The lock of one reader (name key and mode) on one study folder.

    Parameters
    ----------
    study_path : Path
        The study folder.
    key : str
        The reader's :func:`~napari_histodiff.study.answers.name_key`.
    mode : str
        ``"study"`` or ``"training"``.
    reader : str
        The name as entered, for messages.

    Raises
    ------
    InputError
        If another live session of this reader holds the lock, or the lock
        file cannot be made (a read-only study folder).
    """

    def __init__(self, study_path: Path, key: str, mode: str, reader: str):
        digest = hashlib.sha256(f"{mode}\n{key}".encode()).hexdigest()[:32]
        self.path = Path(study_path) / LOCK_DIR / f"{digest}.lock"
        try:
            self.path.parent.mkdir(exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(
                f"cannot open study {study_path} for reader {reader!r}: the lock "
                f"file {self.path} cannot be made ({exc.strerror}); the study "
                "folder must be writable. Copy it to a folder you can write to."
            ) from exc
        if not _try_lock(fd):
            os.close(fd)
            what = "training" if mode == "training" else "the study"
            raise InputError(
                f"reader {reader!r} already has {what} open in {study_path} in "
                "another window or process; answers from two windows under one "
                "name would overwrite each other. Close the other window first "
                "(or take the study under another name)."
            )
        self._fd: int | None = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None
