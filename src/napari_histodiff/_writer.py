"""npe2 writers: masks, images, and an image with its mask (with provenance).

* ``write_labels``: a mask as PNG (8/16-bit ids), TIFF or ``.npy``.
* ``write_image``: an RGB image as (pyramidal) OME-TIFF or PNG, with the
  sidecar JSON of :mod:`napari_histodiff.io.export`.
* ``write_synthesis``: an image layer and a labels layer together as
  OME-Zarr (mask as label image), OME-TIFF, PNG or QuPath GeoJSON (the
  mask's regions), with the sidecar.

Class names and colours come from the labels layer's metadata (set by the
widgets and the reader); generation settings from the image layer's.
"""

from __future__ import annotations

from typing import Any

from .models.classes import TissueClasses

CLASSES_KEY = "histodiff_classes"
SETTINGS_KEY = "histodiff"


def _level0(data):
    return data[0] if isinstance(data, list | tuple) else data


def _classes(meta: dict[str, Any], mask) -> TissueClasses:
    stored = (meta.get("metadata") or {}).get(CLASSES_KEY)
    if stored:
        return TissueClasses.from_list(stored)
    import numpy as np

    top = int(np.asarray(mask).max(initial=0))
    return TissueClasses.from_names([f"class{i}" for i in range(1, max(top, 1) + 1)])


def write_labels(path: str, data, meta: dict[str, Any]) -> list[str]:
    """Write a mask layer (class ids) by suffix: .png, .tif/.tiff or .npy."""
    import numpy as np

    from .io.masks import write_mask

    # napari asked the user before replacing a file
    return [str(write_mask(path, np.asarray(_level0(data)), overwrite=True))]


def write_image(path: str, data, meta: dict[str, Any]) -> list[str]:
    """Write an RGB image layer as OME-TIFF or PNG with its sidecar JSON."""
    from .errors import InputError
    from .io.export import export_synthesis

    image = _level0(data)
    if not meta.get("rgb", image.shape[-1] == 3) or image.shape[-1] != 3:
        raise InputError(f"{meta.get('name', 'layer')}: only RGB images are "
                         "written by napari-histodiff")
    settings = (meta.get("metadata") or {}).get(SETTINGS_KEY, {})
    result = export_synthesis(path, image, settings=settings, overwrite=True)
    return [str(result.image), str(result.sidecar)]


def write_synthesis(path: str, layer_data: list[tuple]) -> list[str]:
    """Write one image and one labels layer together (OME-Zarr, TIFF or PNG)."""
    from .io.export import export_synthesis

    image = next(d for d in layer_data if d[2] == "image")
    labels = next(d for d in layer_data if d[2] == "labels")
    mask = _level0(labels[0])
    settings = (image[1].get("metadata") or {}).get(SETTINGS_KEY, {})
    result = export_synthesis(path, _level0(image[0]), mask,
                              _classes(labels[1], mask), settings, overwrite=True)
    return [str(p) for p in (result.image, result.mask, result.sidecar)
            if p is not None]
