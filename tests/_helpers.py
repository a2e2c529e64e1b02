"""Helpers for tests (import as ``from _helpers import run_cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``histodiff`` in a subprocess, as a user would."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "napari_histodiff.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )
