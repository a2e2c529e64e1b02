"""Reader-study reliability (issue 17): key placement, manifest paths, one live
session per reader, escaped reader text, blinded case files, atomic outputs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_histodiff.cli import main
from napari_histodiff.cli.study import _save_case
from napari_histodiff.errors import InputError, OutputExistsError
from napari_histodiff.study import ReaderSession, Study, create_study, write_report
from napari_histodiff.study import report as report_module
from napari_histodiff.study import store as store_module
from napari_histodiff.study.answers import AnswerDB
from test_study_support import TILE, make_sources, make_study


def _tree(folder):
    """Every path under ``folder`` with its content (files) or None (folders)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = path.read_bytes() if path.is_file() else None
    return found


def _create_args(out, real, synthetic, *extra):
    return [
        "study",
        "create",
        str(out),
        "--real",
        str(real),
        "--synthetic",
        str(synthetic),
        "-n",
        "2",
        "--tile-size",
        str(TILE),
        *map(str, extra),
    ]


# -- 4: the key is never written inside the study folder ------------------------
@pytest.mark.parametrize("where", ["file", "subfolder", "itself", "symlink"])
def test_key_out_inside_the_study_folder_is_refused_before_writing(
    tmp_path, capsys, where
):
    real, synthetic = make_sources(tmp_path / "sources", n_images=1)
    study = tmp_path / "S"
    key = {
        "file": study / "k.json",
        "subfolder": study / "private" / "k.json",
        "itself": study,
        "symlink": tmp_path / "link" / "k.json",
    }[where]
    if where == "symlink":
        os.symlink(study, tmp_path / "link")  # dangling: S does not exist yet
    before = _tree(tmp_path)
    status = main(_create_args(study, real, synthetic, "--key-out", key))
    err = capsys.readouterr().err
    assert status == 2, err
    assert "--key-out" in err and str(study) in err and "Traceback" not in err
    assert not study.exists()
    assert _tree(tmp_path) == before


def test_key_out_inside_an_existing_study_is_refused_with_overwrite(tmp_path):
    study = make_study(tmp_path, n=2)
    before = _tree(tmp_path)
    with pytest.raises(InputError, match="inside the study folder"):
        create_study(
            study.path,
            [tmp_path / "sources" / "real"],
            [tmp_path / "sources" / "synthetic"],
            n=2,
            tile_size=TILE,
            key_path=study.path / "cases" / "k.json",
            overwrite=True,
        )
    assert _tree(tmp_path) == before


# -- 11: case ids and manifest paths ------------------------------------------
def _rewrite_manifest(study: Study, change) -> None:
    path = study.path / "study.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_case_id_leaving_the_study_folder_is_refused(tmp_path):
    study = make_study(tmp_path, n=2)
    victim = study.case_ids()[0]
    outside = tmp_path / "secret.npy"  # a file of the right size, outside
    shutil.copy(study.case_path(victim), outside)

    def escape(manifest):
        manifest["cases"]["../../secret"] = manifest["cases"].pop(victim)

    _rewrite_manifest(study, escape)
    with pytest.raises(InputError, match=r"study\.json: case id '\.\./\.\./secret'"):
        Study.open(study.path)


@pytest.mark.parametrize("bad_id", ["a/b", "..", "x" * 65, "", "é"])
def test_case_ids_outside_the_alphabet_are_refused(tmp_path, bad_id):
    study = make_study(tmp_path, n=2)

    def rename(manifest):
        first = sorted(manifest["cases"])[0]
        manifest["cases"][bad_id] = manifest["cases"].pop(first)

    _rewrite_manifest(study, rename)
    with pytest.raises(InputError, match="not a valid case id"):
        Study.open(study.path)


def test_a_case_file_linked_outside_the_study_folder_is_not_read(tmp_path):
    study = make_study(tmp_path, n=2)
    victim = study.case_ids()[0]
    outside = tmp_path / "elsewhere.npy"
    path = study.case_path(victim)
    shutil.move(path, outside)
    os.symlink(outside, path)
    with pytest.raises(InputError, match=f"case '{victim}' of .*study.json.*outside"):
        Study.open(study.path)


