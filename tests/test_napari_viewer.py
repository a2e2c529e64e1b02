"""napari with the plugin loaded: the viewer opens our outputs through it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histodiff.io.omezarr import write_synthesis
from napari_histodiff.models.classes import TissueClasses

pytestmark = pytest.mark.gui


def test_viewer_opens_output_with_classes(make_napari_viewer, tmp_path):
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, 40, 60), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 2
    classes = TissueClasses.from_names("tumor,stroma")
    path = write_synthesis(tmp_path / "o.zarr", image, mask, classes, {"seed": 3})
    layers = viewer.open(str(path), plugin="napari-histodiff")
    assert [type(layer) for layer in layers] == [Image, Labels]
    img, lab = layers
    assert img.rgb and np.array_equal(np.asarray(img.data), np.moveaxis(image, 0, -1))
    assert np.array_equal(np.asarray(lab.data), mask)
    assert list(lab.features["class"]) == ["unknown", "tumor", "stroma"]
    np.testing.assert_allclose(lab.colormap.map(2)[:3], np.array([240, 150, 190]) /
                               255, atol=1e-6)
    assert img.metadata["histodiff"]["seed"] == 3
