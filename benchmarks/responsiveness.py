"""How responsive napari stays while HistoDiff loads a model and synthesises.

A Qt timer asks to fire every ``--tick`` ms on the UI thread; the gaps
between its ticks are the event loop's gaps (a gap less the tick is a
stall; target: every gap < 100 ms). Five situations are measured in turn:

* ``idle``: nothing running, nobody interacting;
* ``interacting``: the script pans, zooms and paints the mask every 50 ms;
* ``model_load``: Load model pressed (the first load in the process);
* ``synthesis``: Generate pressed, the image streams in;
* ``synthesis_interacting``: the same while panning, zooming and painting.

Run headless with::

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python \
        benchmarks/responsiveness.py --size 128 --steps 6 --show --threads 1 \
        --out benchmarks/results/responsiveness-cpu.json

and it prints one JSON object (also written to ``--out``). Without
``--model`` it uses the shipped demo model, or a tiny random model when the
build has none. ``--diagnose`` samples the UI thread's stack during stalls
and reports where it was (``stall_sites``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
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
        # from now on: a stall right after start (before the first tick) counts
        self._last = time.perf_counter()
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
        ticks = int(gaps.size)
        if gaps.size == 0:
            gaps = np.zeros(1)
        stall = np.maximum(gaps - self.tick_ms, 0.0)
        return {
            "max_gap_ms": round(float(gaps.max()), 1),
            "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
            "median_gap_ms": round(float(np.median(gaps)), 1),
            "gaps_over_100ms": int((gaps > 100.0).sum()),
            "longest_stall_ms": round(float(stall.max()), 1),
            "p99_stall_ms": round(float(np.percentile(stall, 99)), 1),
            "ticks": ticks,
        }


class StallSampler:
    """Where the UI thread is while the event loop stalls (``--diagnose``).

    A watchdog thread looks every ``every_ms``; when the meter's last tick
    is older than ``after_ms`` it records the UI thread's innermost frames
    that belong to napari, vispy, Qt bindings or this project.
    """

    def __init__(self, meter: EventLoopMeter, after_ms: float = 60.0,
                 every_ms: float = 10.0) -> None:
        self.meter, self.after, self.every = meter, after_ms, every_ms
        self.sites: Counter = Counter()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.every / 1000.0):
            last = self.meter._last
            if last is None or (time.perf_counter() - last) * 1000 < self.after:
                continue
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                who = "ui" if ident == self._main else "other"
                self.sites[f"{who}: {_where(frame)}"] += 1

    def report(self, top: int = 8) -> list[dict]:
        return [{"samples": n, "where": site}
                for site, n in self.sites.most_common(top)]


def _where(frame) -> str:
    """The innermost frames of a thread: the first project/napari one and
    the two innermost of any kind."""
    stack = traceback.extract_stack(frame)
    ours = [f for f in stack if any(k in f.filename for k in (
        "napari", "vispy", "histodiff", "dask", "zarr", "diffusers", "torch"))
        and "responsiveness.py" not in f.filename]
    inner = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-2:]]
    first = (f"{Path(ours[-1].filename).name}:{ours[-1].lineno} {ours[-1].name}"
             if ours else "-")
    return f"{first} | {' < '.join(reversed(inner))}"


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
                 interact_ms: int | None = 50) -> dict:
    """The same measurement with no synthesis running (the baseline);
    ``interact_ms=None``: nobody interacts."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    meter = EventLoopMeter(tick_ms)
    start = time.perf_counter()
    user = QTimer()
    user.setInterval(interact_ms or 50)
    user.timeout.connect(lambda: interact(viewer, mask_layer,
                                          time.perf_counter() - start))
    meter.start()
    if interact_ms is not None:
        user.start()
    while time.perf_counter() - start < seconds:
        app.processEvents()
        time.sleep(0.001)
    meter.stop()
    user.stop()
    return meter.stats()


