"""napari widgets for reader studies: create/report, and take a study.

Both widgets are thin: the work is done by :mod:`napari_histodiff.study`.
Their public methods (``create``, ``write_report``, ``start``, ``choose_answer``,
``choose_confidence``, ``submit``, ``go_back``, ``go_forward``, ``stop``) are
what the buttons and keys call, so tests and scripts can drive them too.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QShortcut,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..study import ReaderSession, create_study, write_report
from ..study.designs import DESIGN_TITLES, DESIGNS, LEVELS, QUESTIONS
from ..study.images import RGBImage
from ._common import camera, canvas_size, notify_error

#: Names of the layers that show a case; they never change between cases.
#: Metadata key marking the layers that show a reader their case.
CASE_KEY = "histodiff_study_case"
CASE_LAYER_NAMES = {1: ("case",), 2: ("left", "right")}
#: Neutral viewer title while a study runs.
STUDY_TITLE = "napari: reader study"

_ANSWER_LABELS = {
    "single": (("real", "Real", "R"), ("synthetic", "Synthetic", "S")),
    "2afc": (("left", "Left is synthetic", "L"), ("right", "Right is synthetic", "R")),
    "rating": tuple((str(k), str(k), str(k)) for k in LEVELS),
}
_ROLE = Qt.ItemDataRole.UserRole


def _path_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit)
    layout.addWidget(button)
    return row


def _layer_image(layer) -> RGBImage:
    """An RGB image layer as an :class:`RGBImage` (level 0 if multiscale)."""
    if not isinstance(layer, napari.layers.Image) or not layer.rgb:
        raise InputError(
            f"layer {layer.name!r} is not an RGB image layer; choose RGB image "
            "layers or files."
        )
    data = layer.data[0] if layer.multiscale else layer.data
    return RGBImage(data, f"layer {layer.name}")


class StudyCreateWidget(QWidget):
    """Create a reader study from layers or files, and write its report.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose RGB image layers can be used as sources.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)

        self.source_lists: dict[str, QListWidget] = {}
        for side in ("real", "synthetic"):
            box = QGroupBox(f"{side.capitalize()} images (tick layers, or add files)")
            box_layout = QVBoxLayout(box)
            listing = QListWidget()
            listing.setMaximumHeight(110)
            self.source_lists[side] = listing
            buttons = QHBoxLayout()
            for text, slot in (
                ("Add files…", lambda _=False, s=side: self._browse_files(s)),
                ("Add folder…", lambda _=False, s=side: self._browse_folder(s)),
                ("Remove", lambda _=False, s=side: self._remove_selected(s)),
            ):
                button = QPushButton(text)
                button.clicked.connect(slot)
                buttons.addWidget(button)
            box_layout.addWidget(listing)
            box_layout.addLayout(buttons)
            layout.addWidget(box)

        form = QFormLayout()
        self.design = QComboBox()
        for design in DESIGNS:
            self.design.addItem(f"{design}: {DESIGN_TITLES[design]}", design)
        self.n_tiles = QSpinBox(minimum=1, maximum=10000, value=50)
        self.n_tiles.setToolTip("tiles per side; pairs for the 2afc design")
        self.tile_size = QSpinBox(minimum=16, maximum=4096, value=256, singleStep=32)
        self.min_tissue = QDoubleSpinBox(minimum=0.0, maximum=1.0, value=0.5)
        self.min_tissue.setSingleStep(0.05)
        self.n_training = QSpinBox(minimum=0, maximum=1000, value=0)
        self.allow_navigation = QCheckBox("readers may go back")
        self.allow_change = QCheckBox("readers may change answers")
        self.ask_confidence = QCheckBox("ask a 1-5 confidence", checked=True)
        self.title = QLineEdit("Reader study")
        self.instructions = QPlainTextEdit()
        self.instructions.setMaximumHeight(60)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.out = QLineEdit()
        self.key_out = QLineEdit()
        self.key_out.setPlaceholderText("inside the study folder (key/)")
        out_button = QPushButton("…")
        out_button.clicked.connect(lambda: self._browse_dir(self.out))
        key_button = QPushButton("…")
        key_button.clicked.connect(lambda: self._browse_save(self.key_out))
        form.addRow("Design", self.design)
        form.addRow("Tiles per side", self.n_tiles)
        form.addRow("Tile size (px)", self.tile_size)
        form.addRow("Min. tissue", self.min_tissue)
        form.addRow("Training tiles per side", self.n_training)
        form.addRow("", self.allow_navigation)
        form.addRow("", self.allow_change)
        form.addRow("", self.ask_confidence)
        form.addRow("Title", self.title)
        form.addRow("Instructions", self.instructions)
        form.addRow("Seed", self.seed)
        form.addRow("Study folder", _path_row(self.out, out_button))
        form.addRow("Truth key file", _path_row(self.key_out, key_button))
        layout.addLayout(form)
        self.create_button = QPushButton("Create study")
        self.create_button.clicked.connect(self.create)
        layout.addWidget(self.create_button)

        report_box = QGroupBox("Report")
        report_form = QFormLayout(report_box)
        self.report_study = QLineEdit()
        self.report_key = QLineEdit()
        self.report_key.setPlaceholderText("STUDY/key/truth.json")
        self.report_out = QLineEdit()
        buttons = []
        for edit, browse in (
            (self.report_study, self._browse_dir),
            (self.report_key, self._browse_open),
            (self.report_out, self._browse_dir),
        ):
            button = QPushButton("…")
            button.clicked.connect(lambda _=False, e=edit, b=browse: b(e))
            buttons.append(button)
        report_form.addRow("Study folder", _path_row(self.report_study, buttons[0]))
        report_form.addRow("Truth key", _path_row(self.report_key, buttons[1]))
        report_form.addRow("Report folder", _path_row(self.report_out, buttons[2]))
        self.report_button = QPushButton("Write report")
        self.report_button.clicked.connect(self.write_report)
        report_form.addRow(self.report_button)
        layout.addWidget(report_box)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch()

        self.design.currentIndexChanged.connect(self._design_changed)
        self.allow_navigation.toggled.connect(self._navigation_changed)
        self._navigation_changed(False)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- sources ----------------------------------------------------------
    def _refresh_layers(self, event=None) -> None:
        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, napari.layers.Image) and layer.rgb
            and not layer.metadata.get(CASE_KEY)  # a reader's case is no source
        ]
        for listing in self.source_lists.values():
            checked = {
                listing.item(i).data(_ROLE)[1]
                for i in range(listing.count())
                if listing.item(i).data(_ROLE)[0] == "layer"
                and listing.item(i).checkState() == Qt.CheckState.Checked
            }
            for i in reversed(range(listing.count())):
                if listing.item(i).data(_ROLE)[0] == "layer":
                    listing.takeItem(i)
            for row, name in enumerate(names):
                item = QListWidgetItem(f"layer: {name}")
                item.setData(_ROLE, ("layer", name))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                state = (
                    Qt.CheckState.Checked
                    if name in checked
                    else Qt.CheckState.Unchecked
                )
                item.setCheckState(state)
                listing.insertItem(row, item)

    def set_layer_checked(self, side: str, name: str, checked: bool = True) -> None:
        """Tick (or untick) an image layer as a source of ``side``."""
        listing = self.source_lists[side]
        for i in range(listing.count()):
            item = listing.item(i)
            if item.data(_ROLE) == ("layer", name):
                item.setCheckState(
                    Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
                )
                return
        raise InputError(f"no RGB image layer named {name!r}.")

    def add_paths(self, side: str, paths) -> None:
        """Add image files or folders as sources of ``side``."""
        for path in paths:
            item = QListWidgetItem(str(path))
            item.setData(_ROLE, ("path", str(path)))
            self.source_lists[side].addItem(item)

    def sources(self, side: str) -> list:
        """The chosen sources of one side: RGB images from layers, and paths."""
        result: list = []
        listing = self.source_lists[side]
        for i in range(listing.count()):
            kind, value = listing.item(i).data(_ROLE)
            if kind == "path":
                result.append(value)
            elif listing.item(i).checkState() == Qt.CheckState.Checked:
                if value not in self.viewer.layers:
                    raise InputError(f"layer {value!r} is no longer open.")
                result.append(_layer_image(self.viewer.layers[value]))
        return result

    def _browse_files(self, side: str) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, f"{side} images", "", "Images (*.png *.tif *.tiff *.jpg *.jpeg)"
        )
        self.add_paths(side, paths)

    def _browse_folder(self, side: str) -> None:
        path = QFileDialog.getExistingDirectory(self, f"{side} folder or .zarr")
        if path:
            self.add_paths(side, [path])

    def _remove_selected(self, side: str) -> None:
        listing = self.source_lists[side]
        for item in listing.selectedItems():
            if item.data(_ROLE)[0] == "path":
                listing.takeItem(listing.row(item))

    def _browse_dir(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder")
        if path:
            edit.setText(path)

    def _browse_save(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Truth key", "", "JSON (*.json)")
        if path:
            edit.setText(path)

    def _browse_open(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Truth key", "", "JSON (*.json)")
        if path:
            edit.setText(path)

    def _design_changed(self, index: int) -> None:
        rating = self.design.currentData() == "rating"
        self.ask_confidence.setEnabled(not rating)

    def _navigation_changed(self, allowed: bool) -> None:
        self.allow_change.setEnabled(allowed)
        if not allowed:
            self.allow_change.setChecked(False)

    # -- actions ----------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        """Show the error in the panel and as a notification; nothing is lost
        (the form and the chosen answer stay as they were, to retry)."""
        self.status.setText(f"Error: {exc}")
        notify_error(exc)

    def create(self) -> Path | None:
        """Create the study from the form; return its folder (None on error)."""
        try:
            if not self.out.text().strip():
                raise InputError("study folder is empty; choose where to create it.")
            seed_text = self.seed.text().strip()
            if seed_text and not seed_text.lstrip("-").isdigit():
                raise InputError(f"seed={seed_text!r} must be a whole number or empty.")
            study = create_study(
                self.out.text().strip(),
                self.sources("real"),
                self.sources("synthetic"),
                design=self.design.currentData(),
                n=self.n_tiles.value(),
                tile_size=self.tile_size.value(),
                min_tissue=self.min_tissue.value(),
                n_training=self.n_training.value(),
                allow_navigation=self.allow_navigation.isChecked(),
                allow_change=self.allow_change.isChecked(),
                ask_confidence=self.ask_confidence.isChecked(),
                title=self.title.text().strip() or "Reader study",
                instructions=self.instructions.toPlainText().strip(),
                seed=int(seed_text) if seed_text else None,
                key_path=self.key_out.text().strip() or None,
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged
            self._fail(exc)
            return None
        key = self.key_out.text().strip() or study.default_key_path
        message = (
            f"Created {study.design} study {study.path} with "
            f"{len(study.case_ids())} cases. Truth key: {key}."
        )
        self.status.setText(message)
        self.report_study.setText(str(study.path))
        if self.key_out.text().strip():
            self.report_key.setText(self.key_out.text().strip())
        show_info(message)
        return study.path

    def write_report(self) -> Path | None:
        """Write the report of the study in the report fields (None on error)."""
        try:
            if (
                not self.report_study.text().strip()
                or not self.report_out.text().strip()
            ):
                raise InputError("choose the study folder and the report folder.")
            report = write_report(
                self.report_study.text().strip(),
                self.report_out.text().strip(),
                key_path=self.report_key.text().strip() or None,
                overwrite=True,
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged
            self._fail(exc)
            return None
        pooled = report.results.pooled
        if report.results.design == "rating" and pooled.ratings is not None:
            summary = f"AUC {pooled.ratings.auc:.3f} over {pooled.n} ratings"
        else:
            summary = f"pooled accuracy {pooled.accuracy:.3f} over {pooled.n} answers"
        message = f"Report written to {report.folder}: {summary}."
        self.status.setText(message)
        show_info(message)
        return report.folder


class ReaderWidget(QWidget):
    """Take a reader study in napari.

    The viewer shows only the case: other layers are hidden while the study
    runs (and shown again by Stop), case layers are named ``case`` (or
    ``left`` and ``right``) whatever the case, carry no metadata and no file
    source, and the window title is neutral.

    Keys (in the canvas and in this widget): R real / S synthetic (single),
    L / R for the synthetic side (pairs), 1-5 confidence or rating, Enter
    save and next, Left / Right back and forward (if the study allows).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer that shows the cases.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session: ReaderSession | None = None
        self._answer: str | None = None
        self._confidence: int | None = None
        self._case_layers: list = []
        self._hidden: list = []
        self._old_title: str | None = None
        self._old_keys: dict[str, object] = {}
        self._shortcuts: list[QShortcut] = []

        layout = QVBoxLayout(self)
        setup = QGroupBox("Study")
        form = QFormLayout(setup)
        self.study_path = QLineEdit()
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.reader_name = QLineEdit()
        self.reader_name.setPlaceholderText("your name (the same name resumes)")
        self.training = QCheckBox("training (instant feedback, never counted)")
        self.start_button = QPushButton("Start / resume")
        self.start_button.clicked.connect(lambda: self.start())
        form.addRow("Study folder", _path_row(self.study_path, browse))
        form.addRow("Reader", self.reader_name)
        form.addRow("", self.training)
        form.addRow(self.start_button)
        layout.addWidget(setup)

        self.header = QLabel("")
        self.header.setWordWrap(True)
        self.question = QLabel("")
        self.question.setWordWrap(True)
        self.progress_label = QLabel("")
        self.progress = QProgressBar()
        layout.addWidget(self.header)
        layout.addWidget(self.question)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress)

        self.answer_box = QGroupBox("Answer")
        self.answer_layout = QHBoxLayout(self.answer_box)
        # selection is kept in _answer/_confidence and shown by _update; the
        # groups are not exclusive so that "nothing chosen" can be shown
        self.answer_group = QButtonGroup(self)
        self.answer_group.setExclusive(False)
        layout.addWidget(self.answer_box)
        self.confidence_box = QGroupBox("Confidence (1 = guess, 5 = certain)")
        confidence_layout = QHBoxLayout(self.confidence_box)
        self.confidence_group = QButtonGroup(self)
        self.confidence_group.setExclusive(False)
        for level in LEVELS:
            button = self._button(
                str(level), lambda _=False, k=level: self.choose_confidence(k)
            )
            button.setCheckable(True)
            self.confidence_group.addButton(button, level)
            confidence_layout.addWidget(button)
        layout.addWidget(self.confidence_box)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("comment (optional)")
        layout.addWidget(self.comment)

        navigation = QHBoxLayout()
        self.back_button = self._button("◀ Back", self.go_back)
        self.submit_button = self._button("Save and next (Enter)", self.submit)
        self.forward_button = self._button("Forward ▶", self.go_forward)
        for button in (self.back_button, self.submit_button, self.forward_button):
            navigation.addWidget(button)
        layout.addLayout(navigation)
        self.feedback = QLabel("")
        self.feedback.setWordWrap(True)
        layout.addWidget(self.feedback)
        self.restart_button = self._button("Train again", self.restart_training)
        layout.addWidget(self.restart_button)
        self.stop_button = self._button("Stop (answers are saved)", self.stop)
        layout.addWidget(self.stop_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch()
        self._update()

    def _button(self, text: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys keep going to the canvas
        button.clicked.connect(lambda _=False: slot())
        return button

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Study folder")
        if path:
            self.study_path.setText(path)

    def _fail(self, exc: Exception) -> None:
        """Show the error in the panel and as a notification; nothing is lost
        (the form and the chosen answer stay as they were, to retry)."""
        self.status.setText(f"Error: {exc}")
        notify_error(exc)

    # -- starting and stopping -------------------------------------------
    def start(
        self,
        study: str | Path | None = None,
        reader: str | None = None,
        training: bool | None = None,
    ) -> bool:
        """Open the study for a reader and show their current case.

        Arguments default to the form fields. Returns whether it started.
        """
        if study is not None:
            self.study_path.setText(str(study))
        if reader is not None:
            self.reader_name.setText(reader)
        if training is not None:
            self.training.setChecked(training)
        self.stop()
        try:
            if not self.study_path.text().strip():
                raise InputError("study folder is empty; choose the study folder.")
            self.session = ReaderSession(
                self.study_path.text().strip(),
                self.reader_name.text(),
                training=self.training.isChecked(),
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged
            self._fail(exc)
            return False
        self._hide_other_layers()
        self._old_title = self.viewer.title
        self.viewer.title = STUDY_TITLE
        self._build_answer_buttons()
        self._bind_keys()
        settings = self.session.study.settings
        mode = "TRAINING (feedback; not counted)" if self.session.training else "Study"
        header = f"<b>{settings.title}</b> — {mode} — reader {self.session.reader}"
        if settings.instructions:
            header += f"<br>{settings.instructions}"
        self.header.setText(header)
        self.question.setText(QUESTIONS[self.session.design])
        self.feedback.setText("")
        self.status.setText("")
        self._show_case()
        return True

    def stop(self) -> None:
        """Close the session, remove the case layers, restore the viewer."""
        if self.session is None:
            return
        self.session.close()
        self.session = None
        self._unbind_keys()
        for layer in self._case_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._case_layers = []
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        self._show_docks(True)
        if self._old_title is not None:
            self.viewer.title = self._old_title
            self._old_title = None
        self.header.setText("")
        self.question.setText("")
        self._update()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.stop()
        super().closeEvent(event)

    def _hide_other_layers(self) -> None:
        self._hidden = [layer for layer in self.viewer.layers if layer.visible]
        for layer in self._hidden:
            layer.visible = False
        self._show_docks(False)

    def _show_docks(self, visible: bool) -> None:
        """Hide napari's layer list and layer controls in reader mode (the
        organiser's layers, contrast and gamma are not the reader's), and
        show them again afterwards as they were."""
        qt_viewer = getattr(self.viewer.window, "_qt_viewer", None)
        if qt_viewer is None:
            return
        docks = [getattr(qt_viewer, name, None)
                 for name in ("dockLayerList", "dockLayerControls")]
        if not visible:
            self._docks = [(d, d.isVisible()) for d in docks if d is not None]
            for dock, _was in self._docks:
                dock.setVisible(False)
        else:
            for dock, was in getattr(self, "_docks", []):
                dock.setVisible(was)
            self._docks = []

    def _fit_case(self) -> None:
        """Fit the case to the canvas: hidden layers must not set the view
        (napari's reset_view counts them, and shrinks the case to a stamp)."""
        ext = np.array([np.asarray(layer.extent.world)[:, -2:]
                        for layer in self._case_layers])
        lo, hi = ext[:, 0].min(axis=0), ext[:, 1].max(axis=0)
        size = np.maximum(hi - lo, 1e-6)
        canvas = np.asarray(canvas_size(self.viewer))
        cam = camera(self.viewer)
        cam.center = tuple((lo + hi) / 2.0)
        if canvas.min() > 1:
            cam.zoom = float(0.95 * (canvas / size).min())
        else:  # no canvas yet (headless start): napari's own fit
            self.viewer.reset_view()

    # -- keys -------------------------------------------------------------
    def _key_actions(self) -> dict[str, object]:
        design = self.session.design
        actions: dict[str, object] = {}
        for value, _, key in _ANSWER_LABELS[design]:
            actions[key] = lambda v=value: self.choose_answer(v)
        if design != "rating":
            for level in LEVELS:
                actions[str(level)] = lambda k=level: self.choose_confidence(k)
        actions["Enter"] = self.submit
        actions["Left"] = self.go_back
        actions["Right"] = self.go_forward
        return actions

    def _bind_keys(self) -> None:
        self._actions = self._key_actions()
        for key, action in self._actions.items():
            self._old_keys[key] = self.viewer.bind_key(
                key, lambda viewer, a=action: a(), overwrite=True
            )
            sequence = QKeySequence("Return" if key == "Enter" else key)
            shortcut = QShortcut(sequence, self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)
            self._shortcuts.append(shortcut)

    def _unbind_keys(self) -> None:
        for key, old in self._old_keys.items():
            self.viewer.bind_key(key, old, overwrite=True)
        self._old_keys = {}
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.deleteLater()
        self._shortcuts = []

    def press_key(self, key: str) -> None:
        """Act as if ``key`` was pressed in the canvas (e.g. ``"S"``, ``"3"``)."""
        if self.session is not None:
            self._actions[key]()

    # -- answering --------------------------------------------------------
    def _build_answer_buttons(self) -> None:
        for button in self.answer_group.buttons():
            self.answer_group.removeButton(button)
            self.answer_layout.removeWidget(button)
            button.deleteLater()
        for value, label, key in _ANSWER_LABELS[self.session.design]:
            text = label if label == key else f"{label} ({key})"
            button = self._button(text, lambda v=value: self.choose_answer(v))
            button.setCheckable(True)
            button.setProperty("answer", value)
            self.answer_group.addButton(button)
            self.answer_layout.addWidget(button)

    def choose_answer(self, value: str) -> None:
        """Select an answer for the case shown (not saved until :meth:`submit`)."""
        if self.session is None or not self.session.can_answer:
            return
        self._answer = value
        self._update()

    def choose_confidence(self, level: int) -> None:
        """Select the confidence (1-5) for the case shown."""
        if self.session is None or not self.session.can_answer:
            return
        self._confidence = int(level)
        self._update()

    def submit(self) -> bool:
        """Save the chosen answer and show the next case. Returns whether saved."""
        if self.session is None or not self.session.can_answer:
            return False
        if self._answer is None:
            self.status.setText("Choose an answer first.")
            return False
        try:
            feedback = self.session.submit(
                self._answer, self._confidence, self.comment.text()
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged
            self._fail(exc)
            return False
        self.feedback.setText(feedback.message if feedback else "")
        if feedback is not None and feedback.correct is not None:
            colour = "#2e7d32" if feedback.correct else "#c62828"
            self.feedback.setStyleSheet(f"color: {colour}; font-weight: bold")
        self.status.setText("Saved.")
        self._show_case()
        return True

    def restart_training(self) -> None:
        """Forget this reader's training answers and train again."""
        if self.session is not None and self.session.training:
            self.session.restart_training()
            self.feedback.setText("")
            self._show_case()

    def go_back(self) -> None:
        """Show the previous case, if the study allows it."""
        if self.session is not None and self.session.can_go_back:
            self.session.go_back()
            self._show_case()

    def go_forward(self) -> None:
        """Show the next case, if the study allows it."""
        if self.session is not None and self.session.can_go_forward:
            self.session.go_forward()
            self._show_case()

    # -- display ----------------------------------------------------------
    def _show_case(self) -> None:
        session = self.session
        saved = session.current_answer
        self._answer = saved.answer if saved else None
        self._confidence = saved.confidence if saved else None
        self.comment.setText(saved.comment if saved else "")
        if session.at_end:
            for layer in self._case_layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            self._case_layers = []
        else:
            self._display(session.image())
        self._update()

    def _display(self, pixels) -> None:
        names = CASE_LAYER_NAMES[pixels.shape[0]]
        size = pixels.shape[2]
        gap = max(8, size // 16)
        if [layer.name for layer in self._case_layers] != list(names) or any(
            layer not in self.viewer.layers for layer in self._case_layers
        ):
            for layer in self._case_layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            self._case_layers = [
                self.viewer.add_image(
                    pixels[i],
                    name=name,
                    rgb=True,
                    contrast_limits=(0, 255),
                    translate=(0, i * (size + gap)),
                    metadata={CASE_KEY: True},
                )
                for i, name in enumerate(names)
            ]
            for layer in self._case_layers:
                for key, action in self._actions.items():
                    layer.bind_key(key, lambda _layer, a=action: a(), overwrite=True)
        else:
            for layer, tile in zip(self._case_layers, pixels, strict=True):
                layer.data = tile
                layer.contrast_limits = (0, 255)
        self.viewer.layers.selection.active = self._case_layers[0]
        self._fit_case()

    def _update(self) -> None:
        session = self.session
        running = session is not None
        for box in (self.answer_box, self.confidence_box):
            box.setVisible(running)
        self.comment.setVisible(running)
        for button in (
            self.back_button,
            self.submit_button,
            self.forward_button,
            self.stop_button,
        ):
            button.setVisible(running)
        self.progress.setVisible(running)
        self.restart_button.setVisible(running and session.training and session.at_end)
        if not running:
            self.progress_label.setText("")
            return
        self.confidence_box.setVisible(session.needs_confidence)
        can_answer = session.can_answer
        for button in self.answer_group.buttons():
            button.setEnabled(can_answer)
            button.setChecked(button.property("answer") == self._answer)
        for button in self.confidence_group.buttons():
            button.setEnabled(can_answer)
            button.setChecked(self.confidence_group.id(button) == self._confidence)
        self.comment.setEnabled(can_answer)
        ready = self._answer is not None and (
            self._confidence is not None or not session.needs_confidence
        )
        self.submit_button.setEnabled(can_answer and ready)
        self.back_button.setEnabled(session.can_go_back)
        self.forward_button.setEnabled(session.can_go_forward)
        self.back_button.setVisible(session.study.settings.allow_navigation)
        self.forward_button.setVisible(session.study.settings.allow_navigation)
        self.progress.setMaximum(session.n_cases)
        self.progress.setValue(session.n_answered)
        if session.at_end:
            self.progress_label.setText(
                f"All {session.n_cases} cases answered. Thank you! You can close "
                "napari or press Stop."
            )
        else:
            note = (
                " (answered; read-only)"
                if not can_answer
                else (
                    " (answered; you may change it)" if session.current_answer else ""
                )
            )
            self.progress_label.setText(
                f"Case {session.position + 1} of {session.n_cases}{note} — "
                f"{session.n_answered} answered"
            )
