"""Mask editing tools: new masks, specks, smoothing, regions, other sources."""

import numpy as np
import pytest

from napari_histodiff.errors import InputError
from napari_histodiff.masks.tools import (
    bounding_region,
    class_features,
    context_box,
    label_colors,
    mask_from_image,
    new_mask,
    random_blobs,
    region_mask,
    remove_specks,
    smooth_boundaries,
)
from napari_histodiff.models.classes import TissueClasses

CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")


def test_new_mask_shape_dtype_and_checks():
    mask = new_mask((30, 40), CLASSES)
    assert mask.shape == (30, 40) and mask.dtype == np.uint8 and not mask.any()
    assert new_mask((2, 2), CLASSES, fill=3).max() == 3
    with pytest.raises(InputError, match="size"):
        new_mask((0, 10), CLASSES)
    with pytest.raises(InputError, match="fill"):
        new_mask((4, 4), CLASSES, fill=9)


def test_features_and_colors_follow_classes():
    feats = class_features(CLASSES)
    assert feats["index"] == [0, 1, 2, 3, 4]
    assert feats["class"][2] == "nuclei"
    colors = label_colors(CLASSES)
    assert colors[0][3] == 0 and colors[None][3] == 0
    assert colors[2] == pytest.approx((60 / 255, 60 / 255, 200 / 255, 1.0))


def test_remove_specks_fills_islands_and_holes_from_neighbours():
    mask = np.full((40, 40), 4, np.uint8)
    mask[:, 20:] = 2
    mask[5:7, 5:7] = 3  # 4-pixel island inside class 4
    mask[30, 30] = 0  # a 1-pixel hole inside class 2
    mask[10:20, 25:35] = 1  # a large region stays
    out = remove_specks(mask, 10)
    assert (out[5:7, 5:7] == 4).all()
    assert out[30, 30] == 2
    assert (out[10:20, 25:35] == 1).all()
    assert set(np.unique(out)) == {1, 2, 4}
    assert (mask[5:7, 5:7] == 3).all()  # input untouched


def test_remove_specks_arguments():
    with pytest.raises(InputError, match="min_size"):
        remove_specks(np.zeros((4, 4), np.uint8), 0)
    with pytest.raises(InputError, match="2-D integer"):
        remove_specks(np.zeros((4, 4), float), 3)
    same = remove_specks(np.ones((4, 4), np.uint8), 100)  # all one speck: unchanged
    assert (same == 1).all()


def test_smooth_boundaries_rounds_jagged_edges_without_new_ids():
    mask = np.full((64, 64), 1, np.uint8)
    mask[:, 32:] = 2
    rng = np.random.default_rng(0)
    jag = rng.random((64, 6)) < 0.5
    mask[:, 29:35][jag] = 3 - mask[:, 29:35][jag]  # flip pixels near the edge
    out = smooth_boundaries(mask, 3.0)
    assert set(np.unique(out)) <= {1, 2}
    assert (out[:, :24] == 1).all() and (out[:, 40:] == 2).all()
    changes = np.count_nonzero(np.diff(out.astype(int), axis=1), axis=1)
    assert changes.max() <= np.count_nonzero(np.diff(mask.astype(int), axis=1),
                                             axis=1).max()
    with pytest.raises(InputError, match="radius"):
        smooth_boundaries(mask, 0)


def test_regions_from_rectangles_and_context_boxes():
    verts = np.array([[10.2, 5.0], [10.2, 20.7], [30.0, 20.7], [30.0, 5.0]])
    assert bounding_region(verts, (64, 64)) == (10, 30, 5, 21)
    assert bounding_region(verts - 20, (64, 64)) == (0, 10, 0, 1)
    with pytest.raises(InputError, match="does not cover"):
        bounding_region(verts + 100, (64, 64))
    crop, inner = context_box((10, 30, 5, 21), 8, (64, 64))
    assert crop == (2, 38, 0, 29) and inner == (8, 28, 5, 21)
    m = region_mask((36, 29), inner)
    assert m.sum() == 20 * 16 and m[8, 5] and not m[7, 5]


def test_random_blobs_use_the_chosen_classes():
    mask = random_blobs((48, 48), [2, 4], seed=1)
    assert mask.shape == (48, 48) and set(np.unique(mask)) == {2, 4}
    assert (random_blobs((48, 48), [2, 4], seed=1) == mask).all()


def test_mask_from_image_maps_labeller_classes_by_name():
    from skimage import data

    rgb = data.immunohistochemistry()[:96, :96]
    mask, missing = mask_from_image(rgb, CLASSES)
    assert mask.shape == (96, 96) and missing == []
    assert set(np.unique(mask)) <= {1, 2, 3, 4}
    other = TissueClasses.from_names("tissue,nuclei")
    mask2, missing2 = mask_from_image(rgb, other)
    assert set(missing2) == {"background", "dab"}
    assert set(np.unique(mask2)) <= {0, 1, 2}