def measure(viewer, widget, mask_layer, steps: int, tick_ms: int = 5,
            interact_ms: int | None = 50, timeout_s: float = 600.0,
            process=None, diagnose: bool = False) -> dict:
    """Run one synthesis from ``widget`` while measuring the event loop.

    ``widget`` is the plugin's dock (or its ``SynthesisWidget``); ``process``
    (optional) processes Qt events while waiting. ``longest_stall_ms`` covers
    the synthesis from its first step on (the layer is already there);
    ``longest_stall_from_click_ms`` also covers pressing Generate, which
    adds the image layer (and loads the model the first time).
    ``interact_ms=None``: nobody interacts meanwhile.
    """
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_histodiff.sampling.events import StepEvent

    app = QApplication.instance()
    process = process or app.processEvents
    meter = EventLoopMeter(tick_ms)
    start = time.perf_counter()
    user = QTimer()
    user.setInterval(interact_ms or 50)
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
    sampler = StallSampler(meter).start() if diagnose else None
    if interact_ms is not None:
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
    if sampler is not None:
        sampler.stop()
    result = meter.stats(since=streaming)
    whole = meter.stats()
    result.update(
        longest_stall_from_click_ms=whole["longest_stall_ms"],
        start_seconds=round(streaming - clicked, 2),
        synthesis_seconds=round(time.perf_counter() - streaming, 2),
        steps_seen=counts["steps"], status=synth.status.text(),
    )
    if sampler is not None:
        result["stall_sites"] = sampler.report()
    return result


def measure_load(widget, tick_ms: int = 5, timeout_s: float = 600.0,
                 diagnose: bool = False) -> dict:
    """Press Load model and measure the event loop until the model is there."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    meter = EventLoopMeter(tick_ms)
    meter.start()
    sampler = StallSampler(meter).start() if diagnose else None
    start = time.perf_counter()
    widget.model.load()
    state = widget.model.state
    while state.pipe is None and time.perf_counter() - start < timeout_s:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    for _ in range(20):  # what the UI does once the model is there
        app.processEvents()
        time.sleep(0.005)
    meter.stop()
    result = meter.stats()
    result["load_seconds"] = round(seconds, 2)
    if sampler is not None:
        sampler.stop()
        result["stall_sites"] = sampler.report()
    if state.pipe is None:
        raise RuntimeError("the model did not load")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder or 'demo'")
    p.add_argument("--size", type=int, default=128, help="mask side in pixels")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--tick", type=int, default=10, help="timer interval, ms")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (the panel itself leaves one core free)")
    p.add_argument("--show", action="store_true", help="show the window")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds of each baseline (idle, interacting)")
    p.add_argument("--diagnose", action="store_true",
                   help="sample the UI thread's stack during stalls")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="histodiff-bench-"))
    os.environ.setdefault("HISTODIFF_SETTINGS_FILE", str(tmp / "settings.json"))
    load_before = [round(v, 2) for v in os.getloadavg()]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
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
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=args.show)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histodiff", "HistoDiff")
    app = QApplication.instance()
    while widget.model._device_worker is not None:  # the device probe
        app.processEvents()
        time.sleep(0.005)
    widget.model.source.setCurrentText(str(model))
    widget.model.device.setCurrentIndex(widget.model.device.findData("auto"))
    widget.mask.height.setValue(args.size)
    widget.mask.width.setValue(args.size)
    widget.mask.source.setCurrentIndex(widget.mask.source.findData("blobs"))
    widget.mask.generate_mask()
    while "generated mask" not in viewer.layers:
        app.processEvents()
        time.sleep(0.005)
    mask_layer = viewer.layers["generated mask"]
    tick, diag = args.tick, args.diagnose
    situations = {
        "idle": measure_idle(viewer, mask_layer, args.idle, tick, None),
        "interacting": measure_idle(viewer, mask_layer, args.idle, tick),
        "model_load": measure_load(widget, tick, diagnose=diag),
        "synthesis": measure(viewer, widget, mask_layer, args.steps, tick_ms=tick,
                             interact_ms=None, diagnose=diag),
        "synthesis_interacting": measure(viewer, widget, mask_layer, args.steps,
                                         tick_ms=tick, diagnose=diag),
    }
    pipe = widget.model.state.pipe
    import torch

    result = {
        "target_max_gap_ms": 100,
        "worst_max_gap_ms": max(r["max_gap_ms"] for r in situations.values()),
        "situations": situations,
        "model": str(model), "device": str(pipe.unet.device) if pipe else None,
        "size": [args.size, args.size], "steps": args.steps, "tick_ms": tick,
        "shown": args.show, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_start": load_before,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "napari": napari.__version__,
        "command": "python benchmarks/responsiveness.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
