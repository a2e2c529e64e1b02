"""Realism panel: measure synthetic image layers against real ones.

A thin front to :func:`napari_histodiff.metrics.measure.measure_realism`: tick
the synthetic layers, the real layers and (for the privacy figures) the
training layers, press *Measure*; the work runs in a worker thread, the
table appears in the panel and the closest synthetic/training pairs as an
image layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ._common import level0, make_worker, notify_error, show_info

if TYPE_CHECKING:
    import napari

SHEET_LAYER = "closest pairs (synthetic | training)"
ROLES = ("synthetic", "real", "train")


class LayerChecklist(QListWidget):
    """The viewer's RGB image layers, each with a check box."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        events = viewer.layers.events
        events.inserted.connect(self.refresh)
        events.removed.connect(self.refresh)
        self.setMaximumHeight(90)
        self.refresh()

    def refresh(self, *_args) -> None:
        from napari.layers import Image

        checked = set(self.checked_names())
        self.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and layer.rgb and layer.name != SHEET_LAYER:
                item = QListWidgetItem(layer.name)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Checked if layer.name in checked
                                   else Qt.Unchecked)
                self.addItem(item)

    def checked_names(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())
                if self.item(i).checkState() == Qt.Checked]

    def set_checked(self, names) -> None:
        names = set(names)
        for i in range(self.count()):
            item = self.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)


class MetricsWidget(QWidget):
    """Measure the realism (and privacy) of synthetic layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.last_report = None
        self.lists = {role: LayerChecklist(napari_viewer) for role in ROLES}
        self.features = QComboBox()
        self.features.addItems(["random", "histo"])
        self.tile_size = QSpinBox()
        self.tile_size.setRange(16, 1024)
        self.tile_size.setValue(64)
        self.measure_button = QPushButton("Measure")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTextBrowser()

        form = QFormLayout()
        form.addRow("Synthetic", self.lists["synthetic"])
        form.addRow("Real", self.lists["real"])
        form.addRow("Training (optional)", self.lists["train"])
        form.addRow("Features", self.features)
        form.addRow("Tile size", self.tile_size)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.measure_button)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        self.measure_button.clicked.connect(self.measure)

    def _images(self, role: str) -> list[tuple[str, np.ndarray]]:
        out = []
        for name in self.lists[role].checked_names():
            if name in self.viewer.layers:
                out.append((name, np.asarray(level0(self.viewer.layers[name]))))
        return out

    def request(self) -> dict:
        """The arguments of :func:`measure_realism` from the panel."""
        synthetic, real = self._images("synthetic"), self._images("real")
        if not synthetic:
            raise InputError("Synthetic: tick at least one synthetic image layer.")
        if not real:
            raise InputError("Real: tick at least one real image layer.")
        both = {n for n, _ in synthetic} & {n for n, _ in real}
        if both:
            raise InputError(f"Layer {sorted(both)[0]!r} is ticked as synthetic and "
                             "as real; tick it on one side only.")
        train = self._images("train") or None
        return {"real": real, "synthetic": synthetic, "train": train,
                "features": self.features.currentText(),
                "tile_size": int(self.tile_size.value())}

    def measure(self) -> None:
        """Start the measurement in a worker thread."""
        from ..metrics.measure import measure_realism

        try:
            kwargs = self.request()
        except Exception as exc:
            notify_error(exc, "Realism")
            return
        self.measure_button.setEnabled(False)
        self.status.setText("Measuring…")
        worker = make_worker(measure_realism, **kwargs)
        worker.returned.connect(self._measured)
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.measure_button.setEnabled(True))
        self.worker = worker
        worker.start()

    def _measured(self, report) -> None:
        self.last_report = report
        self.table.setMarkdown(report.to_markdown())
        sheet = report.sheet_image()
        if sheet is not None:
            data = np.asarray(sheet)
            if SHEET_LAYER in self.viewer.layers:
                self.viewer.layers[SHEET_LAYER].data = data
            else:
                self.viewer.add_image(data, name=SHEET_LAYER, rgb=True)
        self.status.setText(f"FID {report.fid:.3g}, precision {report.precision:.2f}, "
                            f"recall {report.recall:.2f} ({report.extractor['name']} "
                            "features)")
        show_info("HistoDiff realism: measured")

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(f"Measuring failed: {exc}")
        notify_error(exc, "Realism")
