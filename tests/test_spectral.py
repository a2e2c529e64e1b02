"""The spectral report (metrics/spectral.py) on crops of a real slide."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_histodiff.errors import InputError
from napari_histodiff.metrics.spectral import spectral_comparison, spectral_report


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from skimage.data import immunohistochemistry

    return immunohistochemistry()[256:, 256:].copy()  # 256 x 256


def noisy(image, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255
                   ).astype(np.uint8)


def test_identical_sets_give_ratios_of_one(crop):
    c = spectral_comparison([crop], [crop.copy()])
    assert c["band_ratio"] == pytest.approx([1.0] * 4)
    assert c["highpass_std_ratio"] == pytest.approx(1.0)
    assert c["bands"][-1] == [0.375, 0.5]


def test_pixel_noise_raises_the_highest_band(crop):
    c = spectral_comparison([crop], [noisy(crop, 8)])
    assert c["highest_band_ratio"] > 1.5
    # white noise adds the same power everywhere: low bands, full of
    # tissue, change relatively little
    assert c["band_ratio"][0] < 1.1
    assert c["highpass_std_ratio"] > 1.1
    for ch in ("red", "green", "blue"):
        assert c["channels"][ch]["highest_band_ratio"] > 1.5


def test_smoothing_lowers_the_highest_band(crop):
    smooth = gaussian_filter(crop.astype(float), (1, 1, 0)).round().astype(np.uint8)
    c = spectral_comparison([crop], [smooth])
    assert c["highest_band_ratio"] < 0.5
    assert c["highpass_std_ratio"] < 0.8
    assert c["band_ratio"][0] > 0.8


def test_white_noise_power_is_its_variance():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 10, (128, 128, 3)).round(), 0, 255
                  ).astype(np.uint8)
    rep = spectral_report([img])
    # per channel: variance 100 (+ 1/12 of rounding), flat across bands
    for p in rep["channels"]["red"]["band_power"]:
        assert p == pytest.approx(100, rel=0.15)
    # grey averages three independent channels: a third of the variance
    assert np.mean(rep["band_power"]) == pytest.approx(100 / 3, rel=0.15)
    # residual of a 3x3 mean on white noise: sqrt(8/9) of the noise std
    assert rep["channels"]["red"]["highpass_std"] == pytest.approx(
        10 * np.sqrt(8 / 9), rel=0.05)


def test_a_fine_grating_lands_in_the_highest_band():
    x = np.arange(64)
    wave = 128 + 60 * np.cos(2 * np.pi * 0.42 * x)[None, :] * np.ones((64, 1))
    img = np.repeat(wave[..., None], 3, axis=-1).round().astype(np.uint8)
    power = spectral_report([img])["band_power"]
    assert int(np.argmax(power)) == 3
    assert power[3] > 50 * max(power[:3])


def test_sets_of_different_sizes_and_json(crop):
    rep = spectral_report([crop, crop[:100, :150].copy()], n_bands=5, n_bins=20)
    assert rep["n_images"] == 2 and len(rep["band_power"]) == 5
    assert len(rep["spectrum"]) == len(rep["frequency"]) == 20
    json.dumps(rep)


@pytest.mark.parametrize("bad, match", [
    (lambda c: c.astype(np.uint16), r"synthetic_images\[1\]: expected dtype uint8"),
    (lambda c: c[..., :2], r"synthetic_images\[1\]: expected shape \(H, W, 3\)"),
    (lambda c: c[:4], r"synthetic_images\[1\]: shape .* too small"),
])
def test_bad_images_are_named_by_index(crop, bad, match):
    with pytest.raises(InputError, match=match):
        spectral_comparison([crop], [crop, bad(crop)])


def test_bad_settings(crop):
    with pytest.raises(InputError, match="n_bands: must be an integer >= 4, got 3"):
        spectral_report([crop], n_bands=3)
    with pytest.raises(InputError, match="images: the list is empty"):
        spectral_report([])
