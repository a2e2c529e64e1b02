"""Helpers shared by the subcommands: argument types and progress bars."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devices import DEVICES
from ..errors import InputError
from ..outputs import check_output


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def size_hw(text: str) -> tuple[int, int]:
    """``1024x768`` (height x width) or ``512`` (square)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH like 1024x1024, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH with positive sides, got {text!r}")
    return values[0], values[1]


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="compute device (default: auto = cuda, mps, then cpu)")
    parser.add_argument("--fp16", action="store_true",
                        help="half precision on a GPU")


def check_new_output(path: Path, overwrite: bool, argname: str,
                     folder: bool = False) -> None:
    """Refuse, before any work is done, an output that cannot be written."""
    check_output(path, overwrite, argname, folder=folder)


def check_png_output(path: Path, overwrite: bool, argname: str) -> None:
    """A PNG output (``--preview``): suffix, folder and replacement checked."""
    if path.suffix.lower() != ".png":
        raise InputError(f"{argname}: {path} does not end in .png; a preview is a "
                         "PNG file, name it NAME.png")
    check_output(path, overwrite, argname)


def check_mask_output(path: Path, overwrite: bool, argname: str = "out") -> None:
    """A mask output: a known suffix, folder and replacement checked."""
    from ..io.masks import check_mask_path

    check_mask_path(path, argname)
    check_output(path, overwrite, argname)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def progress(total: int, desc: str, quiet: bool = False, unit: str = "step"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, leave=True,
                dynamic_ncols=True)
