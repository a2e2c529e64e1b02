"""The seam score, the benchmark's parts, and ``histodiff bench --quick``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_histodiff.bench.sampling import (
    BenchSettings,
    benchmark_mask,
    check_targets,
    summarize,
)
from napari_histodiff.cli import main
from napari_histodiff.metrics.seams import grid_line_positions, seam_score
from napari_histodiff.sampling.strategies import RandomShift


# -- seam score ------------------------------------------------------------------
def tiled_image(size: int, tile: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """Noise plus one random level per tile: seams along the tile borders."""
    rng = np.random.default_rng(seed)
    n = size // tile + 2
    levels = rng.uniform(0, 200, (n, n))
    idx = (np.arange(size) - offset) // tile + 1
    base = levels[np.ix_(idx, idx)]
    return base + rng.normal(0, 10, (size, size))


def test_grid_line_positions():
    np.testing.assert_array_equal(grid_line_positions(100, 32), [32, 64, 96])
    np.testing.assert_array_equal(grid_line_positions(100, 32, 16), [16, 48, 80])
    np.testing.assert_array_equal(grid_line_positions(100, 32, 40), [8, 40, 72])
    assert grid_line_positions(20, 32).size == 0
    with pytest.raises(ValueError):
        grid_line_positions(10, 0)


def test_seam_score_is_one_without_seams():
    noise = np.random.default_rng(0).normal(128, 20, (1024, 1024, 3))
    assert seam_score(noise, 64) == pytest.approx(1.0, abs=0.03)


def test_seam_score_finds_tile_borders_on_its_grid_only():
    img = tiled_image(512, 32, offset=16)
    on_grid = seam_score(img, 32, offset=(16, 16))
    assert on_grid > 2.0
    assert seam_score(img, 32) < 1.0 < on_grid  # lines inside the tiles
    # a window-sized grid half a window off the seams sees none of them
    assert seam_score(tiled_image(512, 32), 32, offset=(16, 16)) < 1.0


def test_seam_score_colour_is_grey_and_degenerate_cases_are_nan():
    img = np.random.default_rng(1).integers(0, 255, (200, 200, 3)).astype(np.uint8)
    assert seam_score(img, 32) == pytest.approx(seam_score(img.mean(-1), 32))
    assert math.isnan(seam_score(np.zeros((100, 100)), 32))
    assert math.isnan(seam_score(img[:20, :20], 32))  # no grid line inside
    with pytest.raises(ValueError):
        seam_score(np.zeros((4, 4, 3, 2)), 2)


# -- benchmark parts -------------------------------------------------------------
def test_benchmark_mask_uses_all_tissue_classes_and_ignores_the_grid():
    mask = benchmark_mask(512, 384, 4, seed=0)
    assert mask.shape == (512, 384) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {1, 2, 3}
    np.testing.assert_array_equal(mask, benchmark_mask(512, 384, 4, seed=0))
    assert not np.array_equal(mask, benchmark_mask(512, 384, 4, seed=1))
    # class borders are as frequent across window-grid lines as elsewhere
    changes = mask[:, 1:] != mask[:, :-1]
    cols = grid_line_positions(384, 64) - 1
    on = changes[:, cols].mean()
    off = np.delete(changes, cols, axis=1).mean()
    assert on < 3 * off


def test_summarize_and_targets():
    def run(strategy, windows, wall, unet, seam, seed=0):
        return {"strategy": strategy, "size": 1024, "seed": seed,
                "windows_per_step": windows, "wall_seconds": wall,
                "unet_seconds": unet, "peak_rss_mb": 500.0, "seam_score": seam}

    rows = [
        summarize([run("random-shift", [280, 290], 11.0, 10.0, 1.01),
                   run("random-shift", [270, 300], 13.0, 10.0, 0.99, seed=1)]),
        summarize([run("tiled", [256, 256], 9.0, 8.5, 1.4)]),
        summarize([run("diffinfinite", [560, 580], 30.0, 25.0, None)]),
    ]
    rs = rows[0]
    assert rs["windows_per_step"] == pytest.approx(285.0)
    assert rs["wall_over_unet"] == pytest.approx(1.2)
    assert rs["seam_score"] == pytest.approx(1.0) and rs["seeds"] == [0, 1]
    assert rows[2]["seam_score"] is None
    memory = {"sizes": [2048, 8192], "peak_rss_ratio": 1.1}
    targets = {t["target"]: t for t in check_targets(rows, memory)}
    tiled = targets["random-shift windows per plain step / tiled"]
    assert tiled["value"] == pytest.approx(285 / 256) and tiled["met"]
    di = targets["random-shift windows per plain step / diffinfinite"]
    assert di["value"] == pytest.approx(285 / 570) and di["met"]
    overhead = targets["random-shift wall time / UNet time"]
    assert overhead["value"] == pytest.approx(1.2) and not overhead["met"]
    assert len(targets) == 4  # no blended steps: no default-run figure


def test_summarize_separates_blended_steps():
    def run(strategy, windows, seed=0, **extra):
        return {"strategy": strategy, "size": 1024, "seed": seed,
                "windows_per_step": windows, "wall_seconds": 2.0,
                "unet_seconds": 1.9, "peak_rss_mb": 500.0, "seam_score": 1.0,
                **extra}

    rs = summarize([run("random-shift", [289, 289, 3 * 289, 3 * 289],
                        blend_steps=2),
                    run("random-shift", [289, 256, 3 * 289, 3 * 256], seed=1,
                        blend_steps=2)])
    assert rs["blend_steps"] == 2
    assert rs["plain_windows_per_step"] == pytest.approx((3 * 289 + 256) / 4)
    assert rs["blended_windows_per_step"] == pytest.approx(3 * (3 * 289 + 256) / 4)
    plain, blended = rs["plain_windows_per_step"], rs["blended_windows_per_step"]
    assert rs["windows_per_step_default_run"] == pytest.approx(
        (23 * plain + 2 * blended) / 25)
    tiled = summarize([run("tiled", [256] * 4)])
    targets = {t["target"]: t for t in check_targets([rs, tiled], None)}
    assert targets["random-shift windows per plain step / tiled"]["value"] == (
        pytest.approx(plain / 256))
    run_ratio = targets["random-shift windows per step of a 25-step run / tiled"]
    assert run_ratio["value"] == pytest.approx(
        (23 * plain + 2 * blended) / 25 / 256)
    assert run_ratio["met"] == (run_ratio["value"] <= 1.3)
    # a run shorter than the blend: every step blended, no plain figure
    short = summarize([run("random-shift", [867], blend_steps=2)])
    assert short["plain_windows_per_step"] is None
    assert "windows_per_step_default_run" not in short


def test_quick_settings():
    quick = BenchSettings.quick_settings(steps=None, strategies=("tiled",))
    assert quick.quick and quick.steps == 1 and not quick.isolate
    assert quick.strategies == ("tiled",) and max(quick.sizes) <= 128


# -- the command -----------------------------------------------------------------
def test_bench_quick_via_cli(tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = main(["bench", "--quick", "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    report = json.loads(out.read_text())
    assert json.loads(printed.out) == report
    assert report["quick"] is True and report["errors"] == []
    assert report["model"]["provenance"]["kind"] == "random-init"
    assert report["model"]["patch_size"] == 64
    assert report["machine"]["cpu_count"] >= 1
    sizes = report["settings"]["sizes"]
    strategies = report["settings"]["strategies"]
    assert len(strategies) == 4
    rows = {(r["strategy"], r["size"]): r for r in report["results"]}
    assert set(rows) == {(s, n) for s in strategies for n in sizes}
    for (strategy, n), row in rows.items():
        assert row["windows_per_step"] >= 1
        assert 0 < row["unet_seconds"] <= row["wall_seconds"]
        assert 1.0 <= row["wall_over_unet"] < 20
        assert row["peak_rss_mb"] > 50
        assert row["seam_score"] is None or 0 < row["seam_score"] < 10
        tiles = math.ceil(n / 64) ** 2
        if strategy == "tiled":
            assert row["windows_per_step"] == tiles
        if strategy == "random-shift":
            # plain steps at most one shifted grid, blended final steps three
            bound = (math.ceil(n / 64) + 1) ** 2
            runs = row["windows_per_step_runs"]
            steps = report["settings"]["steps"]
            blend = min(RandomShift().blend_steps, steps)
            for per_step in runs:
                assert all(v <= bound for v in per_step[: steps - blend])
                assert all(v <= 3 * bound for v in per_step[steps - blend :])
            scores = row["last_grid_seam_scores"]
            assert len(scores) == len(row["seeds"])
            assert all(v is None or 0 < v < 10 for v in scores)
        else:
            assert "last_grid_seam_score" not in row
    memory = report["memory"]
    assert [r["size"] for r in memory["results"]] == report["settings"]["memory_sizes"]
    for r in memory["results"]:
        assert r["store"] == "zarr" and r["status"] == "complete"
        assert r["peak_rss_mb"] > 50 and r["windows_per_step"]
        # plain random-shift steps: one shifted grid
        bound = (math.ceil(r["size"] / 64) + 1) ** 2
        assert all(0 < n <= bound for n in r["windows_per_step"])
    assert memory["peak_rss_ratio"] > 0
    names = {t["target"] for t in report["targets"]}
    assert "random-shift wall time / UNet time" in names
    assert any("peak RSS" in name for name in names)
    assert "random-shift" in printed.err  # the table on stderr


@pytest.mark.parametrize("argv,message", [
    (["--strategies", "patchwork"], "--strategies"),
    (["--sizes", "4"], "--sizes"),
    (["--seeds", "a,b"], "--seeds"),
    (["--steps", "0"], "--steps"),
    (["--model", "/nonexistent/model"], "--model"),
])
def test_bench_rejects_bad_options(argv, message, capsys):
    assert main(["bench", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "taken.json"
    out.write_text("{}")
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}"
