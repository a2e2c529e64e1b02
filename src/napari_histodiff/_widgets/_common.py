"""Helpers shared by the widgets: notifications, layer pickers, mask layers."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QGroupBox, QVBoxLayout, QWidget

from ..errors import HistodiffError
from ..models.classes import TissueClasses

if TYPE_CHECKING:
    import napari

logger = logging.getLogger("napari_histodiff")

CLASSES_KEY = "histodiff_classes"
SETTINGS_KEY = "histodiff"
CANVAS_KEY = "histodiff_canvas"


class WorkerFailure(Exception):
    """A RuntimeError raised in a worker thread, carried as its ``__cause__``.

    superqt's generator workers treat a RuntimeError as "the worker was
    deleted" and end silently (no ``errored``, no ``finished``), and torch
    reports most failures (out of memory too) as RuntimeErrors; so workers
    re-raise them wrapped in this.
    """


def unwrap(exc: BaseException) -> BaseException:
    """The original error of a :class:`WorkerFailure`, else ``exc``."""
    if isinstance(exc, WorkerFailure) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def shielded(func):
    """``func`` (function or generator) with RuntimeErrors wrapped."""
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*args, **kwargs):
            try:
                return (yield from func(*args, **kwargs))
            except RuntimeError as exc:
                raise WorkerFailure(str(exc)) from exc

        return generator

    @functools.wraps(func)
    def function(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RuntimeError as exc:
            raise WorkerFailure(str(exc)) from exc

    return function


def notify_error(exc: BaseException, action: str = "") -> None:
    """Show an error as a napari notification (never raises).

    :class:`HistodiffError` messages are meant for users and shown as they
    are; anything else is reported with its type and logged with a traceback.
    """
    from napari.utils.notifications import show_error

    exc = unwrap(exc)
    prefix = f"{action}: " if action else ""
    if isinstance(exc, HistodiffError):
        show_error(f"{prefix}{exc}")
    else:
        logger.error("napari-histodiff: %s failed", action or "an action",
                     exc_info=(type(exc), exc, exc.__traceback__))
        show_error(f"{prefix}unexpected {type(exc).__name__}: {exc}. Your layers "
                   "are unchanged; see the log for details.")


def busy_progress(description: str):
    """An indeterminate napari activity bar (close it when the work ends)."""
    from napari.utils import progress

    return progress(total=0, desc=description)


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer) -> tuple[float, float]:
    """(height, width) of the viewer's canvas in screen pixels (0s if none)."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", (0, 0))
    return float(size[0]), float(size[1])


def describe_region(region) -> str:
    """``(y0, y1, x0, x1)`` as people read it: ``x 100-200, y 80-170``."""
    y0, y1, x0, x1 = (int(v) for v in region)
    return f"x {x0}-{x1}, y {y0}-{y1}"


def show_info(message: str) -> None:
    from napari.utils.notifications import show_info as _show

    _show(message)


def show_warning(message: str) -> None:
    from napari.utils.notifications import show_warning as _show

    _show(message)


