"""The generators the synthesis widget runs in worker threads (no Qt here).

Each yields ``("run", run, canvas)`` first, so the widget can cancel and
show the canvas, then every engine event. Canvas and pyramid writes happen
here, in the worker thread; the UI thread only refreshes the layer.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from ..masks.tools import Region, region_mask
from ..sampling.events import (
    CancelledEvent,
    FinishedEvent,
    RegionDoneEvent,
    StepEvent,
)
from ._live import LiveCanvas


@contextlib.contextmanager
def spare_a_core():
    """Let torch use one core fewer than the machine has, for the UI thread.

    On a CPU, torch's intra-op threads otherwise take every core and napari's
    event loop waits for the scheduler: pan, zoom and paint stutter. The
    previous thread count is restored afterwards.
    """
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, cores - 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synthesis_events(pipe, mask: np.ndarray, params: dict[str, Any],
                     canvas: LiveCanvas):
    """Synthesise ``mask`` into ``canvas`` (a zarr canvas), yielding events.

    Returns the :class:`~napari_histodiff.pipelines.mask_to_image.SynthesisRun`.
    """
    run = pipe.stream(mask, store=canvas.store, **params)
    yield ("run", run, canvas)
    with spare_a_core():
        for event in run.events():
            if isinstance(event, StepEvent):
                for region in event.regions:
                    canvas.update(region)
            elif isinstance(event, RegionDoneEvent):
                canvas.update(event.region)
            yield event
    return run


def warm_imports() -> None:
    """Import what the first Generate would otherwise import on the UI thread.

    dask.array and zarr for the layers and the canvas (zarr's I/O thread
    too); and ``distributed`` where it is installed:
    dask imports it on the first ``compute`` (to look for a client), which
    is napari's first read of the image layer, and that took 0.8 s of the UI
    thread (measured by ``benchmarks/responsiveness.py``).
    """
    import importlib.util

    import dask.array  # noqa: F401 - imported here, off the UI thread
    import zarr

    # zarr runs its reads and writes on an event loop in a thread of its own,
    # started on first use: start it here, not in the first Generate (0.35 s)
    zarr.create_array(store={}, shape=(1,), dtype="uint8")
    try:
        if importlib.util.find_spec("distributed") is not None:
            import distributed  # noqa: F401
    except ImportError:  # a broken install: dask copes without it
        pass


def load_model(source: str, device: str, fp16: bool):
    """The cached pipeline (loaded once); also imports what the layers need.

    Runs in a worker, so that napari's UI thread never pays for these imports.
    """
    warm_imports()

    from ..pipelines.cache import MODEL_CACHE
    from ..sampling.estimate import seconds_per_window

    pipe = MODEL_CACHE.get(source, device, fp16)
    seconds_per_window(pipe)  # measured once per model and device, cached
    return pipe


def regeneration_events(pipe, canvas: LiveCanvas | None, image, mask_crop: np.ndarray,
                        region: Region, crop: Region, inner: Region,
                        params: dict[str, Any], multiscale: bool | None = None):
    """Regenerate ``region`` of a canvas with ``crop`` around it as context.

    Parameters
    ----------
    pipe : HistoDiffPipeline
    canvas : LiveCanvas or None
        The canvas of the image layer; None to copy ``image`` into a new one
        first (then ``("canvas", canvas)`` is yielded before anything else).
    image : array-like
        (H, W, 3) pixels of the layer, used when ``canvas`` is None.
    mask_crop : np.ndarray
        The mask under ``crop``.
    region, crop : Region
        The box to regenerate and the box around it (image pixels).
    inner : Region
        ``region`` in coordinates of ``crop``.
    params : dict
        Synthesis settings (guidance, steps, scheduler, strategy, seed...).
    multiscale : bool, optional
        Whether a new canvas is multiscale (match the layer's data).

    Only ``region`` of the canvas changes; on cancel it is restored. After
    ``("run", run, canvas)`` it yields ``("before", pixels)``: the (3, h, w)
    pixels of ``region`` before, so that the regeneration can be undone.
    """
    if canvas is None:
        canvas = LiveCanvas.from_image(image, multiscale=multiscale)
        yield ("canvas", canvas)
    context = np.ascontiguousarray(np.moveaxis(canvas.read(crop), 0, -1))
    before = canvas.read(region)
    regenerate = region_mask(mask_crop.shape, inner)
    run = pipe.stream(mask_crop, context_image=context, regenerate=regenerate,
                      store="memory", **params)
    yield ("run", run, canvas)
    yield ("before", before)  # the widget keeps them for Undo
    iy0, iy1, ix0, ix1 = inner
    try:
        with spare_a_core():
            for event in run.events():
                if isinstance(event, StepEvent):
                    canvas.write(region, run.store["preview"][:, iy0:iy1, ix0:ix1],
                                 final=False)
                elif isinstance(event, FinishedEvent):
                    canvas.write(region, run.store["image"][:, iy0:iy1, ix0:ix1])
                elif isinstance(event, CancelledEvent):
                    canvas.write(region, before, final=False)
                yield event
    except BaseException:
        canvas.write(region, before, final=False)  # leave the image as it was
        raise
    return run
