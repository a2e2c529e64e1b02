"""Models shipped inside the package, and resolving model names to folders.

``demo`` is the pixel-space model trained by ``histodiff train --preset demo``
on the IHC image that scikit-image ships; ``demo-latent`` the latent model of
``histodiff train --preset demo-latent`` on the same data. A name whose model
this build does not ship does not resolve, and commands that need it say so.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError

MODELS_DIR = Path(__file__).parent
DEMO_NAME = "demo"
DEMO_LATENT_NAME = "demo-latent"
DEMO_TEXT_NAME = "demo-text"
#: Names of the models a build may ship, each made by the preset of that name.
SHIPPED_NAMES = (DEMO_NAME, DEMO_LATENT_NAME, DEMO_TEXT_NAME)


def demo_model_path(name: str = DEMO_NAME) -> Path | None:
    """The shipped model directory ``name``, or None if this build has none."""
    path = MODELS_DIR / name
    return path if (path / "histodiff.json").is_file() else None


def resolve_model_path(model: str | Path) -> Path:
    """Turn a shipped name (``demo``, ``demo-latent``) or a folder path into a
    Path (checked later)."""
    if str(model) in SHIPPED_NAMES:
        path = demo_model_path(str(model))
        if path is None:
            raise ModelFormatError(
                f"model: this build of napari-histodiff ships no trained {model!r} "
                f"model yet. Train one with `histodiff train --preset {model} "
                "--install`, or create an untrained one with `histodiff model "
                "init DIR --classes ...`."
            )
        return path
    return Path(model)
