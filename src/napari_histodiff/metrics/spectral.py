"""A spectral report: how much fine detail (or speckle) an image set holds.

Two measurements per image set, each on grey levels and on each colour
channel separately:

**Radially averaged power spectrum.** Each image (one channel, in grey
levels 0-255) has its mean removed, is multiplied by a 2-D Hann window (so
that the jump between opposite image borders does not add power along the
axes) and Fourier transformed. The power ``|F|**2 / sum(window**2)`` is in
grey levels squared per frequency sample: white noise of standard deviation
``s`` has power ``s**2`` at every frequency. Frequencies are radial,
``sqrt(fy**2 + fx**2)`` in cycles per pixel, and only the disc up to the
Nyquist frequency 0.5 is used (the corners beyond it exist along the
diagonals only). The power is averaged over the frequencies of each of
``n_bins`` rings for the spectrum, and of each of ``n_bands`` equal bands of
the radial range (0, 0.5] for the band powers: with the default 4 bands the
**highest band** is the top quarter, 0.375-0.5 cycles per pixel (detail of
2-2.7 pixels). Images count equally in the set's average, whatever their
size.

**High-pass residual standard deviation.** The image minus its 3x3 mean
(:func:`scipy.ndimage.uniform_filter`, borders reflected), the standard
deviation of that residual over all pixels of the set, in grey levels:
pixel-to-pixel texture, which speckle raises and smoothing lowers.

Grey is ``(R + G + B) / 3``. :func:`spectral_comparison` divides the
synthetic set's figures by the real set's: a ratio above 1 means more power
(or residual) than real, below 1 less.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checks import check_int
from ._inputs import check_rgb_images

#: The channels reported: grey first, then red, green and blue.
CHANNELS = ("grey", "red", "green", "blue")
#: The smallest image side the spectrum is taken of.
MIN_SIDE = 8


def _channel(image: np.ndarray, name: str) -> np.ndarray:
    img = image.astype(np.float64)
    if name == "grey":
        return img.mean(axis=-1)
    return img[..., CHANNELS.index(name) - 1]


def power_spectrum(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power and radial frequency (cycles per pixel) of one 2-D plane.

    Parameters
    ----------
    plane : np.ndarray
        (H, W), any real values (grey levels here).

    Returns
    -------
    power, radius : np.ndarray
        (H, W) each, in FFT order: ``|F|**2 / sum(window**2)`` of the plane
        with its mean removed and a 2-D Hann window applied, and the radial
        frequency of each sample.
    """
    h, w = plane.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.fft2((plane - plane.mean()) * win)
    power = np.abs(f) ** 2 / (win ** 2).sum()
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    return power, r


