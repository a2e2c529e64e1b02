"""``histodiff bench --suite latent`` on tiny canvases (a smoke run: the
figures themselves come from the full run in docs/performance.md)."""

from __future__ import annotations

from _helpers import run_cli
from napari_histodiff.bench.latent import run_latent_benchmark


def test_latent_suite_reports_speedup_and_memory():
    report = run_latent_benchmark(sizes=(64,), memory_sizes=(64, 96), steps=1,
                                  threads=1)
    assert report["errors"] == []
    kinds = {(r["model"], r["size"]) for r in report["table"]}
    assert kinds == {("pixel", 64), ("latent", 64)}
    latent = next(r for r in report["table"] if r["model"] == "latent")
    pixel = next(r for r in report["table"] if r["model"] == "pixel")
    # the same output size; the latent canvas has 16 times fewer pixels, so
    # fewer (equal-sized) windows per step
    assert latent["windows_per_step"][0] < pixel["windows_per_step"][0]
    assert report["speedup"]["64"] == pixel["wall_seconds"] / latent["wall_seconds"]
    assert report["models"]["latent"]["space"] == "latent"
    assert report["models"]["pixel"]["space"] == "pixel"
    ratio = report["memory"]["largest_over_smallest"]
    runs = report["memory"]["runs"]
    assert [r["store"] for r in runs] == ["zarr", "zarr"]
    assert ratio == runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    assert {t["name"].split(",")[0] for t in report["targets"]} >= {
        "latent end to end >= 8x faster"}


def test_latent_suite_refuses_a_missing_pixel_model(tmp_path):
    res = run_cli("bench", "--suite", "latent", "--pixel-model",
                  str(tmp_path / "nope"), "--sizes", "64")
    assert res.returncode == 2
    assert "--pixel-model" in res.stderr and "nope" in res.stderr
    assert not res.stdout.strip()
