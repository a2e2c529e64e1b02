"""napari reader for the project's OME-Zarr outputs and exported masks.

* An OME-Zarr output (``histodiff generate``, the Export panel) opens as the
  synthetic image (RGB, multiscale) and its mask as a Labels layer with the
  class colours and names restored (names show on hover through the layer
  features).
* A mask exported as TIFF or PNG (``NAME_mask.tif``, ``NAME_mask.png``)
  opens as a Labels layer with the class names and colours of its sidecar
  ``NAME.json``; without a sidecar, as plain Labels (class ids only).
"""

from __future__ import annotations

from pathlib import Path

MASK_SUFFIXES = (".tif", ".tiff", ".png")


def get_reader(path):
    """Return a reader if ``path`` is a napari-histodiff OME-Zarr or an exported
    mask file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_file() and p.suffix.lower() in MASK_SUFFIXES:
        return read_histodiff_mask if _is_mask_file(p) else None
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


def _is_mask_file(p: Path) -> bool:
    """An exported mask: named in its sidecar, or ``*_mask.*`` without one."""
    from .io.export import find_sidecar, read_sidecar

    if find_sidecar(p) is None:
        return p.stem.lower().endswith("_mask")
    try:
        record = read_sidecar(p)
    except Exception:  # a broken sidecar: leave the file to other readers
        return False
    return record.get("mask") == p.name


def read_histodiff_mask(path):
    """A Labels layer tuple: the mask with the class names and colours of its
    export sidecar (class ids only when it has none)."""
    from .io.export import find_sidecar, read_sidecar
    from .io.masks import read_mask
    from .models.classes import TissueClasses

    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    mask = read_mask(p, "path")
    name = p.stem[: -len("_mask")] if p.stem.lower().endswith("_mask") else p.stem
    kwargs = {"name": f"{name} mask", "metadata": {"source": str(p)}}
    record = read_sidecar(p) if find_sidecar(p) is not None else {}
    if record.get("classes"):
        classes = TissueClasses.from_list(record["classes"])
        classes.validate_mask(mask, f"mask {p.name}")
        kwargs.update(
            colormap=_direct_colormap(classes),
            features={"index": [c.index for c in classes],
                      "class": [c.name for c in classes]},
        )
        kwargs["metadata"].update(histodiff_classes=classes.to_list(),
                                  histodiff=record.get("settings") or {})
    if record.get("microns_per_pixel"):
        kwargs["scale"] = (record["microns_per_pixel"],) * 2
    return [(mask, kwargs, "labels")]


def _direct_colormap(classes):
    from napari.utils.colormaps import DirectLabelColormap

    mapping = classes.colormap()
    mapping[None] = (0.0, 0.0, 0.0, 0.0)
    return DirectLabelColormap(color_dict=mapping)
