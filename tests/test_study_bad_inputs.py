"""Bad input to ``histodiff study ...`` and to ``napari_histodiff.study``.

Every case must end with exit status 2 (CLI) or a HistodiffError (API), a
message naming the argument or the file, no traceback, and nothing written.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import traceback

import pytest

from napari_histodiff.cli import main
from napari_histodiff.errors import HistodiffError
from napari_histodiff.study import ReaderSession, Study, create_study, write_report
from napari_histodiff.study.answers import AnswerDB
from test_study_support import (
    PYTHON,
    TILE,
    make_sources,
    make_study,
    subprocess_env,
)


def _tree(folder):
    """Every path under ``folder`` with its content (files) or None (folders)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def _cli(capsys, monkeypatch, args, stdin: str = "") -> tuple[int, str]:
    """Run the CLI in-process; an exception other than exit 2 is a failure."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        status = main(["study", *map(str, args)])
    except SystemExit as exc:  # argparse
        status = exc.code
    except Exception:  # noqa: BLE001 - a traceback is the defect under test
        pytest.fail("traceback instead of a message:\n" + traceback.format_exc())
    return status, capsys.readouterr().err


@pytest.fixture
def world(tmp_path):
    """Sources, a study with one answer and training, its key kept outside."""
    real, synthetic = make_sources(tmp_path / "sources", n_images=1)
    key = tmp_path / "private" / "key.json"
    study = create_study(
        tmp_path / "study",
        [real],
        [synthetic],
        n=2,
        tile_size=TILE,
        n_training=1,
        seed=3,
        key_path=key,
    )
    with ReaderSession(study, "ann") as session:
        session.submit("real", 3)
    return {
        "root": tmp_path,
        "real": real,
        "synthetic": synthetic,
        "study": study.path,
        "key": key,
        "file": _file(tmp_path / "plain.txt"),
    }


def _file(path):
    path.write_text("not a folder\n")
    return path


def _create(w, out, *extra):
    return [
        "create",
        out,
        "--real",
        w["real"],
        "--synthetic",
        w["synthetic"],
        "-n",
        "2",
        "--tile-size",
        TILE,
        *extra,
    ]


def _edit_manifest(w, change):
    path = w["study"] / "study.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _first_case(w):
    return sorted(json.loads((w["study"] / "study.json").read_text())["cases"])[0]


# Each case: (id, setup(world) -> (args, stdin), words the message must contain).
# setup may damage the world; the snapshot is taken after it.
CLI_CASES = [
    # -- create
    (
        "create-real-missing",
        lambda w: (_create(w, w["root"] / "new", "--real", w["root"] / "nope"), ""),
        ["nope"],
    ),
    (
        "create-synthetic-empty-folder",
        lambda w: (
            _create(w, w["root"] / "new", "--synthetic", _mkdir(w["root"] / "empty")),
            "",
        ),
        ["empty"],
    ),
    (
        "create-real-not-an-image",
        lambda w: (
            _create(w, w["root"] / "new", "--real", _file(w["root"] / "fake.png")),
            "",
        ),
        ["fake.png"],
    ),
    (
        "create-out-is-a-file",
        lambda w: (_create(w, w["file"]), ""),
        ["plain.txt"],
    ),
    (
        "create-out-under-a-file",
        lambda w: (_create(w, w["file"] / "study"), ""),
        ["plain.txt"],
    ),
    (
        "create-out-is-a-study-with-answers",
        lambda w: (_create(w, w["study"], "--overwrite"), ""),
        ["1 answer"],
    ),
    (
        "create-key-out-inside-out",
        lambda w: (_create(w, w["root"] / "new", "--key-out", w["root"] / "new/k"), ""),
        ["--key-out", "new"],
    ),
    (
        "create-key-out-is-a-folder",
        lambda w: (
            _create(w, w["root"] / "new", "--key-out", w["root"] / "private"),
            "",
        ),
        ["--key-out", "private"],
    ),
    (
        "create-key-out-under-a-file",
        lambda w: (
            _create(w, w["root"] / "new", "--key-out", w["file"] / "key.json"),
            "",
        ),
        ["--key-out", "plain.txt"],
    ),
    (
        "create-key-out-exists",
        lambda w: (_create(w, w["root"] / "new", "--key-out", w["key"]), ""),
        ["--key-out", "key.json"],
    ),
    (
        "create-key-out-not-a-key-with-overwrite",
        lambda w: (
            _create(w, w["root"] / "new", "--key-out", w["file"], "--overwrite"),
            "",
        ),
        ["--key-out", "plain.txt"],
    ),
    (
        "create-key-out-empty",
        lambda w: (_create(w, w["root"] / "new", "--key-out", ""), ""),
        ["--key-out"],
    ),
    (
        "create-tile-size-too-small",
        lambda w: (_create(w, w["root"] / "new", "--tile-size", "8"), ""),
        ["tile_size=8"],
    ),
    (
        "create-min-tissue-above-one",
        lambda w: (_create(w, w["root"] / "new", "--min-tissue", "1.5"), ""),
        ["min_tissue"],
    ),
    (
        "create-negative-seed",
        lambda w: (_create(w, w["root"] / "new", "--seed", "-1"), ""),
        ["seed=-1"],
    ),
    (
        "create-negative-training",
        lambda w: (_create(w, w["root"] / "new", "--training", "-1"), ""),
        ["n_training=-1"],
    ),
    (
        "create-change-without-navigation",
        lambda w: (_create(w, w["root"] / "new", "--allow-change"), ""),
        ["allow_navigation"],
    ),
    (
        "create-tiles-not-a-number",
        lambda w: (_create(w, w["root"] / "new", "-n", "many"), ""),
        ["-n", "many"],
    ),
    # -- take
    (
        "take-missing-study",
        lambda w: (["take", w["root"] / "nope", "--reader", "bob"], "r 3\n"),
        ["nope"],
    ),
    (
        "take-empty-reader",
        lambda w: (["take", w["study"], "--reader", "  "], "r 3\n"),
        ["reader name"],
    ),
    (
        "take-reserved-reader",
        lambda w: (["take", w["study"], "--reader", "Pooled"], "r 3\n"),
        ["pooled"],
    ),
    (
        "take-reader-too-long",
        lambda w: (["take", w["study"], "--reader", "x" * 300], "r 3\n"),
        ["reader name"],
    ),
    (
        "take-training-without-training-set",
        lambda w: (
            ["take", _no_training(w), "--reader", "bob", "--training"],
            "r 3\n",
        ),
        ["training"],
    ),
    (
        "take-case-dir-is-a-file",
        lambda w: (
            ["take", w["study"], "--reader", "bob", "--case-dir", w["file"]],
            "r 3\n",
        ),
        ["--case-dir", "plain.txt"],
    ),
    (
        "take-case-dir-under-a-file",
        lambda w: (
            ["take", w["study"], "--reader", "bob", "--case-dir", w["file"] / "c"],
            "r 3\n",
        ),
        ["--case-dir", "plain.txt"],
    ),
    (
        "take-manifest-not-json",
        lambda w: (
            _write(w["study"] / "study.json", "{ not json")
            and ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["study.json"],
    ),
    (
        "take-manifest-case-id-escapes",
        lambda w: (
            _edit_manifest(
                w,
                lambda m: m["cases"].update(
                    {"../../private/key": m["cases"].pop(_first_case(w))}
                ),
            )
            or ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["study.json", "../../private/key"],
    ),
    (
        "take-manifest-cases-a-list",
        lambda w: (
            _edit_manifest(w, lambda m: m.update(cases=list(m["cases"])))
            or ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["study.json", "cases"],
    ),
    (
        "take-manifest-bad-checksum",
        lambda w: (
            _edit_manifest(w, lambda m: m["cases"].update({_first_case(w): "x"}))
            or ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["study.json", "checksum"],
    ),
    (
        "take-manifest-tile-size-text",
        lambda w: (
            _edit_manifest(w, lambda m: m.update(tile_size="32"))
            or ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["study.json", "tile_size"],
    ),
    (
        "take-answers-db-garbage",
        lambda w: (
            _write(w["study"] / "answers.sqlite", "not a database" * 200)
            and ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["answers.sqlite"],
    ),
    (
        "take-answers-db-other-study",
        lambda w: (
            _foreign_db(w) and ["take", w["study"], "--reader", "bob"],
            "r 3\n",
        ),
        ["answers.sqlite", "another study"],
    ),
    # -- info
    (
        "info-not-a-study",
        lambda w: (["info", w["root"] / "sources"], ""),
        ["sources"],
    ),
    (
        "info-a-file",
        lambda w: (["info", w["file"]], ""),
        ["plain.txt"],
    ),
    (
        "info-newer-format",
        lambda w: (
            _edit_manifest(w, lambda m: m.update(format_version=99))
            or ["info", w["study"]],
            "",
        ),
        ["study.json", "version"],
    ),
    # -- report
    (
        "report-key-missing",
        lambda w: (_report(w, "--key", w["root"] / "nokey.json"), ""),
        ["nokey.json"],
    ),
    (
        "report-key-not-json",
        lambda w: (_report(w, "--key", w["file"]), ""),
        ["plain.txt"],
    ),
    (
        "report-key-of-another-study",
        lambda w: (_report(w, "--key", _foreign_key(w)), ""),
        ["other-key.json", "another study"],
    ),
    (
        "report-key-bad-truth",
        lambda w: (_report(w, "--key", _bad_truth_key(w)), ""),
        ["bad-key.json"],
    ),
    (
        "report-out-is-a-file",
        lambda w: (_report(w, "--key", w["key"], out=w["file"]), ""),
        ["--out", "plain.txt"],
    ),
    (
        "report-out-under-a-file",
        lambda w: (_report(w, "--key", w["key"], out=w["file"] / "r"), ""),
        ["--out", "plain.txt"],
    ),
    (
        "report-out-inside-the-study",
        lambda w: (_report(w, "--key", w["key"], out=w["study"] / "r"), ""),
        ["--out", "inside the study folder"],
    ),
    (
        "report-out-not-empty",
        lambda w: (
            _report(w, "--key", w["key"], out=_mkdir(w["root"] / "full", True)),
            "",
        ),
        ["--out", "full"],
    ),
    (
        "report-out-foreign-files-with-overwrite",
        lambda w: (
            _report(
                w,
                "--key",
                w["key"],
                "--overwrite",
                out=_mkdir(w["root"] / "full", True),
            ),
            "",
        ),
        ["--out", "mine.txt"],
    ),
    (
        "report-answers-missing",
        lambda w: (_report(w, "--key", w["key"], "--answers", w["root"] / "x.db"), ""),
        ["x.db"],
    ),
    (
        "report-answers-of-another-study",
        lambda w: (
            _report(w, "--key", w["key"], "--answers", _foreign_study(w)),
            "",
        ),
        ["answers.sqlite", "another study"],
    ),
    (
        "report-no-answers-yet",
        lambda w: (
            ["report", _no_training(w), "--out", w["root"] / "r", "--key", _nt_key(w)],
            "",
        ),
        ["no reader has answered"],
    ),
]


def _mkdir(path, with_file=False):
    path.mkdir()
    if with_file:
        (path / "mine.txt").write_text("mine")
    return path


def _write(path, text):
    path.write_text(text)
    return True


def _report(w, *extra, out=None):
    return ["report", w["study"], "--out", out or w["root"] / "report", *extra]


def _foreign_study(w):
    if not (w["root"] / "other" / "study").exists():
        make_study(w["root"] / "other", n=2)
    return w["root"] / "other" / "study"


def _foreign_db(w):
    shutil.copy(_foreign_study(w) / "answers.sqlite", w["study"] / "answers.sqlite")
    return True


def _foreign_key(w):
    target = w["root"] / "other-key.json"
    shutil.copy(_foreign_study(w) / "key" / "truth.json", target)
    return target


def _bad_truth_key(w):
    content = json.loads(w["key"].read_text())
    first = sorted(content["cases"])[0]
    content["cases"][first]["truth"] = "maybe"
    target = w["root"] / "bad-key.json"
    target.write_text(json.dumps(content))
    return target


def _no_training(w):
    """A second study (no training set, no answers) with its key outside."""
    folder = w["root"] / "plain-study"
    if not folder.exists():
        create_study(
            folder,
            [w["real"]],
            [w["synthetic"]],
            n=2,
            tile_size=TILE,
            key_path=w["root"] / "plain-key.json",
        )
    return folder


def _nt_key(w):
    return w["root"] / "plain-key.json"


@pytest.mark.parametrize(
    ("setup", "words"),
    [pytest.param(c[1], c[2], id=c[0]) for c in CLI_CASES],
)
def test_cli_bad_input(world, capsys, monkeypatch, setup, words):
    args, stdin = setup(world)
    capsys.readouterr()
    before = _tree(world["root"])
    status, err = _cli(capsys, monkeypatch, args, stdin)
    assert status == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert _tree(world["root"]) == before


def test_cli_bad_input_in_a_subprocess_has_no_traceback(world):
    """The real command line, for a few cases: exit 2, one line, no traceback."""
    for args in (
        _create(world, world["root"] / "new", "--key-out", world["root"] / "new/k"),
        ["take", world["study"], "--reader", "bob", "--case-dir", world["file"]],
        _report(world, "--key", world["key"], out=world["file"]),
    ):
        before = _tree(world["root"])
        done = subprocess.run(
            [PYTHON, "-m", "napari_histodiff.cli", "study", *map(str, args)],
            input="q\n",
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "error:" in done.stderr
        assert _tree(world["root"]) == before


def test_a_second_live_session_is_refused_by_the_cli(world, capsys, monkeypatch):
    def files():  # SQLite's shared-memory index changes whenever anyone reads
        return {
            k: v
            for k, v in _tree(world["root"]).items()
            if not k.endswith(("-shm", "-wal"))
        }

    with ReaderSession(world["study"], "ann"):
        before = files()
        status, err = _cli(
            capsys, monkeypatch, ["take", world["study"], "--reader", "ANN"], "r 3\n"
        )
        assert status == 2 and "'ANN'" in err and "another window" in err
        assert files() == before
    with AnswerDB.open(world["study"] / "answers.sqlite", None) as db:
        assert db.count_answers() == 1


# -- the Python API -------------------------------------------------------------
def _api_create(w, **options):
    settings = {"n": 2, "tile_size": TILE, **options}
    return lambda: create_study(
        w["root"] / "new", [w["real"]], [w["synthetic"]], **settings
    )


API_CASES = [
    ("create-n-text", lambda w: _api_create(w, n="3"), "n='3'"),
    ("create-n-bool", lambda w: _api_create(w, n=True), "n=True"),
    ("create-tile-size-float", lambda w: _api_create(w, tile_size=32.5), "tile_size"),
    ("create-seed-text", lambda w: _api_create(w, seed="x"), "seed='x'"),
    ("create-min-tissue-text", lambda w: _api_create(w, min_tissue="half"), "min_t"),
    ("create-design-unknown", lambda w: _api_create(w, design="3afc"), "design"),
    (
        "create-no-real-images",
        lambda w: (
            lambda: create_study(
                w["root"] / "new", [], [w["synthetic"]], n=2, tile_size=TILE
            )
        ),
        "real",
    ),
    (
        "create-key-inside",
        lambda w: _api_create(w, key_path=w["root"] / "new" / "key.json"),
        "key_path",
    ),
    ("open-none", lambda w: lambda: Study.open(None), "study=None"),
    ("open-empty-string", lambda w: lambda: Study.open(""), "study=''"),
    (
        "session-reader-none",
        lambda w: lambda: ReaderSession(w["study"], None),
        "reader=None",
    ),
    (
        "session-no-training",
        lambda w: (lambda f: lambda: ReaderSession(f, "bob", training=True))(
            _no_training(w)
        ),
        "training",
    ),
    (
        "session-bad-answer",
        lambda w: lambda: _submit(w, "maybe", 3),
        "answer='maybe'",
    ),
    ("session-confidence-zero", lambda w: lambda: _submit(w, "real", 0), "confid"),
    ("session-confidence-bool", lambda w: lambda: _submit(w, "real", True), "confid"),
    ("session-confidence-missing", lambda w: lambda: _submit(w, "real", None), "conf"),
    (
        "load-unknown-case",
        lambda w: lambda: Study.open(w["study"]).load_case("0123abcd"),
        "0123abcd",
    ),
    (
        "load-case-escaping",
        lambda w: lambda: Study.open(w["study"]).case_path("../key"),
        "../key",
    ),
    (
        "read-key-folder",
        lambda w: lambda: Study.open(w["study"]).read_key(w["root"] / "private"),
        "private",
    ),
    (
        "answers-db-text-file",
        lambda w: lambda: AnswerDB.open(w["file"], None),
        "plain.txt",
    ),
    (
        "report-extra-databases-one-string",
        lambda w: (
            lambda: write_report(
                w["study"],
                w["root"] / "r",
                key_path=w["key"],
                extra_databases=str(w["study"]),
            )
        ),
        "extra_databases",
    ),
    (
        "report-extra-database-none",
        lambda w: (
            lambda: write_report(
                w["study"], w["root"] / "r", key_path=w["key"], extra_databases=[None]
            )
        ),
        "--answers",
    ),
    (
        "report-out-none",
        lambda w: lambda: write_report(w["study"], None, key_path=w["key"]),
        "out=None",
    ),
]


def _submit(w, answer, confidence):
    with ReaderSession(w["study"], "ann") as session:
        session.submit(answer, confidence)


@pytest.mark.parametrize(
    ("setup", "words"),
    [pytest.param(c[1], c[2], id=c[0]) for c in API_CASES],
)
def test_api_bad_input(world, setup, words):
    call = setup(world)
    before = _tree(world["root"])
    with pytest.raises(HistodiffError) as caught:
        call()
    assert words in str(caught.value)
    assert _tree(world["root"]) == before
