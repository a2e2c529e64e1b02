"""QuPath export (GeoJSON regions, OME-TIFF), one sidecar per name listing
every export, and tile datasets (issue 18, items 9, 12 and 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histodiff.errors import InputError, OutputExistsError
from napari_histodiff.io import export
from napari_histodiff.io.export import export_synthesis, read_sidecar
from napari_histodiff.io.geojson import mask_features, ring_area
from napari_histodiff.models.classes import TissueClasses

shapely = pytest.importorskip("shapely")

CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")
SETTINGS = {"model": "/models/demo", "seed": 7}


def _mask() -> np.ndarray:
    """Blobs of every class, a ring with a hole holding another class, pixels
    touching only at corners, a checkerboard patch and one-pixel regions."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(1, 5, (9, 11))
    mask = np.kron(coarse, np.ones((7, 7), int))[:60, :70].astype(np.uint8)
    mask[5:25, 5:25] = 4
    mask[10:20, 10:20] = 2  # a hole in the tissue ring, filled with nuclei
    mask[13:16, 13:16] = 0  # unknown inside the nuclei: a hole with no feature
    mask[30:38, 40:48] = (np.indices((8, 8)).sum(0) % 2) * 3 + 1  # checkerboard
    mask[50, 3] = 2
    mask[51, 4] = 2  # corner touch: two regions
    noise = rng.random(mask.shape) < 0.03
    mask[noise] = rng.integers(0, 5, noise.sum())
    return mask


def rasterise(collection: dict, shape: tuple[int, int]) -> np.ndarray:
    """Class ids of the pixel centres inside each feature's polygon (shapely)."""
    out = np.zeros(shape, np.int64)
    yy, xx = np.mgrid[: shape[0], : shape[1]] + 0.5
    for feature in collection["features"]:
        geom = shapely.geometry.shape(feature["geometry"])
        assert geom.is_valid, feature["geometry"]
        inside = shapely.contains_xy(geom, xx, yy)
        name = feature["properties"]["classification"]["name"]
        assert not out[inside].any(), "features overlap"
        out[inside] = CLASSES.index_of(name)
    return out


def test_geojson_regions_rasterise_back_to_the_mask():
    from skimage.measure import label

    mask = _mask()
    collection = mask_features(mask, CLASSES)
    assert collection["type"] == "FeatureCollection"
    back = rasterise(collection, mask.shape)
    for cls in CLASSES:
        if cls.index == 0:
            assert not (back == 0)[mask != 0].any()
            continue
        a, b = mask == cls.index, back == cls.index
        iou = (a & b).sum() / max((a | b).sum(), 1)
        assert iou >= 0.99, (cls.name, iou)
    # one feature per 4-connected region, with QuPath's properties
    for cls in list(CLASSES)[1:]:
        n = int(label(mask == cls.index, connectivity=1).max())
        mine = [f for f in collection["features"]
                if f["properties"]["classification"]["name"] == cls.name]
        assert len(mine) == n
        for f in mine:
            assert f["properties"]["objectType"] == "annotation"
            assert f["properties"]["classification"]["color"] == list(cls.color)
            assert f["geometry"]["type"] == "Polygon"


def test_geojson_keeps_holes_and_ring_orientation():
    mask = np.zeros((12, 12), np.uint8)
    mask[1:11, 1:11] = 4
    mask[4:8, 4:8] = 2
    collection = mask_features(mask, CLASSES)
    tissue = next(f for f in collection["features"]
                  if f["properties"]["classification"]["name"] == "tissue")
    exterior, *holes = tissue["geometry"]["coordinates"]
    assert len(holes) == 1
    assert ring_area(exterior) == 100 and ring_area(holes[0]) == -16
    assert sorted(map(tuple, exterior[:-1])) == [(1, 1), (1, 11), (11, 1), (11, 11)]
    assert shapely.geometry.shape(tissue["geometry"]).area == 84


