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


# -- stains: H-DAB and H&E ---------------------------------------------------------
def _he_image():
    """An H&E stand-in: the IHC image's hematoxylin kept, its DAB density
    moved to eosin, and a faint eosin wash over the tissue."""
    from skimage import data
    from skimage.color import hed2rgb, rgb2hed

    ihc = data.immunohistochemistry()
    hed = rgb2hed(ihc)
    out = np.zeros_like(hed)
    out[..., 0] = hed[..., 0]
    out[..., 1] = np.clip(hed[..., 2], 0, None) + 0.03 * (ihc.mean(-1) < 200)
    return (np.clip(hed2rgb(out), 0, 1) * 255).astype(np.uint8)


def test_stain_is_measured():
    from skimage import data

    from napari_histodiff.masks.labeller import stain_report

    assert stain_report(data.immunohistochemistry())["stain"] == "hdab"
    report = stain_report(_he_image())
    assert report["stain"] == "he" and report["eosin_p90"] > report["dab_p90"]
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert stain_report(grey)["stain"] is None


def test_he_image_is_not_labelled_as_hdab():
    from napari_histodiff.errors import InputError
    from napari_histodiff.masks.labeller import HE_CLASS_NAMES, label_image

    he = _he_image()
    with pytest.raises(InputError, match="looks H&E.*--stain he"):
        label_image(he, "hdab")
    labels, names, report = label_image(he)  # auto
    assert names == HE_CLASS_NAMES and report["labelled_as"] == "he"
    fractions = np.bincount(labels.ravel(), minlength=5)[1:] / labels.size
    assert fractions[2] > 0.05  # stroma (eosin-rich) found
    assert fractions[1] > 0.02  # nuclei found
    forced, _, _ = label_image(he, "hdab", check=False)
    assert forced.shape == he.shape[:2]
    with pytest.raises(InputError, match="cannot tell"):
        label_image(np.full((64, 64, 3), 128, np.uint8))


def test_cli_label_he(tmp_path):
    from _helpers import run_cli
    from napari_histodiff.io.preview import save_png

    image = tmp_path / "he.png"
    save_png(image, _he_image())
    res = run_cli("label", str(image), "--out", str(tmp_path / "m.png"))
    assert res.returncode == 0, res.stderr
    assert "labelled as he" in res.stdout and "stroma" in res.stdout
    res = run_cli("label", str(image), "--stain", "hdab", "--out",
                  str(tmp_path / "m2.png"))
    assert res.returncode == 2 and "--stain he" in res.stderr
    assert not (tmp_path / "m2.png").exists()
