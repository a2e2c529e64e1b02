"""A label mask as GeoJSON annotations for QuPath (pixel coordinates).

:func:`mask_features` turns every connected region of every class into one
GeoJSON ``Feature`` whose geometry is a ``Polygon`` tracing the region's
pixel edges exactly (holes kept as interior rings), with the properties
QuPath reads::

    {"objectType": "annotation",
     "classification": {"name": "nuclei", "color": [60, 60, 200]}}

Coordinates are pixels of the mask: ``x`` is the column, ``y`` the row, the
pixel ``(row, col)`` covers the square ``[col, col + 1] x [row, row + 1]``.
Regions are 4-connected (pixels sharing an edge); two pixels of a class
that touch only at a corner belong to different regions, so every ring is
simple (an exterior and a hole may touch at one corner, which GeoJSON and
QuPath allow). Exterior rings run counter-clockwise and holes clockwise in
these ``(x, y)`` numbers (RFC 7946 right-hand rule).

The tracing is our own (no rasterio): the regions of a class are labelled
(``skimage.measure.label``), their boundary edges collected with numpy and
chained into rings, each ring belonging to the region on its left. At a
corner where two pixels touch diagonally the chain turns away from their
region when both are of one region (splitting the exterior from the hole
that meets it there) and towards its own region when they are of two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..models.classes import TissueClasses

#: QuPath's object type for drawn regions.
OBJECT_TYPE = "annotation"

Ring = list[list[int]]


def _boundary_edges(labels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed boundary edges of the regions of a label image padded with 0.

    Returns start and end vertices ``(n, 2)`` as ``(x, y)`` and the label of
    the region each edge bounds; the region lies to the left of its edges in
    ``(x, y)`` numbers (exteriors have positive area, holes negative).
    """
    core = labels[1:-1, 1:-1]
    inside = core > 0
    starts, ends, owners = [], [], []
    # pixel (r, c) of the unpadded image covers [c, c+1] x [r, r+1]
    for other, (sx, sy), (ex, ey) in (
        (labels[:-2, 1:-1], (0, 0), (1, 0)),   # top edge, going +x
        (labels[1:-1, 2:], (1, 0), (1, 1)),    # right edge, going +y
        (labels[2:, 1:-1], (1, 1), (0, 1)),    # bottom edge, going -x
        (labels[1:-1, :-2], (0, 1), (0, 0)),   # left edge, going -y
    ):
        r, c = np.nonzero(inside & (other != core))
        starts.append(np.stack([c + sx, r + sy], axis=1))
        ends.append(np.stack([c + ex, r + ey], axis=1))
        owners.append(core[r, c])
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(owners)


def _rings(labels: np.ndarray, offset: tuple[int, int] = (0, 0)
           ) -> tuple[list[Ring], list[int]]:
    """Closed rings (first vertex repeated at the end) of the regions of a
    padded label image, and the label of each ring's region; ``offset``
    ``(x, y)`` is added to the vertices."""
    start, end, owner = _boundary_edges(labels)
    n = len(start)
    if n == 0:
        return [], []
    width = labels.shape[1] + 1
    skey = start[:, 1].astype(np.int64) * width + start[:, 0]
    ekey = end[:, 1].astype(np.int64) * width + end[:, 0]
    order = np.argsort(skey, kind="stable")
    lo = np.searchsorted(skey[order], ekey, "left")
    count = np.searchsorted(skey[order], ekey, "right") - lo
    direction = end - start
    # The edge after each edge leaves its end vertex. Two leave a corner where
    # two pixels of regions touch diagonally. When both pixels are of one
    # region (joined by edges elsewhere) the walk turns away from the region
    # (right: the smaller cross product), so that the exterior and the hole
    # meeting at this corner become two simple rings; when they are of two
    # regions it turns towards its own (left), keeping them apart. Each
    # arriving edge gets its own leaving edge, so the walks close.
    first = order[lo]
    succ = first.copy()
    two = np.nonzero(count == 2)[0]
    if len(two):
        a, b = first[two], order[lo[two] + 1]
        d = direction[two]
        cross_a = d[:, 0] * direction[a, 1] - d[:, 1] * direction[a, 0]
        cross_b = d[:, 0] * direction[b, 1] - d[:, 1] * direction[b, 0]
        right = np.where(cross_b < cross_a, b, a)
        left = np.where(cross_b < cross_a, a, b)
        succ[two] = np.where(owner[a] == owner[b], right, left)
    nxt = succ.tolist()
    shift = np.asarray(offset, dtype=start.dtype)
    used = bytearray(n)
    rings: list[Ring] = []
    ring_labels: list[int] = []
    for e0 in range(n):
        if used[e0]:
            continue
        chain = []
        e = e0
        while not used[e]:
            used[e] = 1
            chain.append(e)
            e = nxt[e]
        edges = np.asarray(chain)
        before = np.empty_like(edges)
        before[0], before[1:] = edges[-1], edges[:-1]
        turns = (direction[edges] != direction[before]).any(axis=1)
        ring = (start[edges[turns]] + shift).tolist()
        ring.append(list(ring[0]))
        rings.append(ring)
        ring_labels.append(int(owner[e0]))
    return rings, ring_labels


