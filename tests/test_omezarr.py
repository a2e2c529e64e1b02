"""OME-Zarr output: pyramid, labels with class names and colours, settings."""

from __future__ import annotations

import json

import numpy as np

from napari_histodiff.io.omezarr import pyramid_levels, read_synthesis, write_synthesis
from napari_histodiff.models.classes import TissueClasses


def test_pyramid_levels_reach_1024():
    assert pyramid_levels(512, 700) == 1
    assert pyramid_levels(1024, 1024) == 1
    assert pyramid_levels(1025, 10) == 2
    assert pyramid_levels(100_000, 80_000) == 8  # 100000/2**7 = 781


def test_round_trip_with_pyramid_and_label_metadata(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, 1500, 1100), dtype=np.uint8)
    mask = rng.integers(0, 3, (1500, 1100)).astype(np.uint8)
    classes = TissueClasses.from_names("tumor,stroma")
    write_synthesis(tmp_path / "o.zarr", image, mask, classes, {"seed": 1}, 0.5)
    data = read_synthesis(tmp_path / "o.zarr")
    assert len(data["image"]) == 2
    assert data["image"][1].shape == (3, 750, 550)
    assert np.array_equal(np.asarray(data["image"][0]), image)
    assert np.array_equal(np.asarray(data["mask"][0]), mask)
    assert data["classes"] == classes and data["settings"] == {"seed": 1}
    meta = json.loads((tmp_path / "o.zarr/labels/mask/zarr.json").read_text())
    label = meta["attributes"]["ome"]["image-label"]
    assert {"label-value": 1, "rgba": [200, 40, 60, 255]} in label["colors"]
    assert {"label-value": 2, "class": "stroma"} in label["properties"]
    root = json.loads((tmp_path / "o.zarr/zarr.json").read_text())
    ms = root["attributes"]["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [1, 1, 1] \
        or ms["datasets"][1]["coordinateTransformations"][0]["scale"][1] == 1.0
