"""Exports: OME-Zarr, (pyramidal) OME-TIFF and PNG with a provenance sidecar."""

import json

import numpy as np
import pytest

from napari_histodiff.errors import InputError, OutputExistsError
from napari_histodiff.io import export
from napari_histodiff.io.export import (
    base_path,
    export_synthesis,
    mask_path,
    read_sidecar,
    sidecar_path,
)
from napari_histodiff.models.classes import TissueClasses

CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")
SETTINGS = {"model": "/models/demo", "seed": 7, "guidance_scale": 2.0,
            "num_inference_steps": 3}


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (48, 64), dtype=np.uint8)
    return image, mask


def test_paths_from_suffix(tmp_path):
    assert base_path(tmp_path / "x.ome.tif") == tmp_path / "x"
    assert sidecar_path(tmp_path / "x.ome.zarr") == tmp_path / "x.json"
    assert mask_path(tmp_path / "x.png") == tmp_path / "x_mask.png"
    assert mask_path(tmp_path / "x.zarr") is None
    with pytest.raises(InputError, match=r"\.zarr.*\.tif.*\.png"):
        export.output_format(tmp_path / "x.jpg")


def test_ome_zarr_region_roundtrip_with_sidecar(tmp_path, pair):
    from napari_histodiff.io.omezarr import read_synthesis

    image, mask = pair
    res = export_synthesis(tmp_path / "out.zarr", image, mask, CLASSES, SETTINGS,
                           region=(8, 40, 16, 48), microns_per_pixel=0.5)
    data = read_synthesis(res.image)
    back = np.moveaxis(np.asarray(data["image"][0]), 0, -1)
    assert (back == image[8:40, 16:48]).all()
    assert (np.asarray(data["mask"][0]) == mask[8:40, 16:48]).all()
    assert data["classes"] == CLASSES and data["settings"]["seed"] == 7
    side = read_sidecar(res.image)
    assert side["region"] == [8, 40, 16, 48] and side["size"] == [32, 32]
    assert side["model"] == "/models/demo" and side["seed"] == 7
    assert side["classes"][2]["name"] == "nuclei"
    assert side["microns_per_pixel"] == 0.5
    assert side["image_sha256"] and side["mask_sha256"]


def test_png_writes_image_mask_and_sidecar(tmp_path, pair):
    from PIL import Image

    from napari_histodiff.io.masks import read_mask

    image, mask = pair
    res = export_synthesis(tmp_path / "a.png", image, mask, CLASSES, SETTINGS)
    assert (np.asarray(Image.open(res.image)) == image).all()
    assert (read_mask(res.mask) == mask).all()
    assert json.loads(res.sidecar.read_text())["image"] == "a.png"


def test_tiff_small_and_pyramidal(tmp_path, pair, monkeypatch):
    import tifffile

    image, mask = pair
    res = export_synthesis(tmp_path / "s.ome.tif", image, mask, CLASSES, SETTINGS)
    with tifffile.TiffFile(res.image) as tf:
        assert tf.is_ome and len(tf.series[0].levels) == 1
        assert (tf.asarray() == image).all()
    # a "large" image: pyramid levels as sub-IFDs, tiled
    monkeypatch.setattr(export, "PYRAMID_MIN_SIDE", 32)
    monkeypatch.setattr(export, "TILE", 16)
    big = np.tile(image, (30, 20, 1))  # 1440 x 1280
    bmask = np.tile(mask, (30, 20))
    res = export_synthesis(tmp_path / "b.tif", big, bmask, CLASSES, SETTINGS)
    with tifffile.TiffFile(res.image) as tf:
        levels = tf.series[0].levels
        assert [lv.shape for lv in levels] == [(1440, 1280, 3), (720, 640, 3)]
        assert tf.pages[0].is_tiled
        assert (levels[0].asarray() == big).all()
    with tifffile.TiffFile(res.mask) as tf:
        assert (tf.series[0].levels[0].asarray() == bmask).all()


def test_refuses_overwrite_and_bad_inputs(tmp_path, pair):
    image, mask = pair
    export_synthesis(tmp_path / "o.png", image)
    with pytest.raises(OutputExistsError, match="exists"):
        export_synthesis(tmp_path / "o.png", image)
    export_synthesis(tmp_path / "o.png", image, overwrite=True)
    with pytest.raises(InputError, match="OME-Zarr export holds the image with"):
        export_synthesis(tmp_path / "n.zarr", image)
    with pytest.raises(InputError, match="differs"):
        export_synthesis(tmp_path / "n.png", image, mask[:10], CLASSES)
    with pytest.raises(InputError, match="not inside"):
        export_synthesis(tmp_path / "n.png", image, region=(0, 99, 0, 10))
    with pytest.raises(InputError, match="RGB"):
        export_synthesis(tmp_path / "n.png", mask)


def test_dask_input_is_read_lazily(tmp_path, pair):
    import dask.array as da

    image, mask = pair
    res = export_synthesis(tmp_path / "d.tif", da.from_array(image, chunks=16),
                           da.from_array(mask, chunks=16), CLASSES, SETTINGS)
    import tifffile

    assert (tifffile.imread(res.image) == image).all()
