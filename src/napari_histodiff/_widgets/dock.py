"""The all-in-one HistoDiff dock: Model, Mask, Synthesise and Export tabs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .export_widget import ExportWidget
from .mask_widget import MaskWidget
from .model_widget import ModelWidget
from .synth_widget import SynthesisWidget

if TYPE_CHECKING:
    import napari


class HistoDiffWidget(QWidget):
    """The four panels of the plugin in tabs, sharing one model.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ModelWidget(napari_viewer)
        self.mask = MaskWidget(napari_viewer)
        self.synthesis = SynthesisWidget(napari_viewer)
        self.export = ExportWidget(napari_viewer)
        self.tabs = QTabWidget()
        for widget, title in ((self.model, "Model"), (self.mask, "Mask"),
                              (self.synthesis, "Synthesise"),
                              (self.export, "Export")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget)
            self.tabs.addTab(scroll, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(400)

    def show_tab(self, title: str) -> None:
        """Switch to the tab called ``title``."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == title:
                self.tabs.setCurrentIndex(i)
