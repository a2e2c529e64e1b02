"""Reports on a small known answer set, checked against hand calculations."""

from __future__ import annotations

import csv
import shutil

import pytest

from napari_histodiff.errors import InputError, OutputExistsError
from napari_histodiff.study import ReaderSession, write_report
from test_study_support import FakeClock, make_study


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _take(study, name, answers, seconds, confidence, seed):
    """Answer every case: answers/confidence by case id, seconds by position."""
    clock = FakeClock()
    with ReaderSession(study, name, seed=seed, clock=clock) as session:
        while not session.finished:
            case = session.case_id
            clock.advance(seconds(session.position))
            session.submit(answers[case], confidence[case])


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """Single design, 5 synthetic (S1-S5) and 5 real (R1-R5) cases, two readers.

    Reader A: S1-S4 synthetic (confidence 5), S5 real (1); R1, R2 synthetic
    (2), R3-R5 real (4); the i-th case A sees takes i + 1 seconds.
    Reader B: S1-S5 and R1-R4 synthetic, R5 real, all confidence 3, 2 s each.
    """
    folder = tmp_path_factory.mktemp("known")
    study = make_study(folder, "single", n=5, n_training=1)
    key = study.read_key()
    s = sorted(c for c, t in key.truth.items() if t == "synthetic")
    r = sorted(c for c, t in key.truth.items() if t == "real")
    a_answers = {
        **{c: "synthetic" for c in s[:4]},
        s[4]: "real",
        r[0]: "synthetic",
        r[1]: "synthetic",
        **{c: "real" for c in r[2:]},
    }
    a_conf = {
        **{c: 5 for c in s[:4]},
        s[4]: 1,
        r[0]: 2,
        r[1]: 2,
        **{c: 4 for c in r[2:]},
    }
    b_answers = {**{c: "synthetic" for c in s + r[:4]}, r[4]: "real"}
    _take(study, "A", a_answers, lambda i: i + 1.0, a_conf, seed=1)
    _take(study, "B", b_answers, lambda i: 2.0, dict.fromkeys(s + r, 3), seed=2)
    with ReaderSession(study, "A", training=True) as training:  # never counted
        training.submit("real", 1)
    report = write_report(study, folder / "report")
    return study, report


def test_summary_matches_hand_calculation(known):
    _, report = known
    rows = {row["reader"]: row for row in _read_csv(report.folder / "summary.csv")}
    assert list(rows) == ["A", "B", "pooled"]
    expected = {
        # Wilson 7/10: centre 0.644499, half 0.247721 (see test_study_stats)
        "A": dict(
            n=10,
            correct=7,
            accuracy=0.7,
            accuracy_ci_low=0.396778,
            accuracy_ci_high=0.892209,
            p_value=2 * 176 / 1024,
            sensitivity=0.8,
            sensitivity_ci_low=0.375535,
            specificity=0.6,
            specificity_ci_low=0.230724,
            time_mean_s=5.5,
            time_median_s=5.5,
        ),
        # Wilson 6/10: centre 0.572247, half 0.259574; P(X>=6) = 386/1024
        "B": dict(
            n=10,
            correct=6,
            accuracy=0.6,
            accuracy_ci_low=0.312674,
            accuracy_ci_high=0.831820,
            p_value=2 * 386 / 1024,
            sensitivity=1.0,
            specificity=0.2,
            specificity_ci_high=0.624465,
            time_mean_s=2.0,
            time_median_s=2.0,
        ),
        # 13/20; sum_{k>=13} C(20, k) = 137980; times 1..10 and ten 2 s
        "pooled": dict(
            n=20,
            correct=13,
            accuracy=0.65,
            accuracy_ci_low=0.432854,
            accuracy_ci_high=0.818808,
            p_value=2 * 137980 / 2**20,
            sensitivity=0.9,
            specificity=0.4,
            time_mean_s=3.75,
            time_median_s=2.0,
        ),
    }
    for reader, values in expected.items():
        for column, value in values.items():
            assert float(rows[reader][column]) == pytest.approx(value, abs=1e-5), (
                reader,
                column,
            )
    assert rows["A"]["rating_auc"] == ""  # not a rating design: left empty


def test_confusion_confidence_and_agreement_match_hand_calculation(known):
    _, report = known
    confusion = {
        (row["reader"], row["truth"], row["answer"]): int(row["count"])
        for row in _read_csv(report.folder / "confusion.csv")
    }
    assert [
        confusion["pooled", t, a]
        for t, a in [
            ("synthetic", "synthetic"),
            ("synthetic", "real"),
            ("real", "synthetic"),
            ("real", "real"),
        ]
    ] == [9, 1, 6, 4]
    by_conf = {
        (row["reader"], int(row["confidence"])): (int(row["n"]), int(row["correct"]))
        for row in _read_csv(report.folder / "by_confidence.csv")
    }
    assert {k: v for k, v in by_conf.items() if k[0] == "A"} == {
        ("A", 1): (1, 0),
        ("A", 2): (2, 0),
        ("A", 4): (3, 3),
        ("A", 5): (4, 4),
    }
    assert by_conf["B", 3] == (10, 6) and by_conf["pooled", 3] == (10, 6)
    agreement = _read_csv(report.folder / "agreement.csv")
    # Cohen: p_o = 0.7, p_e = 0.6 * 0.9 + 0.4 * 0.1 = 0.58 -> 0.12 / 0.42 = 2/7
    cohen = next(row for row in agreement if row["statistic"] == "cohen")
    assert (cohen["reader_a"], cohen["reader_b"], cohen["n_cases"]) == ("A", "B", "10")
    assert float(cohen["kappa"]) == pytest.approx(2 / 7)
    # Fleiss: P = 0.7, p = (0.75, 0.25), P_e = 0.625 -> 0.075 / 0.375 = 0.2
    fleiss = next(row for row in agreement if row["statistic"] == "fleiss")
    assert float(fleiss["kappa"]) == pytest.approx(0.2)


