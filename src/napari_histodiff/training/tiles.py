"""Tile-labelled data: tiles that each carry one class.

Two sources:

* :func:`load_image_folder`: the class-per-subfolder layout of ImageFolder
  and NCT-CRC-HE-100K, ``DIR/tumour/*.png``, ``DIR/stroma/*.png`` ... (class
  names are the subfolder names, in sorted order; files at the top level,
  and folders whose name starts with ``.``, are ignored);
* :func:`tiles_from_masks`: tiles cut from images with label masks on a
  grid, each tile's class taken from its mask: the dominant class other
  than ``unknown`` (id 0), or a *rule*.

Rule syntax (:func:`parse_rule`): comma-separated clauses ``NAME>=F`` or
``NAME>F`` with ``F`` a fraction in [0, 1], e.g. ``dab>=0.3`` or
``dab>=0.3,nuclei>=0.2``. The clauses are checked in order; the first one
whose class covers at least (more than) ``F`` of the tile's pixels gives
the tile its class. A tile that meets no clause takes its dominant class
among the classes *not* named in the rule (so ``dab>=0.3`` never labels a
tile ``dab`` below 30 % DAB). Fractions are of all the tile's pixels.

Tiles whose labelled (non-``unknown``) pixels cover less than
``min_labelled`` of them are skipped. :func:`count_listing` gives the
counts per class that the trainers print before training.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .data import IMAGE_SUFFIXES, read_rgb

_CLAUSE = re.compile(r"^\s*([^<>=,\s]+)\s*(>=|>)\s*([0-9.eE+-]+)\s*$")


@dataclass
class LabelledTiles:
    """RGB tiles with one class each.

    Attributes
    ----------
    images : list of np.ndarray
        (H, W, 3) uint8 tiles (sizes may differ between tiles).
    labels : np.ndarray
        (N,) int64 index into ``class_names``.
    class_names : list of str
    sources : list of str
        Where each tile came from (file, or ``image[y:y+s, x:x+s]``).
    skipped : int
        Tiles left out (too little labelled area).
    """

    images: list[np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    sources: list[str] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        """Tiles per class, in class order."""
        n = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n[i]) for i, name in enumerate(self.class_names)}

    def min_side(self) -> int:
        return min(min(im.shape[:2]) for im in self.images)

    def stack(self, size: int | None = None) -> np.ndarray:
        """The tiles as one (N, size, size, 3) array, centre-cropped to
        ``size`` (default: the smallest side)."""
        size = self.min_side() if size is None else size
        if size > self.min_side():
            raise InputError(f"size: {size} is larger than the smallest tile "
                             f"({self.min_side()} px)")
        return np.stack([center_crop(im, size) for im in self.images])


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` part of an (H, W, ...) array."""
    h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return image[y:y + size, x:x + size]


def count_listing(tiles: LabelledTiles, title: str = "tiles") -> str:
    """A few lines listing the tiles per class (printed before training)."""
    counts = tiles.counts()
    width = max(len(n) for n in counts)
    lines = [f"{title}: {len(tiles)} in {len(counts)} classes"
             + (f" ({tiles.skipped} skipped: too little labelled area)"
                if tiles.skipped else "")]
    lines += [f"  {name:<{width}}  {n}" for name, n in counts.items()]
    return "\n".join(lines)


