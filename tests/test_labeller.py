"""The automatic labeller on scikit-image's IHC sample, and its CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_histodiff.cli import main
from napari_histodiff.errors import InputError
from napari_histodiff.masks.labeller import (
    BACKGROUND,
    CLASS_NAMES,
    DAB,
    NUCLEI,
    TISSUE,
    auto_label,
    check_rgb,
    class_fractions,
    fit_thresholds,
)


@pytest.fixture(scope="module")
def ihc():
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


def test_sample_image_gets_the_expected_classes(ihc):
    mask = auto_label(ihc)
    assert mask.shape == ihc.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {BACKGROUND, NUCLEI, DAB, TISSUE}
    frac = class_fractions(mask, len(CLASS_NAMES) + 1)
    assert frac[0] == 0  # never 'unknown'
    assert all(f > 0.05 for f in frac[1:]), frac
    # DAB pixels are brown (red > blue), nuclei blue (blue > red)
    assert ihc[mask == DAB].mean(0)[0] > ihc[mask == DAB].mean(0)[2]
    assert ihc[mask == NUCLEI].mean(0)[2] > ihc[mask == NUCLEI].mean(0)[0]
    assert ihc[mask == BACKGROUND].mean() > ihc[mask == TISSUE].mean()


def test_fitted_thresholds_label_other_images_with_the_same_ruler(ihc):
    ruler = fit_thresholds(ihc)
    assert ruler.dab_threshold >= ruler.dab_floor
    assert ruler.hematoxylin_threshold >= ruler.hematoxylin_floor
    # on the image they were fitted on, fixed thresholds change nothing
    np.testing.assert_array_equal(auto_label(ihc, ruler), auto_label(ihc))
    # a DAB-rich crop: its own Otsu threshold moves, the ruler does not
    crop = ihc[256:, 256:]
    own = fit_thresholds(crop)
    assert own.dab_threshold != pytest.approx(ruler.dab_threshold, rel=0.05)
    fixed = auto_label(crop, ruler)
    assert not np.array_equal(fixed, auto_label(crop))
    # a fixed threshold given by the user is kept, not refitted
    from napari_histodiff.masks.labeller import LabellerSettings

    kept = fit_thresholds(crop, LabellerSettings(dab_threshold=0.5))
    assert kept.dab_threshold == 0.5


def test_class_names_match_the_demo_classes():
    assert CLASS_NAMES == ("background", "nuclei", "dab", "tissue")


def test_blank_and_float_images():
    white = np.full((32, 32, 3), 250, np.uint8)
    assert set(np.unique(auto_label(white))) == {BACKGROUND}
    assert check_rgb(np.ones((8, 8, 3))).dtype == np.uint8


@pytest.mark.parametrize("bad", [
    np.zeros((16, 16)), np.zeros((16, 16, 2)), np.full((8, 8, 3), 3.0),
    np.zeros((8, 8, 3), np.int32) - 1,
])
def test_not_rgb_is_refused(bad):
    with pytest.raises(InputError, match="rgb"):
        auto_label(bad)


def test_cli_label(tmp_path, ihc, capsys):
    src = tmp_path / "ihc.png"
    Image.fromarray(ihc[:128, :128]).save(src)
    out = tmp_path / "mask.png"
    assert main(["label", str(src), "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).max() <= 4
    assert "nuclei" in capsys.readouterr().out
    gray = tmp_path / "gray.png"
    Image.fromarray(ihc[:64, :64, 0]).save(gray)
    assert main(["label", str(gray), "--out", str(tmp_path / "m2.png")]) == 2
    assert "gray.png" in capsys.readouterr().err