def _polygons(labels: np.ndarray, offset: tuple[int, int] = (0, 0)
              ) -> dict[int, list[Ring]]:
    """Polygon (exterior first, then holes) of every region of a label image
    (0 = none), by label, with ``offset`` ``(x, y)`` added to the vertices."""
    rings, owners = _rings(np.pad(labels, 1), offset)
    grouped: dict[int, list[Ring]] = {}
    for ring, owner in zip(rings, owners, strict=True):
        grouped.setdefault(owner, []).append(ring)
    polygons = {}
    for owner in sorted(grouped):
        group = grouped[owner]
        outer = int(np.argmax([ring_area(r) for r in group]))
        polygons[owner] = [group[outer]] + [r for i, r in enumerate(group)
                                            if i != outer]
    return polygons


def ring_area(ring: Ring) -> float:
    """Signed area of a closed ring (positive when counter-clockwise in x, y)."""
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def region_polygon(region: np.ndarray, offset: tuple[int, int] = (0, 0)
                   ) -> list[Ring]:
    """The polygon (exterior first, then holes) of one 4-connected region.

    Parameters
    ----------
    region : numpy.ndarray
        2-D boolean image holding one 4-connected region.
    offset : (x, y)
        Added to every vertex (where ``region`` lies in the whole mask).

    Returns
    -------
    list of rings
        GeoJSON ``Polygon`` coordinates.
    """
    polygons = _polygons(np.asarray(region, dtype=bool).astype(np.int32), offset)
    return polygons.get(1, [])


def mask_features(mask, classes: TissueClasses, *, skip: tuple[int, ...] = (0,),
                  offset: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection``: one feature per connected region.

    Parameters
    ----------
    mask : array-like
        (H, W) integer class ids.
    classes : TissueClasses
        Names and colours of the ids.
    skip : tuple of int
        Class ids written as no feature (default: 0, ``unknown``).
    offset : (x, y)
        Added to every coordinate.

    Returns
    -------
    dict
        The FeatureCollection (``json.dumps`` it to write).

    Raises
    ------
    InputError
        If the mask holds ids that are not classes.
    """
    from skimage.measure import label

    from .masks import check_mask_array

    mask = check_mask_array(np.asarray(mask), "mask")
    classes.validate_mask(mask, "mask")
    features = []
    for cls in classes:
        if cls.index in skip:
            continue
        inside = mask == cls.index
        if not inside.any():
            continue
        regions = label(inside, connectivity=1)
        for coords in _polygons(regions, offset).values():
            features.append({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": coords},
                "properties": {
                    "objectType": OBJECT_TYPE,
                    "classification": {"name": cls.name,
                                       "color": [int(v) for v in cls.color]},
                    "label": int(cls.index),
                },
            })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, mask, classes: TissueClasses,
                  skip: tuple[int, ...] = (0,)) -> Path:
    """Write :func:`mask_features` of ``mask`` to ``path`` (no overwrite check;
    callers write to a temporary sibling)."""
    path = Path(path)
    collection = mask_features(mask, classes, skip=skip)
    path.write_text(json.dumps(collection, separators=(",", ":")) + "\n")
    return path
