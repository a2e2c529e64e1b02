"""Image sets for the metrics: files, folders, OME-Zarr outputs or arrays,
cut into square tissue tiles.

Images are opened with the reader studies' reader
(:mod:`napari_histodiff.study.images`: PNG, TIFF and JPEG files holding 8-bit
RGB(A), folders of them, and the OME-Zarr outputs of ``histodiff generate``,
read region by region) and cut on a grid of non-overlapping ``tile_size``
squares starting at the top-left corner; a tile is kept when its tissue
fraction (:func:`napari_histodiff.io.tissue.tissue_fraction`) is at least
``min_tissue``. Images of different sizes are all tiled; an image smaller
than one tile, or that is not 8-bit RGB, is refused with its name.

Each tile keeps the name of its image and its position, so that sets can
be split by image or by place (:func:`spatial_split`), e.g. training and
held-out parts of one slide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.tissue import DEFAULT_MIN_TISSUE, tissue_fraction
from ..study.images import RGBImage, open_sources

#: Default tile edge in pixels.
DEFAULT_TILE_SIZE = 64

#: What a source may be: a path (file, folder, OME-Zarr), an opened image, an
#: array (H, W, 3|4) uint8, or a (name, array) pair.
Source = Any


@dataclass
class TileSet:
    """Tiles of one image set.

    Attributes
    ----------
    name : str
        The set's role (``real``, ``synthetic``, ``train``, ``heldout``).
    tiles : np.ndarray
        ``(N, tile_size, tile_size, 3)`` ``uint8``.
    sources : list of str
        The image each tile comes from.
    positions : np.ndarray
        ``(N, 2)`` top-left ``(y, x)`` of each tile in its image.
    images : list of str
        Every image of the set, tiled or not.
    offered : int
        Grid positions looked at (before the tissue filter).
    """

    name: str
    tiles: np.ndarray
    sources: list[str]
    positions: np.ndarray
    images: list[str] = field(default_factory=list)
    offered: int = 0

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def tile_size(self) -> int:
        """Edge of the tiles in pixels."""
        return int(self.tiles.shape[1])

    def subset(self, index: np.ndarray | Sequence[int], name: str | None = None
               ) -> TileSet:
        """The tiles at ``index`` (a new set)."""
        index = np.asarray(index, dtype=np.int64)
        return TileSet(name or self.name, self.tiles[index],
                       [self.sources[i] for i in index], self.positions[index],
                       list(self.images), self.offered)

    def describe(self) -> dict[str, Any]:
        """Counts for the report."""
        return {"tiles": len(self), "images": len(self.images),
                "grid_positions": self.offered}


def _as_images(sources: Sequence[Source], argument: str) -> list[RGBImage]:
    if isinstance(sources, str | Path | np.ndarray | RGBImage):
        sources = [sources]
    images: list[RGBImage] = []
    paths: list[str | Path] = []
    for i, src in enumerate(sources):
        if isinstance(src, tuple) and len(src) == 2 and isinstance(src[0], str):
            images.append(RGBImage(np.asarray(src[1]), src[0]))
        elif isinstance(src, np.ndarray):
            images.append(RGBImage(src, f"{argument}[{i}]"))
        elif isinstance(src, RGBImage):
            images.append(src)
        elif isinstance(src, str | Path):
            paths.append(src)
        else:
            raise InputError(f"{argument}[{i}]: expected a path, an (H, W, 3) uint8 "
                             f"array or a (name, array) pair, got "
                             f"{type(src).__name__}")
    if paths:
        images.extend(open_sources(paths, argument))
    if not images:
        raise InputError(f"{argument}: no images given; pass files or folders.")
    return images


def grid_tiles(image: RGBImage, size: int, min_tissue: float
               ) -> tuple[list[np.ndarray], list[tuple[int, int]], int]:
    """Tissue tiles of one image on the grid from its top-left corner.

    Returns the tiles, their ``(y, x)`` and the number of grid positions.
    """
    height, width = image.shape
    tiles, positions, offered = [], [], 0
    for y in range(0, height - size + 1, size):
        # one band of rows at a time: a large OME-Zarr is never read whole
        band = image.read(y, 0, size, width - width % size)
        for x in range(0, width - size + 1, size):
            offered += 1
            tile = band[:, x:x + size]
            if tissue_fraction(tile) >= min_tissue:
                tiles.append(np.ascontiguousarray(tile))
                positions.append((y, x))
    return tiles, positions, offered


def load_tiles(sources: Sequence[Source], name: str, *,
               tile_size: int = DEFAULT_TILE_SIZE,
               min_tissue: float = DEFAULT_MIN_TISSUE,
               max_tiles: int | None = None, seed: int = 0,
               argument: str | None = None) -> TileSet:
    """Open and tile an image set.

    Parameters
    ----------
    sources : sequence
        Paths (files, folders, ``.zarr`` outputs), :class:`RGBImage`, arrays
        ``(H, W, 3|4)`` ``uint8`` or ``(name, array)`` pairs.
    name : str
        The set's role, for the report.
    tile_size : int
        Tile edge in pixels (>= 16).
    min_tissue : float
        Minimum tissue fraction of a kept tile, in [0, 1].
    max_tiles : int, optional
        Keep at most this many tiles, drawn at random with ``seed``.
    seed : int
        Seed of that draw.
    argument : str, optional
        The argument named in errors (default ``--NAME``).

    Raises
    ------
    InputError
        An unreadable or non-RGB image, an image smaller than one tile (both
        naming the image), or a set without any tissue tile.
    """
    argument = argument or f"--{name}"
    if isinstance(tile_size, bool) or not isinstance(tile_size, int | np.integer) \
            or tile_size < 16:
        raise InputError(f"--tile-size: expected an integer >= 16, got {tile_size!r}")
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"--min-tissue: must lie between 0 and 1, got {min_tissue}")
    images = _as_images(sources, argument)
    tiles: list[np.ndarray] = []
    names: list[str] = []
    positions: list[tuple[int, int]] = []
    offered = 0
    for image in images:
        if min(image.shape) < tile_size:
            raise InputError(
                f"{argument}: image {image.name} is {image.height}x{image.width} px, "
                f"smaller than one tile of --tile-size {tile_size}; lower "
                "--tile-size or leave the image out")
        t, p, n = grid_tiles(image, int(tile_size), float(min_tissue))
        tiles.extend(t)
        positions.extend(p)
        names.extend([image.name] * len(t))
        offered += n
    if not tiles:
        raise InputError(
            f"{argument}: none of the {offered} tiles of {tile_size} px in "
            f"{len(images)} image(s) has at least {min_tissue:.0%} tissue; lower "
            "--min-tissue or --tile-size, or check the images")
    array = np.stack(tiles)
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    out = TileSet(name, array, names, pos, [im.name for im in images], offered)
    if max_tiles is not None and len(out) > max_tiles:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(out), int(max_tiles), replace=False))
        out = out.subset(keep)
    return out


def spatial_split(tiles: TileSet, fraction: float = 0.5, axis: int = 1,
                  names: tuple[str, str] = ("train", "heldout")
                  ) -> tuple[TileSet, TileSet]:
    """Split a set into two spatially disjoint parts, image by image.

    Within each image the tiles left of (``axis=1``) or above (``axis=0``)
    the line at ``fraction`` of the tiled extent go into the first part, the
    rest into the second; no tile of one part overlaps one of the other.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction: must lie strictly between 0 and 1, got "
                         f"{fraction}")
    first = np.zeros(len(tiles), bool)
    sources = np.asarray(tiles.sources)
    for src in np.unique(sources):
        inside = sources == src
        coord = tiles.positions[inside, axis]
        lo, hi = coord.min(), coord.max() + tiles.tile_size
        first[inside] = coord + tiles.tile_size <= lo + fraction * (hi - lo)
    a, b = np.flatnonzero(first), np.flatnonzero(~first)
    if not len(a) or not len(b):
        raise InputError(f"fraction: {fraction} leaves one part of the split empty")
    return tiles.subset(a, names[0]), tiles.subset(b, names[1])