def test_geojson_corners_give_simple_rings():
    # two nuclei touching at a corner: two features of one pixel each
    mask = np.array([[2, 0], [0, 2]], np.uint8)
    features = mask_features(mask, CLASSES)["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [
        [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],
        [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]]]
    # a hole that meets the outside at a corner: exterior and hole, both simple
    mask = np.array([[4, 4, 4, 0], [4, 0, 4, 0], [4, 4, 0, 0]], np.uint8)
    (feature,) = mask_features(mask, CLASSES)["features"]
    exterior, hole = feature["geometry"]["coordinates"]
    assert ring_area(exterior) == 8 and ring_area(hole) == -1
    geom = shapely.geometry.shape(feature["geometry"])
    assert geom.is_valid and geom.area == 7


def test_geojson_refuses_ids_that_are_not_classes():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 9
    with pytest.raises(InputError, match="9"):
        mask_features(mask, CLASSES)


def test_geojson_export_writes_the_region_with_its_sidecar(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    mask = _mask()
    res = export_synthesis(tmp_path / "q.geojson", image, mask, CLASSES, SETTINGS,
                           region=(10, 50, 5, 45))
    assert res.mask is None and res.image == tmp_path / "q.geojson"
    collection = json.loads(res.image.read_text())
    assert (rasterise(collection, (40, 40)) == mask[10:50, 5:45]).all()
    record = read_sidecar(res.image)
    assert record["file_format"] == "geojson" and record["mask"] == "q.geojson"
    assert record["region"] == [10, 50, 5, 45] and record["seed"] == 7
    with pytest.raises(InputError, match="GeoJSON export holds the mask"):
        export_synthesis(tmp_path / "n.geojson", image)


def test_napari_writer_saves_geojson(tmp_path):
    from napari_histodiff import _writer

    mask = _mask()
    image = np.zeros((*mask.shape, 3), np.uint8)
    paths = _writer.write_synthesis(str(tmp_path / "w.geojson"), [
        (image, {"metadata": {"histodiff": {"seed": 2}}}, "image"),
        (mask, {"metadata": {"histodiff_classes": CLASSES.to_list()}}, "labels")])
    assert [p.rsplit("/", 1)[1] for p in paths] == ["w.geojson", "w.json"]
    collection = json.loads((tmp_path / "w.geojson").read_text())
    assert (rasterise(collection, mask.shape) == mask).all()


def _ome(path):
    import xml.etree.ElementTree as ET

    import tifffile

    with tifffile.TiffFile(path) as tf:
        root = ET.fromstring(tf.ome_metadata)
    ns = {"ome": root.tag.split("}")[0][1:]}
    return root.find("ome:Image/ome:Pixels", ns), ns


def test_ome_tiff_for_qupath(tmp_path, monkeypatch):
    import tifffile

    monkeypatch.setattr(export, "PYRAMID_MIN_SIDE", 600)
    yy, xx = np.mgrid[:1300, :1100]
    image = np.stack([(xx // 5) % 256, (yy // 5) % 256, (xx + yy) % 256],
                     -1).astype(np.uint8)
    mask = ((xx // 100 + yy // 100) % 4 + 1).astype(np.uint8)
    res = export_synthesis(tmp_path / "s.ome.tif", image, mask, CLASSES,
                           SETTINGS, microns_per_pixel=0.25)
    pixels, ns = _ome(res.image)
    assert (pixels.get("SizeX"), pixels.get("SizeY"), pixels.get("SizeC")) == \
        ("1100", "1300", "3")
    assert float(pixels.get("PhysicalSizeX")) == 0.25
    assert float(pixels.get("PhysicalSizeY")) == 0.25
    assert pixels.get("PhysicalSizeXUnit") == "µm"
    channel = pixels.find("ome:Channel", ns)
    assert channel.get("SamplesPerPixel") == "3" and channel.get("Name") == "RGB"
    with tifffile.TiffFile(res.image) as tf:
        assert not tf.is_bigtiff
        page = tf.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (512, 512)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert len(page.subifds) == 1
        levels = tf.series[0].levels
        assert [lv.shape for lv in levels] == [(1300, 1100, 3), (650, 550, 3)]
        assert (levels[0].asarray() == image).all()
        half = image.astype(float).reshape(650, 2, 550, 2, 3).mean((1, 3))
        assert np.abs(levels[1].asarray() - half).max() <= 1
        # resolution tags too, for readers without OME support
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page.resolution[0] == pytest.approx(1e4 / 0.25)
    with tifffile.TiffFile(res.mask) as tf:
        assert (tf.series[0].levels[0].asarray() == mask).all()
        assert tf.series[0].levels[1].shape == (650, 550)


def test_bigtiff_and_jpeg_by_option(tmp_path, monkeypatch):
    import tifffile

    pytest.importorskip("imagecodecs")
    yy, xx = np.mgrid[:64, :80]
    image = np.stack([xx * 3, yy * 3, xx + yy], -1).astype(np.uint8)
    mask = (xx // 20 + 1).astype(np.uint8)
    monkeypatch.setattr(export, "BIGTIFF_MIN_BYTES", 1000)
    res = export_synthesis(tmp_path / "j.ome.tif", image, mask, CLASSES,
                           compression="jpeg", jpeg_quality=95)
    with tifffile.TiffFile(res.image) as tf:
        assert tf.is_bigtiff
        assert tf.pages[0].compression == tifffile.COMPRESSION.JPEG
        diff = np.abs(tf.asarray().astype(int) - image).mean()
        assert 0 < diff < 3  # lossy, but close
    with tifffile.TiffFile(res.mask) as tf:  # masks stay lossless
        assert tf.pages[0].compression != tifffile.COMPRESSION.JPEG
        assert (tf.asarray() == mask).all()
    assert read_sidecar(res.image)["compression"] == "jpeg"
    with pytest.raises(InputError, match="compression: 'webp'"):
        export_synthesis(tmp_path / "w.tif", image, compression="webp")


def test_every_format_under_one_name_shares_one_sidecar(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mask = rng.integers(1, 5, (24, 32), dtype=np.uint8)
    base = tmp_path / "syn"
    for suffix in (".zarr", ".ome.tif", ".png", ".geojson"):
        export_synthesis(f"{base}{suffix}", image, mask, CLASSES, SETTINGS)
    side = json.loads((tmp_path / "syn.json").read_text())
    assert [e["file_format"] for e in side["exports"]] == \
        ["ome-zarr", "tiff", "png", "geojson"]
    assert side["file_format"] == "geojson"  # the top level is the latest
    assert read_sidecar(tmp_path / "syn.ome.tif")["files"] == \
        ["syn.ome.tif", "syn_mask.tif"]
    assert read_sidecar(tmp_path / "syn_mask.png")["file_format"] == "png"
    assert read_sidecar(tmp_path / "syn.zarr")["file_format"] == "ome-zarr"
    # an existing file is still refused; replacing it replaces its record
    with pytest.raises(OutputExistsError, match="syn.png"):
        export_synthesis(f"{base}.png", image, mask, CLASSES, SETTINGS)
    export_synthesis(f"{base}.png", image, mask, CLASSES, {"seed": 8},
                     region=(0, 10, 0, 10), overwrite=True)
    side = json.loads((tmp_path / "syn.json").read_text())
    assert len(side["exports"]) == 4
    assert read_sidecar(tmp_path / "syn.png")["seed"] == 8
    assert read_sidecar(tmp_path / "syn.ome.tif")["seed"] == 7


def test_version_1_sidecars_stay_readable(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    old = {"format": "napari-histodiff-export", "format_version": 1,
           "image": "old.tif", "mask": "old_mask.tif", "file_format": "tiff",
           "seed": 3, "region": None}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_sidecar(tmp_path / "old.tif")["seed"] == 3
    assert read_sidecar(tmp_path / "old_mask.tif")["seed"] == 3
    export_synthesis(tmp_path / "old.png", image, settings={"seed": 4})
    assert read_sidecar(tmp_path / "old.tif")["seed"] == 3
    assert read_sidecar(tmp_path / "old.png")["seed"] == 4
    # a JSON that is not an export sidecar is never overwritten silently
    (tmp_path / "mine.json").write_text('{"notes": "my own"}')
    with pytest.raises(OutputExistsError, match="mine.json.*not a napari-histodiff"):
        export_synthesis(tmp_path / "mine.png", image)
    assert not (tmp_path / "mine.png").exists()


# -- tile datasets ------------------------------------------------------------
def _tissue_pair():
    """Left half tissue (pink), right half glass (white), a mask of stripes."""
    rng = np.random.default_rng(4)
    image = np.full((96, 160, 3), 245, np.uint8)
    image[:, :80] = (200, 120, 160) + rng.integers(-20, 20, (96, 80, 3))
    mask = np.zeros((96, 160), np.uint8)
    mask[:, :80] = 4
    mask[::8, :80] = 2
    mask[:, 80:] = 1
    return image, mask


def test_tile_dataset_with_tissue_filter_and_manifest(tmp_path):
    from PIL import Image

    from napari_histodiff.io.tiles import export_tiles, read_manifest
    from napari_histodiff.training.data import load_folder_pairs

    image, mask = _tissue_pair()
    res = export_tiles(tmp_path / "ds", image, mask, CLASSES, 32,
                       settings=SETTINGS, source="/data/syn.zarr")
    # 3 rows x 5 columns of 32 px; the tiles at x 64-96 are half tissue (kept
    # at the default 50 %), the 6 at x >= 96 glass only (left out)
    rows = read_manifest(res.folder)
    assert res.written == len(rows) == 9 and res.skipped == 6
    assert {int(r["x"]) for r in rows} == {0, 32, 64}
    for r in rows:
        y, x = int(r["y"]), int(r["x"])
        tile = np.asarray(Image.open(res.folder / r["image"]))
        tmask = np.asarray(Image.open(res.folder / r["mask"]))
        assert (tile == image[y : y + 32, x : x + 32]).all()
        assert (tmask == mask[y : y + 32, x : x + 32]).all()
        assert float(r["tissue_fraction"]) >= 0.5
        assert r["dominant_class"] == ("tissue" if x < 64 else "background")
        assert r["seed"] == "7" and r["model"] == "/models/demo"
        assert float(r["fraction_nuclei"]) == pytest.approx(
            (tmask == 2).mean(), abs=1e-4)
        assert r["source"] == "/data/syn.zarr"
    meta = json.loads((res.folder / "dataset.json").read_text())
    assert meta["format"] == "napari-histodiff-tiles" and meta["tiles"] == 9
    assert meta["classes"][2]["name"] == "nuclei" and meta["model"] == "/models/demo"
    # the layout the trainers read
    samples = load_folder_pairs(res.folder / "images", res.folder / "masks",
                                CLASSES, 32)
    assert len(samples) == 9
    # a region, an overlapping grid, no filter; replacing needs overwrite
    with pytest.raises(OutputExistsError):
        export_tiles(tmp_path / "ds", image, mask, CLASSES, 32)
    res = export_tiles(tmp_path / "ds", image, mask, CLASSES, 32, stride=16,
                       min_tissue=0, region=(0, 48, 100, 160), overwrite=True)
    rows = read_manifest(res.folder)
    assert res.written == 4 and {(int(r["y"]), int(r["x"])) for r in rows} == {
        (y, x) for y in (0, 16) for x in (100, 116)}


def test_tile_dataset_refusals(tmp_path):
    from napari_histodiff.io.tiles import export_tiles

    image, mask = _tissue_pair()
    with pytest.raises(InputError, match="tiles: 128 px tiles do not fit"):
        export_tiles(tmp_path / "a", image, mask, CLASSES, 128,
                     region=(0, 96, 0, 100))
    with pytest.raises(InputError, match="min_tissue: none of the"):
        export_tiles(tmp_path / "b", image[:, 96:], None, None, 32)
    with pytest.raises(InputError, match="min_tissue: 1.5"):
        export_tiles(tmp_path / "c", image, mask, CLASSES, 32, min_tissue=1.5)
    bad = mask.copy()
    bad[0, 0] = 9
    with pytest.raises(InputError, match=r"label ids \[9\]"):
        export_tiles(tmp_path / "d", image, bad, CLASSES, 32)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_tissue_filter_is_shared_with_the_study_sampler():
    from napari_histodiff.io import tissue
    from napari_histodiff.study import tiles

    assert tiles.tissue_fraction is tissue.tissue_fraction
    assert tiles.DEFAULT_MIN_TISSUE == tissue.DEFAULT_MIN_TISSUE
