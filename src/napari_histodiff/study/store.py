"""The study folder: manifest, blinded cases, truth key and answers.

Layout of a study folder::

    STUDY/
      study.json           manifest: format, design, settings, case ids
      cases/<id>.npy       one file per case, (k, T, T, 3) uint8
      training/cases/<id>.npy
      training/key.json    truth of the training cases (readers may see it)
      key/truth.json       truth of the study cases (readers must not);
                           absent when written elsewhere with ``key_path``
      answers.sqlite       readers' answers (see :mod:`.answers`)

Every case is stored the same way whatever its source: an uncompressed
``.npy`` array of the same shape and dtype (so every file has the same size
and the same header bytes), under a random id that says nothing of the
truth, written in id order and given the same modification time. Nothing but
the pixels differs between a real and a synthetic case.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError, OutputExistsError
from .designs import ANSWERS, DESIGNS, TILES_PER_CASE
from .files import (
    check_parent,
    is_within,
    replace_folder,
    temporary_sibling,
    write_bytes_atomic,
    writing,
)

FORMAT_NAME = "napari-histodiff-study"
KEY_FORMAT_NAME = "napari-histodiff-study-key"
TRAINING_KEY_FORMAT_NAME = "napari-histodiff-study-training-key"
FORMAT_VERSION = 1

MANIFEST_NAME = "study.json"
CASES_DIR = "cases"
TRAINING_DIR = "training"
KEY_DIR = "key"
KEY_NAME = "truth.json"
ANSWERS_NAME = "answers.sqlite"
README_NAME = "README.txt"

#: What a case id may look like (ids are written as ``secrets.token_hex(8)``;
#: anything else, e.g. ``../x``, is refused wherever a manifest is read).
CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHECKSUM_PATTERN = re.compile(r"[0-9a-f]{64}")

_README = """\
This folder is a napari-histodiff reader study.

Readers: open it with the "Reader study" widget in napari or with
`histodiff study take`. Do not open the key/ folder, if there is one.
Organisers: see `histodiff study info` and `histodiff study report`.
Keep the whole folder together when copying it (close napari first).
"""


@dataclass(frozen=True)
class CaseSpec:
    """One case to store: its pixels and what the truth key says about it.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``(k, T, T, 3)`` ``uint8``: one tile (``k`` = 1) or a left/right
        pair (``k`` = 2).
    truth : str
        ``"real"``/``"synthetic"`` or, for pairs, the synthetic side.
    tiles : tuple of dict
        Where each tile came from (source, position, label, tissue).
    """

    pixels: np.ndarray
    truth: str
    tiles: tuple[dict, ...]


@dataclass(frozen=True)
class StudySettings:
    """What the organiser chose; stored in the manifest.

    Attributes
    ----------
    design : str
        ``"single"``, ``"2afc"`` or ``"rating"``.
    tile_size : int
        Tile edge in pixels.
    allow_navigation : bool
        Readers may go back to answered cases (and forward again).
    allow_change : bool
        Readers may change an answer (needs ``allow_navigation``).
    ask_confidence : bool
        A 1-5 confidence is required with each answer (not for ratings).
    title, instructions : str
        Shown to readers.
    """

    design: str
    tile_size: int
    allow_navigation: bool = False
    allow_change: bool = False
    ask_confidence: bool = True
    title: str = "Reader study"
    instructions: str = ""


@dataclass(frozen=True)
class TruthKey:
    """The truth of the cases of one study (or of its training set).

    Attributes
    ----------
    study_uid : str
        Study the key belongs to.
    design : str
        Study design.
    truth : dict
        Case id -> truth (``"real"``/``"synthetic"``, or the synthetic side).
    tiles : dict
        Case id -> list of tile descriptions (source, position, label).
    settings : dict
        How the tiles were sampled (seed, sources, thresholds).
    """

    study_uid: str
    design: str
    truth: dict[str, str]
    tiles: dict[str, list[dict]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _npy_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(
        buffer, np.ascontiguousarray(pixels), version=(1, 0), allow_pickle=False
    )
    return buffer.getvalue()


def _write_json(path: Path, content: dict) -> None:
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def check_case_ids(table: object, where: Path, entry: str) -> None:
    """Refuse a manifest table whose case ids or checksums are malformed.

    Parameters
    ----------
    table : object
        The ``cases`` (or ``training_cases``) table read from ``where``.
    where : Path
        The manifest file, for the message.
    entry : str
        The table's name in the manifest.
    """
    if not isinstance(table, dict):
        raise InputError(f"{where}: {entry!r} is not a table of case ids.")
    for case_id, checksum in table.items():
        if not CASE_ID_PATTERN.fullmatch(str(case_id)):
            raise InputError(
                f"{where}: case id {str(case_id)[:80]!r} in {entry!r} is not a "
                "valid case id (1-64 letters, digits, '_' or '-'); the manifest "
                "is damaged or was not made by `histodiff study create`. "
                "Recreate the study or copy it again from where it was made."
            )
        if not isinstance(checksum, str) or not _CHECKSUM_PATTERN.fullmatch(checksum):
            raise InputError(
                f"{where}: case {case_id!r} in {entry!r} has no valid SHA-256 "
                "checksum; the manifest is damaged. Recreate the study or copy "
                "it again from where it was made."
            )


def _damaged(path: Path, what: str) -> InputError:
    return InputError(
        f"study folder {path} is damaged: {what}. Copy the whole folder again "
        "from where it was made, or recreate the study."
    )


class Study:
    """A study folder opened for reading (see the module docstring).

    Use :meth:`open`; it checks that the folder is a complete study of a
    supported format version. Readers need only this class and the answers
    database; the truth key is read by :meth:`read_key`, for reports.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self.settings = StudySettings(
            design=manifest["design"],
            tile_size=manifest["tile_size"],
            allow_navigation=manifest["allow_navigation"],
            allow_change=manifest["allow_change"],
            ask_confidence=manifest["ask_confidence"],
            title=manifest["title"],
            instructions=manifest["instructions"],
        )

    # -- opening ----------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Study:
        """Open and check a study folder.

        Raises
        ------
        InputError
            If the path is not a study folder, was made by a newer version,
            or is incomplete (missing or truncated case files, no answers
            database).
        """
        if not isinstance(path, (str, os.PathLike)) or str(path).strip() == "":
            raise InputError(
                f"study={path!r} is not a study folder; pass the folder made by "
                "`histodiff study create`."
            )
        path = Path(path)
        if not path.is_dir():
            raise InputError(
                f"study folder {path} does not exist or is not a folder; "
                "pass the folder made by `histodiff study create`."
            )
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise InputError(
                f"{path} is not a reader study folder (it has no {MANIFEST_NAME}); "
                "pass the folder made by `histodiff study create`."
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _damaged(path, f"{MANIFEST_NAME} cannot be read ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise InputError(
                f"{manifest_path} is not a napari-histodiff study manifest "
                f"(format is not {FORMAT_NAME!r}); pass a folder made by "
                "`histodiff study create`."
            )
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InputError(
                f"{manifest_path} has format version {version!r}; this version "
                f"of napari-histodiff ({__version__}) reads version "
                f"{FORMAT_VERSION}. Update napari-histodiff."
            )
        cls._check_manifest(path, manifest)
        study = cls(path, manifest)
        study._check_files()
        return study

    @staticmethod
    def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
        expected = {
            "study_uid": str,
            "design": str,
            "tile_size": int,
            "case_shape": list,
            "case_file_size": int,
            "cases": dict,
            "training_cases": dict,
            "allow_navigation": bool,
            "allow_change": bool,
            "ask_confidence": bool,
            "title": str,
            "instructions": str,
        }
        for name, kind in expected.items():
            if not isinstance(manifest.get(name), kind):
                raise _damaged(path, f"{MANIFEST_NAME} lacks a valid {name!r}")
        if manifest["design"] not in DESIGNS:
            raise _damaged(path, f"unknown design {manifest['design']!r}")
        size = manifest["tile_size"]
        shape = [TILES_PER_CASE[manifest["design"]], size, size, 3]
        if manifest["case_shape"] != shape:
            raise _damaged(path, f"case_shape {manifest['case_shape']} != {shape}")
        if not manifest["cases"]:
            raise _damaged(path, "it lists no cases")
        for entry in ("cases", "training_cases"):
            check_case_ids(manifest[entry], path / MANIFEST_NAME, entry)
        overlap = set(manifest["cases"]) & set(manifest["training_cases"])
        if overlap:
            raise _damaged(
                path,
                f"case id {sorted(overlap)[0]!r} is both a study and a training case",
            )

    def _check_files(self) -> None:
        size = self.manifest["case_file_size"]
        for training in (False, True):
            for case_id in self.case_ids(training):
                case_path = self.case_path(case_id, training)
                try:
                    actual = case_path.stat().st_size
                except OSError:
                    raise _damaged(
                        self.path, f"case file {case_path} is missing"
                    ) from None
                if actual != size:
                    raise _damaged(
                        self.path,
                        f"case file {case_path} has {actual} bytes, not {size}",
                    )
        if not self.answers_path.is_file():
            raise _damaged(
                self.path, f"the answers database {self.answers_path} is missing"
            )

    # -- properties -------------------------------------------------------
    @property
    def uid(self) -> str:
        """Random id tying manifest, key and answers database together."""
        return self.manifest["study_uid"]

    @property
    def design(self) -> str:
        """``"single"``, ``"2afc"`` or ``"rating"``."""
        return self.manifest["design"]

    @property
    def answers_path(self) -> Path:
        """The SQLite answers database."""
        return self.path / ANSWERS_NAME

    @property
    def default_key_path(self) -> Path:
        """Where the truth key is when it was kept inside the folder."""
        return self.path / KEY_DIR / KEY_NAME

    @property
    def training_key_path(self) -> Path:
        """The training truth key (readable by readers)."""
        return self.path / TRAINING_DIR / "key.json"

    def case_ids(self, training: bool = False) -> list[str]:
        """Case ids of the study (or training) set, sorted."""
        return sorted(self.manifest["training_cases" if training else "cases"])

    def case_path(self, case_id: str, training: bool = False) -> Path:
        """Path of a case file, checked to lie inside the study folder.

        Raises
        ------
        InputError
            If the case id is malformed or the file (symlinks resolved) lies
            outside the study folder.
        """
        manifest_path = self.path / MANIFEST_NAME
        if not CASE_ID_PATTERN.fullmatch(str(case_id)):
            raise InputError(
                f"case id {str(case_id)[:80]!r} (from {manifest_path}) is not a "
                "valid case id (1-64 letters, digits, '_' or '-')."
            )
        base = self.path / TRAINING_DIR if training else self.path
        path = base / CASES_DIR / f"{case_id}.npy"
        if not is_within(path, self.path):
            raise InputError(
                f"case {case_id!r} of {manifest_path}: its file {path} resolves "
                f"to {os.path.realpath(path)}, outside the study folder; it is "
                "not read. Copy the study folder again without links."
            )
        return path

    # -- reading ----------------------------------------------------------
    def load_case(self, case_id: str, training: bool = False) -> np.ndarray:
        """Pixels of a case, ``(k, T, T, 3)`` ``uint8``, checked against the manifest.

        Raises
        ------
        InputError
            If the id is unknown or the file is missing or damaged.
        """
        table = self.manifest["training_cases" if training else "cases"]
        if case_id not in table:
            raise InputError(f"case {case_id!r} is not in study {self.path}.")
        path = self.case_path(case_id, training)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _damaged(
                self.path, f"case file {path} cannot be read ({exc})"
            ) from exc
        if hashlib.sha256(data).hexdigest() != table[case_id]:
            raise _damaged(self.path, f"case file {path} does not match its checksum")
        pixels = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        return pixels

    def read_key(self, path: str | Path | None = None) -> TruthKey:
        """Read the truth key of the study cases (organisers only).

        Parameters
        ----------
        path : str or Path, optional
            The key file; defaults to ``key/truth.json`` inside the folder.

        Raises
        ------
        InputError
            If the key is missing, damaged, or belongs to another study.
        """
        key_path = Path(path) if path is not None else self.default_key_path
        return self._read_key_file(key_path, KEY_FORMAT_NAME, self.case_ids())

    def read_training_key(self) -> TruthKey:
        """Read the truth key of the training cases."""
        return self._read_key_file(
            self.training_key_path, TRAINING_KEY_FORMAT_NAME, self.case_ids(True)
        )

    def _read_key_file(self, path: Path, format_name: str, ids: list[str]) -> TruthKey:
        if not path.is_file():
            hint = (
                "pass the key file written with --key-out (option --key)"
                if format_name == KEY_FORMAT_NAME
                else "the study has no training set"
            )
            raise InputError(f"truth key {path} does not exist; {hint}.")
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"truth key {path} cannot be read: {exc}.") from exc
        if not isinstance(content, dict) or content.get("format") != format_name:
            raise InputError(f"{path} is not a {format_name} file.")
        if content.get("study_uid") != self.uid:
            raise InputError(
                f"truth key {path} belongs to another study (uid "
                f"{content.get('study_uid')!r}, the study {self.path} has "
                f"{self.uid!r}); pass the key written with this study."
            )
        cases = content.get("cases")
        if not isinstance(cases, dict) or sorted(cases) != ids:
            raise InputError(
                f"truth key {path} does not list the cases of {self.path}."
            )
        valid = ("real", "synthetic") if self.design != "2afc" else ANSWERS["2afc"]
        truth: dict[str, str] = {}
        tiles: dict[str, list[dict]] = {}
        for case_id, entry in cases.items():
            if not isinstance(entry, dict) or entry.get("truth") not in valid:
                raise InputError(f"truth key {path}: bad entry for case {case_id!r}.")
            truth[case_id] = entry["truth"]
            tiles[case_id] = list(entry.get("tiles", []))
        return TruthKey(
            self.uid, self.design, truth, tiles, dict(content.get("settings", {}))
        )

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, design={self.design!r})"


def _new_ids(count: int, taken: set[str]) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        candidate = secrets.token_hex(8)
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _write_cases(
    folder: Path, specs: list[CaseSpec], ids: list[str], stamp: float
) -> dict[str, str]:
    """Write cases in id order with one modification time; return checksums."""
    folder.mkdir(parents=True)
    checksums: dict[str, str] = {}
    for case_id, spec in sorted(zip(ids, specs, strict=True), key=lambda p: p[0]):
        data = _npy_bytes(spec.pixels)
        path = folder / f"{case_id}.npy"
        # no fsync per case: the folder appears only once complete, and a case
        # file cut short by a power loss is caught by its size and checksum
        write_bytes_atomic(path, data, sync=False)
        checksums[case_id] = hashlib.sha256(data).hexdigest()
    for case_id in checksums:
        os.utime(folder / f"{case_id}.npy", (stamp, stamp))
    return checksums


def _key_content(
    format_name: str,
    uid: str,
    design: str,
    ids: list[str],
    specs: list[CaseSpec],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": format_name,
        "format_version": FORMAT_VERSION,
        "study_uid": uid,
        "design": design,
        "settings": settings,
        "cases": {
            case_id: {"truth": spec.truth, "tiles": list(spec.tiles)}
            for case_id, spec in zip(ids, specs, strict=True)
        },
    }


def check_key_path(out: str | Path, key_path: str | Path | None) -> Path | None:
    """Refuse a truth key that would be written inside the study folder.

    The key must never be in the folder handed to readers: not the folder
    itself, not a file or subfolder in it, not a path whose folders are
    symbolic links that resolve into it.

    Returns
    -------
    Path or None
        The key path made absolute (``None`` when no key path is given).

    Raises
    ------
    InputError
        If ``key_path`` lies inside ``out``.
    """
    if key_path is None:
        return None
    if str(key_path).strip() == "":
        raise InputError(
            "key_path (--key-out) is empty; give a file outside the study folder."
        )
    key = Path(key_path).absolute()
    study = Path(out).absolute()
    if is_within(key, study):
        raise InputError(
            f"key_path (--key-out) {key_path} lies inside the study folder {out}; "
            "readers are given that folder, so the truth key must never be in "
            "it. Choose a file outside it (e.g. next to the folder); nothing was "
            "written."
        )
    if key.is_dir():
        raise InputError(
            f"key_path (--key-out) {key_path} is a folder; give the path of the "
            "key file to write (e.g. my-study-key.json)."
        )
    check_parent(key, "key file", "--key-out")
    return key


def _check_key_output(key: Path | None, overwrite: bool) -> None:
    """Refuse to replace a file that is not a truth key, or any without overwrite."""
    if key is None or not (key.exists() or key.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(
            f"key file (--key-out) {key} exists; choose another path or pass "
            "overwrite (--overwrite)."
        )
    try:
        content = json.loads(key.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        content = None
    if (
        key.is_symlink()
        or not isinstance(content, dict)
        or content.get("format") != KEY_FORMAT_NAME
    ):
        raise OutputExistsError(
            f"key file (--key-out) {key} exists and is not a study truth key; it "
            "is not replaced even with overwrite. Choose another path."
        )


def check_output(path: Path, overwrite: bool) -> bool:
    """Refuse to replace anything but a study folder without answers.

    Returns whether an existing study is to be replaced (nothing is deleted
    here: the old folder is replaced only once the new one is complete).
    """
    if not path.exists() and not path.is_symlink():
        check_parent(path, "study folder")
        return False
    if not overwrite:
        raise OutputExistsError(
            f"{path} exists; choose another folder or pass overwrite "
            "(--overwrite) to replace a study that has no answers yet."
        )
    if path.is_symlink() or not (path / MANIFEST_NAME).is_file():
        raise OutputExistsError(
            f"{path} exists and is not a study folder; it is not replaced even "
            "with overwrite. Choose another folder."
        )
    from .answers import AnswerDB

    try:
        with AnswerDB.open(path / ANSWERS_NAME, None) as db:
            answered = db.count_answers()
    except InputError:
        answered = 0
    if answered:
        raise OutputExistsError(
            f"{path} is a study with {answered} answer(s); it is never replaced. "
            "Move or delete it yourself if you really mean to."
        )
    return True


def write_study(
    path: str | Path,
    settings: StudySettings,
    cases: list[CaseSpec],
    training: list[CaseSpec],
    *,
    key_settings: dict[str, Any],
    key_path: str | Path | None = None,
    overwrite: bool = False,
) -> Study:
    """Write a study folder (atomically: it appears complete or not at all).

    The folder is written under a temporary name next to ``path`` and
    renamed when complete; an external key is written to a temporary sibling
    and renamed just after. A study replaced with ``overwrite`` is removed
    only once the new one is in place.

    Parameters
    ----------
    path : str or Path
        The study folder to create.
    settings : StudySettings
        Design and reader options.
    cases, training : list of CaseSpec
        Study and training cases, all of the same shape.
    key_settings : dict
        How the cases were made (seed, sources); stored in the truth key.
    key_path : str or Path, optional
        Where to write the truth key; default ``key/truth.json`` inside the
        folder. Must lie outside the folder (see :func:`check_key_path`).
    overwrite : bool
        Replace an existing study folder that has no answers yet.

    Returns
    -------
    Study
        The new study, opened.

    Raises
    ------
    InputError
        If ``key_path`` lies inside the folder, or a path cannot be written.
    OutputExistsError
        If ``path`` (or ``key_path``) exists and cannot be replaced.
    """
    from .answers import AnswerDB

    path = Path(path).absolute()
    external_key = check_key_path(path, key_path)
    replace = check_output(path, overwrite)
    _check_key_output(external_key, overwrite)
    with writing(path, "study folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = temporary_sibling(path, "creating")
        staging.mkdir()
    key_tmp: Path | None = None
    try:
        uid = uuid.uuid4().hex
        taken: set[str] = set()
        ids = _new_ids(len(cases), taken)
        training_ids = _new_ids(len(training), taken)
        stamp = float(int(time.time()))
        with writing(path, "study folder"):
            checksums = _write_cases(staging / CASES_DIR, cases, ids, stamp)
            training_checksums = _write_cases(
                staging / TRAINING_DIR / CASES_DIR, training, training_ids, stamp
            )
        first = cases[0].pixels
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "study_uid": uid,
            "created": _now(),
            "created_with": f"napari-histodiff {__version__}",
            "design": settings.design,
            "tile_size": settings.tile_size,
            "case_shape": list(first.shape),
            "case_dtype": "uint8",
            "case_file_size": len(_npy_bytes(first)),
            "cases": checksums,
            "training_cases": training_checksums,
            "allow_navigation": settings.allow_navigation,
            "allow_change": settings.allow_change,
            "ask_confidence": settings.ask_confidence,
            "title": settings.title,
            "instructions": settings.instructions,
        }
        key = _key_content(
            KEY_FORMAT_NAME, uid, settings.design, ids, cases, key_settings
        )
        with writing(path, "study folder"):
            _write_json(
                staging / TRAINING_DIR / "key.json",
                _key_content(
                    TRAINING_KEY_FORMAT_NAME,
                    uid,
                    settings.design,
                    training_ids,
                    training,
                    {"training": True},
                ),
            )
            if external_key is None:
                (staging / KEY_DIR).mkdir()
                _write_json(staging / KEY_DIR / KEY_NAME, key)
            AnswerDB.create(staging / ANSWERS_NAME, uid)
            write_bytes_atomic(staging / README_NAME, _README.encode("utf-8"))
            _write_json(staging / MANIFEST_NAME, manifest)
        if external_key is not None:
            with writing(external_key, "key file", "--key-out"):
                external_key.parent.mkdir(parents=True, exist_ok=True)
                key_tmp = temporary_sibling(external_key, "tmp")
                _write_json(key_tmp, key)
        with writing(path, "study folder"):
            replace_folder(staging, path, replace=replace)
        if key_tmp is not None:
            with writing(external_key, "key file", "--key-out"):
                os.replace(key_tmp, external_key)
            key_tmp = None
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        if key_tmp is not None:
            key_tmp.unlink(missing_ok=True)
        raise
    return Study.open(path)
