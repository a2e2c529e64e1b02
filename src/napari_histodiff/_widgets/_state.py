"""What the widgets of one viewer share: the chosen model and its classes.

Every dock widget of a viewer gets the same :class:`HistoDiffState`, so the
model loaded in the Model panel is the one the Mask and Synthesis panels use.
Pipelines themselves live in :data:`~napari_histodiff.pipelines.cache.MODEL_CACHE`
and are loaded once per (folder, device, dtype), off the UI thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from psygnal import Signal

from ..errors import HistodiffError
from ..models.classes import TissueClasses
from ._common import busy_progress, make_worker, notify_error
from ._settings import load_settings, save_settings
from ._undo import RegionUndoStack

_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class HistoDiffState:
    """The model choice of one viewer and the pipeline once it is loaded.

    Signals
    -------
    model_changed(pipe)
        A pipeline finished loading (emitted on the UI thread).
    classes_changed(classes)
        The classes of the chosen model changed (known from its card even
        before the weights are loaded).
    loading_changed(bool)
        A load started (True) or ended (False).
    """

    model_changed = Signal(object)
    classes_changed = Signal(object)
    #: the class names of the chosen model's classifier (None: it has none)
    guide_classes_changed = Signal(object)
    loading_changed = Signal(bool)

    def __init__(self) -> None:
        self.progress = None  # the activity bar of a model load
        prefs = load_settings()
        self.source: str = str(prefs["model"])
        self.device: str = str(prefs["device"])
        self.fp16: bool = False
        self.pipe = None
        self.worker = None
        self._waiting: list[tuple] = []  # (then, on_error) of waiting callers
        self._classes: TissueClasses | None = None
        self.guide_classes: list[str] | None = None
        self.region_undo = RegionUndoStack()  # region regenerations to undo
        self.read_card()

    # -- choice ---------------------------------------------------------------
    def choose(self, source: str, device: str, fp16: bool = False) -> None:
        """Choose a model (not loaded yet); updates the classes from its card."""
        changed = (source, device, fp16) != (self.source, self.device, self.fp16)
        self.source, self.device, self.fp16 = source, device, fp16
        if changed:
            self.pipe = None
            self.read_card()

    def read_card(self) -> TissueClasses | None:
        """Read the classes from the chosen model's card (no weights)."""
        from ..models.cache import resolve_source
        from ..models.card import ModelCard
        from ..models.classifier import classifier_class_names

        guide = None
        try:
            folder = resolve_source(self.source, download=False)
            classes = ModelCard.load(folder).classes
            guide = classifier_class_names(folder)
        except HistodiffError:
            classes = None
        self._set_classes(classes)
        if guide != self.guide_classes:
            self.guide_classes = guide
            self.guide_classes_changed.emit(guide)
        return classes

    def _set_classes(self, classes: TissueClasses | None) -> None:
        if classes != self._classes:
            self._classes = classes
            self.classes_changed.emit(classes)

    @property
    def classes(self) -> TissueClasses | None:
        """The chosen model's classes, or None when they are not known yet."""
        if self.pipe is not None:
            return self.pipe.card.classes
        return self._classes

    @property
    def loading(self) -> bool:
        return self.worker is not None

    # -- loading --------------------------------------------------------------
    def load(self, then: Callable[[Any], None] | None = None,
             on_error: Callable[[BaseException], None] | None = None) -> None:
        """Load the chosen model in a worker thread; call ``then(pipe)`` after.

        A pipeline already loaded is handed over at once. Errors become
        notifications (and ``on_error`` is called).
        """
        from ._runs import load_model

        if self.pipe is not None:
            if then is not None:
                then(self.pipe)
            return
        self._waiting.append((then, on_error))
        if self.worker is not None:
            return
        source, device, fp16 = self.source, self.device, self.fp16
        worker = make_worker(load_model, source, device, fp16)
        self.progress = busy_progress(f"Loading model {source}")

        def release() -> None:
            if self.worker is worker:
                self.worker = None
                self.progress.close()
                self.loading_changed.emit(False)

        def done(pipe) -> None:
            release()
            if (source, device, fp16) != (self.source, self.device, self.fp16):
                self._load_next()  # the choice changed while loading
                return
            self.pipe = pipe
            save_settings(model=source, device=device)
            self._set_classes(pipe.card.classes)
            self.model_changed.emit(pipe)
            waiting, self._waiting = self._waiting, []
            for callback, _ in waiting:
                if callback is not None:
                    callback(pipe)

        def failed(exc: BaseException) -> None:
            release()
            waiting, self._waiting = self._waiting, []
            notify_error(_for_panel(exc, device), "loading the model")
            for _, errback in waiting:
                if errback is not None:
                    errback(exc)

        def finished() -> None:
            release()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self.worker = worker
        self.loading_changed.emit(True)
        worker.start()

    def _load_next(self) -> None:
        """Load the current choice for the callers still waiting."""
        waiting, self._waiting = self._waiting, []
        for then, on_error in waiting or [(None, None)]:
            self.load(then, on_error)


def _for_panel(exc: BaseException, device: str) -> BaseException:
    """Reword a missing-device error for the Model panel (not the CLI)."""
    from ..devices import available_devices
    from ..errors import DeviceError
    from ._common import unwrap

    exc = unwrap(exc)
    if not isinstance(exc, DeviceError):
        return exc
    present = ", ".join(available_devices())
    return DeviceError(f"device {device!r} is not available on this machine "
                       f"(present: {present}). Choose 'auto' or a device marked "
                       "'present' in the Model panel.")


def get_state(viewer) -> HistoDiffState:
    """The shared state of ``viewer`` (created on first use)."""
    state = _STATES.get(viewer)
    if state is None:
        state = HistoDiffState()
        _STATES[viewer] = state
    return state
