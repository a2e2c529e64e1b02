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

The tracing is our own (no rasterio): the boundary edges of a region are
collected with numpy and chained into rings; at a corner where two of the
region's pixels touch diagonally the chain turns away from the region, which
splits the exterior from the hole that meets it there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.classes import TissueClasses

#: QuPath's object type for drawn regions.
OBJECT_TYPE = "annotation"

Ring = list[list[int]]


def _boundary_edges(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary edges of a boolean image padded with ``False``.

    Returns start and end vertices ``(n, 2)`` as ``(x, y)``; the region lies
    to the left of each edge in ``(x, y)`` numbers (positive area rings).
    """
    starts, ends = [], []
    up = inside[1:-1, 1:-1] & ~inside[:-2, 1:-1]
    down = inside[1:-1, 1:-1] & ~inside[2:, 1:-1]
    left = inside[1:-1, 1:-1] & ~inside[1:-1, :-2]
    right = inside[1:-1, 1:-1] & ~inside[1:-1, 2:]
    # pixel (r, c) of the unpadded image covers [c, c+1] x [r, r+1]
    for flags, (sx, sy), (ex, ey) in (
        (up, (0, 0), (1, 0)),       # top edge, going +x
        (right, (1, 0), (1, 1)),    # right edge, going +y
        (down, (1, 1), (0, 1)),     # bottom edge, going -x
        (left, (0, 1), (0, 0)),     # left edge, going -y
    ):
        r, c = np.nonzero(flags)
        starts.append(np.stack([c + sx, r + sy], axis=1))
        ends.append(np.stack([c + ex, r + ey], axis=1))
    return np.concatenate(starts), np.concatenate(ends)


def _rings(inside: np.ndarray) -> list[Ring]:
    """Closed rings (first vertex repeated at the end) of a padded region."""
    start, end = _boundary_edges(inside)
    n = len(start)
    if n == 0:
        return []
    width = inside.shape[1] + 1
    skey = start[:, 1].astype(np.int64) * width + start[:, 0]
    ekey = end[:, 1].astype(np.int64) * width + end[:, 0]
    order = np.argsort(skey, kind="stable")
    lo = np.searchsorted(skey[order], ekey, "left")
    count = np.searchsorted(skey[order], ekey, "right") - lo
    direction = end - start
    # the edge after each edge: the one leaving its end. Two leave a corner
    # where two pixels of the region touch diagonally (they are also joined by
    # edges elsewhere): turn away from the region (right, the smaller cross
    # product), so that the exterior and the hole meeting at this corner
    # become two simple rings. Each arriving edge gets its own leaving edge,
    # so following them walks closed rings.
    first = order[lo]
    succ = first.copy()
    two = np.nonzero(count == 2)[0]
    if len(two):
        second = order[lo[two] + 1]
        d = direction[two]

        def cross(e):
            return d[:, 0] * direction[e, 1] - d[:, 1] * direction[e, 0]

        succ[two] = np.where(cross(second) < cross(first[two]), second, first[two])
    nxt = succ.tolist()
    used = bytearray(n)
    rings: list[Ring] = []
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
        turns = (direction[edges] != direction[np.roll(edges, 1)]).any(axis=1)
        ring = start[edges[turns]].tolist()
        ring.append(list(ring[0]))
        rings.append(ring)
    return rings


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
    padded = np.pad(np.asarray(region, dtype=bool), 1)
    rings = _rings(padded)
    if not rings:
        return []
    areas = [ring_area(r) for r in rings]
    outer = int(np.argmax(areas))
    ordered = [rings[outer]] + [r for i, r in enumerate(rings) if i != outer]
    dx, dy = int(offset[0]), int(offset[1])
    return [[[x + dx, y + dy] for x, y in ring] for ring in ordered]


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
    from scipy import ndimage
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
        for k, box in enumerate(ndimage.find_objects(regions), start=1):
            if box is None:
                continue
            sub = regions[box] == k
            coords = region_polygon(
                sub, (box[1].start + offset[0], box[0].start + offset[1]))
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


def read_geojson(path: str | Path) -> dict[str, Any]:
    """Read a GeoJSON FeatureCollection; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"path: cannot read {path} as GeoJSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise InputError(f"path: {path} is not a GeoJSON FeatureCollection")
    return data
