"""The tissue filter: which pixels of an RGB histology image are tissue.

A pixel counts as tissue unless it is near-black (slide edge, padding) or
bright and nearly colourless (empty glass). With ``value = max(R, G, B)``,
``saturation = (max - min) / max`` and ``luma = 0.299 R + 0.587 G + 0.114 B``
a pixel is tissue when ``value >= MIN_VALUE`` and
(``saturation >= MIN_SATURATION`` or ``luma <= MAX_BACKGROUND_LUMA``).
A tile is usable when its tissue fraction is at least ``min_tissue``.

Used by the reader-study tile sampler (:mod:`napari_histodiff.study.tiles`),
the realism metrics and the tile datasets (:mod:`napari_histodiff.io.tiles`).
"""

from __future__ import annotations

import numpy as np

#: Pixels darker than this maximum channel value are background.
MIN_VALUE = 20
#: Pixels at least this saturated are tissue.
MIN_SATURATION = 0.08
#: Unsaturated pixels brighter than this luma are background (glass).
MAX_BACKGROUND_LUMA = 200.0
#: Default minimum fraction of tissue pixels in a usable tile.
DEFAULT_MIN_TISSUE = 0.5


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the tissue pixels of an ``(..., 3)`` ``uint8`` image."""
    rgb = np.asarray(rgb)
    channels = rgb[..., :3].astype(np.float32)
    value = channels.max(axis=-1)
    low = channels.min(axis=-1)
    saturation = np.where(value > 0, (value - low) / np.maximum(value, 1.0), 0.0)
    luma = channels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (value >= MIN_VALUE) & (
        (saturation >= MIN_SATURATION) | (luma <= MAX_BACKGROUND_LUMA)
    )


def tissue_fraction(rgb: np.ndarray) -> float:
    """Fraction of the pixels of an RGB image that are tissue."""
    return float(tissue_mask(rgb).mean())
