"""Synthesis panel: generate an image from a mask and watch it form; regenerate
a rectangle of it with its surroundings as context.

The work runs in ``thread_worker`` generators (:mod:`._runs`) that yield at
every window batch, so Cancel acts within one batch and the viewer stays
responsive (pan, zoom and paint while it runs). The image layer is a dask
array over the zarr canvas; the UI thread only refreshes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..defaults import DEFAULT_CLASSIFIER_SCALE
from ..sampling.events import (
    CancelledEvent,
    FinishedEvent,
    RegionDoneEvent,
    StartEvent,
    StepEvent,
    WindowsEvent,
)
from ._common import (
    CANVAS_KEY,
    SETTINGS_KEY,
    LayerCombo,
    camera,
    connect_while_alive,
    describe_region,
    image_region_from_shapes,
    level0,
    make_worker,
    notify_error,
    section,
    show_info,
)
from ._settings import load_settings, save_settings
from ._state import get_state
from .shortcuts import (
    CANCEL_KEY,
    GENERATE_KEY,
    UNDO_REGION_KEY,
    bind_viewer_keys,
    with_key,
)

if TYPE_CHECKING:
    import napari

SCHEDULERS = ("dpm++", "ddim", "ddpm", "euler", "unipc")
STRATEGIES = ("random-shift", "tiled", "multidiffusion", "diffinfinite")
PLACEMENTS = {"beside": "beside the mask (right)", "grid": "grid view"}
REGIONS_LAYER = "HistoDiff regions"
MAX_SEED = 2**31 - 1
REFRESH_MS = 30


@dataclass
class Job:
    """One generation or regeneration in progress."""

    kind: str
    worker: Any = None
    run: Any = None
    canvas: Any = None
    layer: Any = None
    progress: Any = None
    cancel_requested: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def regions_layer(viewer, create: bool = False):
    """The shapes layer holding region rectangles (created on request)."""
    for layer in viewer.layers:
        if layer.name == REGIONS_LAYER:
            return layer
    if not create:
        return None
    return viewer.add_shapes(name=REGIONS_LAYER, edge_color="yellow",
                             face_color=[1, 1, 0, 0.05], edge_width=2)


class SynthesisWidget(QWidget):
    """Generate / Cancel, settings, and region regeneration.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = get_state(napari_viewer)
        self.job: Job | None = None
        self.last_image = None
        prefs = load_settings()

        self.mask_combo = LayerCombo(napari_viewer, "labels")
        self.guidance = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.guidance.setRange(0.0, 10.0)
        self.guidance.setSingleStep(0.1)
        self.guidance.setValue(float(prefs["guidance_scale"]))
        self.guide_class = QComboBox()
        self.guide_class.setToolTip(
            "Steer the tissue toward a class of the model's noise-aware "
            "classifier (models trained with `histodiff train classifier`)")
        self.classifier_scale = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.classifier_scale.setRange(0.0, 20.0)
        self.classifier_scale.setSingleStep(0.5)
        self.classifier_scale.setValue(DEFAULT_CLASSIFIER_SCALE)
        self.steps = _spin(1, 1000, int(prefs["num_inference_steps"]))
        self.scheduler = _combo(SCHEDULERS, prefs["scheduler"])
        self.strategy = _combo(STRATEGIES, prefs["strategy"])
        self.seed = _spin(0, MAX_SEED, 0)
        self.random_seed = QCheckBox("random")
        self.window_batch = _spin(1, 256, int(prefs["window_batch"]))
        self.placement = QComboBox()
        for key, text in PLACEMENTS.items():
            self.placement.addItem(text, key)
        self.placement.setCurrentIndex(
            max(0, self.placement.findData(prefs["placement"])))
        self.generate_button = QPushButton("Generate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip("windows x steps x the seconds per window "
                                 "measured for this model on this device")

        self.image_combo = LayerCombo(napari_viewer, "rgb")
        self.draw_button = QPushButton("Draw region")
        self.margin = _spin(0, 4096, 64)
        self.margin.setToolTip("Pixels around the rectangle given to the model as "
                               "context (held fixed), so no border shows")
        self.regen_button = QPushButton("Regenerate region")
        self.undo_button = QPushButton("Undo regeneration")
        self.undo_button.setEnabled(False)
        self.generate_button.setToolTip(with_key(
            "Synthesise an image from the mask layer", GENERATE_KEY))
        self.cancel_button.setToolTip(with_key(
            "Stop the running synthesis or regeneration", CANCEL_KEY))
        self.undo_button.setToolTip(with_key(
            "Put back the pixels (and the export's list of runs) from before "
            "the last regeneration of the image layer", UNDO_REGION_KEY))

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form = QFormLayout()
        form.addRow("Mask layer", self.mask_combo)
        form.addRow("Guidance", self.guidance)
        form.addRow("Class", self.guide_class)
        form.addRow("Class scale", self.classifier_scale)
        form.addRow("Steps", self.steps)
        form.addRow("Scheduler", self.scheduler)
        form.addRow("Strategy", self.strategy)
        form.addRow("Seed", seed_row)
        form.addRow("Window batch", self.window_batch)
        form.addRow("Show image", self.placement)
        form.addRow("Time", self.estimate)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        regen = QFormLayout()
        regen.addRow("Image layer", self.image_combo)
        regen.addRow("Context margin", self.margin)
        regen_buttons = QHBoxLayout()
        regen_buttons.addWidget(self.draw_button)
        regen_buttons.addWidget(self.regen_button)
        regen_buttons.addWidget(self.undo_button)
        regen_box = QWidget()
        regen_layout = QVBoxLayout(regen_box)
        regen_layout.setContentsMargins(0, 0, 0, 0)
        regen_layout.addLayout(regen)
        regen_layout.addLayout(regen_buttons)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(section("Regenerate a region", regen_box))
        layout.addStretch(1)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self._refresh_layer)

        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.draw_button.clicked.connect(self.draw_region)
        self.regen_button.clicked.connect(self.regenerate)
        self.undo_button.clicked.connect(self.undo_region)
        self.image_combo.currentIndexChanged.connect(self._update_undo)
        self.viewer.layers.events.removed.connect(self._forget_undo)
        bind_viewer_keys(napari_viewer, self, {GENERATE_KEY: self.generate,
                                               CANCEL_KEY: self.cancel,
                                               UNDO_REGION_KEY: self.undo_region})
        if self.state.pipe is not None:
            self.margin.setValue(self.state.pipe.card.patch_size)
        self._set_guide_classes(self.state.guide_classes)
        connect_while_alive(self.state.guide_classes_changed, self,
                            self._set_guide_classes)
        connect_while_alive(self.state.loading_changed, self,
                            lambda _busy: self.update_estimate())
        self.steps.valueChanged.connect(lambda _v: self.update_estimate())
        self.strategy.currentTextChanged.connect(lambda _t: self.update_estimate())
        self.mask_combo.currentIndexChanged.connect(self._estimate_later)
        self.viewer.layers.events.inserted.connect(self._estimate_later)
        self.viewer.layers.events.removed.connect(self._estimate_later)
        self.update_estimate()

    def _estimate_later(self, *_args) -> None:
        QTimer.singleShot(0, self.update_estimate)

    def update_estimate(self) -> None:
        """Show how long Generate would take for the chosen mask layer."""
        from ..sampling.estimate import estimate_run

        pipe = self.state.pipe
        layer = self.mask_combo.layer()
        if pipe is None:
            self.estimate.setText("load the model to see an estimate")
            return
        if layer is None or np.ndim(layer.data) != 2:
            self.estimate.setText("choose a mask layer to see an estimate")
            return
        try:
            run = estimate_run(pipe, np.shape(layer.data), int(self.steps.value()),
                               self.strategy.currentText())
        except Exception as exc:  # noqa: BLE001 - an estimate never blocks work
            self.estimate.setText(f"no estimate ({type(exc).__name__})")
            return
        self.estimate.setText(f"{run.describe()} on {pipe.unet.device}")

    def _set_guide_classes(self, names) -> None:
        """Fill the class chooser from the model's classifier (if any)."""
        current = self.guide_class.currentData()
        self.guide_class.clear()
        self.guide_class.addItem("none (no class guidance)", None)
        for name in names or ():
            self.guide_class.addItem(name, name)
        self.guide_class.setCurrentIndex(max(0, self.guide_class.findData(current)))
        has = bool(names)
        self.guide_class.setEnabled(has)
        self.classifier_scale.setEnabled(has)

    # -- settings -------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The synthesis settings chosen in the panel (draws a random seed)."""
        if self.random_seed.isChecked():
            self.seed.setValue(int(np.random.default_rng().integers(0, MAX_SEED)))
        guide = {}
        if self.guide_class.currentData() is not None:
            guide = {"class_name": self.guide_class.currentData(),
                     "classifier_scale": round(float(self.classifier_scale.value()),
                                               3)}
        return {
            **guide,
            "guidance_scale": round(float(self.guidance.value()), 3),
            "num_inference_steps": int(self.steps.value()),
            "scheduler": self.scheduler.currentText(),
            "strategy": self.strategy.currentText(),
            "seed": int(self.seed.value()),
            "window_batch": int(self.window_batch.value()),
        }

    def _remember(self, params: dict[str, Any]) -> None:
        save_settings(placement=self.placement.currentData(),
                      **{k: v for k, v in params.items()
                         if k not in ("seed", "class_name", "classifier_scale")})

    @property
    def busy(self) -> bool:
        return self.job is not None

    def _set_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy)
        self.regen_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self._update_undo()

    # -- generate -------------------------------------------------------------
    def generate(self) -> None:
        """Start a synthesis from the chosen mask layer."""
        if self.busy:
            return
        mask_layer = self.mask_combo.layer()
        if mask_layer is None:
            notify_error(_input_error(
                "No mask layer: create one in the Mask panel (New mask, Generate "
                "mask or Open mask…), then pick it under 'Mask layer'."), "Generate")
            return
        mask = np.array(mask_layer.data)  # a snapshot: painting goes on meanwhile
        if mask.ndim != 2:
            notify_error(_input_error(
                f"The mask layer {mask_layer.name!r} has {mask.ndim} dimensions; "
                "pick a 2-D mask."), "Generate")
            return
        params = self.params()
        self._remember(params)
        self.job = Job("generate", info={"mask_layer": mask_layer, "mask": mask,
                                         "params": params})
        self._set_busy(True)
        self.status.setText("Loading the model…" if self.state.pipe is None
                            else "Starting…")
        self.state.load(then=self._start_generate, on_error=lambda _e: self._done())

    def _start_generate(self, pipe) -> None:
        from ..sampling.store import ZarrStore
        from ._live import CANVAS_CHUNK, LiveCanvas, new_canvas_folder
        from ._runs import synthesis_events

        job = self.job
        if job is None or job.kind != "generate":
            return
        if job.cancel_requested:
            self._done()
            return
        self.margin.setValue(pipe.card.patch_size)
        info = job.info
        try:
            # the canvas and its layer exist before the first step: the image
            # layer appears at once and fills in as the steps land
            store = ZarrStore(new_canvas_folder(), chunk=CANVAS_CHUNK)
            job.canvas = LiveCanvas(store, info["mask"].shape)
            job.canvas.create_arrays()
            job.layer = self._add_image_layer(job)
            self.image_combo.set_layer(job.layer)
            self._start_progress(job, info["params"]["num_inference_steps"])
            job.worker = make_worker(synthesis_events, pipe, info["mask"],
                                     info["params"], job.canvas)
        except Exception as exc:
            self._on_error(exc)
            self._done()
            return
        self._connect(job)
        job.worker.start()

    def _start_progress(self, job: Job, steps: int) -> None:
        from napari.utils import progress

        job.progress = progress(total=steps + 1, desc=f"HistoDiff {job.kind}")

    def _connect(self, job: Job) -> None:
        job.worker.yielded.connect(self._on_yield)
        job.worker.returned.connect(self._on_returned)
        job.worker.errored.connect(self._on_error)
        job.worker.finished.connect(self._done)

    # -- events (UI thread) ---------------------------------------------------
    def _on_yield(self, item) -> None:
        job = self.job
        if job is None:
            return
        if isinstance(item, tuple):
            if item[0] == "canvas":
                self._adopt_canvas(job, item[1])
            elif item[0] == "run":
                job.run, job.canvas = item[1], item[2]
                if job.layer is not None and job.kind == "generate":
                    job.layer.metadata[SETTINGS_KEY] = dict(job.run.settings)
                if job.cancel_requested:
                    job.run.cancel()
            elif item[0] == "before":
                job.info["before"] = item[1]
            return
        if isinstance(item, StartEvent):
            self.status.setText(f"Started: {item.total_steps} steps, about "
                                f"{item.windows_per_step:.0f} windows each")
        elif isinstance(item, WindowsEvent):
            self.status.setText(f"Step {item.step + 1}: {item.done}/{item.total} "
                                "windows")
        elif isinstance(item, StepEvent):
            if job.progress is not None:
                job.progress.update(1)
            self.status.setText(f"Step {item.step}/{item.total_steps}")
            self._schedule_refresh()
        elif isinstance(item, RegionDoneEvent):
            self._schedule_refresh()
        elif isinstance(item, FinishedEvent):
            if job.progress is not None:
                job.progress.update(1)
            self._schedule_refresh()
            self.status.setText(f"Done: {item.steps} steps in {item.seconds:.1f} s")
        elif isinstance(item, CancelledEvent):
            self._schedule_refresh()
            self.status.setText(f"Cancelled after {item.step} steps"
                                + ("; the region is unchanged"
                                   if job.kind == "regenerate" else ""))
            if job.layer is not None and job.kind == "generate":
                job.layer.name = f"{job.layer.name} (cancelled)"

    def _add_image_layer(self, job: Job):
        import dask

        mask_layer = job.info["mask_layer"]
        canvas = job.canvas
        scale = np.asarray(mask_layer.scale)[-2:]
        translate = np.asarray(mask_layer.translate, dtype=float)[-2:].copy()
        placement = self.placement.currentData()
        if placement == "beside":
            width = canvas.shape[1]
            gap = max(8, width // 32)
            translate[1] += (width + gap) * scale[1]
        with dask.config.set(scheduler="synchronous"):  # see _refresh_layer
            layer = self.viewer.add_image(
                canvas.layer_data(), rgb=True, multiscale=canvas.multiscale,
                cache=False, name=f"{mask_layer.name} synthetic", scale=scale,
                translate=translate, contrast_limits=(0, 255),
                metadata={SETTINGS_KEY: dict(job.info["params"]),
                          CANVAS_KEY: canvas.key, "mask_layer": mask_layer.name},
            )
        if placement == "grid":
            _grid(self.viewer).enabled = True
        else:
            self.viewer.reset_view()
        return layer

    def _adopt_canvas(self, job: Job, canvas) -> None:
        layer = job.layer
        layer.data = canvas.layer_data()
        layer.metadata[CANVAS_KEY] = canvas.key

    def _schedule_refresh(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh_layer(self) -> None:
        import dask

        job_layer = self.job.layer if self.job is not None else self.last_image
        if job_layer is not None and job_layer in self.viewer.layers:
            # napari reads the tiles on screen during refresh, on this thread;
            # dask reads them right here instead of through its thread pool
            # (every hand-over there waits for the worker to let go of the GIL)
            with dask.config.set(scheduler="synchronous"):
                job_layer.refresh(extent=False)

    def _on_returned(self, run) -> None:
        job = self.job
        if job is None or run is None or run.finished is None:
            return
        if job.kind == "generate" and job.layer is not None:
            job.layer.metadata[SETTINGS_KEY] = dict(run.settings)
            show_info(f"HistoDiff: image {job.layer.name!r} finished "
                      f"(seed {run.settings['seed']}).")
        elif job.kind == "regenerate":
            record = dict(run.settings)
            record.update(region=list(job.info["region"]),
                          context_box=list(job.info["crop"]))
            meta = job.layer.metadata.setdefault(SETTINGS_KEY, {})
            if "before" in job.info and job.canvas is not None:
                self.state.region_undo.push(job.canvas.key, job.info["region"],
                                            job.info["before"],
                                            meta.get("regenerated"))
            meta.setdefault("regenerated", []).append(record)
            show_info(f"HistoDiff: region {describe_region(job.info['region'])} "
                      f"of {job.layer.name!r} regenerated (seed "
                      f"{record['seed']}).")

    def _on_error(self, exc: BaseException) -> None:
        job = self.job
        action = "Regenerate region" if job and job.kind == "regenerate" \
            else "Generate"
        notify_error(exc, action)
        self.status.setText(f"Failed: {exc}")
        self._show_unknown_labels(exc, job)
        if job is not None and job.kind == "generate" and job.layer is not None \
                and job.run is None and job.layer in self.viewer.layers:
            # it failed before the first step: the layer would stay empty
            self.viewer.layers.remove(job.layer)
            job.layer = None

    def _show_unknown_labels(self, exc: BaseException, job) -> None:
        """Label ids the model does not know: outline where they are (a
        rectangle in the ``unknown labels`` shapes layer) and centre the view
        on them, so they can be repainted."""
        from ..errors import UnknownLabelsError
        from ._common import unwrap

        exc = unwrap(exc)
        layer = (job.info.get("mask_layer") if job is not None else None)
        if not isinstance(exc, UnknownLabelsError) or layer is None or \
                layer not in self.viewer.layers:
            return
        y0, y1, x0, x1 = exc.box
        corners = np.array([[y0, x0], [y1, x1]], float)
        world = np.array([layer.data_to_world(c) for c in corners])
        name = "unknown labels"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_shapes([world], shape_type="rectangle", name=name,
                               edge_color="magenta", face_color="transparent",
                               edge_width=2)
        self.viewer.layers.selection.active = layer
        camera(self.viewer).center = tuple(world.mean(axis=0))

    def _done(self, *_args) -> None:
        job, self.job = self.job, None
        if job is not None and job.progress is not None:
            job.progress.close()
        if job is not None and job.layer is not None:
            self.last_image = job.layer
        self._refresh_layer()
        self._set_busy(False)

    def cancel(self) -> None:
        """Stop the running job at its next window batch."""
        job = self.job
        if job is None:
            return
        job.cancel_requested = True
        self.status.setText("Cancelling…")
        if job.run is not None:
            job.run.cancel()
        elif job.worker is not None:
            job.worker.quit()

    # -- regenerate a region --------------------------------------------------
    def draw_region(self) -> None:
        """Select (or create) the regions layer in rectangle mode."""
        layer = regions_layer(self.viewer, create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def regenerate(self) -> None:
        """Regenerate the drawn rectangle of the image, its surroundings as context."""
        from ..masks.tools import context_box

        if self.busy:
            return
        image_layer = self.image_combo.layer()
        mask_layer = self.mask_combo.layer()
        try:
            if image_layer is None:
                raise _input_error("No image layer: generate an image first, or "
                                   "open one, and pick it under 'Image layer'.")
            if mask_layer is None:
                raise _input_error("No mask layer: pick the mask the image follows "
                                   "(paint the region's new classes into it first "
                                   "if you like).")
            shape = tuple(level0(image_layer).shape[:2])
            if tuple(mask_layer.data.shape) != shape:
                raise _input_error(
                    f"The mask {mask_layer.name!r} is {mask_layer.data.shape} but the "
                    f"image {image_layer.name!r} is {shape}; pick the mask the image "
                    "was generated from.")
            region = self._drawn_region(image_layer, mask_layer)
        except Exception as exc:
            notify_error(exc, "Regenerate region")
            return
        crop, inner = context_box(region, int(self.margin.value()), shape)
        y0, y1, x0, x1 = crop
        mask_crop = np.array(mask_layer.data[y0:y1, x0:x1])
        params = self.params()
        self._remember(params)
        self.job = Job("regenerate", layer=image_layer,
                       info={"region": region, "crop": crop, "inner": inner,
                             "mask": mask_crop, "params": params})
        self._set_busy(True)
        self.status.setText(f"Regenerating {describe_region(region)}…")
        self.state.load(then=self._start_regenerate, on_error=lambda _e: self._done())

    def undo_region(self) -> None:
        """Undo the last regeneration of the image layer: its old pixels and
        its list of regeneration records come back."""
        from ._live import canvas_of
        from ._undo import undo_into

        layer = self.image_combo.layer()
        canvas = canvas_of(layer) if layer is not None else None
        stack = self.state.region_undo
        if self.busy:
            notify_error(_input_error("A synthesis is running: wait for it or "
                                      "Cancel it, then undo."), "Undo regeneration")
            return
        if canvas is None or not stack.count(canvas.key):
            name = "no image layer" if layer is None else repr(layer.name)
            notify_error(_input_error(f"Nothing to undo for {name}: no region of it "
                                      "was regenerated in this session (or it was "
                                      "undone already)."), "Undo regeneration")
            return
        entry = stack.pop(canvas.key)
        undo_into(canvas, layer.metadata.setdefault(SETTINGS_KEY, {}), entry)
        layer.refresh(extent=False)
        self._update_undo()
        self.status.setText(f"Undone: {describe_region(entry.region)} is as before "
                            f"({stack.count(canvas.key)} more to undo)")

    def _update_undo(self, *_args) -> None:
        from ._live import canvas_of

        layer = self.image_combo.layer()
        canvas = canvas_of(layer) if layer is not None else None
        can = canvas is not None and self.state.region_undo.count(canvas.key) > 0
        self.undo_button.setEnabled(can and not self.busy)

    def _forget_undo(self, event) -> None:
        key = getattr(event.value, "metadata", {}).get(CANVAS_KEY)
        if key and not any(ly.metadata.get(CANVAS_KEY) == key
                           for ly in self.viewer.layers):
            self.state.region_undo.forget(key)
        self._update_undo()

    def _drawn_region(self, image_layer, mask_layer):
        """The rectangle in image pixels (drawn over the image or over its mask)."""
        from ..errors import InputError

        shapes = regions_layer(self.viewer)
        try:
            return image_region_from_shapes(shapes, image_layer)
        except InputError:
            if shapes is None or len(shapes.data) == 0:
                raise
            return image_region_from_shapes(shapes, mask_layer)

    def _start_regenerate(self, pipe) -> None:
        from ._live import canvas_of
        from ._runs import regeneration_events

        job = self.job
        if job is None or job.kind != "regenerate":
            return
        if job.cancel_requested:
            self._done()
            return
        info = job.info
        canvas = canvas_of(job.layer)
        self._start_progress(job, info["params"]["num_inference_steps"])
        job.worker = make_worker(
            regeneration_events, pipe, canvas, level0(job.layer), info["mask"],
            info["region"], info["crop"], info["inner"], info["params"],
            multiscale=bool(job.layer.multiscale))
        self._connect(job)
        job.worker.start()


def _input_error(message: str):
    from ..errors import InputError

    return InputError(message)


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _combo(items, current: str) -> QComboBox:
    box = QComboBox()
    box.addItems(list(items))
    if current in items:
        box.setCurrentText(current)
    return box


def _grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9 on,
    ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if hasattr(canvas, "grid") else viewer.grid
