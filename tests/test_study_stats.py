"""Statistics of reader studies against hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_histodiff.study import ReaderSession, analyse, collect_answers, store
from napari_histodiff.study.analysis import AnswerRow
from napari_histodiff.study.stats import (
    binomial_p_value,
    cohen_kappa,
    fleiss_kappa,
    kappa_table,
    rating_test,
    wilson_interval,
)
from test_study_support import make_study


def test_wilson_interval_by_hand():
    # 7 of 10, z = 1.959964: centre = (0.7 + z^2/20) / (1 + z^2/10) = 0.644499,
    # half = z / (1 + z^2/10) * sqrt(0.021 + z^2/400) = 0.247721
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.396778, abs=1e-6)
    assert high == pytest.approx(0.892209, abs=1e-6)
    # 0 of 5: centre = half = (z^2/10) / (1 + z^2/5) -> (0, 0.434482)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-6)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    # a wider level gives a wider interval
    assert wilson_interval(7, 10, 0.99)[0] < low


def test_binomial_test_by_hand():
    # P(X >= 7 | n=10, p=0.5) = (120 + 45 + 10 + 1) / 1024; two-sided doubles it
    assert binomial_p_value(7, 10) == pytest.approx(2 * 176 / 1024)
    assert binomial_p_value(5, 10) == pytest.approx(1.0)
    # sum_{k=13..20} C(20, k) = 137980
    assert binomial_p_value(13, 20) == pytest.approx(2 * 137980 / 2**20)
    assert math.isnan(binomial_p_value(0, 0))


def test_fleiss_kappa_by_hand():
    # 4 items, 3 raters, 2 categories. P_i = 1, 1, 1/3, 1/3 -> mean 2/3;
    # p = (0.5, 0.5) -> P_e = 0.5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1], [1, 2]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([[2, 0], [0, 2], [2, 0]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # no variation at all
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[2, 0], [1, 0]])
    table = kappa_table([["a", "b", "a"], ["b", "b", "b"]], ["a", "b"])
    assert table.tolist() == [[2, 1], [0, 3]]


def test_cohen_kappa_by_hand():
    # 10 items: both A 4, both B 3, (A, B) 2, (B, A) 1 -> p_o = 0.7,
    # p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5 -> kappa = 0.4
    first = ["A"] * 4 + ["B"] * 3 + ["A"] * 2 + ["B"]
    second = ["A"] * 4 + ["B"] * 3 + ["B"] * 2 + ["A"]
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(first, first) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([], []))


def test_rating_test_by_hand():
    # pairs real > synthetic: 4 -> 3, 5 -> 3, 3 -> 1 (+ 0.5 for the 3 = 3 tie)
    result = rating_test([4, 5, 3], [2, 3, 1])
    assert result.u == pytest.approx(8.5)
    assert result.auc == pytest.approx(8.5 / 9)
    assert 0 < result.p_value < 0.2
    assert rating_test([3, 3], [3, 3]).auc == pytest.approx(0.5)


def _rows(answers, truths, reader="r"):
    return [
        AnswerRow(reader, f"c{i}", i, a, 3, "", 1.0, "", 1, t, a == t, t, "")
        for i, (a, t) in enumerate(zip(answers, truths, strict=True))
    ]


def test_random_answers_large_sample_near_chance():
    rng = np.random.default_rng(12)
    truths = rng.choice(["real", "synthetic"], 2000).tolist()
    answers = rng.choice(["real", "synthetic"], 2000).tolist()
    pooled = analyse("single", _rows(answers, truths)).pooled
    assert abs(pooled.accuracy - 0.5) < 0.04
    assert pooled.accuracy_ci[0] < 0.5 < pooled.accuracy_ci[1]
    assert pooled.p_value > 0.05
    assert abs(pooled.sensitivity - 0.5) < 0.05 and abs(pooled.specificity - 0.5) < 0.05


def test_random_reader_through_a_study_is_at_chance(tmp_path, monkeypatch):
    """A simulated reader answering at random through the real API."""
    # case ids come from the OS; fix them so that the whole test is repeatable
    counter = iter(range(10**6))
    monkeypatch.setattr(
        store,
        "_new_ids",
        lambda count, taken: [f"{next(counter):016x}" for _ in range(count)],
    )
    study = make_study(tmp_path, n=60, tile_size=16)
    rng = np.random.default_rng(0)
    with ReaderSession(study, "random reader", seed=5) as session:
        while not session.finished:
            session.submit(rng.choice(["real", "synthetic"]), int(rng.integers(1, 6)))
    results = analyse(study.design, collect_answers(study, study.read_key()))
    reader = results.readers[0]
    assert reader.n == 120
    assert 0.38 < reader.accuracy < 0.62
    assert reader.p_value > 0.05
    assert reader.accuracy_ci[0] < 0.5 < reader.accuracy_ci[1]
    # accuracy by confidence holds every answer once
    assert sum(n for n, _ in reader.by_confidence.values()) == 120
    # a perfect reader on the same cases is far from chance
    perfect = [
        AnswerRow(
            "p",
            r.case_id,
            r.position,
            r.truth,
            5,
            "",
            1.0,
            "",
            1,
            r.truth,
            True,
            r.truth,
            "",
        )
        for r in results.rows
    ]
    best = analyse("single", perfect).pooled
    assert best.accuracy == 1.0 and best.p_value < 1e-30
