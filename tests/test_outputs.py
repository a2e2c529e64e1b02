"""Outputs are replaced only when ours, written whole or not at all; canvases
left by killed runs are found and removed (issue 17)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _helpers import ROOT, run_cli
from napari_histodiff.errors import OutputExistsError, OutputWriteError
from napari_histodiff.outputs import atomic_output, project_output


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _mask(folder: Path) -> Path:
    from PIL import Image

    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 2
    Image.fromarray(mask).save(folder / "mask.png")
    return folder / "mask.png"


def test_atomic_output_replaces_own_folder_and_keeps_others(tmp_path):
    from napari_histodiff.models.factory import init_model

    init_model(tmp_path / "m", "a,b", patch_size=16, seed=0)
    card = (tmp_path / "m" / "histodiff.json").read_text()
    assert project_output(tmp_path / "m") == "model"
    init_model(tmp_path / "m", "a,b,c", patch_size=16, seed=1, overwrite=True)
    assert (tmp_path / "m" / "histodiff.json").read_text() != card
    assert _hidden(tmp_path) == []  # no temporary or old folder left

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "letter.txt").write_text("dear")
    with pytest.raises(OutputExistsError, match=str(docs)):
        with atomic_output(docs, True, "out", folder=True):
            pass
    assert (docs / "letter.txt").read_text() == "dear"


def test_failed_replacement_leaves_the_old_output(tmp_path):
    (tmp_path / "m.npy").write_bytes(b"old")
    with pytest.raises(OutputWriteError, match="No space left"):
        with atomic_output(tmp_path / "m.npy", True, "out") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (tmp_path / "m.npy").read_bytes() == b"old"
    assert _hidden(tmp_path) == []


def test_full_disk_during_generate_leaves_nothing_and_rerun_works(
        tmp_path, tiny_model_dir, monkeypatch, capsys):
    import ome_zarr.writer

    from napari_histodiff.cli import main

    mask = _mask(tmp_path)
    out = tmp_path / "o.zarr"
    args = ["generate", "--model", str(tiny_model_dir), "--mask", str(mask),
            "--out", str(out), "--steps", "1", "--quiet", "--store", "zarr"]
    real = ome_zarr.writer.write_multiscale_labels

    def full_disk(*a, **k):  # the image is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ome_zarr.writer, "write_multiscale_labels", full_disk)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "out:" in err and "No space left on device" in err and str(out) in err
    assert not out.exists() and _hidden(tmp_path) == []
    monkeypatch.setattr(ome_zarr.writer, "write_multiscale_labels", real)
    assert main(args) == 0
    assert project_output(out) == "ome-zarr" and _hidden(tmp_path) == []


def test_generate_overwrite_replaces_its_own_output(tmp_path, tiny_model_dir):
    from napari_histodiff.io.omezarr import read_synthesis

    mask = _mask(tmp_path)
    out = tmp_path / "o.zarr"
    base = ["generate", "--model", str(tiny_model_dir), "--mask", str(mask),
            "--out", str(out), "--steps", "1", "--quiet"]
    assert run_cli(*base, "--seed", "1").returncode == 0
    res = run_cli(*base, "--seed", "2", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert read_synthesis(out)["settings"]["seed"] == 2
    assert _hidden(tmp_path) == []


def _killed_canvas(folder: Path) -> Path:
    """A canvas store whose process was killed with SIGKILL mid-run."""
    canvas = folder / ".histodiff-canvas-killed0"
    code = (
        "import sys, time\n"
        "from napari_histodiff.sampling.store import ZarrStore\n"
        f"s = ZarrStore({str(canvas)!r})\n"
        "s.create('latents', (3, 8, 8), 'float32')\n"
        "s.set_attrs(status='running', step=1, total_steps=9)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    attrs = json.loads((canvas / "zarr.json").read_text())["attributes"]
    assert attrs["histodiff_canvas"]["pid"] == proc.pid
    assert attrs["status"] == "running"
    return canvas


def test_canvases_list_and_clean_remove_only_stale_canvases_of_ours(tmp_path):
    from napari_histodiff.sampling.store import ZarrStore

    stale = _killed_canvas(tmp_path)
    alive = tmp_path / ".histodiff-canvas-alive00"
    ZarrStore(alive)  # made by this (running) process
    foreign = tmp_path / ".histodiff-canvas-notours"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")

    res = run_cli("canvases", "list", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert f"{stale}: stale" in res.stdout and f"{alive}: running" in res.stdout
    assert "notours" not in res.stdout
    res = run_cli("canvases", "clean", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "1 stale canvas store removed" in res.stdout
    assert not stale.exists() and alive.exists()
    assert (foreign / "notes.txt").read_text() == "mine"


def test_generate_removes_stale_canvases_beside_its_output(tmp_path, tiny_model_dir):
    stale = _killed_canvas(tmp_path)
    mask = _mask(tmp_path)
    res = run_cli("generate", "--model", str(tiny_model_dir), "--mask", str(mask),
                  "--out", str(tmp_path / "o.zarr"), "--steps", "1", "--quiet",
                  "--store", "zarr")
    assert res.returncode == 0, res.stderr
    assert "removed a stale canvas" in res.stderr and str(stale) in res.stderr
    assert _hidden(tmp_path) == []


def test_open_store_accepts_new_or_empty_and_reuses_own_canvas(tmp_path):
    from napari_histodiff.sampling.store import open_store

    store = open_store("zarr", (8, 8), tmp_path / "c")
    store.set_attrs(settings={"seed": 1})
    assert project_output(tmp_path / "c") == "canvas"
    with pytest.raises(OutputExistsError, match="store_path"):
        open_store("zarr", (8, 8), tmp_path / "c")
    again = open_store("zarr", (8, 8), tmp_path / "c", overwrite=True)
    assert again.attrs["settings"] == {"seed": 1}
    (tmp_path / "empty").mkdir()
    open_store("zarr", (8, 8), tmp_path / "empty")
