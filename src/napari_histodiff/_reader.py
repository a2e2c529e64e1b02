"""napari reader for the project's OME-Zarr outputs.

Opens the synthetic image as an RGB multiscale layer and its mask as a
Labels layer with the class colours and names restored (names show on hover
through the layer features).
"""

from __future__ import annotations

from pathlib import Path


def get_reader(path):
    """Return a reader if ``path`` is a napari-histodiff OME-Zarr, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not (p.is_dir() and (p / "zarr.json").is_file()):
        return None
    try:
        import json

        attrs = json.loads((p / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    return read_histodiff_zarr if "histodiff" in attrs else None


def read_histodiff_zarr(path):
    """Layer data tuples: the image (RGB multiscale) and the mask (Labels)."""
    import numpy as np

    from .io.omezarr import read_synthesis

    if isinstance(path, list):
        path = path[0]
    data = read_synthesis(path)
    classes = data["classes"]
    name = Path(path).stem
    image = [np.moveaxis(level, 0, -1) for level in data["image"]]
    mask = data["mask"][0]
    scale = (data["microns_per_pixel"] or 1.0,) * 2
    image_kwargs = {
        "name": f"{name} image",
        "rgb": True,
        "multiscale": len(image) > 1,
        "scale": scale,
        "metadata": {"histodiff": data["settings"], "source": str(path),
                     "mask_layer": f"{name} mask"},
    }
    labels_kwargs = {
        "name": f"{name} mask",
        "scale": scale,
        "colormap": _direct_colormap(classes),
        "features": {"index": [c.index for c in classes],
                     "class": [c.name for c in classes]},
        "metadata": {"histodiff_classes": classes.to_list()},
    }
    img = image if len(image) > 1 else image[0]
    return [(img, image_kwargs, "image"), (mask, labels_kwargs, "labels")]


def _direct_colormap(classes):
    from napari.utils.colormaps import DirectLabelColormap

    mapping = classes.colormap()
    mapping[None] = (0.0, 0.0, 0.0, 0.0)
    return DirectLabelColormap(color_dict=mapping)
