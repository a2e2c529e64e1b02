"""An automatic labeller: a class mask from a real RGB image, no model needed.

Colour deconvolution (Ruifrok & Johnston, ``skimage.color.rgb2hed``) splits a
bright-field image into hematoxylin (H), eosin (E) and DAB (D) optical
densities. Thresholds on those densities and on brightness, followed by a
little morphology, give four classes:

``background``
    bright, unstained glass;
``nuclei``
    hematoxylin-rich pixels (nuclei and dense, blue-stained tissue);
``dab``
    DAB-positive (brown) pixels;
``tissue``
    everything else (stroma, cytoplasm, faint staining).

That is the H-DAB labeller (immunohistochemistry). For H&E images,
:func:`auto_label_he` gives ``background``, ``nuclei``, ``stroma`` (eosin-rich)
and ``tissue`` (:data:`HE_CLASS_NAMES`) the same way, from hematoxylin and
eosin densities. :func:`stain_report` measures which stain an image carries,
and :func:`label_image` refuses to label an image with a labeller whose stain
it does not carry (an H&E image labelled as H-DAB comes out "mostly DAB, few
nuclei", a silent wrong answer), saying what it measured.

The label ids are those of a model with classes ``unknown`` + :data:`CLASS_NAMES`
(``unknown`` = 0 is never produced). The result is rough, made for demo
training labels and for "a mask from a real image"; it is no substitute for a
pathologist's annotation.

>>> from napari_histodiff.masks.labeller import auto_label, CLASS_NAMES
>>> mask = auto_label(rgb)          # (H, W) uint8 with ids 1..4
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: The classes the labeller writes, in label-id order starting at 1.
CLASS_NAMES: tuple[str, ...] = ("background", "nuclei", "dab", "tissue")
BACKGROUND, NUCLEI, DAB, TISSUE = 1, 2, 3, 4
#: The classes of the H&E labeller, in label-id order starting at 1.
HE_CLASS_NAMES: tuple[str, ...] = ("background", "nuclei", "stroma", "tissue")
STROMA = 3
STAINS = ("hdab", "he")
#: Stain detection: the 90th percentile optical density over tissue pixels of
#: the stain's own channel must be at least this, and this many times that
#: of the other stain (eosin for H-DAB, DAB for H&E).
STAIN_MIN_DENSITY = {"hdab": 0.04, "he": 0.03}
STAIN_DOMINANCE = 2.0


@dataclass(frozen=True)
class LabellerSettings:
    """Thresholds and morphology of :func:`auto_label`.

    Parameters
    ----------
    dab_threshold : float or None
        DAB optical density above which a pixel is DAB-positive; None picks
        Otsu's threshold on the image, but never below ``dab_floor``.
    dab_floor : float
        Lowest DAB threshold Otsu may choose (avoids labelling faint brown
        haze as positive on DAB-poor images).
    hematoxylin_threshold : float or None
        Hematoxylin optical density above which a pixel is nuclear; None picks
        Otsu's threshold, but never below ``hematoxylin_floor``.
    hematoxylin_floor : float
        Lowest hematoxylin threshold Otsu may choose.
    background_brightness : float
        Mean RGB (0-255) above which an unstained pixel is background.
    smoothing : float
        Gaussian sigma (pixels) of the soft majority vote that smooths the
        class regions.
    min_size : int
        Islands of a class smaller than this many pixels are absorbed by
        their surroundings.
    """

    dab_threshold: float | None = None
    dab_floor: float = 0.04
    hematoxylin_threshold: float | None = None
    hematoxylin_floor: float = 0.02
    background_brightness: float = 220.0
    smoothing: float = 1.5
    min_size: int = 24


def check_rgb(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as (H, W, 3) uint8 or raise an :class:`InputError`.

    Float images in [0, 1] are scaled; an alpha channel is dropped.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(
            f"{name}: expected an RGB image (H, W, 3), got shape {arr.shape}; "
            "convert grayscale or multichannel images to RGB first"
        )
    if min(arr.shape[:2]) < 4:
        raise InputError(f"{name}: image of shape {arr.shape} is too small")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
            raise InputError(
                f"{name}: float RGB images must be in [0, 1], got values in "
                f"[{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]"
            )
        return (np.nan_to_num(arr) * 255 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.max() <= 255 \
            and arr.min() >= 0:
        return arr.astype(np.uint8)
    raise InputError(
        f"{name}: expected 8-bit RGB, got dtype {arr.dtype}; rescale it to 0-255"
    )


def stain_densities(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin, eosin and DAB optical densities, (H, W, 3) float32."""
    from skimage.color import rgb2hed

    return rgb2hed(check_rgb(rgb)).astype(np.float32)


