"""One reader taking a study: case order, navigation, timing, resuming.

A :class:`ReaderSession` is what the napari reader widget and the terminal
reader drive. It never reads the truth key of the study; in training mode it
reads the training key (which readers may see) to give feedback.

Rules
-----
* Each reader gets the cases in their own order, shuffled with a seed drawn
  for them and stored with the order, so it survives restarts.
* ``position`` is the index in that order of the case shown; it equals the
  number of cases when all are answered (the end). The *frontier* is the
  first unanswered position.
* Without navigation the reader is always at the frontier: answering moves
  on and there is no way back. With navigation the reader may move between
  the first case and the frontier (never skip ahead of an unanswered case),
  and may change answers only if the study allows changes.
* Time per case runs from showing the case to saving its answer; a changed
  answer adds the time spent on the second visit.
* A reader is recognised by name (case and spacing ignored); opening the
  session again resumes at the stored position. Only one session of a
  reader (per mode) may be open at a time: a second one, in another window
  or process, is refused while the first is open (see :mod:`.lock`), and an
  answer whose case was answered meanwhile by someone else under the same
  name is refused too, never saved over it. Training uses its own cases
  and its own records (mode ``"training"``), never mixed with study results.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .answers import AnswerDB, AnswerRecord, ReaderRecord, name_key
from .designs import ANSWERS, check_answer, check_level, is_correct
from .lock import ReaderLock
from .store import Study

MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class Feedback:
    """Training feedback on one answer.

    Attributes
    ----------
    correct : bool or None
        Whether the answer was right (``None`` for ratings).
    truth : str
        ``"real"``/``"synthetic"``, or the synthetic side for pairs.
    message : str
        A sentence for the reader.
    """

    correct: bool | None
    truth: str
    message: str


def _feedback(design: str, answer: str, truth: str) -> Feedback:
    correct = is_correct(design, answer, truth)
    if design == "2afc":
        fact = f"the {truth} tile was synthetic"
    else:
        fact = f"this tile is {truth}"
    if correct is None:
        message = f"You rated it {answer}; {fact}."
    else:
        message = ("Correct: " if correct else "Not quite: ") + fact + "."
    return Feedback(correct, truth, message)


def check_reader_name(name: str) -> str:
    """Return a reader name with spacing normalised, or raise InputError."""
    if not isinstance(name, str):
        raise InputError(
            f"reader={name!r} must be text (your name or initials), not "
            f"{type(name).__name__}."
        )
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InputError("reader name is empty; enter your name or initials.")
    if cleaned.casefold() == "pooled":
        raise InputError(
            "reader name 'pooled' is reserved for the results of all readers "
            "together; use another name."
        )
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InputError(
            f"reader name {cleaned[:20]!r}... is longer than {MAX_NAME_LENGTH} "
            "characters; use a shorter name."
        )
    return cleaned


class ReaderSession:
    """A reader's pass through a study (or its training set).

    Parameters
    ----------
    study : Study or str or Path
        The study (folder).
    reader : str
        The reader's name; the same name resumes the same session.
    training : bool
        Take the training set (with feedback) instead of the study.
    seed : int, optional
        Seed of this reader's case order when the reader is new (default:
        drawn from the operating system). Ignored when resuming.
    clock : callable, optional
        Monotonic clock in seconds (for tests).

    Raises
    ------
    InputError
        If the study is damaged, has no training set (``training=True``),
        the name is empty, or this reader has a session open already.
    """

    def __init__(
        self,
        study: Study | str,
        reader: str,
        *,
        training: bool = False,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.study = study if isinstance(study, Study) else Study.open(study)
        self.training = bool(training)
        self.mode = "training" if training else "study"
        name = check_reader_name(reader)
        case_ids = self.study.case_ids(self.training)
        self._truth: dict[str, str] = {}
        if self.training:
            if not case_ids:
                raise InputError(f"study {self.study.path} has no training cases.")
            self._truth = self.study.read_training_key().truth
        self._clock = clock
        # the database is checked before the lock is taken (which may make the
        # lock file): a damaged study is refused with nothing written
        self._db = AnswerDB.open(self.study.answers_path, self.study.uid)
        try:
            self._lock = ReaderLock(self.study.path, name_key(name), self.mode, name)
        except BaseException:
            self._db.close()
            raise
        try:
            record = self._db.reader(name, self.mode)
            if record is None:
                if seed is None:
                    seed = secrets.randbits(63)
                order = list(case_ids)
                random.Random(int(seed)).shuffle(order)
                record = self._db.add_reader(name, self.mode, order, int(seed))
            if sorted(record.case_order) != case_ids:
                raise InputError(
                    f"the answers of reader {name!r} in {self.study.answers_path} "
                    "do not match the cases of the study; the folder is damaged."
                )
            self._record: ReaderRecord = record
            self._answers: dict[str, AnswerRecord] = self._db.answers(record.reader_id)
        except BaseException:
            self._db.close()
            self._lock.release()
            raise
        self._position = self._clamp(record.position)
        self._shown_at = clock()

    # -- state ------------------------------------------------------------
    @property
    def reader(self) -> str:
        """The reader's name as first entered."""
        return self._record.name

    @property
    def design(self) -> str:
        """The study design."""
        return self.study.design

    @property
    def answers_allowed(self) -> tuple[str, ...]:
        """The answers this design accepts."""
        return ANSWERS[self.design]

    @property
    def needs_confidence(self) -> bool:
        """Whether each answer needs a 1-5 confidence."""
        return self.study.settings.ask_confidence

    @property
    def order(self) -> tuple[str, ...]:
        """This reader's case order."""
        return self._record.case_order

    @property
    def order_seed(self) -> int:
        """Seed this reader's order was shuffled with."""
        return self._record.order_seed

    @property
    def n_cases(self) -> int:
        """Number of cases."""
        return len(self.order)

    @property
    def n_answered(self) -> int:
        """Number of cases answered."""
        return len(self._answers)

    @property
    def position(self) -> int:
        """Index of the case shown (``n_cases`` at the end)."""
        return self._position

    @property
    def frontier(self) -> int:
        """First unanswered position (``n_cases`` when all are answered)."""
        for index, case_id in enumerate(self.order):
            if case_id not in self._answers:
                return index
        return self.n_cases

    @property
    def finished(self) -> bool:
        """Whether every case is answered."""
        return self.n_answered == self.n_cases

    @property
    def at_end(self) -> bool:
        """Whether no case is shown (all answered and moved past the last)."""
        return self._position >= self.n_cases

    @property
    def case_id(self) -> str | None:
        """Id of the case shown, or ``None`` at the end."""
        return None if self.at_end else self.order[self._position]

    @property
    def current_answer(self) -> AnswerRecord | None:
        """The saved answer to the case shown, if any."""
        case_id = self.case_id
        return self._answers.get(case_id) if case_id else None

    @property
    def can_answer(self) -> bool:
        """Whether the case shown may be answered now."""
        if self.at_end:
            return False
        return self.current_answer is None or self.study.settings.allow_change

    @property
    def can_go_back(self) -> bool:
        """Whether :meth:`go_back` is allowed."""
        return self.study.settings.allow_navigation and self._position > 0

    @property
    def can_go_forward(self) -> bool:
        """Whether :meth:`go_forward` is allowed."""
        return self.study.settings.allow_navigation and self._position < self.frontier

    def answers(self) -> dict[str, AnswerRecord]:
        """This reader's saved answers, by case id (a copy)."""
        return dict(self._answers)

    def image(self) -> np.ndarray:
        """Pixels of the case shown: ``(k, T, T, 3)`` ``uint8``."""
        case_id = self.case_id
        if case_id is None:
            raise InputError("all cases are answered; there is no case to show.")
        return self.study.load_case(case_id, self.training)

    # -- actions ----------------------------------------------------------
    def _clamp(self, position: int) -> int:
        frontier = self.frontier
        if not self.study.settings.allow_navigation:
            return frontier
        return max(0, min(int(position), frontier))

    def _move(self, position: int) -> None:
        position = self._clamp(position)
        if position != self._position:
            self._position = position
            self._db.set_position(self._record.reader_id, position)
        self._shown_at = self._clock()

    def submit(
        self, answer: str, confidence: int | None = None, comment: str = ""
    ) -> Feedback | None:
        """Save the answer to the case shown, then move to the next case.

        The answer is committed to the database before this returns.

        Parameters
        ----------
        answer : str
            One of :attr:`answers_allowed`.
        confidence : int, optional
            1-5; required when :attr:`needs_confidence`.
        comment : str
            Free text.

        Returns
        -------
        Feedback or None
            Feedback in training mode, else ``None``.

        Raises
        ------
        InputError
            If the answer or confidence is invalid or the case may not be
            answered (at the end, or answered and changes are not allowed).
        """
        case_id = self.case_id
        if case_id is None:
            raise InputError("all cases are answered; there is nothing to answer.")
        if not self.can_answer:
            raise InputError(
                "this case is answered already and the study does not allow "
                "changing answers."
            )
        answer = check_answer(self.design, answer)
        if confidence is None or confidence == "":
            if self.needs_confidence:
                raise InputError(
                    "confidence is missing; choose 1 (guess) to 5 (certain)."
                )
            level = None
        else:
            level = check_level(confidence)
        seconds = max(0.0, self._clock() - self._shown_at)
        position = self._position
        next_position = position + 1
        if not self.study.settings.allow_navigation:
            # the next unanswered case (there is no way back to skipped ones)
            answered = set(self._answers) | {case_id}
            next_position = next(
                (i for i, cid in enumerate(self.order) if cid not in answered),
                self.n_cases,
            )
        record = self._db.save_answer(
            self._record.reader_id,
            case_id,
            position,
            answer,
            level,
            str(comment).strip(),
            seconds,
            next_position,
            allow_change=self.study.settings.allow_change,
            expected_revision=old.revision if (old := self.current_answer) else 0,
        )
        self._answers[case_id] = record
        self._position = self._clamp(next_position)
        self._shown_at = self._clock()
        if self.training:
            return _feedback(self.design, answer, self._truth[case_id])
        return None

    def go_back(self) -> None:
        """Show the previous case (only with navigation)."""
        if not self.can_go_back:
            raise InputError("going back is not allowed here in this study.")
        self._move(self._position - 1)

    def go_forward(self) -> None:
        """Show the next case, up to the first unanswered one (navigation only)."""
        if not self.can_go_forward:
            raise InputError("going forward is not allowed here in this study.")
        self._move(self._position + 1)

    def restart_training(self) -> None:
        """Forget this reader's training answers and start training again."""
        if not self.training:
            raise InputError("only training can be restarted; study answers are kept.")
        self._db.delete_reader(self._record.reader_id)
        order = list(self.order)
        seed = secrets.randbits(63)
        random.Random(seed).shuffle(order)
        self._record = self._db.add_reader(self._record.name, self.mode, order, seed)
        self._answers = {}
        self._position = 0
        self._shown_at = self._clock()

    def close(self) -> None:
        """Close the database connection (answers are already saved) and
        release the reader's lock."""
        self._db.close()
        self._lock.release()

    def __enter__(self) -> ReaderSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ReaderSession({self.reader!r}, {self.mode}, "
            f"{self.n_answered}/{self.n_cases} answered)"
        )
