"""How responsive napari stays while HistoDiff synthesises an image.

A Qt timer asks to fire every ``--tick`` ms on the UI thread while a
synthesis runs in the plugin's worker; meanwhile the script pans, zooms and
paints the mask as a user would. The longest gap between two ticks, less
the tick, is the longest stall of the event loop (target: < 100 ms).

Run headless with::

    xvfb-run -a python benchmarks/responsiveness.py --size 256 --steps 10

and it prints one JSON object. Without ``--model`` it uses the shipped demo
model, or a tiny random model when the build has none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class EventLoopMeter:
    """Records the gaps between ticks of a repeating Qt timer.

    Parameters
    ----------
    tick_ms : int
        The timer interval.
    """

    def __init__(self, tick_ms: int = 5) -> None:
        from qtpy.QtCore import QTimer

        self.tick_ms = tick_ms
        self.gaps: list[float] = []
        self.times: list[float] = []
        self._last: float | None = None
        self.timer = QTimer()
        self.timer.setInterval(tick_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000.0)
            self.times.append(now)
        self._last = now

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def stats(self, since: float | None = None) -> dict:
        """Longest stall (gap minus tick), percentiles, tick count, in ms.

        ``since`` (a ``time.perf_counter()`` value) keeps the gaps that ended
        after it.
        """
        gaps = np.asarray(self.gaps)
        if since is not None:
            gaps = gaps[np.asarray(self.times) > since]
        if gaps.size == 0:
            gaps = np.zeros(1)
        stall = np.maximum(gaps - self.tick_ms, 0.0)
        return {
            "longest_stall_ms": round(float(stall.max()), 1),
            "p99_stall_ms": round(float(np.percentile(stall, 99)), 1),
            "median_gap_ms": round(float(np.median(gaps)), 1),
            "ticks": int(len(self.gaps)),
        }


def interact(viewer, mask_layer, t: float) -> None:
    """Pan, zoom and paint a little, as a user would (UI thread)."""
    cam = viewer.camera if not hasattr(viewer, "scene") else viewer.scene.camera
    center = np.asarray(cam.center, dtype=float)
    center[-1] += 2.0 * np.sin(t * 3)
    cam.center = tuple(center)
    cam.zoom = cam.zoom * (1.0 + 0.02 * np.sin(t * 5))
    h, w = mask_layer.data.shape
    y = int((0.5 + 0.4 * np.sin(t)) * (h - 1))
    x = int((0.5 + 0.4 * np.cos(t)) * (w - 1))
    mask_layer.paint((y, x), 2, refresh=True)


def measure_idle(viewer, mask_layer, seconds: float = 5.0, tick_ms: int = 5,
                 interact_ms: int = 50) -> dict:
    """The same measurement with no synthesis running (the baseline)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    meter = EventLoopMeter(tick_ms)
    start = time.perf_counter()
    user = QTimer()
    user.setInterval(interact_ms)
    user.timeout.connect(lambda: interact(viewer, mask_layer,
                                          time.perf_counter() - start))
    meter.start()
    user.start()
    while time.perf_counter() - start < seconds:
        app.processEvents()
        time.sleep(0.001)
    meter.stop()
    user.stop()
    return meter.stats()


def measure(viewer, widget, mask_layer, steps: int, tick_ms: int = 5,
            interact_ms: int = 50, timeout_s: float = 600.0,
            process=None) -> dict:
    """Run one synthesis from ``widget`` while measuring the event loop.

    ``widget`` is the plugin's dock (or its ``SynthesisWidget``); ``process``
    (optional) processes Qt events while waiting. ``longest_stall_ms`` covers
    the synthesis from its first step on (the layer is already there);
    ``longest_stall_from_click_ms`` also covers pressing Generate, which
    adds the image layer (and loads the model the first time).
    """
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_histodiff.sampling.events import StepEvent

    app = QApplication.instance()
    process = process or app.processEvents
    meter = EventLoopMeter(tick_ms)
    start = time.perf_counter()
    user = QTimer()
    user.setInterval(interact_ms)
    user.timeout.connect(lambda: interact(viewer, mask_layer,
                                          time.perf_counter() - start))
    counts = {"steps": 0}

    def on_item(item):
        if isinstance(item, StepEvent):
            counts["steps"] += 1

    synth = getattr(widget, "synthesis", widget)
    synth.steps.setValue(steps)
    synth.mask_combo.set_layer(mask_layer)
    meter.start()
    user.start()
    clicked = time.perf_counter()
    synth.generate()  # loads the model (once), adds the layer, starts the worker
    deadline = clicked + timeout_s
    while (synth.job is not None and synth.job.worker is None
           and time.perf_counter() < deadline):
        process()
        time.sleep(0.001)
    if synth.job is None:
        raise RuntimeError(f"synthesis did not start: {synth.status.text()}")
    synth.job.worker.yielded.connect(on_item)
    streaming = time.perf_counter()
    while synth.busy and time.perf_counter() < deadline:
        process()
        time.sleep(0.001)
    meter.stop()
    user.stop()
    result = meter.stats(since=streaming)
    whole = meter.stats()
    result.update(
        longest_stall_from_click_ms=whole["longest_stall_ms"],
        start_seconds=round(streaming - clicked, 2),
        synthesis_seconds=round(time.perf_counter() - streaming, 2),
        steps_seen=counts["steps"], status=synth.status.text(),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder or 'demo'")
    p.add_argument("--size", type=int, default=256, help="mask side in pixels")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tick", type=int, default=5, help="timer interval, ms")
    p.add_argument("--show", action="store_true", help="show the window")
    p.add_argument("--baseline", type=float, default=5.0,
                   help="seconds of interaction without synthesis, measured first")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="histodiff-bench-"))
    os.environ.setdefault("HISTODIFF_SETTINGS_FILE", str(tmp / "settings.json"))
    from napari_histodiff.models import demo_model_path

    model = args.model
    if model is None:
        if demo_model_path() is not None:
            model = "demo"
        else:
            from napari_histodiff.models.factory import init_model

            model = str(tmp / "tiny")
            init_model(model, "background,nuclei,dab,tissue", patch_size=32)
    import napari

    viewer = napari.Viewer(show=args.show)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histodiff", "HistoDiff")
    widget.model.source.setCurrentText(str(model))
    widget.model.device.setCurrentIndex(widget.model.device.findData("auto"))
    widget.mask.height.setValue(args.size)
    widget.mask.width.setValue(args.size)
    widget.mask.source.setCurrentIndex(widget.mask.source.findData("blobs"))
    widget.mask.generate_mask()
    mask_layer = viewer.layers["generated mask"]
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    loading = time.perf_counter()
    widget.model.load()  # Load model, as a user does first (not measured)
    while widget.model.state.pipe is None and widget.model.state.worker is not None:
        app.processEvents()
        time.sleep(0.005)
    load_seconds = round(time.perf_counter() - loading, 2)
    baseline = measure_idle(viewer, mask_layer, args.baseline, args.tick)
    result = measure(viewer, widget, mask_layer, args.steps, tick_ms=args.tick)
    pipe = widget.model.state.pipe
    result.update(
        model=str(model), device=str(pipe.unet.device) if pipe else None,
        size=[args.size, args.size], steps=args.steps, tick_ms=args.tick,
        cpu_count=os.cpu_count(),
        load_average=[round(v, 2) for v in os.getloadavg()],
        target_ms=100, baseline_without_synthesis=baseline,
        model_load_seconds=load_seconds,
    )
    print(json.dumps(result, indent=2))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
