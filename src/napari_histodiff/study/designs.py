"""The three study designs: what a case shows and what a reader answers.

``single``
    One tile; the reader answers ``real`` or ``synthetic`` and gives a
    confidence from 1 (guess) to 5 (certain). The truth is the tile's label.
``2afc``
    Two-alternative forced choice: a real and a synthetic tile side by side
    (sides drawn at random); the reader answers which one is synthetic,
    ``left`` or ``right``, with a confidence. The truth is the synthetic side.
``rating``
    One tile rated for realism from 1 (clearly synthetic) to 5 (clearly
    real). The truth is the tile's label; there is no right answer.
"""

from __future__ import annotations

from ..errors import InputError

DESIGNS = ("single", "2afc", "rating")

DESIGN_TITLES = {
    "single": "single tiles: real or synthetic?",
    "2afc": "pairs: which of the two tiles is synthetic?",
    "rating": "single tiles rated for realism (1-5)",
}

#: The answers a reader can give, per design.
ANSWERS = {
    "single": ("real", "synthetic"),
    "2afc": ("left", "right"),
    "rating": ("1", "2", "3", "4", "5"),
}

#: Tiles shown per case.
TILES_PER_CASE = {"single": 1, "2afc": 2, "rating": 1}

#: Confidence levels (and realism ratings).
LEVELS = (1, 2, 3, 4, 5)

QUESTIONS = {
    "single": "Is this tile real or synthetic?",
    "2afc": "Which of the two tiles is synthetic?",
    "rating": "How realistic is this tile? 1 = clearly synthetic, 5 = clearly real.",
}


def check_design(design: str) -> str:
    """Return ``design`` if it is known, else raise InputError."""
    if design not in DESIGNS:
        raise InputError(
            f"design={design!r} is not a study design; use one of "
            + ", ".join(DESIGNS)
            + "."
        )
    return design


def check_answer(design: str, answer: object) -> str:
    """Normalise an answer to its stored form, or raise InputError."""
    text = str(answer).strip().lower()
    if text not in ANSWERS[design]:
        raise InputError(
            f"answer={answer!r} is not an answer of a {design!r} study; "
            f"use one of {', '.join(ANSWERS[design])}."
        )
    return text


def check_level(value: object, name: str = "confidence") -> int:
    """Return a level 1-5 as int, or raise InputError."""
    try:
        level = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        level = 0
    if str(value).strip() != str(level) or level not in LEVELS:
        raise InputError(f"{name}={value!r} must be a whole number from 1 to 5.")
    return level


def is_correct(design: str, answer: str, truth: str) -> bool | None:
    """Whether an answer is right; ``None`` for rating designs."""
    if design == "rating":
        return None
    return answer == truth


def calls_synthetic(design: str, answer: str) -> bool | None:
    """Whether a single-tile answer calls the tile synthetic (else ``None``)."""
    if design != "single":
        return None
    return answer == "synthetic"
