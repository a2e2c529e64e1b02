"""Taking a study: order, resume, navigation rules, timing, training, durability."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import textwrap

import pytest

from napari_histodiff.errors import HistodiffError, InputError
from napari_histodiff.study import ReaderSession
from napari_histodiff.study.answers import AnswerDB
from test_study_support import PYTHON, FakeClock, make_study, subprocess_env


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path, "single", n=4, n_training=2)


@pytest.fixture
def navigable(tmp_path):
    return make_study(tmp_path, "single", n=3, allow_navigation=True, allow_change=True)


def test_order_is_shuffled_per_reader_seeded_and_recorded(study):
    with (
        ReaderSession(study, "ann", seed=1) as a,
        ReaderSession(study, "bob", seed=2) as b,
    ):
        assert sorted(a.order) == sorted(b.order) == study.case_ids()
        assert a.order != b.order
        order, seed = a.order, a.order_seed
    with ReaderSession(study, "  ANN ", seed=99) as again:  # same reader, seed ignored
        assert again.order == order and again.order_seed == seed == 1
    with AnswerDB.open(study.answers_path, study.uid) as db:
        assert [r.name for r in db.readers()] == ["ann", "bob"]


def test_answer_and_resume_exactly_where_left_off(study):
    clock = FakeClock()
    session = ReaderSession(study, "ann", clock=clock)
    assert (session.position, session.n_answered, session.n_cases) == (0, 0, 8)
    first = session.case_id
    clock.advance(4.5)
    assert session.submit("synthetic", 5, "  crisp nuclei ") is None
    clock.advance(2.0)
    session.submit("real", "2")
    assert session.position == 2
    session.close()  # napari closed

    clock.advance(100.0)  # time while closed is not counted
    resumed = ReaderSession(study, "ann", clock=clock)
    assert resumed.position == 2 and resumed.n_answered == 2
    saved = resumed.answers()[first]
    assert (saved.answer, saved.confidence, saved.comment) == (
        "synthetic",
        5,
        "crisp nuclei",
    )
    assert saved.seconds == pytest.approx(4.5) and saved.position == 0
    clock.advance(3.0)
    resumed.submit("real", 1)
    assert resumed.answers()[resumed.order[2]].seconds == pytest.approx(3.0)
    while not resumed.finished:
        resumed.submit("real", 3)
    assert resumed.at_end and resumed.case_id is None
    with pytest.raises(InputError, match="all cases are answered"):
        resumed.submit("real", 3)
    resumed.close()


def test_invalid_answers_are_refused_and_nothing_is_saved(study):
    with ReaderSession(study, "ann") as session:
        for answer, confidence, words in [
            ("maybe", 3, "not an answer"),
            ("left", 3, "not an answer"),
            ("real", None, "confidence is missing"),
            ("real", 6, "from 1 to 5"),
            ("real", "high", "from 1 to 5"),
        ]:
            with pytest.raises(InputError, match=words):
                session.submit(answer, confidence)
        assert session.n_answered == 0 and session.position == 0
    with pytest.raises(InputError, match="reader name is empty"):
        ReaderSession(study, "   ")


def test_no_navigation_means_no_way_back(study):
    with ReaderSession(study, "ann") as session:
        session.submit("real", 3)
        assert not session.can_go_back and not session.can_go_forward
        with pytest.raises(InputError, match="not allowed"):
            session.go_back()
        assert session.position == 1


def test_navigation_and_changing_answers(navigable):
    clock = FakeClock()
    with ReaderSession(navigable, "ann", clock=clock) as session:
        assert not session.can_go_forward  # never past the first unanswered case
        clock.advance(2.0)
        session.submit("real", 2)
        clock.advance(1.0)
        session.submit("real", 2)
        session.go_back()
        session.go_back()
        assert session.position == 0 and session.current_answer.answer == "real"
        clock.advance(3.0)
        session.submit("synthetic", 4)  # change: revision 2, time added up
        changed = session.answers()[session.order[0]]
        assert (changed.answer, changed.revision) == ("synthetic", 2)
        assert changed.seconds == pytest.approx(5.0)
        assert session.position == 1
        session.go_forward()
        assert session.position == 2 and session.current_answer is None
        assert not session.can_go_forward
        with AnswerDB.open(navigable.answers_path, navigable.uid) as db:
            assert db.log_length(1) == 3  # the first answer is kept in the log
    with ReaderSession(navigable, "ann") as again:
        assert again.position == 2  # resumes where the reader was


def test_navigation_without_changes_is_read_only(tmp_path):
    study = make_study(tmp_path, n=2, allow_navigation=True)
    with ReaderSession(study, "ann") as session:
        session.submit("real", 3)
        session.go_back()
        assert not session.can_answer
        with pytest.raises(InputError, match="does not allow changing"):
            session.submit("synthetic", 3)


def test_training_gives_feedback_and_stays_apart(study):
    key = study.read_training_key()
    with ReaderSession(study, "ann", training=True) as training:
        assert sorted(training.order) == study.case_ids(training=True)
        truth = key.truth[training.case_id]
        feedback = training.submit(truth, 3)
        assert feedback.correct is True and feedback.message.startswith("Correct")
        wrong = "real" if key.truth[training.case_id] == "synthetic" else "synthetic"
        feedback = training.submit(wrong, 3)
        assert feedback.correct is False and "Not quite" in feedback.message
        training.restart_training()
        assert training.n_answered == 0
    with ReaderSession(study, "ann") as real_session:  # study mode starts at zero
        assert real_session.n_answered == 0
    with AnswerDB.open(study.answers_path, study.uid) as db:
        assert db.count_answers("training") == 0 and db.count_answers("study") == 0
        assert db.study_answers() == []


def test_two_readers_in_two_processes_at_once(tmp_path):
    """Two readers writing to one study folder at the same time corrupt nothing."""
    study = make_study(tmp_path, n=20, tile_size=16)
    script = textwrap.dedent(
        """
        import sys
        from napari_histodiff.study import ReaderSession
        with ReaderSession(sys.argv[1], sys.argv[2]) as s:
            while not s.finished:
                s.submit("real", 3)
        """
    )
    children = [
        subprocess.Popen(
            [PYTHON, "-c", script, str(study.path), name], env=subprocess_env()
        )
        for name in ("ann", "bob")
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    with AnswerDB.open(study.answers_path, study.uid) as db:
        assert db.integrity_check() == "ok"
        assert db.count_answers("study") == 80


_ANSWERING_CHILD = textwrap.dedent(
    """
    import sys
    from napari_histodiff.study import ReaderSession
    session = ReaderSession(sys.argv[1], sys.argv[2])
    print("ready", flush=True)
    i = 0
    while not session.finished:
        case = session.case_id
        session.submit("synthetic" if i % 3 else "real", 1 + i % 5, "c%d" % i)
        print(case, flush=True)  # reported only after the commit
        i += 1
    """
)


def test_kill_minus_nine_loses_no_committed_answer(tmp_path):
    study = make_study(tmp_path, n=150, tile_size=16)
    reported: list[str] = []
    for round_, stop_after in enumerate((15, 40, 25)):
        child = subprocess.Popen(
            [PYTHON, "-c", _ANSWERING_CHILD, str(study.path), "ann"],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        assert child.stdout.readline().strip() == "ready"
        lines = [child.stdout.readline().strip() for _ in range(stop_after)]
        child.send_signal(signal.SIGKILL)  # mid-answer, at no chosen moment
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL, round_
        lines += [line.strip() for line in child.stdout if line.strip()]
        reported += lines
        child.stdout.close()

        # the database is intact and holds every reported answer
        connection = sqlite3.connect(study.answers_path)
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        connection.close()
        with ReaderSession(study, "ann") as session:
            saved = session.answers()
            assert set(reported) <= set(saved)
            # at most the one answer committed but not yet printed is extra
            assert len(saved) - len(reported) in (0, 1)
            reported = [c for c in session.order if c in saved]  # resync
            assert session.position == len(saved)  # resumes at the next case
    assert len(reported) >= 80


def test_a_failed_write_saves_nothing_and_says_so(study):
    with ReaderSession(study, "ann") as session:
        case_id, reader_id = session.case_id, session._record.reader_id
    db = AnswerDB.open(study.answers_path, study.uid, timeout=0.2)
    blocker = sqlite3.connect(study.answers_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(HistodiffError, match="nothing was saved"):
            db.save_answer(
                reader_id, case_id, 0, "real", 3, "", 1.0, 1, allow_change=False
            )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert db.answers(reader_id) == {}
    db.save_answer(reader_id, case_id, 0, "real", 3, "", 1.0, 1, allow_change=False)
    assert list(db.answers(reader_id)) == [case_id]
    db.close()
