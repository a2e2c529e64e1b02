"""The classifier two-sample test (metrics/c2st.py) on crops of a real slide.

Small settings (32-px tiles, 60 training steps, one or two seeds) keep each
test to a few seconds on a CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_histodiff.errors import InputError
from napari_histodiff.metrics.c2st import (
    MIN_TRAIN_TILES,
    classifier_two_sample_test,
    make_classifier,
    split_tiles,
)

FAST = {"tile_size": 32, "train_steps": 60, "seeds": (0,)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: faster on a busy machine; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from skimage.data import immunohistochemistry

    return immunohistochemistry()[256:384, 256:384].copy()  # 128 x 128


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255
                   ).astype(np.uint8)


def test_classifier_is_small():
    n = sum(p.numel() for p in make_classifier().parameters())
    assert 3_000 <= n <= 100_000


def test_identical_sets_give_chance(crop):
    res = classifier_two_sample_test([crop], [crop.copy()], **FAST)
    assert abs(res.auc - 0.5) < 0.05


def test_two_noise_draws_of_one_image_are_not_told_apart(crop):
    # the same image with two independent draws of the same noise: nothing
    # systematic separates them, and tiles are not identical either
    res = classifier_two_sample_test([noisy(crop, 6, 1)], [noisy(crop, 6, 2)],
                                     **FAST)
    assert 0.25 < res.auc < 0.75


def test_added_pixel_noise_is_found(crop):
    res = classifier_two_sample_test([crop], [noisy(crop, 10, 0)],
                                     **{**FAST, "seeds": (0, 1)})
    assert res.auc > 0.9
    assert res.auc_min <= res.auc <= res.auc_max
    assert len(res.per_seed) == 2 and res.auc_std >= 0


def test_floor_and_result_fields(crop):
    other = np.ascontiguousarray(crop[:, ::-1])  # another real set
    res = classifier_two_sample_test([crop], [noisy(crop, 10, 0)],
                                     floor_images=[other], **FAST)
    assert res.floor is not None and res.floor.labels == ("real", "floor")
    d = json.loads(json.dumps(res.to_dict()))
    assert d["floor"]["counts"]["images"] == {"real": 1, "floor": 1}
    # 128-px image, 64-px blocks: one of four blocks held out; 32-px tiles
    # at stride 4 give 9 x 9 tiles a block
    assert d["counts"]["test_tiles"] == {"real": 81, "synthetic": 81}
    assert d["counts"]["train_tiles"] == {"real": 243, "synthetic": 243}
    assert d["settings"]["split_used"] == "blocks"
    assert d["per_seed_auc"] == [res.auc]


def test_deterministic_for_a_seed(crop):
    a = classifier_two_sample_test([crop], [noisy(crop, 4, 0)], **FAST)
    b = classifier_two_sample_test([crop], [noisy(crop, 4, 0)], **FAST)
    assert a.per_seed_auc == b.per_seed_auc


def _overlap(a, b, tile):
    return a[0] == b[0] and abs(a[1] - b[1]) < tile and abs(a[2] - b[2]) < tile


@pytest.mark.parametrize("split", ["blocks", "images"])
def test_no_test_tile_overlaps_a_training_tile(crop, split):
    images = [crop, crop[:, ::-1].copy(), crop[::-1].copy()]
    settings = {"tile_size": 32, "stride": 8, "block_size": 64, "split": split,
                "test_fraction": 0.25}
    for seed in (0, 1, 2):
        train, test, parts, mode = split_tiles((images, images),
                                               ("a", "b"), settings, seed)
        assert mode == split
        for s in range(2):
            assert train[s] and test[s]
            for t in test[s]:
                assert not any(_overlap(t, u, 32) for u in train[s])
        # paired sets: the same places held out in both
        assert sorted(test[0]) == sorted(test[1])
        if split == "images":
            assert {t[0] for t in test[0]}.isdisjoint({t[0] for t in train[0]})


def test_seeds_hold_out_different_blocks(crop):
    settings = {"tile_size": 32, "stride": 8, "block_size": 32, "split": "blocks",
                "test_fraction": 0.25}
    held = {tuple(map(tuple, split_tiles(([crop], [crop]), ("a", "b"), settings,
                                         s)[2])) for s in range(4)}
    assert len(held) > 1


def test_too_few_tiles_names_count_and_minimum(crop):
    small = [crop[:32, :32].copy(), crop[32:64, :32].copy()]
    with pytest.raises(InputError, match=rf"real_images: 1 training tiles .*"
                                         rf"at least {MIN_TRAIN_TILES} needed"):
        classifier_two_sample_test(small, small, **FAST)


def test_one_block_cannot_be_split(crop):
    with pytest.raises(InputError, match=r"real_images\[0\]: .*1 block of 64 px, "
                                         r"at least 2 needed"):
        classifier_two_sample_test([crop[:60, :60].copy()], [crop], **FAST)


@pytest.mark.parametrize("bad, where", [
    (lambda c: c.astype(np.float32), r"synthetic_images\[1\]: expected dtype uint8"),
    (lambda c: c[..., 0], r"synthetic_images\[1\]: expected shape \(H, W, 3\)"),
    (lambda c: c[:16, :16], r"synthetic_images\[1\]: shape .* too small"),
    (lambda c: c.tolist(), r"synthetic_images\[1\]: expected a numpy array"),
])
def test_bad_images_are_named_by_index(crop, bad, where):
    with pytest.raises(InputError, match=where):
        classifier_two_sample_test([crop], [crop, bad(crop)], **FAST)


@pytest.mark.parametrize("kwargs, match", [
    ({"tile_size": 4}, r"tile_size: must be an integer >= 8, got 4"),
    ({"seeds": ()}, r"seeds: expected a non-empty list"),
    ({"seeds": (0, 0)}, r"seeds: each seed once"),
    ({"batch_size": 7}, r"batch_size: must be even"),
    ({"test_fraction": 1.0}, r"test_fraction: must be between 0 and 1, got 1"),
    ({"split": "pixels"}, r"split: 'pixels' is not one of"),
])
def test_bad_settings_are_named(crop, kwargs, match):
    with pytest.raises(InputError, match=match):
        classifier_two_sample_test([crop], [crop], **{**FAST, **kwargs})


def test_a_single_array_is_not_a_list(crop):
    with pytest.raises(InputError, match="real_images: expected a list"):
        classifier_two_sample_test(crop, [crop], **FAST)
