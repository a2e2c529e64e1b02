"""Creating a reader study from real and synthetic images."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import tiles as tiles_module
from .designs import check_design
from .images import RGBImage, open_sources
from .store import (
    CaseSpec,
    Study,
    StudySettings,
    check_key_path,
    check_output,
    write_study,
)
from .tiles import DEFAULT_MIN_TISSUE, Tile, sample_tiles

Source = str | Path | RGBImage


def _single_cases(real: list[Tile], synthetic: list[Tile]) -> list[CaseSpec]:
    cases = []
    for label, group in (("real", real), ("synthetic", synthetic)):
        for tile in group:
            description = {**tile.describe(), "label": label}
            cases.append(CaseSpec(tile.pixels[None], label, (description,)))
    return cases


def _pair_cases(
    real: list[Tile], synthetic: list[Tile], rng: np.random.Generator
) -> list[CaseSpec]:
    """Pair tiles; the synthetic side is left in half the pairs (+-1)."""
    n = len(real)
    sides = rng.permutation(["left"] * ((n + 1) // 2) + ["right"] * (n // 2))
    cases = []
    for real_tile, synthetic_tile, side in zip(real, synthetic, sides, strict=True):
        real_info = {**real_tile.describe(), "label": "real"}
        synthetic_info = {**synthetic_tile.describe(), "label": "synthetic"}
        if side == "left":
            pixels = np.stack([synthetic_tile.pixels, real_tile.pixels])
            described = (synthetic_info, real_info)
        else:
            pixels = np.stack([real_tile.pixels, synthetic_tile.pixels])
            described = (real_info, synthetic_info)
        cases.append(CaseSpec(pixels, str(side), described))
    return cases


def _whole(value: object, name: str) -> int:
    """``value`` as an int if it is a whole number (not a bool), else InputError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}={value!r} must be a whole number.")
    return int(value)


def _check_options(
    n: int, tile_size: int, n_training: int, allow_navigation: bool, allow_change: bool
) -> None:
    n, tile_size = _whole(n, "n"), _whole(tile_size, "tile_size")
    n_training = _whole(n_training, "n_training")
    if int(n) < 1:
        raise InputError(f"n={n} must be at least 1 (tiles per side, or pairs).")
    if not 16 <= int(tile_size) <= 4096:
        raise InputError(f"tile_size={tile_size} must lie between 16 and 4096 pixels.")
    if int(n_training) < 0:
        raise InputError(f"n_training={n_training} must be 0 or more.")
    if allow_change and not allow_navigation:
        raise InputError(
            "allow_change=True needs allow_navigation=True: a reader can only "
            "change an answer by going back to it."
        )


def create_study(
    out: str | Path,
    real: Sequence[Source],
    synthetic: Sequence[Source],
    *,
    design: str = "single",
    n: int = 50,
    tile_size: int = 256,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    n_training: int = 0,
    allow_navigation: bool = False,
    allow_change: bool = False,
    ask_confidence: bool | None = None,
    title: str = "Reader study",
    instructions: str = "",
    seed: int | None = None,
    key_path: str | Path | None = None,
    overwrite: bool = False,
) -> Study:
    """Sample tiles from real and synthetic images and write a study folder.

    Parameters
    ----------
    out : str or Path
        The study folder to create.
    real, synthetic : sequence of str, Path or RGBImage
        Images of each side: files, folders of files, OME-Zarr folders, or
        :class:`~napari_histodiff.study.images.RGBImage` (e.g. from layers).
    design : {"single", "2afc", "rating"}
        See :mod:`napari_histodiff.study.designs`.
    n : int
        Tiles per side: ``2 n`` cases for single and rating designs, ``n``
        pairs for ``2afc``.
    tile_size : int
        Tile edge in pixels (the same on both sides).
    min_tissue : float
        Minimum tissue fraction of a tile (see :mod:`.tiles`).
    n_training : int
        Tiles per side (or pairs) of the training set, sampled apart from the
        study tiles; 0 for none.
    allow_navigation : bool
        Readers may go back to cases they answered.
    allow_change : bool
        Readers may change answers (needs ``allow_navigation``).
    ask_confidence : bool, optional
        Require a 1-5 confidence with each answer; default true except for
        the rating design, where it is always false.
    title, instructions : str
        Shown to readers.
    seed : int, optional
        Seed of the tile sampling and pairing (recorded in the truth key).
        Case ids are always drawn from the operating system, so knowing the
        seed does not reveal the truth.
    key_path : str or Path, optional
        Write the truth key here instead of ``OUT/key/truth.json``.
    overwrite : bool
        Replace an existing study folder that has no answers yet.

    Returns
    -------
    Study
        The new study.

    Raises
    ------
    InputError
        For bad options, unreadable images, or too few tissue tiles.
    OutputExistsError
        If ``out`` (or ``key_path``) exists and cannot be replaced.
    """
    check_design(design)
    _check_options(n, tile_size, n_training, allow_navigation, allow_change)
    # refuse a bad output before the (slow) sampling; write_study checks again
    check_key_path(out, key_path)
    check_output(Path(out).absolute(), overwrite)
    if isinstance(min_tissue, bool) or not isinstance(
        min_tissue, (int, float, np.integer, np.floating)
    ):
        raise InputError(f"min_tissue={min_tissue!r} must be a number from 0 to 1.")
    if seed is None:
        seed = secrets.randbits(32)
    elif _whole(seed, "seed") < 0:
        raise InputError(f"seed={seed} must be 0 or more (--seed).")
    rng = np.random.default_rng(int(seed))
    real_images = open_sources(real, "real")
    synthetic_images = open_sources(synthetic, "synthetic")
    wanted = int(n) + int(n_training)
    sampled = {}
    for side, images in (("real", real_images), ("synthetic", synthetic_images)):
        tiles = sample_tiles(
            images, wanted, int(tile_size), min_tissue=min_tissue, rng=rng, side=side
        )
        order = rng.permutation(len(tiles))
        sampled[side] = [tiles[i] for i in order]
    n_train = int(n_training)
    study_tiles = {side: tiles[n_train:] for side, tiles in sampled.items()}
    train_tiles = {side: tiles[:n_train] for side, tiles in sampled.items()}
    if design == "2afc":
        cases = _pair_cases(study_tiles["real"], study_tiles["synthetic"], rng)
        training = _pair_cases(train_tiles["real"], train_tiles["synthetic"], rng)
    else:
        cases = _single_cases(study_tiles["real"], study_tiles["synthetic"])
        training = _single_cases(train_tiles["real"], train_tiles["synthetic"])
    if ask_confidence is None:
        ask_confidence = design != "rating"
    settings = StudySettings(
        design=design,
        tile_size=int(tile_size),
        allow_navigation=bool(allow_navigation),
        allow_change=bool(allow_change),
        ask_confidence=bool(ask_confidence) and design != "rating",
        title=title,
        instructions=instructions,
    )
    key_settings = {
        "seed": int(seed),
        "n": int(n),
        "n_training": n_train,
        "tile_size": int(tile_size),
        "min_tissue": float(min_tissue),
        "tissue_rule": {
            "min_value": tiles_module.MIN_VALUE,
            "min_saturation": tiles_module.MIN_SATURATION,
            "max_background_luma": tiles_module.MAX_BACKGROUND_LUMA,
        },
        "real_sources": [image.name for image in real_images],
        "synthetic_sources": [image.name for image in synthetic_images],
    }
    return write_study(
        out,
        settings,
        cases,
        training,
        key_settings=key_settings,
        key_path=key_path,
        overwrite=overwrite,
    )
