"""Exports opened again in napari (issue 18, items 10 and 11): TIFF and PNG
masks come back as Labels with their classes, OME-Zarr outputs open with
napari-ome-zarr too, and the Export panel writes QuPath GeoJSON and tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histodiff._reader import get_reader
from napari_histodiff.io.export import export_synthesis
from napari_histodiff.models.classes import TissueClasses

PLUGIN = "napari-histodiff"
CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")
TIMEOUT = 60_000


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = rng.integers(1, 5, (40, 48), dtype=np.uint8)
    return image, mask


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".png"])
def test_exported_masks_open_as_labels_with_classes(make_napari_viewer, tmp_path,
                                                    pair, suffix):
    from napari.layers import Labels

    image, mask = pair
    res = export_synthesis(tmp_path / f"syn{suffix}", image, mask, CLASSES,
                           {"seed": 5}, microns_per_pixel=0.5)
    assert get_reader(str(res.mask)) is not None
    assert get_reader(str(res.image)) is None  # the image is not a mask
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(res.mask), plugin=PLUGIN)
    assert isinstance(layer, Labels) and layer.name == "syn mask"
    assert (np.asarray(layer.data) == mask).all()
    assert list(layer.features["class"]) == CLASSES.names
    assert np.allclose(layer.colormap.map(2)[:3], np.array(CLASSES[2].color) / 255)
    assert layer.metadata["histodiff_classes"] == CLASSES.to_list()
    assert tuple(layer.scale) == (0.5, 0.5)


def test_plugin_reader_is_offered_for_mask_files(tmp_path, pair):
    from napari.plugins import _npe2

    image, mask = pair
    res = export_synthesis(tmp_path / "m.tif", image, mask, CLASSES)
    assert PLUGIN in _npe2.get_readers(str(res.mask))
    # a mask without a sidecar still opens (class ids only); others are left
    from napari_histodiff.io.masks import write_mask

    write_mask(tmp_path / "other_mask.png", mask)
    ((data, kwargs, kind),) = get_reader(str(tmp_path / "other_mask.png"))(
        str(tmp_path / "other_mask.png"))
    assert kind == "labels" and "features" not in kwargs
    write_mask(tmp_path / "plain.png", mask)
    assert get_reader(str(tmp_path / "plain.png")) is None


@pytest.mark.gui
def test_omezarr_opens_with_napari_ome_zarr(make_napari_viewer, tmp_path, pair):
    from napari.layers import Image, Labels

    pytest.importorskip("napari_ome_zarr")
    image, mask = pair
    export_synthesis(tmp_path / "z.zarr", image, mask, CLASSES, {"seed": 1})
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "z.zarr"), plugin="napari-ome-zarr")
    images = [lay for lay in layers if isinstance(lay, Image)]
    labels = [lay for lay in layers if isinstance(lay, Labels)]
    # the three channels, coloured red, green and blue from our omero metadata
    assert [lay.colormap.name for lay in images] == ["red", "green", "blue"]
    for c, lay in enumerate(images):
        assert (np.asarray(lay.data[0] if lay.multiscale else lay.data)
                == image[..., c]).all()
    (lab,) = labels
    assert (np.asarray(lab.data[0] if lab.multiscale else lab.data) == mask).all()
    assert np.allclose(lab.colormap.map(2)[:3], np.array(CLASSES[2].color) / 255)


@pytest.mark.gui
def test_default_open_of_omezarr_names_the_plugin(make_napari_viewer, tmp_path,
                                                  pair):
    """File > Open and drag and drop let napari choose the reader
    (``plugin=None``): with several that can read ``*.zarr`` it asks, and its
    message names napari-histodiff; with a remembered choice, ours opens
    image and labels. napari's builtin reader (``viewer.open(path)`` in a
    script defaults to it) cannot read OME-Zarr label images; the user guide
    says to pass ``plugin="napari-histodiff"``."""
    from napari.errors import MultipleReaderError

    image, mask = pair
    export_synthesis(tmp_path / "d.zarr", image, mask, CLASSES)
    viewer = make_napari_viewer()
    try:
        layers = viewer.open(str(tmp_path / "d.zarr"), plugin=None)
    except MultipleReaderError as exc:
        assert PLUGIN in str(exc)
        assert PLUGIN in exc.available_plugins
    else:  # a remembered preference picked a reader: it must be ours
        assert [type(lay).__name__ for lay in layers] == ["Image", "Labels"]
        assert layers[1].features["class"][2] == "nuclei"
    with pytest.raises(ValueError, match="No arrays found"):
        viewer.open(str(tmp_path / "d.zarr"))  # napari's builtin reader
    layers = viewer.open(str(tmp_path / "d.zarr"), plugin=PLUGIN)
    assert [type(lay).__name__ for lay in layers] == ["Image", "Labels"]


@pytest.mark.gui
def test_export_panel_geojson_and_tiles(make_napari_viewer, qtbot, tmp_path, pair):
    from napari_histodiff._widgets.export_widget import TILES, ExportWidget

    image, mask = pair
    viewer = make_napari_viewer()
    viewer.add_image(image, rgb=True, name="syn",
                     metadata={"histodiff": {"seed": 9, "model": "demo"},
                               "mask_layer": "syn mask"})
    viewer.add_labels(mask, name="syn mask",
                      metadata={"histodiff_classes": CLASSES.to_list()})
    w = ExportWidget(viewer)
    w.image_combo.refresh()
    w.mask_combo.refresh()
    w._image_changed()
    assert w.mask_combo.currentText() == "syn mask"
    assert not w.tile_size.isVisibleTo(w)
    w.format.setCurrentIndex(w.format.findData(".geojson"))
    w.path.setText(str(tmp_path / "q"))
    w.export()
    qtbot.waitUntil(lambda: w.last_result is not None, timeout=TIMEOUT)
    collection = json.loads((tmp_path / "q.geojson").read_text())
    assert {f["properties"]["classification"]["name"]
            for f in collection["features"]} == set(CLASSES.names[1:])
    w.last_result = None
    w.format.setCurrentIndex(w.format.findData(TILES))
    assert w.tile_size.isVisibleTo(w)
    w.tile_size.setValue(16)
    w.path.setText(str(tmp_path / "tiles"))
    w.export()
    qtbot.waitUntil(lambda: w.last_result is not None, timeout=TIMEOUT)
    assert w.last_result.written == 6  # 2 x 3 tiles of 16 px
    assert "6 tiles of 16 px" in w.status.text()
    assert (tmp_path / "tiles" / "masks").is_dir()