def test_answers_csv_and_markdown(known):
    study, report = known
    answers = _read_csv(report.folder / "answers.csv")
    assert len(answers) == 20  # the training answer is not there
    assert {row["reader"] for row in answers} == {"A", "B"}
    key = study.read_key()
    for row in answers:
        assert row["truth"] == key.truth[row["case_id"]]
        assert row["correct"] == str(int(row["answer"] == row["truth"]))
        assert row["sources"].startswith(row["truth"])
    text = (report.folder / "report.md").read_text()
    assert "| A | 10 | 7 | 0.700 | 0.397–0.892 | 0.344 |" in text
    assert (
        "Fleiss' kappa over 2 readers and the 10 cases" in text and "**0.200**" in text
    )
    for plot in ("accuracy.png", "accuracy_by_confidence.png", "time_per_case.png"):
        assert (report.folder / plot).stat().st_size > 1000
        assert f"]({plot})" in text


def test_report_refuses_to_overwrite_and_needs_answers(known, tmp_path):
    study, report = known
    with pytest.raises(OutputExistsError, match="not empty"):
        write_report(study, report.folder)
    write_report(study, report.folder, overwrite=True, plots=False)
    fresh = make_study(tmp_path, n=2)
    with ReaderSession(fresh, "A", training=False) as session:
        assert session.n_answered == 0
    with pytest.raises(InputError, match="no reader has answered"):
        write_report(fresh, tmp_path / "out")


def test_answers_from_copies_are_merged(tmp_path):
    study = make_study(tmp_path, n=3)
    copy = tmp_path / "copy"
    shutil.copytree(study.path, copy)
    with ReaderSession(study, "A") as session:
        session.submit("real", 3)
    with ReaderSession(copy, "B") as session:  # another machine
        while not session.finished:
            session.submit("synthetic", 2)
    report = write_report(study, tmp_path / "r", extra_databases=[copy], plots=False)
    assert [g.n for g in report.results.readers] == [1, 6]
    # the same name taken separately in two copies is refused, not mixed
    with ReaderSession(copy, "A") as session:
        session.submit("synthetic", 2)
    with pytest.raises(InputError, match="took the study separately"):
        write_report(study, tmp_path / "r2", extra_databases=[copy])
    foreign = make_study(tmp_path / "foreign", n=2)
    with pytest.raises(InputError, match="belongs to another study"):
        write_report(study, tmp_path / "r3", extra_databases=[foreign.answers_path])


def test_rating_report(tmp_path):
    study = make_study(tmp_path, "rating", n=3)
    key = study.read_key()
    real = sorted(c for c, t in key.truth.items() if t == "real")
    synthetic = sorted(c for c, t in key.truth.items() if t == "synthetic")
    ratings = dict(zip(real + synthetic, ["4", "5", "3", "2", "3", "1"], strict=True))
    with ReaderSession(study, "A") as session:
        while not session.finished:
            session.submit(ratings[session.case_id])  # no confidence asked
    report = write_report(study, tmp_path / "report")
    pooled = report.results.pooled
    # U = 8.5 (see test_study_stats), AUC = 8.5 / 9
    assert pooled.ratings.u == pytest.approx(8.5)
    assert pooled.ratings.auc == pytest.approx(8.5 / 9)
    assert [pooled.confusion["real", str(k)] for k in range(1, 6)] == [0, 0, 1, 1, 1]
    assert [pooled.confusion["synthetic", str(k)] for k in range(1, 6)] == [
        1,
        1,
        1,
        0,
        0,
    ]
    summary = _read_csv(report.folder / "summary.csv")
    assert float(summary[-1]["rating_auc"]) == pytest.approx(8.5 / 9)
    assert summary[-1]["accuracy"] == ""
    text = (report.folder / "report.md").read_text()
    assert "| pooled | real | 0 | 0 | 1 | 1 | 1 | 4.00 | 8.5 |" in text
    assert (report.folder / "ratings.png").is_file()


def test_accuracy_legend_covers_no_bar(known):
    """The legend of accuracy.png sits where no bar (or its interval) is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from napari_histodiff.study.analysis import analyse, collect_answers
    from napari_histodiff.study.report import accuracy_figure

    study, _ = known
    results = analyse(study.design, collect_answers(study, study.read_key(), ()))
    fig = accuracy_figure(results)
    FigureCanvasAgg(fig).draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches]
    assert bars
    assert not [b for b in bars if b.overlaps(legend)]