# -- 14: one live session per reader ------------------------------------------
def test_a_second_live_session_of_a_reader_is_refused(tmp_path, monkeypatch, capsys):
    study = make_study(
        tmp_path, n=2, n_training=1, allow_navigation=True, allow_change=True
    )
    first = ReaderSession(study, "ann")
    first.submit("real", 3)
    with pytest.raises(InputError, match="another window"):
        ReaderSession(study, " ANN ")  # the same reader
    monkeypatch.setattr("sys.stdin", io.StringIO("s 2\n"))
    assert main(["study", "take", str(study.path), "--reader", "ann"]) == 2
    assert "ann" in capsys.readouterr().err
    with (
        ReaderSession(study, "bob") as other,  # other readers are not blocked,
        ReaderSession(study, "ann", training=True) as training,  # nor training
    ):
        assert other.n_answered == 0 and training.n_answered == 0
    first.close()
    with ReaderSession(study, "ann") as again:  # released on close
        assert again.n_answered == 1
    with AnswerDB.open(study.answers_path, study.uid) as db:
        assert db.count_answers("study") == 1
        reader = db.reader("ann", "study")
        assert db.log_length(reader.reader_id) == 1


def test_an_answer_saved_meanwhile_under_the_same_name_is_not_overwritten(tmp_path):
    study = make_study(tmp_path, n=2, allow_navigation=True, allow_change=True)
    with ReaderSession(study, "ann") as session:
        case_id, reader_id = session.case_id, session._record.reader_id
    with AnswerDB.open(study.answers_path, study.uid) as db:
        db.save_answer(reader_id, case_id, 0, "real", 3, "", 1.0, 1, allow_change=True)
        with pytest.raises(InputError, match="another session"):
            db.save_answer(
                reader_id,
                case_id,
                0,
                "synthetic",
                3,
                "",
                1.0,
                1,
                allow_change=True,
                expected_revision=0,
            )
        assert db.answers(reader_id)[case_id].answer == "real"
        assert db.log_length(reader_id) == 1


