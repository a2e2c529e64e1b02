"""Mask panel: create, paint, clean up, generate or open a class mask.

The mask is a napari Labels layer coloured by the model's classes
(``DirectLabelColormap``) with the class names as layer features, so they
show on hover. Masks stay single-resolution (napari paints only those) and
take the scale and position of the image they were made for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..defaults import DEFAULT_MASK_GUIDANCE
from ..errors import InputError
from ._common import (
    LayerCombo,
    add_mask_layer,
    busy_progress,
    connect_while_alive,
    layer_classes,
    level0,
    make_worker,
    notify_error,
    section,
    show_info,
    show_warning,
)
from ._state import get_state
from .model_widget import swatch
from .shortcuts import PALETTE_KEYS, bind_viewer_keys, shown

if TYPE_CHECKING:
    import napari

SOURCES = {
    "blobs": "random blobs (no model)",
    "model": "the model's mask generator",
    "image": "automatic labeller on an image",
}
MODES = ("paint", "fill", "erase", "pan_zoom")


class MaskWidget(QWidget):
    """New mask, class palette, brush, clean-up tools, generate or open a mask.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = get_state(napari_viewer)
        self.worker = None
        self.clean_worker = None

        # target layer and palette
        self.mask_combo = LayerCombo(napari_viewer, "labels")
        self.palette = QGridLayout()
        self.palette_group = QButtonGroup(self)
        self.palette_group.setExclusive(True)
        palette_box = QWidget()
        palette_box.setLayout(self.palette)
        self.brush = QSlider(Qt.Orientation.Horizontal)
        self.brush.setRange(1, 200)
        self.brush.setValue(20)
        self.brush_label = QLabel("20 px")
        self.mode_buttons: dict[str, QPushButton] = {}
        modes = QHBoxLayout()
        for mode in MODES:
            button = QPushButton(mode.replace("_", "/"))
            button.setCheckable(True)
            button.clicked.connect(lambda _c=False, m=mode: self.set_mode(m))
            modes.addWidget(button)
            self.mode_buttons[mode] = button
        brush_row = QHBoxLayout()
        brush_row.addWidget(self.brush, 1)
        brush_row.addWidget(self.brush_label)

        # new mask
        self.height = _spin(8, 65536, 512)
        self.width = _spin(8, 65536, 512)
        self.like_image = LayerCombo(napari_viewer, "image", allow_none=True)
        self.new_button = QPushButton("New mask")
        self.open_button = QPushButton("Open mask…")

        # clean up
        self.speck_size = _spin(1, 1_000_000, 64)
        self.specks_button = QPushButton("Remove specks")
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.5, 100.0)
        self.radius.setValue(3.0)
        self.smooth_button = QPushButton("Smooth boundaries")

        # generate
        self.source = QComboBox()
        for key, text in SOURCES.items():
            self.source.addItem(text, key)
        self.class_list = QListWidget()
        self.class_list.setMaximumHeight(110)
        self.seed = _spin(0, 2**31 - 1, 0)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 20.0)
        self.guidance.setValue(DEFAULT_MASK_GUIDANCE)
        self.source_image = LayerCombo(napari_viewer, "rgb")
        self.generate_button = QPushButton("Generate mask")

        size_row = QHBoxLayout()
        size_row.addWidget(self.height)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.width)
        new_form = QFormLayout()
        new_form.addRow("Size (H × W)", size_row)
        new_form.addRow("Match image", self.like_image)
        new_buttons = QHBoxLayout()
        new_buttons.addWidget(self.new_button)
        new_buttons.addWidget(self.open_button)
        new_form.addRow(new_buttons)

        paint_form = QFormLayout()
        paint_form.addRow("Mask layer", self.mask_combo)
        paint_form.addRow(palette_box)
        paint_form.addRow("Brush", brush_row)
        paint_form.addRow(modes)

        clean_form = QFormLayout()
        speck_row = QHBoxLayout()
        speck_row.addWidget(self.speck_size)
        speck_row.addWidget(self.specks_button)
        smooth_row = QHBoxLayout()
        smooth_row.addWidget(self.radius)
        smooth_row.addWidget(self.smooth_button)
        clean_form.addRow("Smaller than (px)", speck_row)
        clean_form.addRow("Radius (px)", smooth_row)

        gen_form = QFormLayout()
        gen_form.addRow("From", self.source)
        gen_form.addRow("Classes", self.class_list)
        gen_form.addRow("Seed", self.seed)
        gen_form.addRow("Guidance", self.guidance)
        gen_form.addRow("Image", self.source_image)
        gen_form.addRow(self.generate_button)

        layout = QVBoxLayout(self)
        layout.addWidget(section("New mask", _wrap(new_form)))
        layout.addWidget(section("Paint", _wrap(paint_form)))
        layout.addWidget(section("Clean up", _wrap(clean_form)))
        layout.addWidget(section("Generate a mask (size above)", _wrap(gen_form)))
        layout.addStretch(1)

        self.new_button.clicked.connect(self.new_mask)
        self.open_button.clicked.connect(self.open_mask)
        self.specks_button.clicked.connect(self.remove_specks)
        self.smooth_button.clicked.connect(self.smooth)
        self.generate_button.clicked.connect(self.generate_mask)
        self.like_image.currentIndexChanged.connect(self._match_image)
        self.brush.valueChanged.connect(self._brush_changed)
        self.mask_combo.currentIndexChanged.connect(self._target_changed)
        self.source.currentIndexChanged.connect(self._source_changed)
        self.palette_group.idClicked.connect(self.select_class)
        bind_viewer_keys(napari_viewer, self, {
            key: (lambda i=index: self.palette_key(i))
            for key, index in PALETTE_KEYS.items()})
        connect_while_alive(self.state.classes_changed, self, self._classes_changed)
        self._classes_changed(self.state.classes)
        self._source_changed()

    # -- classes and palette --------------------------------------------------
    def classes(self):
        """Classes of the target mask layer, else of the chosen model."""
        return layer_classes(self.mask_combo.layer()) or self.state.classes

    def _need_classes(self):
        classes = self.classes()
        if classes is None:
            raise InputError(
                "No classes known yet: choose a model in the Model panel (the "
                "demo, a folder or a Hugging Face id) and press Load model.")
        return classes

    def _classes_changed(self, _classes=None) -> None:
        self._build_palette()
        self.class_list.clear()
        classes = self.state.classes
        for c in classes or []:
            if c.index == 0:
                continue
            item = QListWidgetItem(swatch(c.color), c.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setData(Qt.ItemDataRole.UserRole, c.index)
            self.class_list.addItem(item)

    def _build_palette(self) -> None:
        for button in self.palette_group.buttons():
            self.palette_group.removeButton(button)
            button.deleteLater()
        classes = self.classes()
        if classes is None:
            return
        for c in classes:
            label = "erase (unknown)" if c.index == 0 else c.name
            button = QPushButton(swatch(c.color), f"{c.index} {label}")
            button.setCheckable(True)
            tip = f"Paint {c.name} (label {c.index})"
            if c.index in PALETTE_KEYS.values():
                tip += f"; key {shown(f'Control-{c.index}')}"
            else:
                tip += "; or napari's erase tool: key 1 or E"
            button.setToolTip(tip)
            self.palette_group.addButton(button, c.index)
            self.palette.addWidget(button, c.index // 2, c.index % 2)
        layer = self.mask_combo.layer()
        if layer is not None:
            self._check_palette(layer.selected_label)

    def _check_palette(self, label: int) -> None:
        button = self.palette_group.button(int(label))
        if button is not None:
            button.setChecked(True)

    def select_class(self, index: int) -> None:
        """Make ``index`` the brush's label and switch to painting."""
        layer = self.mask_combo.layer()
        if layer is None:
            notify_error(InputError("No mask layer: press New mask first."),
                         "Palette")
            return
        layer.selected_label = int(index)
        if layer.mode not in ("paint", "fill"):
            layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self._check_palette(index)
        self._sync_modes(layer.mode)

    def palette_key(self, index: int) -> None:
        """The palette shortcut Ctrl+``index``: paint class ``index``."""
        key = shown(f"Control-{index}")
        classes = self.classes()
        if classes is None:
            notify_error(InputError(
                f"{key} chooses palette class {index}, but no classes are known "
                "yet: choose a model in the Model panel or open a mask."), "Palette")
            return
        indices = [c.index for c in classes]
        if index not in indices:
            names = ", ".join(f"{c.index} {c.name}" for c in classes if c.index)
            notify_error(InputError(
                f"{key}: there is no class {index}; the classes are {names}."),
                "Palette")
            return
        self.select_class(index)

    def _target_changed(self, *_args) -> None:
        layer = self.mask_combo.layer()
        self._build_palette()
        if layer is None:
            return
        self.brush.setValue(int(layer.brush_size))
        layer.events.selected_label.disconnect(self._label_changed)
        layer.events.selected_label.connect(self._label_changed)
        layer.events.mode.disconnect(self._mode_changed)
        layer.events.mode.connect(self._mode_changed)
        self._sync_modes(layer.mode)

    def _label_changed(self, event) -> None:
        layer = self.mask_combo.layer()
        if layer is not None:
            self._check_palette(layer.selected_label)

    def _mode_changed(self, event) -> None:
        layer = self.mask_combo.layer()
        if layer is not None:
            self._sync_modes(layer.mode)

    def _sync_modes(self, mode) -> None:
        mode = str(mode)
        for name, button in self.mode_buttons.items():
            button.setChecked(name == mode)

    def set_mode(self, mode: str) -> None:
        """Paint, fill, erase or pan/zoom on the mask layer."""
        layer = self.mask_combo.layer()
        if layer is None:
            notify_error(InputError("No mask layer: press New mask first."), "Mode")
            self._sync_modes("")
            return
        layer.mode = mode
        self.viewer.layers.selection.active = layer
        self._sync_modes(layer.mode)

    def _brush_changed(self, value: int) -> None:
        self.brush_label.setText(f"{value} px")
        layer = self.mask_combo.layer()
        if layer is not None:
            layer.brush_size = value

    # -- new / open -----------------------------------------------------------
    def _match_image(self, *_args) -> None:
        image = self.like_image.layer()
        if image is not None:
            h, w = level0(image).shape[:2]
            self.height.setValue(int(h))
            self.width.setValue(int(w))

    def _placement(self) -> dict:
        """Scale and position of the image the mask is made for, if any."""
        image = self.like_image.layer()
        if image is None:
            return {}
        return {"scale": tuple(image.scale[-2:]),
                "translate": tuple(image.translate[-2:])}

    def add_mask(self, data: np.ndarray, name: str, beside: bool = False,
                 **kwargs):
        """Add a mask layer with the current classes and make it the target.

        ``beside``: place it to the right of every layer whose extent it
        would overlap (a generated mask never lands on a painted one).
        """
        classes = self._need_classes() if "classes" not in kwargs \
            else kwargs.pop("classes")
        if beside:
            kwargs["translate"] = self._free_place(data.shape, kwargs)
        layer = add_mask_layer(self.viewer, data, classes, name=name, **kwargs)
        layer.brush_size = self.brush.value()
        self.mask_combo.set_layer(layer)
        self._target_changed()
        return layer

    def _free_place(self, shape, kwargs) -> tuple[float, float]:
        """A translation where a new layer of ``shape`` overlaps no other
        layer: the asked-for place if it is free, else right of them all."""
        scale = np.asarray(kwargs.get("scale", (1.0, 1.0)), float)
        y0, x0 = np.asarray(kwargs.get("translate", (0.0, 0.0)), float)
        y1, x1 = y0 + shape[0] * scale[0], x0 + shape[1] * scale[1]
        right = None
        for layer in self.viewer.layers:
            (ly0, lx0), (ly1, lx1) = np.asarray(layer.extent.world)[:, -2:]
            if ly0 < y1 and y0 < ly1 and lx0 < x1 and x0 < lx1:
                right = lx1 if right is None else max(right, lx1)
        if right is None:
            return (float(y0), float(x0))
        for layer in self.viewer.layers:  # past everything on those rows
            (ly0, lx0), (ly1, lx1) = np.asarray(layer.extent.world)[:, -2:]
            if ly0 < y1 and y0 < ly1:
                right = max(right, lx1)
        gap = max(8.0, 0.05 * shape[1] * scale[1])
        return (float(y0), float(right + gap))

    def _select_included(self, layer, ids: list[int]) -> None:
        """Brush and palette on the first class the new mask includes."""
        if ids:
            layer.selected_label = int(ids[0])
            self._check_palette(ids[0])

    def new_mask(self) -> None:
        """An empty mask (all unknown) of the chosen size."""
        from ..masks.tools import new_mask

        try:
            classes = self._need_classes()
            data = new_mask((self.height.value(), self.width.value()), classes)
            layer = self.add_mask(data, "mask", classes=classes,
                                  **self._placement())
        except Exception as exc:
            notify_error(exc, "New mask")
            return
        first = 1 if len(classes) > 1 else 0
        self.select_class(first)
        return layer

    def open_mask(self, path: str | None = None) -> None:
        """Open a mask file (PNG, TIFF or .npy of class ids)."""
        from ..io.masks import read_mask

        if not path:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open a mask", "", "Masks (*.png *.tif *.tiff *.npy)")
            if not path:
                return
        try:
            classes = self._need_classes()
            mask = read_mask(path)
            layer = self.add_mask(mask, _stem(path), classes=classes,
                                  **self._placement())
        except Exception as exc:
            notify_error(exc, "Open mask")
            return
        try:
            classes.validate_mask(mask, name=layer.name)
        except InputError as exc:
            show_warning(str(exc))

    # -- clean up -------------------------------------------------------------
    def remove_specks(self) -> None:
        """Remove pieces smaller than the chosen size (they take nearby classes)."""
        from ..masks.tools import remove_specks

        self._apply(remove_specks, int(self.speck_size.value()), "Remove specks")

    def smooth(self) -> None:
        """Smooth class boundaries (majority vote within the radius)."""
        from ..masks.tools import smooth_boundaries

        self._apply(smooth_boundaries, float(self.radius.value()),
                    "Smooth boundaries")

    def _apply(self, func, value, action: str) -> None:
        """Run a clean-up tool in a worker; apply the changed pixels after.

        Only pixels the tool changed are written (through the paint API, so
        Ctrl+Z undoes it); strokes painted meanwhile elsewhere are kept.
        """
        layer = self.mask_combo.layer()
        if layer is None:
            notify_error(InputError("No mask layer to clean up: pick one above."),
                         action)
            return
        snapshot = np.array(layer.data)

        def done(result) -> None:
            changed, values = result
            if changed[0].size and layer in self.viewer.layers:
                layer.data_setitem(changed, values)
            show_info(f"{action}: {changed[0].size} pixels changed")

        worker = make_worker(_changes, func, snapshot, value)
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: notify_error(exc, action))
        worker.finished.connect(lambda: self._cleaning(False))
        self._cleaning(True)
        self.clean_worker = worker
        worker.start()

    def _cleaning(self, busy: bool) -> None:
        self.specks_button.setEnabled(not busy)
        self.smooth_button.setEnabled(not busy)
        if not busy:
            self.clean_worker = None

    # -- generate -------------------------------------------------------------
    def _source_changed(self, *_args) -> None:
        key = self.source.currentData()
        self.class_list.setEnabled(key in ("blobs", "model"))
        self.seed.setEnabled(key in ("blobs", "model"))
        self.guidance.setEnabled(key == "model")
        self.source_image.setEnabled(key == "image")

    def chosen_class_ids(self) -> list[int]:
        ids = []
        for i in range(self.class_list.count()):
            item = self.class_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                ids.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return ids

    def generate_mask(self) -> None:
        """Make a mask from blobs, the mask model or the automatic labeller."""
        key = self.source.currentData()
        try:
            classes = self.state.classes
            if classes is None:
                self._need_classes()
            if key == "image":
                image = self.source_image.layer()
                if image is None:
                    raise InputError("No RGB image layer to label: open one (e.g. "
                                     "File > Open Sample > HistoDiff IHC image).")
                self._run_image_labeller(image, classes)
                return
            ids = self.chosen_class_ids()
            if not ids:
                raise InputError("Tick at least one class to include.")
            shape = (self.height.value(), self.width.value())
            if key == "blobs":
                from ..masks.tools import random_blobs

                layer = self.add_mask(random_blobs(shape, ids,
                                                   int(self.seed.value())),
                                      "generated mask", beside=True,
                                      classes=classes, **self._placement())
                self._select_included(layer, ids)
                return
            self.state.load(then=lambda pipe: self._run_mask_model(pipe, ids, shape))
        except Exception as exc:
            notify_error(exc, "Generate mask")

    def _run_image_labeller(self, image, classes) -> None:
        from ..masks.tools import mask_from_image

        rgb = level0(image)
        placement = {"scale": tuple(image.scale[-2:]),
                     "translate": tuple(image.translate[-2:])}

        def done(result) -> None:
            mask, missing = result
            self.add_mask(mask, f"{image.name} mask", classes=classes, **placement)
            if missing:
                show_warning(f"The model has no class {', '.join(missing)}; those "
                             "pixels are left unknown (0).")

        self._start(make_worker(mask_from_image, rgb, classes), done, "Label image")

    def _run_mask_model(self, pipe, ids: list[int], shape) -> None:
        worker = make_worker(_mask_model, pipe, ids, shape, int(self.seed.value()),
                               float(self.guidance.value()))
        classes = pipe.card.classes
        placement = self._placement()

        def done(result) -> None:
            mask, settings = result
            layer = self.add_mask(mask, "generated mask", beside=True,
                                  classes=classes,
                                  metadata={"histodiff_mask": settings},
                                  **placement)
            self._select_included(layer, ids)

        self._start(worker, done, "Generate mask")

    def _start(self, worker, on_result, action: str) -> None:
        self.generate_button.setEnabled(False)
        self.progress = busy_progress(action)
        worker.returned.connect(on_result)
        worker.errored.connect(lambda exc: notify_error(exc, action))
        worker.finished.connect(self.progress.close)
        worker.finished.connect(lambda: self.generate_button.setEnabled(True))
        self.worker = worker
        worker.start()


def _changes(func, mask: np.ndarray, value):
    """Indices and new values of the pixels ``func(mask, value)`` changes."""
    after = func(mask, value)
    changed = np.nonzero(after != mask)
    return changed, after[changed]


def _mask_model(pipe, ids: list[int], shape, seed: int, guidance: float):
    """Sample a mask with the model's mask generator (worker thread)."""
    if getattr(pipe, "mask_unet", None) is None:
        raise InputError("This model has no mask generator (no mask_unet/ folder). "
                         "Use random blobs or the automatic labeller, or paint the "
                         "mask.")
    try:
        from ..pipelines.mask_generation import HistoDiffMaskPipeline
    except ImportError as exc:
        raise InputError("No mask model is available in this build of "
                         "napari-histodiff; use random blobs or the automatic "
                         "labeller, or paint the mask.") from exc
    masks = HistoDiffMaskPipeline(mask_unet=pipe.mask_unet, scheduler=pipe.scheduler,
                                  card=pipe.card)
    masks.source = pipe.source
    out = masks(ids, height=int(shape[0]), width=int(shape[1]), seed=seed,
                guidance_scale=guidance)
    return out.mask, out.settings


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _wrap(layout) -> QWidget:
    w = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    w.setLayout(layout)
    return w


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem
