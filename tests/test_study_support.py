"""Helpers shared by the reader-study tests (no tests here).

Imported as ``from test_study_support import ...`` (pytest puts ``tests/`` on
``sys.path``). Images are small tissue-like pictures: a near-white background
with a coloured, noisy "tissue" region.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")
TILE = 32


def tissue_image(
    rng: np.random.Generator, height: int = 192, width: int = 256, tint=(200, 120, 170)
) -> np.ndarray:
    """An RGB uint8 image: background (245) with a tissue block on ~70% of it."""
    image = np.full((height, width, 3), 245, np.uint8)
    noise = rng.normal(0, 25, (height, width, 3))
    tissue = np.clip(np.asarray(tint, float) + noise, 0, 255).astype(np.uint8)
    y0, x0 = height // 8, width // 8
    image[y0 : height - y0, x0 : width - x0] = tissue[y0 : height - y0, x0 : width - x0]
    return image


def write_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return path


def write_zarr(path: Path, image: np.ndarray) -> Path:
    """An OME-Zarr-like output of this package: group with (c, y, x) at "0"."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    array = group.create_array(
        "0", shape=(3, *image.shape[:2]), dtype="uint8", chunks=(3, 64, 64)
    )
    array[:] = np.moveaxis(image, -1, 0)
    return path


def make_sources(
    folder: Path, n_images: int = 2, seed: int = 0, **size
) -> tuple[Path, Path]:
    """A folder of real PNGs and a folder of synthetic OME-Zarr images."""
    rng = np.random.default_rng(seed)
    real, synthetic = folder / "real", folder / "synthetic"
    real.mkdir(parents=True)
    synthetic.mkdir(parents=True)
    for i in range(n_images):
        write_png(real / f"slide_{i}.png", tissue_image(rng, **size))
        write_zarr(
            synthetic / f"generated_{i}.zarr",
            tissue_image(rng, tint=(190, 110, 180), **size),
        )
    return real, synthetic


def make_study(folder: Path, design: str = "single", n: int = 5, **options):
    """Create a study from fresh sources under ``folder``; return it."""
    from napari_histodiff.study import create_study

    real, synthetic = make_sources(folder / "sources")
    options.setdefault("tile_size", TILE)
    options.setdefault("seed", 7)
    return create_study(
        folder / "study", [real], [synthetic], design=design, n=n, **options
    )


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that imports the package from src/."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable
