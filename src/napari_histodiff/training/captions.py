"""Captions for text-conditioned training: mask composition and reports.

A caption is made of up to two parts, joined by ``"; "``:

composition (automatic, in the style of PathLDM)
    Each class of the tile's mask with the level of its area share, largest
    share first (ties by class name), joined by ``"; "``, e.g.
    ``"high dab; low nuclei; some background"``. Shares are of the whole
    tile: pixels of skipped classes (``unknown``) count in the denominator
    but get no clause. The levels are :data:`DEFAULT_LEVELS`:

    ========================  =======
    share of the tile         level
    ========================  =======
    >= 0.30                   high
    >= 0.10 (and < 0.30)      some
    > 0 (and < 0.10)          low
    ========================  =======

    A level applies at or above its threshold; a threshold of 0 means "any
    pixel at all". A class with no pixels (or below the lowest threshold) is
    left out: captions name what is there and do not list every absent
    class as "no X", which keeps them short and lets a prompt say only what
    matters to the user.
report (from a CSV)
    Free text per image (a pathology report or its summary), read by
    :func:`read_report_csv`.

``max_tokens`` shortens a caption extractively (:func:`truncate_caption`):
the composition first (cut at its clauses if it alone is too long), then the
report's sentences in order, stopping at the first sentence that does not
fit. The number of tokens left out is returned, never hidden.

Pure Python and numpy; the token counter is a parameter (the encoder's
tokenizer, or :func:`word_count_tokens`, which splits like the builtin
tokenizer's pre-tokenizer).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..errors import InputError

#: ``(threshold, word)`` from the highest threshold down: a class whose share
#: of the tile is >= the threshold (> 0 for a threshold of 0) gets the word.
DEFAULT_LEVELS: tuple[tuple[float, str], ...] = (
    (0.30, "high"), (0.10, "some"), (0.0, "low"))
#: Class names that never get a clause (the null class of the masks).
DEFAULT_SKIP = ("unknown",)
MODES = ("composition", "report", "both")
CLAUSE_SEP = "; "
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD_TOKENS = re.compile(r"[^\W_]+|[^\w\s]|_")
_SHOWN = 5


# ------------------------------------------------------------------ composition

def check_levels(levels: Sequence[tuple[float, str]], argname: str = "levels"
                 ) -> tuple[tuple[float, str], ...]:
    """Return ``levels`` as a tuple after checking it.

    Raises
    ------
    InputError
        Empty, a threshold outside [0, 1], thresholds not strictly
        descending, or a word that is empty or repeated.
    """
    try:
        pairs = [(t, w) for t, w in levels]
    except (TypeError, ValueError):
        raise InputError(f"{argname}: {levels!r} must be (threshold, word) pairs, "
                         "e.g. ((0.3, 'high'), (0.1, 'some'), (0.0, 'low'))"
                         ) from None
    if not pairs:
        raise InputError(f"{argname}: no levels given; give (threshold, word) "
                         "pairs, e.g. ((0.3, 'high'), (0.0, 'low'))")
    out = []
    for threshold, word in pairs:
        if isinstance(threshold, bool) or not isinstance(
                threshold, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(threshold) <= 1.0:
            raise InputError(f"{argname}: threshold {threshold!r} (of {word!r}) "
                             "must be a number from 0 to 1")
        if not isinstance(word, str) or not word.strip() or ";" in word:
            raise InputError(f"{argname}: level word {word!r} must be non-empty "
                             "text without ';'")
        out.append((float(threshold), word.strip()))
    thresholds = [t for t, _ in out]
    if any(a <= b for a, b in zip(thresholds, thresholds[1:], strict=False)):
        raise InputError(f"{argname}: thresholds {thresholds} must go strictly "
                         "down, from the highest level to the lowest")
    words = [w for _, w in out]
    if len(set(words)) != len(words):
        raise InputError(f"{argname}: level words {words} repeat; give each level "
                         "its own word")
    return tuple(out)


def level_of(fraction: float, levels: Sequence[tuple[float, str]]) -> str | None:
    """The level word of a share, or None when it is under every level."""
    if fraction <= 0:
        return None
    for threshold, word in levels:
        if fraction >= threshold:
            return word
    return None


def composition_caption(fractions: Mapping[str, float],
                        levels: Sequence[tuple[float, str]] = DEFAULT_LEVELS,
                        skip: Sequence[str] = DEFAULT_SKIP) -> str:
    """The composition caption of a tile from its class shares.

    Parameters
    ----------
    fractions : mapping of str to float
        Share of the tile's pixels per class name (from
        :func:`mask_fractions`), each in [0, 1].
    levels : sequence of (threshold, word)
        See :data:`DEFAULT_LEVELS` and the module docstring.
    skip : sequence of str
        Class names that get no clause.

    Returns
    -------
    str
        e.g. ``"high dab; low nuclei"``; ``""`` when no class reaches a level
        (which is the null prompt).

    Examples
    --------
    >>> composition_caption({"dab": 0.42, "nuclei": 0.08, "background": 0.3,
    ...                      "tissue": 0.2})
    'high dab; high background; some tissue; low nuclei'
    """
    levels = check_levels(levels)
    items = []
    for name, value in fractions.items():
        if isinstance(value, bool) or not isinstance(
                value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(value)) or not 0 <= value <= 1:
            raise InputError(f"fractions: {name!r} has share {value!r}; shares "
                             "must be numbers from 0 to 1")
        if name in skip:
            continue
        word = level_of(float(value), levels)
        if word is not None:
            items.append((-float(value), str(name), word))
    return CLAUSE_SEP.join(f"{word} {name}" for _, name, word in sorted(items))


def mask_fractions(mask: np.ndarray, class_names: Sequence[str]
                   ) -> dict[str, float]:
    """Share of the mask's pixels per class (ids index ``class_names``).

    Every class name is a key, classes without pixels with 0.0. The shares
    are of all pixels, so they sum to 1.

    Raises
    ------
    InputError
        Not an integer mask, an empty mask, or ids outside the classes.
    """
    mask = np.asarray(mask)
    names = list(class_names)
    if not names:
        raise InputError("class_names: no classes given")
    if mask.dtype.kind not in "iub":
        raise InputError(f"mask: dtype {mask.dtype} is not an integer label mask; "
                         "give label ids (0 = unknown, 1, 2, ...)")
    if mask.size == 0:
        raise InputError(f"mask: shape {mask.shape} has no pixels")
    flat = mask.ravel().astype(np.int64)
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= len(names):
        bad = sorted({int(v) for v in np.unique(flat) if v < 0 or v >= len(names)})
        raise InputError(
            f"mask: label ids {bad[:_SHOWN]} are not classes (there are "
            f"{len(names)}: ids 0 to {len(names) - 1}, {', '.join(names)})")
    counts = np.bincount(flat, minlength=len(names))
    return {name: float(counts[i]) / flat.size for i, name in enumerate(names)}


# ---------------------------------------------------------------------- reports

def _report_key(value: str) -> str | None:
    """The normalised image key of a CSV cell; None if it leaves the folder."""
    text = value.strip().replace("\\", "/")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(value.strip()).drive:
        return None
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


def read_report_csv(path: str | Path, argname: str = "captions") -> dict[str, str]:
    """Read the report text per image from a CSV file.

    The file is UTF-8 (a byte-order mark is allowed) with a header holding
    the columns ``image`` and ``text`` (other columns are ignored). ``image``
    is a file name relative to the images folder (``a.png``,
    ``slide1/a.png``) or a stem (``a``); ``text`` is the report or its
    summary.

    Returns
    -------
    dict of str to str
        Normalised image key (forward slashes, no ``./``) to the text with
        its white space runs collapsed to single spaces.

    Raises
    ------
    InputError
        Missing or unreadable file, empty file, a missing column, an empty
        cell, an image path that leaves the folder (absolute or with ``..``)
        or an image given twice; row errors name the CSV line.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"{argname}: {path} {what}; give a CSV file with the "
                         "columns image and text")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(_read_rows(csv.reader(fh), path, argname))
    except UnicodeDecodeError as exc:
        raise InputError(f"{argname}: {path} is not UTF-8 text ({exc.reason} at "
                         f"byte {exc.start}); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"{argname}: {path} is not a readable CSV ({exc})"
                         ) from None
    except OSError as exc:
        raise InputError(f"{argname}: cannot read {path} ({exc.strerror or exc})"
                         ) from None
    if not rows:
        raise InputError(f"{argname}: {path} has a header but no rows; add one "
                         "row per image (image,text)")
    reports: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, image, text in rows:
        key = _report_key(image)
        if key is None:
            raise InputError(
                f"{argname}: {path} line {line}: image {image!r} leaves the images "
                "folder (an absolute path or '..'); give the file name relative "
                "to the images folder")
        if not key:
            raise InputError(f"{argname}: {path} line {line}: the image cell is "
                             "empty; give the image's file name")
        if not text.strip():
            raise InputError(
                f"{argname}: {path} line {line}: image {image!r} has no text; "
                "write its report or remove the row")
        if key in reports:
            raise InputError(
                f"{argname}: {path} line {line}: image {image!r} already has a row "
                f"(line {first_line[key]}); give each image one row")
        reports[key] = " ".join(text.split())
        first_line[key] = line
    return reports


def _read_rows(reader, path: Path, argname: str):
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise InputError(f"{argname}: {path} is empty; give a CSV with the header "
                         "image,text and one row per image")
    names = [cell.strip().lower() for cell in header]
    missing = [c for c in ("image", "text") if c not in names]
    if missing:
        raise InputError(
            f"{argname}: {path} has no {' or '.join(missing)} column (its header "
            f"is {', '.join(repr(c) for c in header)}); the header must name the "
            "columns image and text")
    i_image, i_text = names.index("image"), names.index("text")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(i_image, i_text):
            raise InputError(
                f"{argname}: {path} line {reader.line_num}: {len(row)} cells, but "
                f"the header has {len(header)}; give image and text in every row")
        yield reader.line_num, row[i_image], row[i_text]


# ------------------------------------------------------------------- truncation

def word_count_tokens(text: str) -> int:
    """Tokens of ``text`` split like the builtin tokenizer's pre-tokenizer.

    White space separates words and every punctuation character is a token
    of its own (``"high dab; low"`` has 4). WordPiece may split a rare word
    further, so this is a lower bound of the builtin tokenizer's count.
    """
    return len(_WORD_TOKENS.findall(text))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!`` or ``?`` + white space."""
    text = " ".join(text.split())
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def _join(composition: str, report: str) -> str:
    return CLAUSE_SEP.join(part for part in (composition, report) if part)


def truncate_caption(composition: str, report: str, max_tokens: int | None,
                     count_tokens: Callable[[str], int] = word_count_tokens
                     ) -> tuple[str, int]:
    """Shorten ``composition; report`` to at most ``max_tokens`` tokens.

    Extractive: the composition is kept first; when it alone is too long it
    keeps its leading clauses (``"; "``-separated, largest share first) that
    fit, and if not even the first clause fits, the leading words of that
    clause. Then the report's sentences follow in order while the total
    stays within ``max_tokens``; the first sentence that does not fit ends
    the caption (later, shorter ones are not added, so the text keeps its
    order and reads as a prefix).

    Parameters
    ----------
    composition, report : str
        Either may be empty.
    max_tokens : int or None
        Content tokens allowed (special tokens not counted); None: no limit.
    count_tokens : callable
        Content tokens of a text.

    Returns
    -------
    caption : str
    dropped : int
        ``count_tokens(full) - count_tokens(caption)``, 0 when it fits.
    """
    composition = " ".join(composition.split())
    report = " ".join(report.split())
    full = _join(composition, report)
    if max_tokens is None:
        return full, 0
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) \
            or max_tokens < 1:
        raise InputError(f"max_tokens: {max_tokens!r} must be a whole number >= 1")
    total = count_tokens(full)
    if total <= max_tokens:
        return full, 0

    def fits(text: str) -> bool:
        return count_tokens(text) <= max_tokens

    kept = ""
    clauses = composition.split(CLAUSE_SEP) if composition else []
    complete = True
    for clause in clauses:
        trial = CLAUSE_SEP.join(p for p in (kept, clause) if p)
        if fits(trial):
            kept = trial
            continue
        complete = False
        if not kept:  # not even the first clause: its leading words
            for word in clause.split():
                trial = " ".join(p for p in (kept, word) if p)
                if not fits(trial):
                    break
                kept = trial
        break
    if complete:
        body = ""
        for sentence in split_sentences(report):
            trial = _join(kept, " ".join(p for p in (body, sentence) if p))
            if not fits(trial):
                break
            body = " ".join(p for p in (body, sentence) if p)
        kept = _join(kept, body)
    return kept, max(0, total - count_tokens(kept))


# ------------------------------------------------------------------ a whole set

@dataclass
class Caption:
    """The caption of one item.

    Attributes
    ----------
    key : str
        The item's image key.
    text : str
        The caption trained on (after truncation).
    composition : str
        The full composition caption (``""`` in ``report`` mode).
    report : str
        The full report text (``""`` in ``composition`` mode).
    dropped_tokens : int
        Tokens left out by truncation.
    """

    key: str
    text: str
    composition: str
    report: str
    dropped_tokens: int


def _lookup_keys(key: str) -> list[str]:
    norm = _report_key(key) or key
    p = PurePosixPath(norm)
    keys = [norm, str(p.with_suffix("")) if p.suffix else norm, p.name, p.stem]
    return list(dict.fromkeys(keys))


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def build_captions(items: Sequence[tuple[str, np.ndarray | None]],
                   class_names: Sequence[str],
                   reports: Mapping[str, str] | None,
                   max_tokens: int | None,
                   mode: str,
                   count_tokens: Callable[[str], int] = word_count_tokens,
                   levels: Sequence[tuple[float, str]] = DEFAULT_LEVELS,
                   ) -> tuple[list[Caption], list[str]]:
    """Captions of ``items`` in one of the modes.

    Parameters
    ----------
    items : sequence of (key, mask or None)
        ``key``: the image's file name relative to the images folder (tiles
        of one image share it); ``mask``: its label mask, or None.
    class_names : sequence of str
        Names of the mask's label ids.
    reports : mapping or None
        From :func:`read_report_csv`. A key is found by its relative path,
        the path without suffix, the file name, or the stem, in that order.
    max_tokens : int or None
        See :func:`truncate_caption`.
    mode : {"composition", "report", "both"}
        ``composition``: from the mask only; ``report``: the report only;
        ``both``: ``"composition; report"`` (an item without a mask gets
        its report only).
    count_tokens : callable
        Content tokens of a text.
    levels : sequence of (threshold, word)
        See :data:`DEFAULT_LEVELS`.

    Returns
    -------
    captions : list of Caption
        One per item, in order.
    unused : list of str
        Report keys that match no item (sorted); the caller warns about
        them, they are not an error.

    Raises
    ------
    InputError
        Unknown mode; ``composition`` items without a mask; ``report`` or
        ``both`` without reports, or items without a row (the first few are
        named).
    """
    if mode not in MODES:
        raise InputError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    levels = check_levels(levels)
    reports = dict(reports or {})
    if mode != "composition" and not reports:
        raise InputError(f"captions: mode {mode!r} needs the reports CSV (columns "
                         "image, text); give it, or use mode 'composition'")
    found: list[str] = []
    no_mask: list[str] = []
    no_report: list[str] = []
    used: set[str] = set()
    for key, mask in items:
        report = None
        for candidate in _lookup_keys(str(key)):
            if candidate in reports:
                report = reports[candidate]
                used.add(candidate)
                break
        found.append(report or "")
        if mode == "composition" and mask is None:
            no_mask.append(str(key))
        if mode != "composition" and report is None:
            no_report.append(str(key))
    if no_mask:
        raise InputError(
            f"captions: {len(no_mask)} images have no mask for a composition "
            f"caption ({_listed(no_mask)}); give their masks, or use mode "
            "'report'")
    if no_report:
        missing = list(dict.fromkeys(no_report))
        raise InputError(
            f"captions: {len(missing)} images have no row in the reports CSV "
            f"({_listed(missing)}); add rows for them (column image: the file "
            "name) or use mode 'composition'")
    captions = []
    for (key, mask), report in zip(items, found, strict=True):
        comp = ""
        if mode != "report" and mask is not None:
            comp = composition_caption(mask_fractions(mask, class_names), levels)
        rep = report if mode != "composition" else ""
        text, dropped = truncate_caption(comp, rep, max_tokens, count_tokens)
        captions.append(Caption(str(key), text, comp, rep, dropped))
    unused = sorted(k for k in reports if k not in used)
    return captions, unused


def caption_stats(captions: Sequence[Caption],
                  count_tokens: Callable[[str], int] = word_count_tokens
                  ) -> dict[str, Any]:
    """Summary for the training log.

    Returns
    -------
    dict
        ``count``, ``mean_tokens`` and ``max_tokens`` (of the captions as
        trained), ``truncated`` (how many lost tokens), ``share_truncated``,
        ``dropped_tokens`` (in all) and ``empty`` (null captions).
    """
    lengths = [count_tokens(c.text) for c in captions]
    truncated = sum(c.dropped_tokens > 0 for c in captions)
    n = len(captions)
    return {
        "count": n,
        "mean_tokens": float(np.mean(lengths)) if n else 0.0,
        "max_tokens": int(max(lengths)) if n else 0,
        "truncated": int(truncated),
        "share_truncated": truncated / n if n else 0.0,
        "dropped_tokens": int(sum(c.dropped_tokens for c in captions)),
        "empty": int(sum(not c.text for c in captions)),
    }