def _threshold(values: np.ndarray, fixed: float | None, floor: float) -> float:
    if fixed is not None:
        return float(fixed)
    from skimage.filters import threshold_otsu

    if float(values.max()) - float(values.min()) < 1e-6:
        return max(float(values.max()) + 1.0, floor)
    return max(float(threshold_otsu(values)), floor)


def _channels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed hematoxylin and DAB densities and brightness of checked RGB."""
    from scipy.ndimage import gaussian_filter

    hed = stain_densities(rgb)
    return (gaussian_filter(hed[..., 0], 0.7), gaussian_filter(hed[..., 2], 0.7),
            gaussian_filter(rgb.astype(np.float32).mean(axis=-1), 0.7))


def fit_thresholds(rgb, settings: LabellerSettings | None = None
                   ) -> LabellerSettings:
    """``settings`` with the thresholds :func:`auto_label` would pick on ``rgb``.

    Otsu's thresholds follow the image they are computed on, so two images
    of similar colour can be labelled differently when the rest of their
    content differs. To label several images with one ruler (e.g. synthetic
    images against the real image they imitate), fit the thresholds on one
    image and pass the result to :func:`auto_label` for all of them.
    """
    from dataclasses import replace

    s = settings or LabellerSettings()
    h, d, _ = _channels(check_rgb(rgb, "rgb"))
    return replace(s, dab_threshold=_threshold(d, s.dab_threshold, s.dab_floor),
                   hematoxylin_threshold=_threshold(h, s.hematoxylin_threshold,
                                                    s.hematoxylin_floor))


def auto_label(rgb, settings: LabellerSettings | None = None) -> np.ndarray:
    """Label an RGB bright-field image by colour deconvolution.

    Parameters
    ----------
    rgb : array-like, (H, W, 3)
        uint8 RGB (floats in [0, 1] are accepted).
    settings : LabellerSettings, optional
        Thresholds and morphology; the defaults suit H-DAB images such as
        ``skimage.data.immunohistochemistry()``.

    Returns
    -------
    np.ndarray
        (H, W) uint8 label ids: 1 background, 2 nuclei, 3 dab, 4 tissue
        (see :data:`CLASS_NAMES`).
    """
    s = settings or LabellerSettings()
    rgb = check_rgb(rgb, "rgb")
    h, d, brightness = _channels(rgb)

    dab = d > _threshold(d, s.dab_threshold, s.dab_floor)
    nuclei = (h > _threshold(h, s.hematoxylin_threshold, s.hematoxylin_floor)) & ~dab
    background = (brightness > s.background_brightness) & ~dab & ~nuclei

    labels = np.full(rgb.shape[:2], TISSUE, np.uint8)
    labels[background] = BACKGROUND
    labels[nuclei] = NUCLEI
    labels[dab] = DAB
    return smooth_labels(labels, len(CLASS_NAMES) + 1, s.smoothing, s.min_size)


def smooth_labels(labels: np.ndarray, num_classes: int, sigma: float,
                  min_size: int) -> np.ndarray:
    """Soft majority vote (Gaussian-smoothed one-hot, argmax), small islands out.

    Parameters
    ----------
    labels : np.ndarray
        (H, W) integer ids below ``num_classes``.
    num_classes : int
    sigma : float
        Gaussian sigma in pixels; 0 skips the vote.
    min_size : int
        Islands below this many pixels take the class of their neighbourhood.
    """
    from scipy.ndimage import gaussian_filter
    from skimage.morphology import remove_small_objects

    out = labels.copy()
    if sigma > 0:
        votes = np.stack([gaussian_filter((labels == k).astype(np.float32), sigma)
                          for k in range(num_classes)])
        out = np.argmax(votes, axis=0).astype(labels.dtype)
    if min_size > 1:
        present = np.unique(out)
        small = np.zeros(out.shape, bool)
        for k in present:
            region = out == k
            small |= region & ~remove_small_objects(region, max_size=min_size - 1)
        if small.any() and not small.all():
            votes = np.stack([
                gaussian_filter(((out == k) & ~small).astype(np.float32), 3.0)
                for k in range(num_classes)
            ])
            out = np.where(small, np.argmax(votes, axis=0), out).astype(labels.dtype)
    return out


def class_fractions(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of pixels per class id, (num_classes,) float."""
    counts = np.bincount(np.asarray(mask).ravel(), minlength=num_classes)
    return counts[:num_classes] / max(1, mask.size)


def class_names(stain: str) -> tuple[str, ...]:
    """The classes the labeller of ``stain`` writes (ids from 1)."""
    if stain not in STAINS:
        raise InputError(f"stain: {stain!r} is not one of {', '.join(STAINS)}")
    return CLASS_NAMES if stain == "hdab" else HE_CLASS_NAMES