def make_worker(func, *args, **kwargs):
    """A napari worker for ``func`` (function or generator), not started.

    Its errors go only to the handlers the caller connects to ``errored``
    (which show them as notifications), not to napari's generic traceback
    notification as well.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(shielded(func), *args, _start_thread=False,
                           _ignore_errors=True, **kwargs)
    relay = getattr(worker, "_relay_error", None)
    if relay is not None:
        try:
            worker.errored.disconnect(relay)
        except (TypeError, RuntimeError):
            pass
    return worker


def section(title: str, *widgets: QWidget) -> QGroupBox:
    """A titled group of widgets stacked vertically."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    for w in widgets:
        layout.addWidget(w)
    return box


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one kind, kept up to date.

    Parameters
    ----------
    viewer : napari.Viewer
    kind : str
        ``labels``, ``image``, ``rgb`` (RGB images only) or ``shapes``.
    allow_none : bool
        Offer ``(none)`` as the first entry.
    """

    def __init__(self, viewer: napari.Viewer, kind: str, allow_none: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.kind = kind
        self.allow_none = allow_none
        events = viewer.layers.events
        events.inserted.connect(self.refresh)
        events.removed.connect(self.refresh)
        events.reordered.connect(self.refresh)
        self.refresh()

    def _matches(self, layer) -> bool:
        from napari.layers import Image, Labels, Shapes

        if self.kind == "labels":
            return isinstance(layer, Labels)
        if self.kind == "shapes":
            return isinstance(layer, Shapes)
        if self.kind == "rgb":
            return isinstance(layer, Image) and bool(layer.rgb)
        return isinstance(layer, Image)

    def layers(self) -> list:
        return [ly for ly in self.viewer.layers if self._matches(ly)]

    def refresh(self, *_args) -> None:
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        if self.allow_none:
            self.addItem("(none)")
        for ly in reversed(self.layers()):
            self.addItem(ly.name)
            ly.events.name.disconnect(self.refresh)
            ly.events.name.connect(self.refresh)
        index = self.findText(current)
        self.setCurrentIndex(max(0, index))
        self.blockSignals(False)
        if index < 0:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        """The chosen layer, or None."""
        name = self.currentText()
        for ly in self.layers():
            if ly.name == name:
                return ly
        return None

    def set_layer(self, layer) -> None:
        self.refresh()
        index = self.findText(layer.name)
        if index >= 0:
            self.setCurrentIndex(index)


def connect_while_alive(signal, widget: QWidget, slot) -> None:
    """Connect a psygnal ``signal`` to ``slot`` until ``widget`` is destroyed."""
    signal.connect(slot)

    def _drop(*_args, _signal=signal, _slot=slot) -> None:
        try:
            _signal.disconnect(_slot)
        except (ValueError, RuntimeError):
            pass

    widget.destroyed.connect(_drop)


def labels_colormap(classes: TissueClasses):
    """A ``DirectLabelColormap`` with the class colours (unknown transparent)."""
    from napari.utils.colormaps import DirectLabelColormap

    from ..masks.tools import label_colors

    return DirectLabelColormap(color_dict=label_colors(classes))


def add_mask_layer(viewer: napari.Viewer, data: np.ndarray, classes: TissueClasses,
                   name: str = "mask", **kwargs: Any):
    """Add a Labels layer coloured and named by ``classes`` (names on hover)."""
    from ..masks.tools import class_features

    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata[CLASSES_KEY] = classes.to_list()
    layer = viewer.add_labels(
        data, name=name, colormap=labels_colormap(classes),
        features=class_features(classes), metadata=metadata, **kwargs,
    )
    return layer


def layer_classes(layer) -> TissueClasses | None:
    """The classes recorded on a mask layer (by the widgets or the reader)."""
    data = getattr(layer, "metadata", {}).get(CLASSES_KEY) if layer else None
    if not data:
        return None
    try:
        return TissueClasses.from_list(data)
    except HistodiffError:
        return None


def set_layer_classes(layer, classes: TissueClasses) -> None:
    """Recolour a Labels layer and set its class names (features)."""
    from ..masks.tools import class_features

    layer.colormap = labels_colormap(classes)
    layer.features = class_features(classes)
    layer.metadata[CLASSES_KEY] = classes.to_list()


def level0(layer):
    """Full-resolution data of an image layer (multiscale or not)."""
    return layer.data[0] if layer.multiscale else layer.data


def world_box(layer) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners of a 2-D layer in world coordinates."""
    ext = np.asarray(layer.extent.world)[:, -2:]
    return ext[0], ext[1]


def image_region_from_shapes(shapes, target) -> tuple[int, int, int, int]:
    """The box of the chosen (else last) shape, in ``target``'s pixel grid."""
    from ..errors import InputError
    from ..masks.tools import bounding_region

    if shapes is None or len(shapes.data) == 0:
        raise InputError(
            "region: draw a rectangle first (Draw region, then drag over the image)"
        )
    chosen = sorted(shapes.selected_data) or [len(shapes.data) - 1]
    verts = np.concatenate([np.asarray(shapes.data[i])[:, -2:] for i in chosen])
    world = np.array([shapes.data_to_world(v) for v in verts])[:, -2:]
    pix = np.array([target.world_to_data(w) for w in world])[:, -2:]
    return bounding_region(pix, level0(target).shape[:2])
