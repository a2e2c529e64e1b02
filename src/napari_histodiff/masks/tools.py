"""Editing label masks: new masks, speck removal, boundary smoothing, regions.

Pure numpy/scipy; the napari mask widget calls these and only updates the
layer. A mask is a 2-D integer array of class ids (0 = unknown).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..models.classes import TissueClasses

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1), end exclusive

MAX_MASK_SIDE = 65536


def mask_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``num_classes`` ids."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def new_mask(shape: Sequence[int], classes: TissueClasses, fill: int = 0
             ) -> np.ndarray:
    """An empty mask of ``shape`` (H, W) filled with class id ``fill``.

    Parameters
    ----------
    shape : (int, int)
        Height and width in pixels.
    classes : TissueClasses
        The model's classes; ``fill`` must be one of their ids.
    fill : int
        Initial class id (0 = unknown).
    """
    if len(shape) != 2 or any(int(s) < 1 or int(s) > MAX_MASK_SIDE for s in shape):
        raise InputError(f"size: expected height and width between 1 and "
                         f"{MAX_MASK_SIDE}, got {tuple(shape)}")
    if not 0 <= fill < len(classes):
        raise InputError(f"fill: {fill} is not a class id of {classes.names}")
    return np.full(tuple(int(s) for s in shape), fill, mask_dtype(len(classes)))


def class_features(classes: TissueClasses) -> dict[str, list]:
    """Layer features: one row per class id, so napari shows names on hover."""
    return {"index": [c.index for c in classes], "class": [c.name for c in classes]}


def label_colors(classes: TissueClasses) -> dict:
    """Colours by id (RGBA 0-1) plus the ``None`` default napari expects."""
    colors: dict = dict(classes.colormap())
    colors[None] = (0.0, 0.0, 0.0, 0.0)
    return colors


def remove_specks(mask: np.ndarray, min_size: int, connectivity: int = 1
                  ) -> np.ndarray:
    """Replace connected pieces smaller than ``min_size`` pixels.

    Each speck (of any class, unknown included) takes the class of the
    nearest pixel outside all specks, so small islands and holes vanish
    without leaving unknown pixels behind.

    Parameters
    ----------
    mask : np.ndarray
        (H, W) integer class ids.
    min_size : int
        Pieces with fewer pixels than this are removed.
    connectivity : {1, 2}
        4- (1) or 8-connected (2) pieces.

    Returns
    -------
    np.ndarray
        A new mask; ``mask`` is not modified.
    """
    from scipy import ndimage as ndi

    mask = _check(mask)
    if min_size < 1:
        raise InputError(f"min_size: must be >= 1 pixel, got {min_size}")
    if connectivity not in (1, 2):
        raise InputError(f"connectivity: 1 or 2, got {connectivity}")
    structure = ndi.generate_binary_structure(2, connectivity)
    specks = np.zeros(mask.shape, bool)
    for value in np.unique(mask):
        pieces, n = ndi.label(mask == value, structure)
        if n == 0:
            continue
        sizes = np.bincount(pieces.ravel())
        small = sizes < min_size
        small[0] = False
        specks |= small[pieces]
    if not specks.any() or specks.all():
        return mask.copy()
    _, (iy, ix) = ndi.distance_transform_edt(specks, return_indices=True)
    return mask[iy, ix]


def smooth_boundaries(mask: np.ndarray, radius: float) -> np.ndarray:
    """Smooth class boundaries with a Gaussian-weighted majority vote.

    Every pixel takes the class with the largest Gaussian-weighted share of
    its neighbourhood (``sigma = radius``): jagged edges round off, thin
    protrusions shrink, and no new class ids appear.

    Parameters
    ----------
    mask : np.ndarray
        (H, W) integer class ids.
    radius : float
        Smoothing scale in pixels (> 0).
    """
    from scipy import ndimage as ndi

    mask = _check(mask)
    if not radius > 0:
        raise InputError(f"radius: must be > 0 pixels, got {radius}")
    out = mask.copy()
    best = np.full(mask.shape, -1.0, np.float32)
    for value in np.unique(mask):
        share = ndi.gaussian_filter((mask == value).astype(np.float32), radius,
                                    mode="nearest")
        better = share > best
        out[better] = value
        best[better] = share[better]
    return out


def _check(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype == bool or not np.issubdtype(mask.dtype,
                                                                 np.integer):
        raise InputError(f"mask: expected a 2-D integer label image, got "
                         f"{mask.dtype} {mask.shape}")
    return mask


# -- regions -----------------------------------------------------------------
def bounding_region(points: np.ndarray, shape: Sequence[int]) -> Region:
    """The pixel box ``(y0, y1, x0, x1)`` covering ``points`` inside ``shape``.

    Parameters
    ----------
    points : np.ndarray
        (N, 2) vertices in data coordinates (row, column), e.g. a rectangle.
    shape : (int, int)
        The image size the box is clipped to.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] < 2:
        raise InputError("region: expected the vertices of a rectangle")
    pts = pts[:, -2:]
    H, W = int(shape[0]), int(shape[1])
    y0 = max(0, int(np.floor(pts[:, 0].min() + 0.5)))
    y1 = min(H, int(np.floor(pts[:, 0].max() + 0.5)))
    x0 = max(0, int(np.floor(pts[:, 1].min() + 0.5)))
    x1 = min(W, int(np.floor(pts[:, 1].max() + 0.5)))
    if y1 <= y0 or x1 <= x0:
        raise InputError(
            f"region: the rectangle does not cover any pixel of the {H}x{W} image; "
            "draw it over the image (or its mask)"
        )
    return y0, y1, x0, x1


