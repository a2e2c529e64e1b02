"""``histodiff study`` create / take / info / report, in subprocesses and in-process."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from napari_histodiff.cli import main
from test_study_support import PYTHON, TILE, make_sources, subprocess_env


def _histodiff(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "napari_histodiff.cli", "study", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )


def test_round_trip_in_subprocesses(tmp_path, monkeypatch, capsys):
    """create, take (quit and resume) and report as separate processes."""
    real, synthetic = make_sources(tmp_path / "sources")
    study, cases = tmp_path / "study", tmp_path / "c"
    options = f"-n 3 --tile-size {TILE} --training 1 --seed 4".split()
    done = _histodiff(
        "create", study, "--real", real, "--synthetic", synthetic, *options
    )
    assert done.returncode == 0, done.stderr
    assert "6 cases, 2 training cases" in done.stdout and "move key/" in done.stdout

    # a reader answers two cases, quits, resumes in a new process and finishes
    reader = ["take", study, "--reader", "ann", "--case-dir", cases]
    first = _histodiff(*reader, stdin="s 4 too smooth\nr\nr 2\nq\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("saved") == 2 and "add a confidence" in first.stderr
    assert "case 3 of 6" in first.stdout and (cases / "case.png").is_file()
    second = _histodiff(*reader, stdin="r 3\ns 3\nr 5\ns 1\n")
    assert second.stdout.startswith("Reader study") and "case 3 of 6" in second.stdout
    assert "all 6 cases answered" in second.stdout

    report = _histodiff("report", study, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "pooled: accuracy" in report.stdout and "over 6 answers" in report.stdout
    assert (tmp_path / "report" / "report.md").is_file()
    assert "too smooth" in (tmp_path / "report" / "answers.csv").read_text()

    # the rest in-process (each new process costs the package's import time)
    monkeypatch.setattr("sys.stdin", io.StringIO("r 3\n"))
    assert main(["study", *map(str, reader), "--training"]) == 0
    out = capsys.readouterr().out
    assert "TRAINING" in out and ("Correct" in out or "Not quite" in out)
    assert main(["study", "info", str(study), "--json"]) == 0
    content = json.loads(capsys.readouterr().out)
    assert content["design"] == "single" and content["cases"] == 6
    assert content["key_inside_folder"] is True
    assert [(r["name"], r["mode"], r["answered"]) for r in content["readers"]] == [
        ("ann", "study", 6),
        ("ann", "training", 1),
    ]
    assert main(["study", "report", str(study), "--out", str(tmp_path / "report")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["study", "info", str(tmp_path / "sources")]) == 2
    err = capsys.readouterr().err
    assert "histodiff study: error:" in err and "sources" in err


def test_round_trip_in_process(tmp_path, monkeypatch, capsys):
    real, synthetic = make_sources(tmp_path / "sources")
    study = tmp_path / "pairs"
    key = tmp_path / "private" / "key.json"
    assert (
        main(
            [
                "study",
                "create",
                str(study),
                "--real",
                str(real),
                "--synthetic",
                str(synthetic),
                "--design",
                "2afc",
                "-n",
                "4",
                "--tile-size",
                str(TILE),
                "--allow-navigation",
                "--allow-change",
                "--key-out",
                str(key),
            ]
        )
        == 0
    )
    assert key.is_file() and not (study / "key").exists()
    for reader, lines in (
        ("ann", "l 5\nr 1\nb\nr 2 changed\nl 3\nr 4\n"),
        ("bob", "r 3\nr 3\nr 3\nr 3\nq\n"),
    ):
        monkeypatch.setattr("sys.stdin", io.StringIO(lines))
        assert (
            main(
                [
                    "study",
                    "take",
                    str(study),
                    "--reader",
                    reader,
                    "--case-dir",
                    str(tmp_path / "cases"),
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "Which of the two tiles is synthetic?" in out
    assert "(answered: right)" in out  # going back shows the saved answer

    assert main(["study", "report", str(study), "--out", str(tmp_path / "r")]) == 2
    assert "--key" in capsys.readouterr().err
    assert (
        main(
            [
                "study",
                "report",
                str(study),
                "--out",
                str(tmp_path / "r"),
                "--key",
                str(key),
                "--no-plots",
            ]
        )
        == 0
    )
    assert "over 8 answers" in capsys.readouterr().out
    assert not list((tmp_path / "r").glob("*.png"))
    summary = (tmp_path / "r" / "summary.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in summary[1:]] == [
        ["ann", "4"],
        ["bob", "4"],
        ["pooled", "8"],
    ]

    assert main(["study", "info", str(study)]) == 0
    info = capsys.readouterr().out
    assert "design: 2afc; 4 cases" in info and "kept elsewhere" in info
    assert "reader ann: 4 of 4 answered" in info


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--design", "rating", "--allow-change"], "allow_navigation"),
        (["-n", "100000"], "only"),
        (["-n", "0"], "n=0"),
    ],
)
def test_create_errors_exit_2_with_a_clear_message(tmp_path, capsys, args, words):
    real, synthetic = make_sources(tmp_path / "sources", n_images=1)
    status = main(
        [
            "study",
            "create",
            str(tmp_path / "s"),
            "--real",
            str(real),
            "--synthetic",
            str(synthetic),
            "--tile-size",
            str(TILE),
            *args,
        ]
    )
    assert status == 2 and words in capsys.readouterr().err
