"""Sampling square tissue tiles from RGB images, skipping background.

The tissue filter (:mod:`napari_histodiff.io.tissue`): a pixel counts as
tissue unless it is near-black (slide edge, padding) or bright and nearly
colourless (empty glass). With ``value = max(R, G, B)``,
``saturation = (max - min) / max`` and ``luma = 0.299 R + 0.587 G + 0.114 B``
a pixel is tissue when ``value >= MIN_VALUE`` and
(``saturation >= MIN_SATURATION`` or ``luma <= MAX_BACKGROUND_LUMA``).
A tile is usable when its tissue fraction is at least ``min_tissue``.

Tiles lie on a grid of non-overlapping positions (shifted at random within
the margin the grid leaves), so no two sampled tiles share a pixel. Images
are visited in turn, each in its own random order, so that every image
contributes about the same number of tiles and a large image does not
dominate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

# The tissue filter lives in io.tissue (tile datasets use it too); its names
# stay importable from here.
from ..io.tissue import (  # noqa: F401
    DEFAULT_MIN_TISSUE,
    MAX_BACKGROUND_LUMA,
    MIN_SATURATION,
    MIN_VALUE,
    tissue_fraction,
    tissue_mask,
)
from .images import RGBImage


@dataclass(frozen=True)
class Tile:
    """A tile sampled from an image.

    Attributes
    ----------
    source : str
        Name of the image (path or layer), for the truth key only.
    y, x : int
        Top-left corner in the image, in pixels.
    tissue : float
        Tissue fraction of the tile.
    pixels : numpy.ndarray
        ``(size, size, 3)`` ``uint8``.
    """

    source: str
    y: int
    x: int
    tissue: float
    pixels: np.ndarray

    def describe(self) -> dict:
        """JSON-friendly description (without the pixels)."""
        return {
            "source": self.source,
            "y": self.y,
            "x": self.x,
            "tissue": round(self.tissue, 4),
        }


def _usable_tiles(
    image: RGBImage,
    size: int,
    min_tissue: float,
    rng: np.random.Generator,
    counter: list[int],
) -> Iterator[Tile]:
    """Yield the usable tiles of one image in random grid order."""
    height, width = image.shape
    if height < size or width < size:
        return
    # a random offset within the slack the grid leaves, so no position is lost
    offset_y = int(rng.integers(0, (height - size) % size + 1))
    offset_x = int(rng.integers(0, (width - size) % size + 1))
    ys = np.arange(offset_y, height - size + 1, size)
    xs = np.arange(offset_x, width - size + 1, size)
    grid = [(int(y), int(x)) for y in ys for x in xs]
    for index in rng.permutation(len(grid)):
        y, x = grid[index]
        counter[0] += 1
        pixels = image.read(y, x, size, size)
        fraction = tissue_fraction(pixels)
        if fraction >= min_tissue:
            yield Tile(image.name, y, x, fraction, pixels)


def sample_tiles(
    images: Sequence[RGBImage],
    n: int,
    size: int,
    *,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    rng: np.random.Generator,
    side: str = "images",
) -> list[Tile]:
    """Sample ``n`` non-overlapping tissue tiles of ``size`` pixels.

    Parameters
    ----------
    images : sequence of RGBImage
        Images to sample from.
    n : int
        Number of tiles wanted.
    size : int
        Tile edge in pixels.
    min_tissue : float
        Minimum tissue fraction of a usable tile, in [0, 1].
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller).
    side : str
        Name of this set of images (``"real"``, ``"synthetic"``) for messages.

    Returns
    -------
    list of Tile
        In sampling order (images taken in turn).

    Raises
    ------
    InputError
        If fewer than ``n`` usable tiles exist.
    """
    if not 0.0 <= min_tissue <= 1.0:
        raise InputError(f"min_tissue={min_tissue} must lie between 0 and 1.")
    counter = [0]
    streams = [
        _usable_tiles(images[i], size, min_tissue, rng, counter)
        for i in rng.permutation(len(images))
    ]
    tiles: list[Tile] = []
    while streams and len(tiles) < n:
        for stream in list(streams):
            tile = next(stream, None)
            if tile is None:
                streams.remove(stream)
                continue
            tiles.append(tile)
            if len(tiles) == n:
                break
    if len(tiles) < n:
        too_small = sum(1 for im in images if min(im.shape) < size)
        note = f" ({too_small} image(s) are smaller than the tile)" if too_small else ""
        raise InputError(
            f"{side}: only {len(tiles)} of the {counter[0]} tiles of {size} px "
            f"in {len(images)} image(s){note} have at least {min_tissue:.0%} "
            f"tissue, but {n} are needed. Lower the number of cases, the tile "
            "size or the minimum tissue fraction, or add images."
        )
    return tiles
