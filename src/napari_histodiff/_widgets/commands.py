"""Menu commands (File > New Layer, Layers > Segment) that need no dock."""

from __future__ import annotations

import napari  # noqa: F401 - the annotations below are resolved for injection

from ..errors import InputError
from ._common import add_mask_layer, level0, notify_error, show_warning
from ._state import get_state

DEFAULT_SIZE = 512


def _classes(viewer):
    classes = get_state(viewer).classes
    if classes is None:
        raise InputError("No model classes known: open Plugins > HistoDiff > Model "
                         "and choose a model (the demo, a folder or a Hugging Face "
                         "id).")
    return classes


def _active_rgb(viewer):
    from napari.layers import Image

    layer = viewer.layers.selection.active
    return layer if isinstance(layer, Image) and layer.rgb else None


def new_mask_layer(viewer: napari.viewer.Viewer) -> None:
    """Add an empty tissue mask with the model's classes.

    It takes the size, scale and position of the selected RGB image, else
    512 x 512 pixels.
    """
    from ..masks.tools import new_mask

    try:
        classes = _classes(viewer)
        image = _active_rgb(viewer)
        kwargs = {}
        shape = (DEFAULT_SIZE, DEFAULT_SIZE)
        if image is not None:
            shape = tuple(level0(image).shape[:2])
            kwargs = {"scale": tuple(image.scale[-2:]),
                      "translate": tuple(image.translate[-2:])}
        layer = add_mask_layer(viewer, new_mask(shape, classes), classes,
                               name="mask", **kwargs)
        layer.selected_label = 1 if len(classes) > 1 else 0
        layer.mode = "paint"
    except Exception as exc:
        notify_error(exc, "New tissue mask")


def auto_label_layer(viewer: napari.viewer.Viewer) -> None:
    """Label the selected RGB image with the automatic labeller."""
    from ..masks.tools import mask_from_image

    try:
        image = _active_rgb(viewer)
        if image is None:
            raise InputError("Select an RGB image layer to label (e.g. File > Open "
                             "Sample > HistoDiff > IHC image).")
        classes = _classes(viewer)
        mask, missing = mask_from_image(level0(image), classes)
        add_mask_layer(viewer, mask, classes, name=f"{image.name} mask",
                       scale=tuple(image.scale[-2:]),
                       translate=tuple(image.translate[-2:]))
        if missing:
            show_warning(f"The model has no class {', '.join(missing)}; those "
                         "pixels are left unknown (0).")
    except Exception as exc:
        notify_error(exc, "Auto-label tissue")