def test_a_killed_session_does_not_block_its_reader(tmp_path):
    import subprocess
    import textwrap

    from test_study_support import PYTHON, subprocess_env

    study = make_study(tmp_path, n=2)
    script = textwrap.dedent(
        """
        import os, sys
        from napari_histodiff.study import ReaderSession
        session = ReaderSession(sys.argv[1], "ann")
        print("open", flush=True)
        sys.stdin.readline()
        os._exit(1)  # dies without closing
        """
    )
    child = subprocess.Popen(
        [PYTHON, "-c", script, str(study.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert child.stdout.readline().strip() == "open"
    with pytest.raises(InputError, match="another window or process"):
        ReaderSession(study, "ann")
    child.communicate("\n", timeout=60)
    with ReaderSession(study, "ann") as session:
        assert session.n_answered == 0


# -- 15: reader text is escaped in the outputs --------------------------------
def test_reader_text_is_escaped_in_csv_and_markdown(tmp_path):
    study = make_study(tmp_path, n=2, title="<script>alert(1)</script> study")
    evil = "<img src=x onerror=alert(1)> [x](javascript:alert(1))"
    with ReaderSession(study, evil) as session:
        session.submit("real", 3, '=HYPERLINK("http://evil","click")')
        session.submit("real", 3, "+1")
        session.submit("real", 3, "@SUM(A1)")
        session.submit("real", 3, "-2 fine")
    with ReaderSession(study, "=cmd|' /C calc'!A0") as session:
        session.submit("synthetic", 2, "=1+1")
    report = write_report(study, tmp_path / "report", plots=False)
    rows = list(csv.DictReader((report.folder / "answers.csv").open()))
    comments = {row["comment"] for row in rows}
    assert comments == {
        '\'=HYPERLINK("http://evil","click")',
        "'+1",
        "'@SUM(A1)",
        "'-2 fine",
        "'=1+1",
    }
    assert "'=cmd|' /C calc'!A0" in {row["reader"] for row in rows}
    for name in ("summary.csv", "confusion.csv", "by_confidence.csv"):
        for row in csv.reader((report.folder / name).open()):
            assert not row[0].startswith(("=", "+", "-", "@")), (name, row)
    text = (report.folder / "report.md").read_text()
    assert "<img" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in text
    assert "](javascript" not in text and "\\[x\\]" in text
    assert "&lt;script&gt;" in text.splitlines()[0]


# -- 16: case images carry no information in their size -----------------------
@pytest.mark.parametrize("tiles", [1, 2])
def test_case_png_size_does_not_depend_on_the_pixels(tmp_path, tiles):
    rng = np.random.default_rng(0)
    flat = np.full((tiles, 48, 48, 3), 230, np.uint8)
    noise = rng.integers(0, 256, (tiles, 48, 48, 3), dtype=np.uint8)
    sizes = []
    for name, pixels in (("flat", flat), ("noise", noise)):
        folder = tmp_path / name
        folder.mkdir()
        path = _save_case(pixels, folder)
        sizes.append(path.stat().st_size)
        decoded = np.asarray(Image.open(path))
        assert np.array_equal(decoded[:, :48], pixels[0])
        assert [p.name for p in folder.iterdir()] == ["case.png"]
    assert sizes[0] == sizes[1]


# -- atomic outputs -------------------------------------------------------------
def test_a_failed_overwrite_keeps_the_old_study_and_key(tmp_path, monkeypatch):
    real, synthetic = make_sources(tmp_path / "sources", n_images=1)
    key = tmp_path / "private" / "key.json"
    options = {"n": 2, "tile_size": TILE, "key_path": key}
    old = create_study(tmp_path / "S", [real], [synthetic], **options)
    before = _tree(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_json", broken)
    with pytest.raises(InputError, match="No space left"):
        create_study(old.path, [real], [synthetic], overwrite=True, **options)
    assert _tree(tmp_path) == before  # old study and key intact, no leftovers
    monkeypatch.undo()
    new = create_study(old.path, [real], [synthetic], overwrite=True, **options)
    assert new.uid != old.uid and new.read_key(key).study_uid == new.uid
    assert not [p for p in tmp_path.rglob(".*") if ".sessions" not in str(p)]


def test_an_overwrite_never_replaces_a_file_that_is_not_a_key(tmp_path):
    real, synthetic = make_sources(tmp_path / "sources", n_images=1)
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    with pytest.raises(OutputExistsError, match="not a study truth key"):
        create_study(
            tmp_path / "S",
            [real],
            [synthetic],
            n=2,
            tile_size=TILE,
            key_path=mine,
            overwrite=True,
        )
    assert mine.read_text() == '{"mine": true}' and not (tmp_path / "S").exists()


def test_reports_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    study = make_study(tmp_path, n=2)
    with ReaderSession(study, "A") as session:
        session.submit("real", 3)
    out = tmp_path / "report"
    write_report(study, out, plots=False)
    before = _tree(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "_markdown", broken)
    with pytest.raises(InputError, match="--out"):
        write_report(study, out, overwrite=True, plots=False)
    assert _tree(tmp_path) == before  # the old report is whole, nothing left over
    monkeypatch.undo()
    # a folder holding other files is never replaced, even with overwrite
    (out / "my-notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a study report"):
        write_report(study, out, overwrite=True, plots=False)
    assert (out / "my-notes.txt").read_text() == "keep me"
    # an earlier report is replaced as a whole (stale plots do not survive)
    (out / "my-notes.txt").unlink()
    (out / "accuracy.png").write_bytes(b"stale")
    write_report(study, out, overwrite=True, plots=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(report_module.REPORT_FILES)


def test_the_report_is_never_written_inside_the_study_folder(tmp_path, capsys):
    study = make_study(tmp_path, n=2)
    with ReaderSession(study, "A") as session:
        session.submit("real", 3)
    before = _tree(tmp_path)
    out = study.path / "report"
    assert main(["study", "report", str(study.path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "inside the study folder" in err
    assert _tree(tmp_path) == before


def test_safe_cell_follows_owasp():
    from napari_histodiff.study.report import safe_cell

    for text in ("=1", "+1", "-1", "@a", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    for text in ("", "ok", "1", "a=b", " =1"):
        assert safe_cell(text) == text
