"""OME-Zarr (NGFF) output: a multiscale RGB image with its mask as labels.

Layout written by :func:`write_synthesis`::

    out.zarr/
      zarr.json            multiscales (axes c, y, x), omero (the channels as
                           red, green, blue), attrs["histodiff"]
      0/ 1/ ...            pyramid levels, down to <= 1024 px on the long side
      labels/mask/         the mask, with class names and colours in
                           image-label metadata (colors, properties)

``attrs["histodiff"]`` holds the classes and the generation settings, so the
image can be traced and reproduced. :func:`read_synthesis` reads it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.classes import TissueClasses

PYRAMID_MAX_SIDE = 1024
LABEL_NAME = "mask"


#: OMERO rendering metadata: the three channels shown as red, green and blue
#: over 0-255, so that generic OME-Zarr viewers (napari-ome-zarr) show colour.
OMERO_RGB = {
    "rdefs": {"model": "color"},
    "channels": [
        {"label": name, "color": color, "active": True,
         "window": {"min": 0, "max": 255, "start": 0, "end": 255}}
        for name, color in (("red", "FF0000"), ("green", "00FF00"),
                            ("blue", "0000FF"))
    ],
}


def pyramid_levels(height: int, width: int, max_side: int = PYRAMID_MAX_SIDE) -> int:
    """Number of levels so that the smallest has a long side <= ``max_side``."""
    levels, side = 1, max(height, width)
    while side > max_side:
        side = (side + 1) // 2
        levels += 1
    return levels


def _image_pyramid(image, levels: int) -> list:
    import dask.array as da

    level = image if isinstance(image, da.Array) else da.from_array(
        image, chunks=(3, 1024, 1024))
    out = [level]
    for _ in range(levels - 1):
        # mean of 2x2 blocks; odd edges are padded by repeating the edge
        pad = [(0, 0), (0, level.shape[1] % 2), (0, level.shape[2] % 2)]
        if any(p[1] for p in pad):
            level = da.pad(level, pad, mode="edge")
        level = da.coarsen(np.mean, level.astype(np.float32), {1: 2, 2: 2})
        level = (level + 0.5).astype(np.uint8)
        out.append(level)
    return out


def _label_pyramid(mask, levels: int) -> list:
    import dask.array as da

    level = mask if isinstance(mask, da.Array) else da.from_array(
        mask, chunks=(1024, 1024))
    return [level[:: 2**i, :: 2**i] for i in range(levels)]


def label_metadata(classes: TissueClasses) -> dict[str, Any]:
    """NGFF image-label metadata: colours (RGBA 0-255) and class names."""
    return {
        "colors": [
            {"label-value": c.index, "rgba": [*c.color, 0 if c.index == 0 else 255]}
            for c in classes
        ],
        "properties": [{"label-value": c.index, "class": c.name} for c in classes],
    }


def write_synthesis(path: str | Path, image, mask, classes: TissueClasses,
                    settings: dict[str, Any], microns_per_pixel: float | None = None,
                    overwrite: bool = False, argname: str = "out") -> Path:
    """Write an image (3, H, W) uint8 and its mask (H, W) as OME-Zarr.

    ``image`` and ``mask`` may be numpy, zarr or dask arrays; large ones are
    written chunk by chunk, into a temporary sibling folder that is renamed
    to ``path`` when complete (:func:`napari_histodiff.outputs.atomic_output`).
    An existing ``path`` is an error unless ``overwrite`` (and then it must
    be an output of this project).
    """
    from ..outputs import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite, argname, folder=True) as tmp:
        _write_synthesis(tmp, image, mask, classes, settings, microns_per_pixel)
    return path


def _write_synthesis(path: Path, image, mask, classes: TissueClasses,
                     settings: dict[str, Any], microns_per_pixel: float | None
                     ) -> None:
    import zarr
    from ome_zarr.writer import write_multiscale, write_multiscale_labels

    _, H, W = image.shape
    levels = pyramid_levels(H, W)
    root = zarr.open_group(str(path), mode="w")
    transforms = []
    for i in range(levels):
        s = float(2**i) * (microns_per_pixel or 1.0)
        transforms.append([{"type": "scale", "scale": [1.0, s, s]}])
    chunks = {"chunks": (3, 512, 512)}
    write_multiscale(_image_pyramid(image, levels), group=root, axes="cyx",
                     coordinate_transformations=transforms,
                     storage_options=chunks, name="synthetic",
                     metadata={"omero": OMERO_RGB})
    label_transforms = [[{"type": "scale", "scale": t[0]["scale"][1:]}]
                        for t in transforms]
    write_multiscale_labels(
        _label_pyramid(mask, levels), group=root, name=LABEL_NAME, axes="yx",
        coordinate_transformations=label_transforms,
        storage_options={"chunks": (512, 512)},
        label_metadata=label_metadata(classes),
    )
    root.attrs["histodiff"] = {
        "classes": classes.to_list(),
        "settings": settings,
        "microns_per_pixel": microns_per_pixel,
    }


def read_synthesis(path: str | Path) -> dict[str, Any]:
    """Open an OME-Zarr written by :func:`write_synthesis`.

    Returns a dict with ``image`` (list of dask arrays (3, h, w), full
    resolution first), ``mask`` (list of dask arrays), ``classes``
    (TissueClasses), ``settings`` (dict).
    """
    import dask.array as da
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds here
        raise InputError(f"path: {path} is not a zarr group ({exc})") from exc
    meta = root.attrs.get("histodiff")
    ome = root.attrs.get("ome", {})
    multiscales = ome.get("multiscales") or root.attrs.get("multiscales")
    if meta is None or not multiscales:
        raise InputError(
            f"path: {path} is not a napari-histodiff OME-Zarr output (no "
            "'histodiff' attributes or no multiscales)"
        )
    image = [da.from_zarr(root[d["path"]]) for d in multiscales[0]["datasets"]]
    label_group = root["labels"][LABEL_NAME]
    lms = label_group.attrs.get("ome", {}).get("multiscales") or \
        label_group.attrs.get("multiscales")
    mask = [da.from_zarr(label_group[d["path"]]) for d in lms[0]["datasets"]]
    return {
        "image": image,
        "mask": mask,
        "classes": TissueClasses.from_list(meta["classes"]),
        "settings": meta.get("settings", {}),
        "microns_per_pixel": meta.get("microns_per_pixel"),
    }
