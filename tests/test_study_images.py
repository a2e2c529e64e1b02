"""Reading images and sampling tissue tiles for reader studies."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_histodiff.errors import InputError
from napari_histodiff.study.images import RGBImage, expand_paths, load_rgb, open_rgb
from napari_histodiff.study.tiles import sample_tiles, tissue_fraction, tissue_mask
from test_study_support import tissue_image, write_png, write_zarr


@pytest.fixture
def image():
    return tissue_image(np.random.default_rng(1), 64, 96)


def test_load_png_tiff_jpeg_zarr_give_the_same_rgb(tmp_path, image):
    png = load_rgb(write_png(tmp_path / "a.png", image))
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(  # channel-first (c, y, x)
        tmp_path / "b.tiff",
        np.moveaxis(image, -1, 0),
        photometric="rgb",
        planarconfig="separate",
    )
    zarr_image = load_rgb(write_zarr(tmp_path / "a.zarr", image))
    for loaded in (
        png,
        load_rgb(tmp_path / "a.tif"),
        load_rgb(tmp_path / "b.tiff"),
        zarr_image,
    ):
        assert loaded.dtype == np.uint8 and loaded.shape == (64, 96, 3)
        np.testing.assert_array_equal(loaded, image)
    write_png(tmp_path / "a.jpg", image)
    jpeg = load_rgb(tmp_path / "a.jpg")
    assert jpeg.shape == (64, 96, 3) and np.abs(jpeg.astype(int) - image).mean() < 20


def test_rgba_drops_alpha(tmp_path, image):
    rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(load_rgb(write_png(tmp_path / "a.png", rgba)), image)


def test_zarr_is_read_by_region(tmp_path, image):
    source = open_rgb(write_zarr(tmp_path / "a.zarr", image))
    assert source.shape == (64, 96)
    np.testing.assert_array_equal(source.read(10, 20, 16, 16), image[10:26, 20:36])


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((40, 40), np.uint8), "grayscale"),
        (np.zeros((40, 40, 3), np.uint16), "uint16"),
        (np.zeros((40, 40, 5), np.uint8), "shape"),
    ],
)
def test_unusable_arrays_are_refused_clearly(tmp_path, array, words):
    tifffile.imwrite(tmp_path / "bad.tif", array)
    with pytest.raises(InputError, match=words) as info:
        load_rgb(tmp_path / "bad.tif")
    assert "bad.tif" in str(info.value) and "RGB" in str(info.value)


def test_grayscale_png_and_bad_paths(tmp_path):
    write_png(tmp_path / "gray.png", np.zeros((40, 40), np.uint8))
    with pytest.raises(InputError, match="grayscale"):
        load_rgb(tmp_path / "gray.png")
    with pytest.raises(InputError, match="does not exist"):
        open_rgb(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a supported image"):
        open_rgb(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no PNG"):
        expand_paths([tmp_path / "empty"], "real")
    (tmp_path / "broken.zarr").mkdir()
    with pytest.raises(InputError, match="OME-Zarr"):
        open_rgb(tmp_path / "broken.zarr")


def test_folders_expand_to_images_and_zarrs(tmp_path, image):
    write_png(tmp_path / "b.png", image)
    write_zarr(tmp_path / "a.zarr", image)
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert [p.name for p in expand_paths([tmp_path])] == ["a.zarr", "b.png"]


def test_tissue_mask_rule():
    pixels = np.array(
        [
            [
                [245, 245, 245],
                [250, 240, 248],
                [5, 5, 5],
                [200, 120, 170],
                [150, 150, 150],
                [235, 205, 225],
            ]
        ],
        np.uint8,
    )
    # glass, faint glass, black padding, stained tissue, grey debris, pale eosin
    assert tissue_mask(pixels)[0].tolist() == [False, False, False, True, True, True]


def test_sampling_skips_background_and_does_not_overlap():
    rng = np.random.default_rng(0)
    image = np.full((150, 150, 3), 245, np.uint8)  # 4 x 4 grid, offset 0-22
    image[:80, :128] = np.clip(
        (200, 120, 170) + rng.normal(0, 20, (80, 128, 3)), 0, 255
    )  # tissue only in the top band
    tiles = sample_tiles(
        [RGBImage(image, "x")], 4, 32, min_tissue=0.5, rng=np.random.default_rng(3)
    )
    assert len(tiles) == 4
    for tile in tiles:
        assert tile.y + 16 <= 80 and tile.tissue >= 0.5
        assert tissue_fraction(tile.pixels) == pytest.approx(tile.tissue)
        np.testing.assert_array_equal(
            tile.pixels, image[tile.y : tile.y + 32, tile.x : tile.x + 32]
        )
    corners = {(t.y, t.x) for t in tiles}
    assert len(corners) == 4
    for a in tiles:
        for b in tiles:
            if a is not b:
                assert abs(a.y - b.y) >= 32 or abs(a.x - b.x) >= 32


def test_sampling_takes_images_in_turn():
    rng = np.random.default_rng(0)
    images = [RGBImage(tissue_image(rng, 128, 128), f"im{i}") for i in range(3)]
    tiles = sample_tiles(images, 6, 32, rng=np.random.default_rng(1))
    assert sorted(t.source for t in tiles) == ["im0", "im0", "im1", "im1", "im2", "im2"]


def test_too_few_tissue_tiles_is_a_clear_error():
    background = RGBImage(np.full((96, 96, 3), 245, np.uint8), "blank")
    with pytest.raises(InputError) as info:
        sample_tiles(
            [background],
            2,
            32,
            min_tissue=0.5,
            rng=np.random.default_rng(0),
            side="real",
        )
    message = str(info.value)
    assert "real: only 0 of the 9 tiles of 32 px in 1 image(s)" in message
    assert "2 are needed" in message and "Lower" in message
    with pytest.raises(InputError, match="smaller than the tile"):
        sample_tiles([background], 1, 128, rng=np.random.default_rng(0))


def test_reads_histodiff_generate_output(tmp_path):
    """Outputs of `histodiff generate` (levels named s0, s1...) load as RGB."""
    from napari_histodiff.io.omezarr import write_synthesis
    from napari_histodiff.models.classes import TissueClasses
    from napari_histodiff.study.images import load_rgb

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 1100, 70), dtype=np.uint8)
    path = write_synthesis(tmp_path / "g.zarr", image, np.zeros((1100, 70),
                           np.uint8), TissueClasses.from_names("a"), {})
    loaded = load_rgb(path)
    assert loaded.shape == (1100, 70, 3)
    assert np.array_equal(loaded, np.moveaxis(image, 0, -1))
