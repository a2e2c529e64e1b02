"""Joining answers with the truth key and computing the study's results.

Results are given per reader and pooled over readers (every answer counted
once; pooled tests treat answers as independent, which readers sharing cases
are not, so read pooled p-values as descriptive). Training answers are never
included.

* ``single``: accuracy (95% Wilson interval, exact two-sided binomial test
  against 0.5), sensitivity (synthetic tiles called synthetic) and
  specificity (real tiles called real), the confusion matrix, accuracy by
  confidence level, time per case.
* ``2afc``: the same without sensitivity and specificity (every case holds
  one tile of each kind); the confusion matrix crosses the synthetic side
  with the chosen side and shows a side bias.
* ``rating``: rating counts for real and synthetic tiles, the Mann-Whitney U
  test between them with its AUC, time per case.
* Agreement between readers, on the cases every reader answered: Fleiss'
  kappa and Cohen's kappa for each pair (on the answer categories; ratings
  are treated as five nominal categories).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .answers import AnswerDB, AnswerRecord, ReaderRecord, name_key
from .designs import ANSWERS, LEVELS, is_correct
from .stats import (
    NAN,
    RatingTest,
    binomial_p_value,
    cohen_kappa,
    fleiss_kappa,
    kappa_table,
    rating_test,
    ratio,
    wilson_interval,
)
from .store import Study, TruthKey

POOLED = "pooled"


@dataclass(frozen=True)
class AnswerRow:
    """One current answer joined with the truth."""

    reader: str
    case_id: str
    position: int
    answer: str
    confidence: int | None
    comment: str
    seconds: float
    answered_at: str
    revision: int
    truth: str
    correct: bool | None
    label: str
    sources: str


def truth_labels(design: str) -> tuple[str, ...]:
    """Truth values of a design: tile labels, or the synthetic side."""
    return ANSWERS["2afc"] if design == "2afc" else ("real", "synthetic")


def _merge(
    answer_sets: Iterable[tuple[Path, list[tuple[ReaderRecord, AnswerRecord]]]],
) -> list[tuple[ReaderRecord, AnswerRecord]]:
    """Merge answers from copies of a study; one reader may appear in several.

    A reader found in two databases with the same case order is the same
    session copied: for each case the latest revision is kept. The same name
    with a different order means two people (or two attempts) under one name.
    """
    readers: dict[str, tuple[ReaderRecord, Path]] = {}
    chosen: dict[tuple[str, str], tuple[ReaderRecord, AnswerRecord]] = {}
    for path, pairs in answer_sets:
        for reader, answer in pairs:
            key = name_key(reader.name)
            if key in readers and readers[key][0].order_seed != reader.order_seed:
                raise InputError(
                    f"reader {reader.name!r} took the study separately in "
                    f"{readers[key][1]} and {path}; give one of them another "
                    "name, or leave one database out."
                )
            readers.setdefault(key, (reader, path))
            slot = (key, answer.case_id)
            old = chosen.get(slot)
            if old is None or (answer.revision, answer.answered_at) > (
                old[1].revision,
                old[1].answered_at,
            ):
                chosen[slot] = (readers[key][0], answer)
    order = {key: index for index, key in enumerate(readers)}
    return sorted(
        chosen.values(), key=lambda p: (order[name_key(p[0].name)], p[1].position)
    )


def collect_answers(
    study: Study, key: TruthKey, extra_databases: Sequence[str | Path] = ()
) -> list[AnswerRow]:
    """Current study-mode answers of every reader, joined with the truth.

    Parameters
    ----------
    study : Study
        The study.
    key : TruthKey
        Its truth key.
    extra_databases : sequence of str or Path
        ``answers.sqlite`` files (or study folders) from copies of the same
        study taken on other machines.
    """
    sets = []
    for source in [study.answers_path, *extra_databases]:
        if not isinstance(source, (str, Path)) or str(source).strip() == "":
            raise InputError(
                f"extra database {source!r} (--answers) is not a path; pass "
                "answers.sqlite files or study folders."
            )
        path = Path(source)
        if path.is_dir():
            path = Study.open(path).answers_path
        with AnswerDB.open(path, study.uid) as db:
            sets.append((path, db.study_answers()))
    rows = []
    for reader, answer in _merge(sets):
        truth = key.truth.get(answer.case_id)
        if truth is None:
            raise InputError(
                f"answer to unknown case {answer.case_id!r} in {study.answers_path}; "
                "the database does not belong to this key."
            )
        tiles = key.tiles.get(answer.case_id, [])
        label = truth if study.design != "2afc" else "pair"
        sources = "; ".join(
            f"{t.get('label', '?')}: {t.get('source', '?')} "
            f"@ y={t.get('y')}, x={t.get('x')}"
            for t in tiles
        )
        rows.append(
            AnswerRow(
                reader=reader.name,
                case_id=answer.case_id,
                position=answer.position,
                answer=answer.answer,
                confidence=answer.confidence,
                comment=answer.comment,
                seconds=answer.seconds,
                answered_at=answer.answered_at,
                revision=answer.revision,
                truth=truth,
                correct=is_correct(study.design, answer.answer, truth),
                label=label,
                sources=sources,
            )
        )
    return rows


@dataclass(frozen=True)
class GroupResult:
    """Results of one reader, or of all readers pooled.

    Proportions are ``nan`` where undefined (no answers, or not part of the
    design). ``confusion`` maps ``(truth, answer)`` to a count: for ratings it
    is the rating distribution of real and synthetic tiles.
    """

    name: str
    n: int
    correct: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    p_value: float
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    confusion: dict[tuple[str, str], int]
    by_confidence: dict[int, tuple[int, int]]
    time_mean: float
    time_median: float
    ratings: RatingTest | None = None


def _group(name: str, design: str, rows: Sequence[AnswerRow]) -> GroupResult:
    n = len(rows)
    confusion = {(t, a): 0 for t in truth_labels(design) for a in ANSWERS[design]}
    for row in rows:
        confusion[(row.truth, row.answer)] += 1
    times = [row.seconds for row in rows]
    time_mean = statistics.fmean(times) if times else NAN
    time_median = statistics.median(times) if times else NAN
    nan_pair = (NAN, NAN)
    if design == "rating":
        real = [int(r.answer) for r in rows if r.truth == "real"]
        synthetic = [int(r.answer) for r in rows if r.truth == "synthetic"]
        return GroupResult(
            name,
            n,
            0,
            NAN,
            nan_pair,
            NAN,
            NAN,
            nan_pair,
            NAN,
            nan_pair,
            confusion,
            {},
            time_mean,
            time_median,
            rating_test(real, synthetic),
        )
    correct = sum(bool(r.correct) for r in rows)
    by_confidence = {}
    for level in LEVELS:
        at_level = [r for r in rows if r.confidence == level]
        if at_level:
            by_confidence[level] = (
                len(at_level),
                sum(bool(r.correct) for r in at_level),
            )
    sensitivity = specificity = NAN
    sensitivity_ci = specificity_ci = nan_pair
    if design == "single":
        tp = confusion[("synthetic", "synthetic")]
        positives = tp + confusion[("synthetic", "real")]
        tn = confusion[("real", "real")]
        negatives = tn + confusion[("real", "synthetic")]
        sensitivity, sensitivity_ci = (
            ratio(tp, positives),
            wilson_interval(tp, positives),
        )
        specificity, specificity_ci = (
            ratio(tn, negatives),
            wilson_interval(tn, negatives),
        )
    return GroupResult(
        name=name,
        n=n,
        correct=correct,
        accuracy=ratio(correct, n),
        accuracy_ci=wilson_interval(correct, n),
        p_value=binomial_p_value(correct, n),
        sensitivity=sensitivity,
        sensitivity_ci=sensitivity_ci,
        specificity=specificity,
        specificity_ci=specificity_ci,
        confusion=confusion,
        by_confidence=by_confidence,
        time_mean=time_mean,
        time_median=time_median,
    )


@dataclass(frozen=True)
class Agreement:
    """Inter-reader agreement.

    Attributes
    ----------
    readers : list of str
        Readers compared (those with at least one answer).
    n_cases : int
        Cases answered by all of them (used for Fleiss' kappa).
    fleiss : float
        Fleiss' kappa over those cases (``nan`` with fewer than 2 readers).
    pairs : list of (str, str, int, float)
        Cohen's kappa of each pair of readers, on the cases both answered:
        ``(reader_a, reader_b, n_cases, kappa)``.
    """

    readers: list[str]
    n_cases: int
    fleiss: float
    pairs: list[tuple[str, str, int, float]] = field(default_factory=list)


def agreement(design: str, rows: Sequence[AnswerRow]) -> Agreement:
    """Fleiss' and pairwise Cohen's kappa of the readers' answers."""
    by_reader: dict[str, dict[str, str]] = {}
    for row in rows:
        by_reader.setdefault(row.reader, {})[row.case_id] = row.answer
    readers = list(by_reader)
    if len(readers) < 2:
        return Agreement(readers, 0, NAN)
    common = sorted(set.intersection(*(set(a) for a in by_reader.values())))
    labels = [[by_reader[r][case] for r in readers] for case in common]
    fleiss = fleiss_kappa(kappa_table(labels, ANSWERS[design])) if common else NAN
    pairs = []
    for a, b in itertools.combinations(readers, 2):
        shared = sorted(set(by_reader[a]) & set(by_reader[b]))
        kappa = cohen_kappa(
            [by_reader[a][c] for c in shared], [by_reader[b][c] for c in shared]
        )
        pairs.append((a, b, len(shared), kappa))
    return Agreement(readers, len(common), fleiss, pairs)


@dataclass(frozen=True)
class StudyResults:
    """Everything a report shows."""

    design: str
    rows: list[AnswerRow]
    readers: list[GroupResult]
    pooled: GroupResult
    agreement: Agreement

    @property
    def groups(self) -> list[GroupResult]:
        """Per-reader results followed by the pooled ones."""
        return [*self.readers, self.pooled]


def analyse(design: str, rows: Sequence[AnswerRow]) -> StudyResults:
    """Compute per-reader, pooled and agreement results from joined answers."""
    names = list(dict.fromkeys(row.reader for row in rows))
    readers = [_group(n, design, [r for r in rows if r.reader == n]) for n in names]
    pooled = _group(POOLED, design, rows)
    return StudyResults(design, list(rows), readers, pooled, agreement(design, rows))
