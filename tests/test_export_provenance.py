"""Exports of edited images say which run made which pixels (issue 18 item 6)."""

from __future__ import annotations

import numpy as np

from napari_histodiff.io.export import export_synthesis, read_sidecar


def _settings():
    return {"model": "demo", "seed": 0, "num_inference_steps": 20,
            "regenerated": [{"region": [10, 40, 20, 44], "seed": 5},
                            {"region": [50, 60, 0, 10], "seed": 9}]}


def test_whole_export_lists_every_run_in_order(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    export_synthesis(tmp_path / "syn.png", image, settings=_settings())
    record = read_sidecar(tmp_path / "syn.png")
    assert [r["seed"] for r in record["runs"]] == [0, 5, 9]
    assert [r["region"] for r in record["runs"]] == [
        [0, 64, 0, 64], [10, 40, 20, 44], [50, 60, 0, 10]]
    assert record["seed"] is None  # three seeds made these pixels
    assert "regenerated" not in record["runs"][0]["settings"]


def test_region_export_keeps_the_runs_it_shows(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    export_synthesis(tmp_path / "part.png", image, settings=_settings(),
                     region=(0, 32, 16, 48))
    record = read_sidecar(tmp_path / "part.png")
    # the second regeneration lies outside; the first is clipped and shifted
    assert [r["seed"] for r in record["runs"]] == [0, 5]
    assert record["runs"][0]["region"] == [0, 32, 0, 32]
    assert record["runs"][1]["region"] == [10, 32, 4, 28]
    # a part made by one run alone has that run's seed
    export_synthesis(tmp_path / "plain.png", image, settings=_settings(),
                     region=(0, 8, 0, 8))
    assert read_sidecar(tmp_path / "plain.png")["seed"] == 0
