"""Realism and privacy metrics (issue 14) on crops of
``skimage.data.immunohistochemistry()``: the checks the issue asks for.

Tiles are 16 px so that one 512 x 512 image gives several hundred of them;
the ``random`` features have 64 dimensions, so FID needs 65 tiles a set.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError
from napari_histodiff.metrics import distribution as D
from napari_histodiff.metrics import privacy as P
from napari_histodiff.metrics.features import make_extractor
from napari_histodiff.metrics.imagesets import load_tiles, spatial_split

TS = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ihc():
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


@pytest.fixture(scope="module")
def halves(ihc):
    """Checkerboard split of the image's tiles: two spatially disjoint sets."""
    tiles = load_tiles([("ihc", ihc)], "real", tile_size=TS)
    even = ((tiles.positions // TS).sum(axis=1) % 2) == 0
    return tiles.subset(np.flatnonzero(even)), tiles.subset(np.flatnonzero(~even),
                                                             "heldout")


@pytest.fixture(scope="module")
def extractor():
    return make_extractor("random", seed=0)


@pytest.fixture(scope="module")
def feats(halves, extractor):
    real, held = halves
    return extractor(real.tiles), extractor(held.tiles)


def _shuffled(tiles: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = tiles.reshape(len(tiles), -1, 3).copy()
    for tile in flat:
        rng.shuffle(tile)
    return flat.reshape(tiles.shape)


def test_tiles_keep_their_source_and_position(ihc):
    tiles = load_tiles([("a", ihc), ("b", ihc[:128, :96])], "real", tile_size=32,
                       min_tissue=0.0)
    assert len(tiles) == 16 * 16 + 4 * 3
    assert tiles.sources.count("b") == 12
    i = tiles.sources.index("b") + 5  # row 1, column 2 of image b
    y, x = tiles.positions[i]
    assert (y, x) == (32, 64)
    assert np.array_equal(tiles.tiles[i], ihc[32:64, 64:96])


def test_tissue_filter_drops_background(ihc):
    glass = np.full((64, 64, 3), 245, np.uint8)
    tiles = load_tiles([("ihc", ihc), ("glass", glass)], "real", tile_size=TS)
    assert "glass" not in tiles.sources
    assert tiles.offered == 32 * 32 + 16


def test_spatial_split_is_disjoint(ihc):
    tiles = load_tiles([("ihc", ihc)], "real", tile_size=32, min_tissue=0.0)
    a, b = spatial_split(tiles, 0.5)
    assert len(a) + len(b) == len(tiles)
    assert a.positions[:, 1].max() + 32 <= b.positions[:, 1].min()


def test_identical_sets(feats):
    real, _ = feats
    dist = D.fid_kid(real, real, n_bootstrap=5)
    assert abs(dist["fid"]) < 1e-6
    # KID's independent subsets share tiles, which pulls it a little below 0
    assert abs(dist["kid"]) < 1e-3
    prdc = D.precision_recall_density_coverage(real, real)
    assert prdc["precision"] == prdc["recall"] == prdc["coverage"] == 1.0


def test_shuffled_pixels_far_from_real(halves, feats, extractor):
    real, held = feats
    fid_held = D.fid_kid(real, held, n_bootstrap=0)["fid"]
    shuffled = extractor(_shuffled(halves[1].tiles))
    fid_shuffled = D.fid_kid(real, shuffled, n_bootstrap=0)
    assert fid_shuffled["fid"] > 4 * fid_held
    assert fid_shuffled["kid"] > 4 * D.fid_kid(real, held, n_bootstrap=0)["kid"]
    assert D.precision_recall_density_coverage(real, shuffled)["precision"] < 0.5


def test_one_repeated_tile_has_no_recall(feats):
    real, held = feats
    one = np.repeat(held[:1], 100, axis=0)
    prdc = D.precision_recall_density_coverage(real, one)
    assert prdc["recall"] < 0.05
    assert prdc["coverage"] < 0.05
    honest = D.precision_recall_density_coverage(real, held)
    assert honest["recall"] > 0.8 and honest["coverage"] > 0.8


def test_bootstrap_interval_holds_the_estimate(feats):
    real, held = feats
    dist = D.fid_kid(real, held, n_bootstrap=20, seed=3)
    low, high = dist["fid_ci"]
    assert low <= dist["fid"] <= high
    assert dist["kid_ci"][0] < dist["kid_ci"][1]
    assert dist["fid_bootstrap_bias"] > 0  # resamples repeat tiles: FID goes up


def test_training_crops_are_caught(ihc, extractor):
    train = load_tiles([("train", ihc[:, :256])], "train", tile_size=TS)
    held = load_tiles([("held", ihc[:, 256:])], "heldout", tile_size=TS)
    # synthetic = crops of the training image
    copies = load_tiles([("copy", ihc[:256, :256])], "synthetic", tile_size=TS)
    ft, fh, fc = extractor(train.tiles), extractor(held.tiles), extractor(copies.tiles)
    assert P.authenticity(ft, fc) < 0.05
    assert P.authenticity(ft, fh) > 0.4
    copying = P.data_copying(ft, fh, fc, seed=0)
    assert copying["C_T"] < -3
    honest = P.data_copying(ft, fh[::2], fh[1::2], seed=0)
    assert abs(honest["C_T"]) < 2.5
    ratio = P.distance_ratio(ft, fh, fc)
    assert ratio["nn_distance_ratio"] < 0.1
    pairs = P.closest_pairs(ft, fc, 4)
    assert [d for _, _, d in pairs] == sorted(d for _, _, d in pairs)
    assert pairs[0][2] < 1e-6
    s, t, _ = pairs[0]
    assert np.array_equal(copies.tiles[s], train.tiles[t])


def test_random_features_are_fixed_by_the_seed(halves):
    tiles = halves[0].tiles[:32]
    a = make_extractor("random", seed=0)(tiles)
    b = make_extractor("random", seed=0)(tiles)
    c = make_extractor("random", seed=1)(tiles)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    from napari_histodiff.training.encoder_net import random_encoder

    # the generator's stream: the same numbers on every machine
    w = random_encoder(0).body[0].weight
    assert float(w[0, 0, 0, 0]) == pytest.approx(-0.19963836, abs=1e-6)
    assert float(w[:8].mean(dim=(2, 3)).abs().max()) < 1e-6  # zero-mean half


def test_too_few_tiles_name_count_and_minimum(feats):
    real, _ = feats
    with pytest.raises(InputError, match=r"synthetic: 40 tiles.*at least 65"):
        D.fid_kid(real, real[:40])
    with pytest.raises(InputError, match=r"real: 5 tiles.*k=5.*at least 6"):
        D.precision_recall_density_coverage(real[:5], real)
    with pytest.raises(InputError, match=r"--train: 3 tiles.*10 cells.*at least 10"):
        P.data_copying(real[:3], real, real)