# -- class-per-subfolder ----------------------------------------------------------
def load_image_folder(root: str | Path, argname: str = "--images",
                      min_side: int = 1) -> LabelledTiles:
    """Tiles of a class-per-subfolder folder (``DIR/CLASS/*.png``).

    Parameters
    ----------
    root : path
        The folder; each subfolder is a class.
    argname : str
        The argument named in errors.
    min_side : int
        Smallest tile side accepted (the classifier's window in pixels).

    Raises
    ------
    InputError
        ``root`` is not a folder, has fewer than two class folders, a class
        folder holds no images, a file cannot be read, or a tile is smaller
        than ``min_side``; each names the path.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{argname}: {root} is not a folder; give a folder with "
                         "one subfolder of tiles per class (DIR/tumour/*.png)")
    folders = sorted(p for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise InputError(
            f"{argname}: {root} has {len(folders)} class subfolder(s); give one "
            "subfolder of tiles per class, at least two (DIR/tumour/*.png, "
            "DIR/stroma/*.png)")
    images, labels, sources = [], [], []
    for k, folder in enumerate(folders):
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(
                f"{argname}: the class folder {folder} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}); add tiles or remove the folder")
        for path in files:
            image = read_rgb(path, argname)
            if min(image.shape[:2]) < min_side:
                raise InputError(
                    f"{argname}: {path} is {image.shape[0]}x{image.shape[1]}, "
                    f"smaller than the classifier's {min_side}-pixel window; "
                    "use larger tiles")
            images.append(image)
            labels.append(k)
            sources.append(str(path))
    return LabelledTiles(images, np.asarray(labels, np.int64),
                         [p.name for p in folders], sources)


# -- tiles cut from images + masks ------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """One clause of a rule: class ``index`` covers ``>=`` (or ``>``) ``fraction``."""

    name: str
    index: int
    op: str
    fraction: float

    def holds(self, fractions: np.ndarray) -> bool:
        value = fractions[self.index]
        return value >= self.fraction if self.op == ">=" else value > self.fraction


def parse_rule(rule: str, class_names: Sequence[str],
               argname: str = "--rule") -> list[Clause]:
    """Parse ``NAME>=F[,NAME>F...]`` (see the module docstring).

    ``class_names`` are the names of the mask ids 0, 1, ... (``unknown`` at 0).
    """
    if not isinstance(rule, str) or not rule.strip():
        raise InputError(f"{argname}: expected clauses like 'dab>=0.3', got "
                         f"{rule!r}")
    clauses = []
    for part in rule.split(","):
        m = _CLAUSE.match(part)
        if not m:
            raise InputError(
                f"{argname}: {part.strip()!r} in {rule!r} is not a clause "
                "NAME>=FRACTION or NAME>FRACTION (e.g. dab>=0.3)")
        name, op, number = m.groups()
        if name not in class_names or name == "unknown":
            known = ", ".join(n for n in class_names if n != "unknown")
            raise InputError(f"{argname}: {name!r} in {rule!r} is not a class of "
                             f"the masks; they have {known}")
        try:
            fraction = float(number)
        except ValueError:
            fraction = float("nan")
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise InputError(f"{argname}: {number!r} in {part.strip()!r} is not a "
                             "fraction in [0, 1]")
        if any(c.name == name for c in clauses):
            raise InputError(f"{argname}: {name!r} appears twice in {rule!r}")
        clauses.append(Clause(name, list(class_names).index(name), op, fraction))
    return clauses


def tile_class(fractions: np.ndarray, clauses: Sequence[Clause] = ()) -> int:
    """The mask id a tile gets from its class ``fractions`` (ids 0, 1, ...):
    the first clause it meets, else its dominant class among those no clause
    names (``unknown`` never); -1 when none is left."""
    for clause in clauses:
        if clause.holds(fractions):
            return clause.index
    named = {c.index for c in clauses} | {0}
    rest = [(fractions[i], -i) for i in range(len(fractions))
            if i not in named and fractions[i] > 0]
    return -max(rest)[1] if rest else -1


def tiles_from_masks(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     tile_size: int, class_names: Sequence[str],
                     rule: str | None = None, stride: int | None = None,
                     min_labelled: float = 0.5,
                     sources: Sequence[str] | None = None,
                     argname: str = "--tile-size") -> LabelledTiles:
    """Tiles on a grid of images with label masks, classed by their masks.

    Parameters
    ----------
    images : sequence of np.ndarray
        (H, W, 3) uint8 images.
    masks : sequence of np.ndarray
        (H, W) integer label ids of the same sizes (0 = unknown).
    tile_size : int
        Tile side in pixels.
    class_names : sequence of str
        Names of the label ids 0, 1, ... (``unknown`` first).
    rule : str, optional
        ``dab>=0.3`` etc. (:func:`parse_rule`); default the dominant class.
    stride : int, optional
        Grid step (default ``tile_size``: no overlap).
    min_labelled : float
        Tiles whose non-``unknown`` pixels cover less than this are skipped.
    sources : sequence of str, optional
        Names of the images, for the tiles' sources and errors.

    Returns
    -------
    LabelledTiles
        The classes that got at least one tile, in id order; the others are
        left out (see :func:`count_listing`).
    """
    names = list(class_names)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or \
            tile_size < 1:
        raise InputError(f"{argname}: expected an integer >= 1, got {tile_size!r}")
    stride = tile_size if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InputError(f"stride: expected an integer >= 1, got {stride!r}")
    if len(images) != len(masks):
        raise InputError(f"masks: {len(masks)} masks for {len(images)} images")
    if not images:
        raise InputError("images: no images to cut tiles from")
    sources = [f"image {i}" for i in range(len(images))] if sources is None \
        else list(sources)
    clauses = parse_rule(rule, names) if rule is not None else []
    found: list[tuple[int, int, int, int]] = []
    skipped = 0
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        if image.shape[:2] != mask.shape:
            raise InputError(f"masks: the mask of {sources[i]} is {mask.shape}, "
                             f"the image {image.shape[:2]}")
        h, w = mask.shape
        if min(h, w) < tile_size:
            raise InputError(
                f"{argname}: {tile_size} is larger than {sources[i]} ({h}x{w}); "
                "choose a smaller --tile-size")
        if int(mask.max()) >= len(names) or int(mask.min()) < 0:
            raise InputError(f"masks: {sources[i]} has label ids outside 0..."
                             f"{len(names) - 1} (classes {', '.join(names)})")
        for y in range(0, h - tile_size + 1, stride):
            for x in range(0, w - tile_size + 1, stride):
                tile = mask[y:y + tile_size, x:x + tile_size]
                fractions = np.bincount(tile.ravel(), minlength=len(names)) \
                    / tile.size
                if 1.0 - fractions[0] < min_labelled:
                    skipped += 1
                    continue
                k = tile_class(fractions, clauses)
                if k < 0:
                    skipped += 1
                    continue
                found.append((i, y, x, k))
    used = sorted({k for *_, k in found})
    if len(used) < 2:
        raise InputError(
            f"masks: the tiles of {tile_size} px fall into "
            f"{len(used)} class(es) ({', '.join(names[k] for k in used) or 'none'}); "
            "a classifier needs at least two: use other images, another "
            "--tile-size or --rule")
    remap = {k: j for j, k in enumerate(used)}
    tiles = [images[i][y:y + tile_size, x:x + tile_size] for i, y, x, _ in found]
    labels = np.asarray([remap[k] for *_, k in found], np.int64)
    src = [f"{sources[i]}[{y}:{y + tile_size}, {x}:{x + tile_size}]"
           for i, y, x, _ in found]
    return LabelledTiles(tiles, labels, [names[k] for k in used], src, skipped)


def load_mask_folder_tiles(images: str | Path, masks: str | Path,
                           class_names: Sequence[str], tile_size: int,
                           rule: str | None = None, stride: int | None = None
                           ) -> LabelledTiles:
    """:func:`tiles_from_masks` on a folder of images and one of masks with the
    same file names (as ``histodiff train image --images --masks``)."""
    from ..models.classes import TissueClasses
    from .data import load_folder_pairs

    classes = TissueClasses.from_names(",".join(n for n in class_names
                                                if n != "unknown"))
    samples = load_folder_pairs(images, masks, classes, 1)
    return tiles_from_masks([s.image for s in samples], [s.mask for s in samples],
                            tile_size, classes.names, rule, stride,
                            sources=[s.source for s in samples])


def align_classes(tiles: LabelledTiles, class_names: Sequence[str],
                  argname: str = "--heldout") -> LabelledTiles:
    """``tiles`` relabelled to the class order ``class_names`` (a class of
    ``tiles`` that is not among them is refused by name)."""
    names = list(class_names)
    extra = [n for n in tiles.class_names if n not in names]
    if extra:
        raise InputError(f"{argname}: class(es) {', '.join(extra)} are not among "
                         f"the training classes {', '.join(names)}")
    remap = np.asarray([names.index(n) for n in tiles.class_names], np.int64)
    return LabelledTiles(tiles.images, remap[tiles.labels], names,
                         list(tiles.sources), tiles.skipped)


def subset(tiles: LabelledTiles, index: Sequence[int] | np.ndarray) -> LabelledTiles:
    """The tiles at ``index`` (same classes)."""
    index = [int(i) for i in index]
    return LabelledTiles([tiles.images[i] for i in index], tiles.labels[index],
                         list(tiles.class_names),
                         [tiles.sources[i] for i in index] if tiles.sources else [])
