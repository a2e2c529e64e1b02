"""Models shipped inside the package, and resolving model names to folders.

``demo`` is the model trained by ``histodiff train --preset demo`` on the IHC
image that scikit-image ships. Until it is trained and shipped, ``demo`` does
not resolve and commands that need it say so.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError

MODELS_DIR = Path(__file__).parent
DEMO_NAME = "demo"


def demo_model_path() -> Path | None:
    """The shipped demo model directory, or None if this build has none."""
    path = MODELS_DIR / DEMO_NAME
    return path if (path / "histodiff.json").is_file() else None


def resolve_model_path(model: str | Path) -> Path:
    """Turn ``demo`` or a folder path into a Path (checked later)."""
    if str(model) == DEMO_NAME:
        path = demo_model_path()
        if path is None:
            raise ModelFormatError(
                "model: this build of napari-histodiff ships no trained demo model "
                "yet. Train one with `histodiff train --preset demo`, or create an "
                "untrained one with `histodiff model init DIR --classes ...`."
            )
        return path
    return Path(model)