def ring_means(power: np.ndarray, r: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean power in each ring ``edges[i] < r <= edges[i + 1]`` (NaN if empty).

    ``edges``: increasing radial frequencies from 0; frequencies beyond the
    last edge and the zero frequency are left out.
    """
    keep = (r > 0) & (r <= edges[-1])
    idx = np.clip(np.searchsorted(edges, r[keep], side="left") - 1, 0,
                  len(edges) - 2)
    sums = np.bincount(idx, weights=power[keep], minlength=len(edges) - 1)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def highpass_residual(plane: np.ndarray) -> np.ndarray:
    """``plane`` minus its 3x3 mean (borders reflected), float64."""
    from scipy.ndimage import uniform_filter

    plane = np.asarray(plane, dtype=np.float64)
    return plane - uniform_filter(plane, size=3, mode="reflect")


def spectral_report(images: Sequence[np.ndarray], *, n_bands: int = 4,
                    n_bins: int = 32, argname: str = "images") -> dict[str, Any]:
    """Radially averaged power spectrum, band powers and high-pass std of a set.

    Parameters
    ----------
    images : sequence of np.ndarray
        (H, W, 3) uint8 images, each side at least 8 pixels; sizes may differ.
    n_bands : int
        Equal bands of the radial frequency range (0, 0.5] cycles per pixel
        (>= 4); the last is the highest band.
    n_bins : int
        Rings of the spectrum (>= ``n_bands``).
    argname : str
        The name used for ``images`` in error messages.

    Returns
    -------
    dict
        ``n_images``; ``frequency`` (ring centres, cycles per pixel);
        ``bands`` (``[low, high]`` of each band); and per channel under
        ``channels[name]`` (``grey``, ``red``, ``green``, ``blue``):
        ``spectrum`` (mean power per ring), ``band_power`` (mean power per
        band, grey levels squared per frequency sample), ``highpass_std``
        (grey levels). The grey figures are repeated at the top level as
        ``spectrum``, ``band_power`` and ``highpass_std``.

    Raises
    ------
    InputError
        An image of the wrong type, dtype or shape (named by its index), or
        bad ``n_bands`` / ``n_bins``.
    """
    images = check_rgb_images(images, argname, MIN_SIDE)
    n_bands = check_int(n_bands, "n_bands", minimum=4)
    n_bins = check_int(n_bins, "n_bins", minimum=n_bands)
    ring_edges = np.linspace(0.0, 0.5, n_bins + 1)
    band_edges = np.linspace(0.0, 0.5, n_bands + 1)
    channels = {}
    for name in CHANNELS:
        spectra, bands, residuals = [], [], []
        for im in images:
            plane = _channel(im, name)
            power, r = power_spectrum(plane)
            spectra.append(ring_means(power, r, ring_edges))
            bands.append(ring_means(power, r, band_edges))
            residuals.append(highpass_residual(plane).ravel())
        channels[name] = {
            "spectrum": _nanmean_list(spectra),
            "band_power": _nanmean_list(bands),
            "highpass_std": float(np.concatenate(residuals).std()),
        }
    grey = channels["grey"]
    return {
        "n_images": len(images),
        "frequency": [float(v) for v in (ring_edges[:-1] + ring_edges[1:]) / 2],
        "bands": [[float(a), float(b)] for a, b in zip(band_edges[:-1],
                                                        band_edges[1:], strict=True)],
        "spectrum": grey["spectrum"], "band_power": grey["band_power"],
        "highpass_std": grey["highpass_std"],
        "channels": channels,
        "settings": {"window": "hann", "grey": "(R + G + B) / 3",
                     "highpass": "image minus 3x3 mean (reflect)",
                     "n_bands": n_bands, "n_bins": n_bins,
                     "frequency_unit": "cycles per pixel"},
    }


def _nanmean_list(rows: list[np.ndarray]) -> list[float]:
    stacked = np.vstack(rows)
    out = []
    for col in stacked.T:
        vals = col[~np.isnan(col)]
        out.append(float(vals.mean()) if vals.size else float("nan"))
    return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def spectral_comparison(real_images: Sequence[np.ndarray],
                        synthetic_images: Sequence[np.ndarray], *,
                        n_bands: int = 4, n_bins: int = 32) -> dict[str, Any]:
    """The spectral reports of two sets and the synthetic/real ratios.

    Parameters
    ----------
    real_images, synthetic_images : sequence of np.ndarray
        (H, W, 3) uint8 images (see :func:`spectral_report`).
    n_bands, n_bins : int
        As in :func:`spectral_report`.

    Returns
    -------
    dict
        ``real`` and ``synthetic`` (the two reports); ``bands``;
        ``band_ratio`` (synthetic / real band power, grey);
        ``highest_band_ratio`` (its last value: the top quarter of the radial
        frequency range); ``highpass_std`` (``{"real": .., "synthetic": ..}``,
        grey levels); ``highpass_std_ratio``; ``spectrum_ratio`` (per ring);
        and ``channels[name]`` with ``band_ratio``, ``highest_band_ratio``
        and ``highpass_std_ratio`` of each channel.
    """
    real = spectral_report(real_images, n_bands=n_bands, n_bins=n_bins,
                           argname="real_images")
    synth = spectral_report(synthetic_images, n_bands=n_bands, n_bins=n_bins,
                            argname="synthetic_images")
    per = {}
    for name in CHANNELS:
        r, s = real["channels"][name], synth["channels"][name]
        band_ratio = [_ratio(b, a) for a, b in zip(r["band_power"], s["band_power"],
                                                   strict=True)]
        per[name] = {"band_ratio": band_ratio, "highest_band_ratio": band_ratio[-1],
                     "highpass_std_ratio": _ratio(s["highpass_std"],
                                                  r["highpass_std"])}
    grey = per["grey"]
    return {
        "bands": real["bands"],
        "band_ratio": grey["band_ratio"],
        "highest_band_ratio": grey["highest_band_ratio"],
        "highpass_std": {"real": real["highpass_std"],
                         "synthetic": synth["highpass_std"]},
        "highpass_std_ratio": grey["highpass_std_ratio"],
        "spectrum_ratio": [_ratio(b, a) for a, b in zip(real["spectrum"],
                                                        synth["spectrum"],
                                                        strict=True)],
        "channels": per,
        "real": real, "synthetic": synth,
    }
