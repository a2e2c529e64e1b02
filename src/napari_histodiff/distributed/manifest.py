"""The job manifest of ``histodiff generate-many``: one CSV row per synthesis.

A manifest is a CSV file with a header row. Columns (in any order):

``mask`` (required)
    The label mask (PNG/TIFF of integer ids, or ``.npy``), as a path relative
    to the manifest's folder. It must stay inside that folder: absolute paths
    and paths with a ``..`` part are refused.
``out`` (required)
    Name of the OME-Zarr folder the job writes under ``--out DIR``
    (``NAME`` or ``NAME.zarr``; ``.zarr`` is added when missing). A relative
    path without ``..``; two rows may not name the same output.
``seed`` (required)
    Integer >= 0.
``guidance`` (required)
    Classifier-free guidance scale >= 0.
``steps`` (required)
    Denoising steps, integer >= 1.
``class`` (optional)
    A class of the model's noise-aware classifier to steer toward; empty for
    none.
``classifier_scale`` (optional)
    Strength of the class guidance; empty for the default. Only with
    ``class``.

Rows are named by their line in the file (the header is row 1, the first
job row 2), as a spreadsheet numbers them. Every problem found while reading
is an :class:`~napari_histodiff.errors.InputError` that names the row, the
column and the value; nothing runs until the whole manifest is valid. A mask
file that is missing is not found here but when its job runs, so that one
missing file does not stop the other jobs.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..errors import InputError

REQUIRED_COLUMNS = ("mask", "out", "seed", "guidance", "steps")
OPTIONAL_COLUMNS = ("class", "classifier_scale")
OUTPUT_SUFFIX = ".zarr"


@dataclass(frozen=True)
class Job:
    """One row of a manifest: what to synthesise and where to write it.

    Attributes
    ----------
    row : int
        Line of the row in the manifest (the header is row 1).
    mask : Path
        Absolute path of the mask file (inside the manifest's folder).
    out : str
        Output name relative to the output folder (ends in ``.zarr``).
    seed, steps : int
    guidance : float
    class_name : str or None
    classifier_scale : float or None
    """

    row: int
    mask: Path
    out: str
    seed: int
    guidance: float
    steps: int
    class_name: str | None = None
    classifier_scale: float | None = None

    def describe(self) -> str:
        """``row N (OUT)`` for messages."""
        return f"row {self.row} ({self.out})"


def _inside(text: str, column: str, row: int, manifest: Path) -> PurePath:
    """``text`` as a relative path that cannot leave its folder."""
    if not text:
        raise InputError(f"{manifest.name}: row {row}, column {column}: empty; "
                         "give a path relative to the manifest's folder")
    path = PurePath(text.replace("\\", "/"))
    if path.is_absolute() or text.startswith(("/", "\\", "~")) or \
            (len(text) > 1 and text[1] == ":"):
        raise InputError(
            f"{manifest.name}: row {row}, column {column}: {text!r} is an absolute "
            "path; give a path relative to the manifest's folder (no path may "
            "leave that folder)")
    if ".." in path.parts:
        raise InputError(
            f"{manifest.name}: row {row}, column {column}: {text!r} has a '..' "
            "part; a path may not leave the manifest's folder (or --out for the "
            "column out)")
    return path


def _number(text: str, column: str, row: int, manifest: Path, kind: type,
            minimum: float) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise InputError(f"{manifest.name}: row {row}, column {column}: expected "
                         f"{what}, got {text!r}") from None
    if not (value >= minimum) or (kind is float and not math.isfinite(value)):
        raise InputError(f"{manifest.name}: row {row}, column {column}: must be "
                         f"{'a finite number' if kind is float else 'an integer'}"
                         f" >= {minimum:g}, got {text!r}")
    return value


def read_manifest(path: str | Path) -> list[Job]:
    """Read and check a manifest; return its jobs in file order.

    Parameters
    ----------
    path : path
        The CSV file (see the module docstring for its columns).

    Raises
    ------
    InputError
        The file is missing or unreadable, a column is missing or unknown, a
        cell is invalid, a path leaves its folder, or two rows write one
        output; the message names the row, the column and the value.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise InputError(f"MANIFEST: {manifest} does not exist or is not a file")
    folder = manifest.resolve().parent
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"MANIFEST: cannot read {manifest} as UTF-8 text "
                         f"({exc})") from exc
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise InputError(f"MANIFEST: {manifest} is empty; its first row names the "
                         f"columns ({', '.join(REQUIRED_COLUMNS)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
        raise InputError(
            f"{manifest.name}: row 1 (header): {'; '.join(parts)}. Columns are "
            f"{', '.join(REQUIRED_COLUMNS)} and optionally "
            f"{', '.join(OPTIONAL_COLUMNS)}")
    reader.fieldnames = header
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for record in reader:
        row = reader.line_num
        if None in record:
            raise InputError(f"{manifest.name}: row {row}: more cells than the "
                             f"{len(header)} columns of the header")
        cells = {k: (v or "").strip() for k, v in record.items()}
        if not any(cells.values()):
            continue  # an empty line
        mask = folder / _inside(cells["mask"], "mask", row, manifest)
        out = str(_inside(cells["out"], "out", row, manifest))
        if not out.endswith(OUTPUT_SUFFIX):
            out += OUTPUT_SUFFIX
        if out in seen:
            raise InputError(f"{manifest.name}: row {row}, column out: {out!r} is "
                             f"also the output of row {seen[out]}; give each row "
                             "its own output")
        seen[out] = row
        class_name = cells.get("class") or None
        scale_text = cells.get("classifier_scale") or ""
        scale = None
        if scale_text:
            if class_name is None:
                raise InputError(f"{manifest.name}: row {row}, column "
                                 f"classifier_scale: {scale_text!r} given without "
                                 "a class; fill the column class too")
            scale = float(_number(scale_text, "classifier_scale", row, manifest,
                                  float, 0))
        jobs.append(Job(
            row=row, mask=mask, out=out,
            seed=int(_number(cells["seed"], "seed", row, manifest, int, 0)),
            guidance=float(_number(cells["guidance"], "guidance", row, manifest,
                                   float, 0)),
            steps=int(_number(cells["steps"], "steps", row, manifest, int, 1)),
            class_name=class_name, classifier_scale=scale))
    if not jobs:
        raise InputError(f"{manifest.name}: no job rows below the header")
    return jobs