def context_box(region: Region, margin: int, shape: Sequence[int]
                ) -> tuple[Region, Region]:
    """Grow ``region`` by ``margin`` pixels (clipped to ``shape``).

    Returns
    -------
    crop : Region
        The grown box in image coordinates.
    inner : Region
        ``region`` in coordinates of the crop.
    """
    y0, y1, x0, x1 = region
    H, W = int(shape[0]), int(shape[1])
    cy0, cy1 = max(0, y0 - margin), min(H, y1 + margin)
    cx0, cx1 = max(0, x0 - margin), min(W, x1 + margin)
    return (cy0, cy1, cx0, cx1), (y0 - cy0, y1 - cy0, x0 - cx0, x1 - cx0)


def region_mask(shape: Sequence[int], region: Region) -> np.ndarray:
    """A bool array of ``shape``, True inside ``region``."""
    out = np.zeros(tuple(int(s) for s in shape), bool)
    y0, y1, x0, x1 = region
    out[y0:y1, x0:x1] = True
    return out


# -- masks from other sources ------------------------------------------------
def mask_from_image(rgb, classes: TissueClasses, stain: str = "auto"
                    ) -> tuple[np.ndarray, list[str]]:
    """The automatic labeller's mask of ``rgb``, in the ids of ``classes``.

    The labeller of the image's stain (measured unless ``stain`` is given;
    see :func:`.labeller.label_image`) writes ``background, nuclei, dab,
    tissue`` (H-DAB) or ``background, nuclei, stroma, tissue`` (H&E); each is
    mapped to the class of the same name. Labeller classes the model lacks
    become 0 (unknown) and are returned so the caller can say so. When the
    stain cannot be measured (neither dominates, e.g. a crop without any
    DAB-positive cell), the labeller whose classes the model has is used
    (H&E for a model with ``stroma`` and no ``dab``, else H-DAB).

    Returns
    -------
    mask : np.ndarray
        (H, W) class ids of ``classes``.
    missing : list of str
        Labeller classes ``classes`` does not have.
    """
    try:
        from .labeller import label_image, stain_report
    except ImportError as exc:
        raise InputError("the automatic labeller is not available in this build "
                         "of napari-histodiff; paint the mask or open one from a "
                         "file") from exc
    if stain == "auto" and stain_report(rgb)["stain"] is None:
        # neither stain dominates (e.g. a crop without DAB-positive cells):
        # the labeller of the model's classes
        stain = "he" if "stroma" in classes.names and "dab" not in classes.names \
            else "hdab"
    labels, names, _report = label_image(np.asarray(rgb), stain)
    lut = np.zeros(max(len(names) + 1, int(labels.max(initial=0)) + 1),
                   mask_dtype(len(classes)))
    missing = []
    for i, name in enumerate(names, start=1):
        if name in classes.names:
            lut[i] = classes.index_of(name)
        else:
            missing.append(name)
    return lut[labels], missing


def blob_mask(shape: tuple[int, int], class_ids: list[int], seed: int = 0,
              scale: float = 24.0) -> np.ndarray:
    """A mask of smooth random regions, one per class id (no model needed).

    Smoothed Gaussian noise per class; each pixel takes the class with the
    largest value, which gives rounded, tissue-like regions of about
    ``scale`` pixels.
    """
    from scipy.ndimage import gaussian_filter

    if not class_ids:
        raise InputError("classes: give at least one class for the mask")
    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.standard_normal(shape), scale,
                                       mode="wrap") for _ in class_ids])
    return np.asarray(class_ids, dtype=np.uint8)[np.argmax(fields, axis=0)]


def random_blobs(shape: Sequence[int], class_ids: Sequence[int], seed: int = 0,
                 scale: float | None = None) -> np.ndarray:
    """Smooth random regions of the given classes (no model needed)."""
    if scale is None:
        scale = max(4.0, min(shape) / 10)
    return blob_mask(tuple(int(s) for s in shape), list(class_ids), seed=seed,
                     scale=scale)
