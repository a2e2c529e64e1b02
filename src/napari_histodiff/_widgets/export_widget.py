"""Export panel: the synthetic image with its mask, whole or a rectangle, as
OME-Zarr, (pyramidal) OME-TIFF, PNG or QuPath GeoJSON with a provenance
sidecar JSON, or as a tile dataset for training (a folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..io.tiles import TileDataset
from ._common import (
    SETTINGS_KEY,
    LayerCombo,
    image_region_from_shapes,
    layer_classes,
    level0,
    make_worker,
    notify_error,
    show_info,
)
from ._state import get_state
from .synth_widget import regions_layer

if TYPE_CHECKING:
    import napari

TILES = "tiles"

FORMATS = {".zarr": "OME-Zarr (.zarr)", ".tif": "OME-TIFF (.tif)", ".png": "PNG (.png)",
           ".geojson": "QuPath annotations (.geojson)",
           TILES: "Tile dataset (folder)"}
EXTENTS = {"whole": "whole image", "region": "drawn rectangle"}


class ExportWidget(QWidget):
    """Export an image layer and its mask with a sidecar of model, seed, settings.

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
        self.last_result = None
        self._confirmed = ""  # a path the save dialog confirmed (may overwrite)

        self.image_combo = LayerCombo(napari_viewer, "rgb")
        self.mask_combo = LayerCombo(napari_viewer, "labels", allow_none=True)
        self.extent = QComboBox()
        for key, text in EXTENTS.items():
            self.extent.addItem(text, key)
        self.format = QComboBox()
        for key, text in FORMATS.items():
            self.format.addItem(text, key)
        self.tile_size = QSpinBox()
        self.tile_size.setRange(16, 4096)
        self.tile_size.setValue(256)
        self.tile_size.setSuffix(" px")
        self.tile_size.setToolTip("Tiles of this size with their masks, a "
                                  "tissue filter and manifest.csv")
        self.path = QLineEdit()
        self.path.setPlaceholderText("output file (the suffix picks the format)")
        self.browse = QPushButton("…")
        self.export_button = QPushButton("Export")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Mask", self.mask_combo)
        form.addRow("Export", self.extent)
        form.addRow("Format", self.format)
        form.addRow("Tile size", self.tile_size)
        form.addRow("File", path_row)
        self._form = form
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.browse.clicked.connect(self._browse)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.image_combo.currentIndexChanged.connect(self._image_changed)
        self.export_button.clicked.connect(self.export)
        self._image_changed()
        self._show_tile_size()

    def _show_tile_size(self) -> None:
        tiles = self.format.currentData() == TILES
        self.tile_size.setVisible(tiles)
        label = self._form.labelForField(self.tile_size)
        if label is not None:
            label.setVisible(tiles)

    def _image_changed(self, *_args) -> None:
        image = self.image_combo.layer()
        if image is None:
            return
        name = image.metadata.get("mask_layer")
        if name and self.mask_combo.findText(name) >= 0:
            self.mask_combo.setCurrentText(name)

    def _format_changed(self, *_args) -> None:
        self._show_tile_size()
        text = self.path.text().strip()
        if text:
            from ..io.export import base_path

            suffix = self.format.currentData()
            self.path.setText(str(base_path(text)) + ("" if suffix == TILES
                                                      else suffix))

    def _browse(self) -> None:
        suffix = self.format.currentData()
        if suffix == TILES:
            path = QFileDialog.getExistingDirectory(self, "Tile dataset in")
            if path:
                self.path.setText(str(Path(path) / "tiles"))
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export to", f"synthetic{suffix}", f"{FORMATS[suffix]} (*{suffix})")
        if path:
            if not path.lower().endswith(suffix):
                path += suffix
            self.path.setText(path)
            self._confirmed = path

    def export(self) -> None:
        """Write the chosen image (and mask) in a worker thread."""
        from ..io.export import export_synthesis
        from ..io.tiles import export_tiles

        try:
            kwargs = self._request()
        except Exception as exc:
            notify_error(exc, "Export")
            return
        self.export_button.setEnabled(False)
        if self.format.currentData() == TILES:
            self.status.setText(f"Writing tiles to {kwargs['path']}…")
            worker = make_worker(
                export_tiles, kwargs["path"], kwargs["image"], kwargs["mask"],
                kwargs["classes"], self.tile_size.value(), region=kwargs["region"],
                settings=kwargs["settings"], source=kwargs["source"],
                overwrite=kwargs["overwrite"], argname="File")
        else:
            self.status.setText(f"Writing {kwargs['path']}…")
            kwargs.pop("source")
            worker = make_worker(export_synthesis, **kwargs)
        worker.returned.connect(self._exported)
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.export_button.setEnabled(True))
        self.worker = worker
        worker.start()

    def _request(self) -> dict:
        image = self.image_combo.layer()
        if image is None:
            raise InputError("No RGB image layer to export: generate one first.")
        text = self.path.text().strip()
        if not text:
            raise InputError("Choose the output file (… button).")
        path = Path(text).expanduser()
        suffix = self.format.currentData()
        known = (".zarr", ".tif", ".tiff", ".png", ".geojson")
        if suffix != TILES and path.suffix.lower() not in known:
            path = path.with_name(path.name + suffix)
        mask_layer = self.mask_combo.layer()
        data = level0(image)
        mask = classes = None
        if mask_layer is not None:
            mask = mask_layer.data
            classes = layer_classes(mask_layer) or self.state.classes
            if classes is None:
                raise InputError(f"The mask {mask_layer.name!r} has no class names; "
                                 "load the model it was painted for.")
        region = None
        if self.extent.currentData() == "region":
            region = image_region_from_shapes(regions_layer(self.viewer), image)
        return {
            "path": path, "image": data, "mask": mask, "classes": classes,
            "settings": dict(image.metadata.get(SETTINGS_KEY, {})),
            "region": region, "overwrite": str(path) == self._confirmed,
            "source": image.name,
        }

    def _exported(self, result) -> None:
        self.last_result = result
        if isinstance(result, TileDataset):
            text = (f"Wrote {result.written} tiles of {result.size} px to "
                    f"{result.folder} ({result.skipped} left out by the tissue "
                    "filter)")
            self.status.setText(text)
            show_info(f"HistoDiff export: {text}")
            return
        written = [result.image, result.mask, result.sidecar]
        names = ", ".join(p.name for p in written if p is not None)
        self.status.setText(f"Wrote {names} in {result.image.parent}")
        show_info(f"HistoDiff export: {names}")

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(f"Export failed: {exc}")
        notify_error(exc, "Export")
