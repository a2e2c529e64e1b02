"""Shared fixtures: a tiny randomly initialised model, made once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 1.1M-parameter pixel model with 32-px windows and four classes."""
    from napari_histodiff.models.factory import init_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    init_model(path, "tumor,stroma,necrosis", patch_size=32, size="tiny", seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline

    return HistoDiffPipeline.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def small_mask() -> np.ndarray:
    """A 37 x 45 mask (not a multiple of the window) with classes 0-3."""
    mask = np.zeros((37, 45), np.uint8)
    mask[:18, :20] = 1
    mask[18:, :] = 2
    mask[5:15, 25:40] = 3
    return mask
