"""Model panel: choose the model and device, load it once, see its classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..devices import DEVICES
from ..models import DEMO_NAME, SHIPPED_NAMES, demo_model_path
from ._common import connect_while_alive, make_worker, notify_error
from ._state import get_state

if TYPE_CHECKING:
    import napari

HUB_HINT = "demo, a model folder, or a Hugging Face id (owner/name)"


def swatch(rgb: tuple[int, int, int], size: int = 14) -> QIcon:
    """A square icon of one colour."""
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class ModelWidget(QWidget):
    """Pick the model (demo, folder or Hub id) and device; load it off the UI thread.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer; its panels share the model chosen here.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = get_state(napari_viewer)
        self.present_devices: list[str] | None = None
        self._device_worker = None

        self.source = QComboBox()
        self.source.setEditable(True)
        for name in SHIPPED_NAMES:
            if demo_model_path(name) is not None or name == DEMO_NAME:
                self.source.addItem(name)
        if self.state.source not in SHIPPED_NAMES:
            self.source.addItem(self.state.source)
        self.source.setCurrentText(self.state.source)
        self.source.setToolTip(HUB_HINT)
        self.source.lineEdit().setPlaceholderText(HUB_HINT)
        self.browse = QPushButton("Folder…")
        self.device = QComboBox()
        for name in DEVICES:
            self.device.addItem(name, name)
        self.device.setCurrentIndex(max(0, self.device.findData(self.state.device)))
        self.fp16 = QCheckBox("half precision (GPU)")
        self.load_button = QPushButton("Load model")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.classes = QListWidget()
        self.classes.setMaximumHeight(140)

        row = QHBoxLayout()
        row.addWidget(self.source, 1)
        row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Model", row)
        form.addRow("Device", self.device)
        form.addRow("", self.fp16)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.load_button)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Classes"))
        layout.addWidget(self.classes)
        layout.addStretch(1)

        self.browse.clicked.connect(self._browse)
        self.source.currentTextChanged.connect(self._choice_changed)
        self.device.currentIndexChanged.connect(self._choice_changed)
        self.fp16.toggled.connect(self._choice_changed)
        self.load_button.clicked.connect(self.load)
        connect_while_alive(self.state.classes_changed, self, self._show_classes)
        connect_while_alive(self.state.model_changed, self, self._loaded)
        connect_while_alive(self.state.loading_changed, self, self._loading)
        self._show_classes(self.state.classes)
        self._loaded(self.state.pipe)
        self._probe_devices()

    # -- devices --------------------------------------------------------------
    def _probe_devices(self) -> None:
        """Find the present devices in a worker (importing torch takes a moment)."""
        from ..devices import available_devices

        worker = make_worker(available_devices)
        worker.returned.connect(self._show_devices)
        worker.finished.connect(self._probed)
        self._device_worker = worker
        worker.start()

    def _probed(self) -> None:
        self._device_worker = None

    def _show_devices(self, present: list[str]) -> None:
        try:
            self.device.count()
        except RuntimeError:  # widget closed meanwhile
            return
        for i in range(self.device.count()):
            name = self.device.itemData(i)
            if name == "auto":
                text = f"auto ({present[0]})"
            elif name in present:
                text = f"{name} (present)"
            else:
                text = f"{name} (not found)"
            self.device.setItemText(i, text)
        self.present_devices = present

    # -- choosing and loading -------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.source.setCurrentText(folder)

    def choice(self) -> tuple[str, str, bool]:
        return (self.source.currentText().strip(), self.device.currentData(),
                self.fp16.isChecked())

    def _choice_changed(self, *_args) -> None:
        self.state.choose(*self.choice())
        self._loaded(self.state.pipe)

    def load(self) -> None:
        """Load the chosen model (once; later calls reuse it)."""
        source, device, fp16 = self.choice()
        if not source:
            notify_error(ValueError("choose a model: " + HUB_HINT), "model")
            return
        self.state.choose(source, device, fp16)
        self.state.load()

    def _loading(self, busy: bool) -> None:
        self.load_button.setEnabled(not busy)
        if busy:
            self.status.setText(f"Loading {self.state.source} on "
                                f"{self.state.device}…")
        else:
            self._loaded(self.state.pipe)

    def _loaded(self, pipe) -> None:
        if pipe is None:
            if not self.state.loading:
                self.status.setText("Not loaded yet (Generate loads it too).")
            return
        card = pipe.card
        self.status.setText(
            f"Loaded {self.state.source} on {pipe.unet.device} "
            f"({str(pipe.unet.dtype).replace('torch.', '')}); "
            f"{card.space} model, window {card.patch_size} px."
        )

    def _show_classes(self, classes) -> None:
        self.classes.clear()
        if classes is None:
            self.classes.addItem("(classes appear when the model is found)")
            return
        for c in classes:
            item = QListWidgetItem(swatch(c.color), f"{c.index}  {c.name}")
            self.classes.addItem(item)
