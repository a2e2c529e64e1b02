"""npe2 reader, writers and sample data of the plugin (no viewer needed)."""

import numpy as np
import pytest

from napari_histodiff import _writer
from napari_histodiff._reader import get_reader
from napari_histodiff.models.classes import TissueClasses

CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")


@pytest.fixture
def layers():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (40, 56), dtype=np.uint8)
    image_meta = {"name": "img", "rgb": True,
                  "metadata": {"histodiff": {"seed": 3, "model": "demo"}}}
    labels_meta = {"name": "mask",
                   "metadata": {"histodiff_classes": CLASSES.to_list()}}
    return (image, image_meta, "image"), (mask, labels_meta, "labels")


def test_write_synthesis_then_read_back_with_classes(tmp_path, layers):
    from napari.utils.colormaps import DirectLabelColormap

    img, lab = layers
    paths = _writer.write_synthesis(str(tmp_path / "pair.zarr"), [img, lab])
    assert paths[0].endswith("pair.zarr") and paths[-1].endswith("pair.json")
    reader = get_reader(paths[0])
    assert reader is not None
    (image, ikw, itype), (mask, lkw, ltype) = reader(paths[0])
    assert itype == "image" and ltype == "labels"
    assert (np.asarray(image) == img[0]).all()
    assert (np.asarray(mask) == lab[0]).all()
    assert ikw["metadata"]["histodiff"]["seed"] == 3
    assert isinstance(lkw["colormap"], DirectLabelColormap)
    assert lkw["features"]["class"] == CLASSES.names
    assert np.allclose(lkw["colormap"].color_dict[2][:3], np.array([60, 60, 200]) / 255)


def test_write_synthesis_tiff_and_unnamed_classes(tmp_path, layers):
    img, lab = layers
    lab = (lab[0], {"name": "m"}, "labels")  # no class names: generic ones
    paths = _writer.write_synthesis(str(tmp_path / "p.tif"), [img, lab])
    assert [p.rsplit("/", 1)[1] for p in paths] == ["p.tif", "p_mask.tif", "p.json"]
    from napari_histodiff.io.export import read_sidecar

    assert read_sidecar(paths[0])["classes"][1]["name"] == "class1"


def test_write_labels_and_image(tmp_path, layers):
    from napari_histodiff.io.masks import read_mask

    img, lab = layers
    (path,) = _writer.write_labels(str(tmp_path / "m.png"), lab[0], lab[1])
    assert (read_mask(path) == lab[0]).all()
    paths = _writer.write_image(str(tmp_path / "i.png"), [img[0], img[0][::2, ::2]],
                                img[1])
    assert paths[1].endswith("i.json")


def test_reader_ignores_other_paths(tmp_path):
    assert get_reader(str(tmp_path)) is None
    assert get_reader([str(tmp_path), str(tmp_path)]) is None
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text("{}")
    assert get_reader(str(tmp_path / "x.zarr")) is None


def test_ihc_sample_has_image_and_mask():
    from napari_histodiff._sample_data import ihc_sample

    (rgb, ikw, _), (mask, lkw, ltype) = ihc_sample()
    assert rgb.shape == (512, 512, 3) and ikw["rgb"]
    assert ltype == "labels" and mask.shape == (512, 512)
    assert lkw["features"]["class"] == ["unknown", "background", "nuclei", "dab",
                                        "tissue"]
    assert set(np.unique(mask)) <= {1, 2, 3, 4}


def test_manifest_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-histodiff")
    c = pm.contributions
    names = {w.display_name for w in c.widgets}
    assert {"HistoDiff", "Model", "Mask", "Synthesise", "Export"} <= names
    assert {"Create reader study", "Take reader study"} <= names
    assert {s.key for s in c.sample_data} == {"ihc", "synthetic"}
    assert {tuple(w.layer_types) for w in c.writers} >= {("image", "labels"),
                                                         ("labels",), ("image",)}
    assert "napari-histodiff.new_mask" in [m.command for m in
                                           c.menus["napari/file/new_layer"]]
    assert set(c.configurations) == {"model", "synthesis"}
    assert c.configurations["model"].properties["path"].default == "demo"