def stain_report(rgb, background_brightness: float = 220.0) -> dict:
    """Which stain ``rgb`` carries, measured on its tissue pixels.

    Returns a dict with the tissue fraction, the 90th-percentile optical
    densities of hematoxylin, eosin and DAB over tissue pixels, and
    ``stain``: ``"hdab"``, ``"he"`` or None when neither stain dominates by
    the documented rule: the stain's density (DAB or eosin) at least
    :data:`STAIN_MIN_DENSITY` and :data:`STAIN_DOMINANCE` times the other's,
    and for H-DAB more DAB than hematoxylin density (grey deconvolves to
    less DAB than hematoxylin).
    """
    rgb = check_rgb(rgb, "rgb")
    hed = stain_densities(rgb)
    tissue = rgb.astype(np.float32).mean(axis=-1) <= background_brightness
    report: dict = {"tissue_fraction": float(tissue.mean())}
    if tissue.sum() < 16:
        report.update(hematoxylin_p90=None, eosin_p90=None, dab_p90=None,
                      stain=None)
        return report
    h, e, d = (float(np.percentile(hed[..., i][tissue], 90)) for i in range(3))
    report.update(hematoxylin_p90=h, eosin_p90=e, dab_p90=d)
    stain = None
    # brown DAB carries more DAB than hematoxylin density; neutral grey (dust,
    # pen, a greyscale scan) deconvolves to less (about 0.73 of it)
    if d >= STAIN_MIN_DENSITY["hdab"] and d >= STAIN_DOMINANCE * max(e, 0.0) \
            and d > h:
        stain = "hdab"
    elif e >= STAIN_MIN_DENSITY["he"] and e >= STAIN_DOMINANCE * max(d, 0.0):
        stain = "he"
    report["stain"] = stain
    return report


def auto_label_he(rgb, settings: LabellerSettings | None = None,
                  eosin_threshold: float | None = None,
                  eosin_floor: float = 0.03) -> np.ndarray:
    """Label an H&E image: 1 background, 2 nuclei, 3 stroma, 4 tissue.

    Nuclei are hematoxylin-rich pixels, stroma eosin-rich ones (Otsu's
    threshold on the eosin density, never below ``eosin_floor``, unless
    ``eosin_threshold`` is given), background bright unstained glass, tissue
    the rest; then the same smoothing as :func:`auto_label`.
    """
    from scipy.ndimage import gaussian_filter

    s = settings or LabellerSettings()
    rgb = check_rgb(rgb, "rgb")
    hed = stain_densities(rgb)
    h = gaussian_filter(hed[..., 0], 0.7)
    e = gaussian_filter(hed[..., 1], 0.7)
    brightness = gaussian_filter(rgb.astype(np.float32).mean(axis=-1), 0.7)
    nuclei = h > _threshold(h, s.hematoxylin_threshold, s.hematoxylin_floor)
    stroma = (e > _threshold(e, eosin_threshold, eosin_floor)) & ~nuclei
    background = (brightness > s.background_brightness) & ~nuclei & ~stroma
    labels = np.full(rgb.shape[:2], TISSUE, np.uint8)
    labels[background] = BACKGROUND
    labels[nuclei] = NUCLEI
    labels[stroma] = STROMA
    return smooth_labels(labels, len(HE_CLASS_NAMES) + 1, s.smoothing, s.min_size)


def label_image(rgb, stain: str = "auto", settings: LabellerSettings | None = None,
                check: bool = True) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """Label ``rgb`` with the labeller of its stain.

    Parameters
    ----------
    stain : {"auto", "hdab", "he"}
        ``auto`` measures it (:func:`stain_report`).
    check : bool
        Refuse a given ``stain`` the image does not carry (with the
        measurement and the stain to use).

    Returns
    -------
    labels, class_names, report
    """
    if stain != "auto" and stain not in STAINS:
        raise InputError(f"stain: {stain!r} is not one of auto, "
                         f"{', '.join(STAINS)}")
    report = stain_report(rgb, (settings or LabellerSettings()).background_brightness)
    found = report["stain"]
    figures = (f"90th-percentile densities over tissue: hematoxylin "
               f"{report['hematoxylin_p90'] or 0:.3f}, eosin "
               f"{report['eosin_p90'] or 0:.3f}, DAB {report['dab_p90'] or 0:.3f}")
    names = {"hdab": "H-DAB (immunohistochemistry)", "he": "H&E"}
    if stain == "auto":
        if found is None:
            raise InputError(
                f"stain: cannot tell whether the image is H-DAB or H&E ({figures}); "
                "give the stain: --stain hdab or --stain he")
        stain = found
    elif check and found is not None and found != stain:
        raise InputError(
            f"stain: the image looks {names[found]}, not {names[stain]} "
            f"({figures}); label it with --stain {found}, or force --stain "
            f"{stain} --no-stain-check")
    labels = auto_label(rgb, settings) if stain == "hdab" else \
        auto_label_he(rgb, settings)
    report["labelled_as"] = stain
    return labels, class_names(stain), report
