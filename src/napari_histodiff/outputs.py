"""Output paths: refusing to replace what exists unless asked."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import OutputExistsError


def prepare_output(path: Path, overwrite: bool, argname: str) -> None:
    """Refuse an existing output unless ``overwrite``; then remove it."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(
                f"{argname}: {path} exists; choose another path or pass --overwrite"
            )
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
