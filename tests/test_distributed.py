"""Distributed generation: ``histodiff generate-many`` and one canvas across
workers, on a 2-worker dask cluster in this process (threads, 1 each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("distributed")

from napari_histodiff.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster of threads; yields its scheduler address."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as lc, Client(lc) as client:
        yield client


def _manifest(tmp_path, rows, header="mask,out,seed,guidance,steps"):
    path = tmp_path / "jobs" / "manifest.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _mask(tmp_path, name="a.npy", shape=(32, 48)):
    mask = np.zeros(shape, np.uint8)
    mask[: shape[0] // 2] = 1
    mask[shape[0] // 2 :] = 2
    (tmp_path / "jobs").mkdir(exist_ok=True)
    np.save(tmp_path / "jobs" / name, mask)
    return mask


def test_jobs_run_resume_and_fail_alone(tmp_path, tiny_model_dir, cluster, capsys):
    from napari_histodiff.io.omezarr import read_synthesis
    from napari_histodiff.pipelines.cache import MODEL_CACHE

    mask = _mask(tmp_path)
    manifest = _manifest(tmp_path, ["a.npy,one,0,2,2", "a.npy,two,5,1.5,2",
                                    "gone.npy,three,1,2,2"])
    out = tmp_path / "out"
    report = tmp_path / "r1.json"
    loads = MODEL_CACHE.loads
    args = ["generate-many", str(manifest), "--out", str(out), "--model",
            str(tiny_model_dir), "--scheduler", cluster.scheduler.address,
            "--device", "cpu", "--strategy", "tiled", "--quiet"]
    assert main([*args, "--json", str(report)]) == 1  # one row failed
    err = capsys.readouterr().err
    assert "row 4 (three.zarr) failed" in err and "gone.npy" in err
    results = {r["row"]: r for r in json.loads(report.read_text())["results"]}
    assert [results[r]["status"] for r in (2, 3, 4)] == ["done", "done", "failed"]
    # both workers share this process's cache: the model was loaded once
    assert MODEL_CACHE.loads - loads <= 1
    for name, seed in (("one.zarr", 0), ("two.zarr", 5)):
        data = read_synthesis(out / name)
        assert data["image"][0].shape == (3, *mask.shape)
        assert data["settings"]["seed"] == seed
        assert np.array_equal(np.asarray(data["mask"][0]), mask)
    assert not (out / "three.zarr").exists()
    assert not [p for p in out.iterdir() if ".histodiff-tmp-" in p.name]
    stamp = (out / "one.zarr" / "zarr.json").stat().st_mtime_ns

    # a re-run skips the finished outputs, and still reports the bad row
    report2 = tmp_path / "r2.json"
    assert main([*args, "--json", str(report2)]) == 1
    again = {r["row"]: r["status"] for r in
             json.loads(report2.read_text())["results"]}
    assert again == {2: "skipped", 3: "skipped", 4: "failed"}
    assert (out / "one.zarr" / "zarr.json").stat().st_mtime_ns == stamp

    # the row fixed: only it runs
    np.save(tmp_path / "jobs" / "gone.npy", mask)
    report3 = tmp_path / "r3.json"
    assert main([*args, "--json", str(report3)]) == 0
    third = {r["row"]: r["status"] for r in
             json.loads(report3.read_text())["results"]}
    assert third == {2: "skipped", 3: "skipped", 4: "done"}


def test_finished_output_of_other_settings_is_not_skipped(tmp_path, tiny_model_dir,
                                                          cluster, capsys):
    _mask(tmp_path)
    out = tmp_path / "out"
    base = ["generate-many", "--out", str(out), "--model", str(tiny_model_dir),
            "--scheduler", cluster.scheduler.address, "--device", "cpu",
            "--strategy", "tiled", "--quiet"]
    first = _manifest(tmp_path, ["a.npy,one,0,2,1"])
    assert main([base[0], str(first), *base[1:]]) == 0
    changed = _manifest(tmp_path, ["a.npy,one,9,2,1"])  # another seed
    assert main([base[0], str(changed), *base[1:]]) == 1
    err = capsys.readouterr().err
    assert "row 2" in err and "other settings" in err and "--overwrite" in err


@pytest.mark.parametrize("row, what", [
    ("../a.npy,one,0,2,2", "'..'"),
    ("/etc/a.npy,one,0,2,2", "absolute"),
    ("a.npy,../one,0,2,2", "'..'"),
    ("a.npy,one,-1,2,2", "seed"),
    ("a.npy,one,0,lots,2", "guidance"),
    ("a.npy,one,0,2,0", "steps"),
])
def test_bad_rows_are_refused_before_any_work(tmp_path, row, what, capsys):
    _mask(tmp_path)
    manifest = _manifest(tmp_path, ["a.npy,fine,0,2,2", row])
    rc = main(["generate-many", str(manifest), "--out", str(tmp_path / "out"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "row 3" in err and what in err
    assert not (tmp_path / "out").exists()  # nothing was started or made


def test_bad_manifest_and_arguments_exit_2(tmp_path, capsys):
    _mask(tmp_path)
    bad_header = _manifest(tmp_path, ["a.npy,one,0"], header="mask,out,sede")
    assert main(["generate-many", str(bad_header), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sede" in err and "seed" in err
    same_out = _manifest(tmp_path, ["a.npy,one,0,2,2", "a.npy,one.zarr,1,2,2"])
    assert main(["generate-many", str(same_out), "--out", str(tmp_path)]) == 2
    assert "row 2" in capsys.readouterr().err
    good = _manifest(tmp_path, ["a.npy,one,0,2,2"])
    assert main(["generate-many", str(good), "--out", str(tmp_path / "o"),
                 "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["generate-many", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path)]) == 2
    assert "none.csv" in capsys.readouterr().err
    for flag, value in (("--workers", "0"), ("--threads-per-worker", "x")):
        with pytest.raises(SystemExit) as exc:
            main(["generate-many", str(good), "--out", str(tmp_path), flag, value])
        assert exc.value.code == 2
        assert flag in capsys.readouterr().err


def test_partition_gives_each_chunk_one_band():
    from napari_histodiff.distributed.canvas import partition

    for height, chunk, parts in ((64, 32, 2), (1000, 256, 3), (100, 32, 8)):
        bands = partition(height, chunk, parts)
        assert bands[0].row0 == 0 and bands[-1].row1 == height
        for a, b in zip(bands, bands[1:], strict=False):
            assert a.row1 == b.row0 and a.row1 % chunk == 0
        assert len(bands) == min(parts, -(-height // chunk))


def test_single_canvas_across_workers_equals_one_process(tmp_path, tiny_model_dir,
                                                         cluster):
    """Two bands of 32 rows, each on its own worker, a stochastic scheduler
    (per-chunk noise), plain and blended random-shift steps: the same pixels
    as one process."""
    import torch

    from napari_histodiff.distributed.canvas import generate_canvas
    from napari_histodiff.io.omezarr import read_synthesis
    from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
    from napari_histodiff.sampling.strategies import RandomShift

    mask = np.zeros((64, 128), np.uint8)
    mask[:30, :70] = 1
    mask[30:] = 2
    mask[10:50, 90:120] = 3
    settings = dict(guidance_scale=2.0, num_inference_steps=3, scheduler="ddpm",
                    strategy=RandomShift(blend_steps=1), seed=3, window_batch=4,
                    chunk=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = HistoDiffPipeline.from_pretrained(tiny_model_dir, device="cpu")
        ref = pipe(mask, store="memory", **settings)
        res = generate_canvas(cluster, str(tiny_model_dir), mask,
                              tmp_path / "canvas.zarr", device="cpu", **settings)
    finally:
        torch.set_num_threads(threads)
    assert [b["rows"] for b in res["bands"]] == [[0, 32], [32, 64]]
    # the windows were split: each band did fewer than one process did
    assert all(b["windows"] < ref.stats["windows"] for b in res["bands"])
    image = np.moveaxis(np.asarray(
        read_synthesis(tmp_path / "canvas.zarr")["image"][0]), 0, -1)
    assert image.std() > 0
    assert np.array_equal(image, ref.image)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".histodiff")]


def test_single_canvas_refuses_an_existing_store_path(tmp_path, tiny_model_dir):
    """The shared canvas is removed at the end, so it must not be a folder
    that existed before (never delete what the project did not write)."""
    from napari_histodiff.distributed.canvas import generate_canvas
    from napari_histodiff.errors import InputError

    class OneWorker:  # generate_canvas asks the client for its workers only
        def scheduler_info(self):
            return {"workers": {"tcp://w1": {}}}

    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="store_path: .* exists"):
        generate_canvas(OneWorker(), str(tiny_model_dir),
                        np.zeros((32, 32), np.int32), tmp_path / "o.zarr",
                        store_path=mine)
    assert (mine / "keep.txt").read_text() == "mine"
