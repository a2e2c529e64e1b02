"""The sampling benchmark behind ``histodiff bench``: cost, memory and seams.

For each sampling strategy and canvas size it measures, with a fixed model
(by default a freshly initialised tiny one with a fixed seed):

* windows evaluated per denoising step;
* wall time of the whole synthesis, and its ratio to the time spent inside
  the UNet calls alone (the engine's overhead);
* peak resident memory (RSS) of the process;
* the seam score (:func:`.sampling.seams.seam_score`) on a grid at the window
  size, averaged over seeds; for ``random-shift`` also on the grid of its
  last step (``last_grid_seam_score``), where window-to-window differences
  of the model would show. ``random-shift`` blends three grids on its final
  steps (:class:`.sampling.strategies.RandomShift`); its windows per plain
  step and per blended step are reported apart, and the mean per step of a
  run of the pipeline's default length is computed from them.

The memory mode runs ``random-shift`` with the canvas on disk (zarr) at two
sizes and compares peak RSS: with the canvas on disk it is set by the window
batch, not by the canvas. Every measurement runs in a fresh Python process
(``python -m napari_histodiff.bench.sampling CASE_JSON``) so that peak RSS
belongs to that run alone; ``isolate=False`` runs the strategy table in this
process instead (quick smoke runs), where peak RSS is the process's so far.

This module is pure: no Qt, no argument parsing (see :mod:`.cli.bench`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__

DEFAULT_SIZES = (1024, 2048)
DEFAULT_STRATEGIES = ("random-shift", "tiled", "multidiffusion", "diffinfinite")
DEFAULT_STEPS = 3  # random-shift: one plain step and its two blended final steps
DEFAULT_MEMORY_SIZES = (2048, 8192)
QUICK_SIZES = (64, 96)
QUICK_MEMORY_SIZES = (64, 128)
MODEL_CLASSES = "tumor,stroma,necrosis"
MODEL_PATCH = 64
MODEL_SEED = 0
_RESULT_MARK = "HISTODIFF-BENCH-RESULT "
PIPELINE_STEPS = 25  # the pipeline's default number of denoising steps

# Targets of the issue: (name, key, limit)
TARGETS = (
    ("random-shift windows per plain step / tiled", "rs_over_tiled", 1.3),
    (f"random-shift windows per step of a {PIPELINE_STEPS}-step run / tiled",
     "rs_run_over_tiled", 1.3),
    ("random-shift windows per plain step / diffinfinite", "rs_over_diffinfinite",
     0.6),
    ("random-shift wall time / UNet time", "rs_wall_over_unet", 1.15),
)
MEMORY_TARGET = ("peak RSS, largest / smallest memory size (canvas on disk)", 1.25)


@dataclass
class BenchSettings:
    """What ``histodiff bench`` measures and how.

    Parameters
    ----------
    model : str or None
        Model directory; None creates a fresh tiny model (seed
        :data:`MODEL_SEED`, window :data:`MODEL_PATCH`) in a temporary folder.
    sizes : sequence of int
        Square canvas sides of the strategy table.
    strategies : sequence of str
        Strategies to compare.
    steps : int
        Denoising steps per run.
    seeds : sequence of int
        Seeds per (strategy, size); the seam score is averaged over them.
    scheduler, guidance, window_batch, chunk, device
        Passed to the pipeline.
    memory_sizes : sequence of int
        Canvas sides of the memory mode; empty to skip it.
    memory_steps : int
        Denoising steps of each memory-mode run.
    isolate : bool
        Run each case of the strategy table in a fresh process.
    threads : int or None
        Torch CPU threads (None: torch's default).
    quick : bool
        Recorded in the output: a smoke run, not a measurement.
    """

    model: str | None = None
    sizes: Sequence[int] = DEFAULT_SIZES
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    steps: int = DEFAULT_STEPS
    seeds: Sequence[int] = (0,)
    scheduler: str = "dpm++"
    guidance: float = 2.0
    window_batch: int = 8
    chunk: int = 256
    device: str = "cpu"
    memory_sizes: Sequence[int] = DEFAULT_MEMORY_SIZES
    memory_steps: int = 1
    isolate: bool = True
    threads: int | None = None
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> BenchSettings:
        """Tiny canvases, one step, one thread, the table in-process: a smoke
        run for CI, not a measurement."""
        values: dict[str, Any] = {
            "sizes": QUICK_SIZES, "steps": 1, "seeds": (0,),
            "memory_sizes": QUICK_MEMORY_SIZES, "memory_steps": 1,
            "isolate": False, "quick": True, "threads": 1,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# -- inputs ------------------------------------------------------------------------
def benchmark_mask(height: int, width: int, num_classes: int, seed: int = 0,
                   band: int = 64) -> np.ndarray:
    """A uint8 label mask of smooth blobs whose borders follow no window grid.

    Three plane waves with wavelengths that are not multiples of any window
    size are summed and cut into classes ``1 .. num_classes - 1`` (all
    classes but ``unknown``). Built in bands of rows, so an 8192 x 8192 mask
    costs its 64 MiB and little more.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2024]))
    waves = []
    for wavelength, angle in ((347.0, 20.0), (211.0, 75.0), (523.0, 130.0)):
        k = 2 * np.pi / wavelength
        a = np.deg2rad(angle + rng.uniform(-10, 10))
        waves.append((k * np.cos(a), k * np.sin(a), rng.uniform(0, 2 * np.pi)))
    labels = max(1, num_classes - 1)
    out = np.empty((height, width), np.uint8)
    x = np.arange(width, dtype=np.float32)[None, :]
    for y0 in range(0, height, band):
        y = np.arange(y0, min(y0 + band, height), dtype=np.float32)[:, None]
        v = np.zeros((y.shape[0], width), np.float32)
        for kx, ky, phase in waves:
            v += np.sin(kx * x + ky * y + phase)
        cls = np.floor((v + 3.0) / 6.0 * labels).clip(0, labels - 1)
        out[y0 : y0 + y.shape[0]] = (cls + (1 if num_classes > 1 else 0)).astype(
            np.uint8
        )
    return out


def ensure_model(model: str | None, folder: str | Path) -> tuple[str, bool]:
    """The model directory to benchmark; create the default one if needed.

    Returns the path and whether it was freshly created.
    """
    if model is not None:
        return str(model), False
    from ..models.factory import init_model

    path = Path(folder) / "bench-model"
    init_model(path, MODEL_CLASSES, patch_size=MODEL_PATCH, size="tiny",
               seed=MODEL_SEED, overwrite=True)
    return str(path), True


def describe_model(path: str, fresh: bool) -> dict[str, Any]:
    """What the JSON says about the model that was measured."""
    from ..models.card import ModelCard

    card = ModelCard.load(path)
    weights = sum(
        f.stat().st_size for f in (Path(path) / "unet").glob("*.safetensors")
    )
    return {
        "path": None if fresh else str(path),
        "description": (
            f"freshly initialised tiny model, seed {MODEL_SEED} (untrained)"
            if fresh else "model directory given with --model"
        ),
        "provenance": card.provenance,
        "patch_size": card.patch_size,
        "space": card.space,
        "classes": card.classes.names,
        "unet_parameters": int(weights // 4),  # float32 safetensors, about
    }


# -- measuring one run -------------------------------------------------------------
def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None if unknown).

    On Linux this is ``VmHWM`` of ``/proc/self/status``, which starts afresh
    in a new program; ``ru_maxrss`` would not do for the fresh processes of
    the benchmark, as it keeps the parent's peak across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            info = psutil.Process().memory_info()
            return getattr(info, "peak_wset", info.rss) / 2**20
        except ImportError:
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _load(model: str, device: str, threads: int | None):
    import torch

    from ..pipelines.mask_to_image import HistoDiffPipeline

    if threads:
        torch.set_num_threads(int(threads))
    return HistoDiffPipeline.from_pretrained(model, device=device)


def run_case(pipe, size: int, strategy: str, seed: int, steps: int,
             scheduler: str = "dpm++", guidance: float = 2.0, window_batch: int = 8,
             chunk: int = 256) -> dict[str, Any]:
    """One synthesis of the strategy table, measured in this process."""
    from ..metrics.seams import seam_score

    mask = benchmark_mask(size, size, pipe.card.num_classes, seed)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    out = pipe(mask, guidance_scale=guidance, num_inference_steps=steps,
               scheduler=scheduler, strategy=strategy, seed=seed,
               window_batch=window_batch, store="memory", chunk=chunk)
    wall = time.perf_counter() - start
    stats = out.stats
    p = pipe.card.patch_size
    last_grid = None
    if strategy == "random-shift":
        # where the final step put its window borders: a model whose outputs
        # differ from window to window imprints them there if nearby steps
        # shared that grid
        from ..sampling.strategies import RandomShift

        oy, ox = RandomShift().offsets(steps - 1, p, seed)
        last_grid = _finite(seam_score(out.image, p, ((-oy) % p, (-ox) % p)))
    return {
        "strategy": strategy, "size": size, "seed": seed,
        "windows_per_step": [int(n) for n in stats["windows_per_step"]],
        "wall_seconds": wall,
        "engine_seconds": float(stats["seconds"]),
        "unet_seconds": float(stats["unet_seconds"]),
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_run_mb": rss_before,
        "seam_score": _finite(seam_score(out.image, p)),
        "last_grid_seam_score": last_grid,
        "blend_steps": int(out.settings.get("blend_steps", 0)),
    }


def run_memory_case(pipe, size: int, steps: int, folder: str | Path,
                    guidance: float = 2.0, window_batch: int = 8,
                    chunk: int = 256, scheduler: str = "dpm++") -> dict[str, Any]:
    """A ``random-shift`` run with the canvas in zarr chunks on disk.

    The image is left in the store (reading it back whole would put the
    canvas in memory, which is what is being measured).
    """
    mask = benchmark_mask(size, size, pipe.card.num_classes, 0)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    from ..sampling.strategies import RandomShift

    # plain steps only: the blended final steps read and write window by
    # window, so their memory does not grow with the canvas either, but on
    # one step they would triple the run time of the largest size
    run = pipe.prepare(mask, guidance_scale=guidance, num_inference_steps=steps,
                       scheduler=scheduler, strategy=RandomShift(blend_steps=0),
                       seed=0,
                       window_batch=window_batch, store="zarr",
                       store_path=Path(folder) / f"canvas-{size}.zarr", chunk=chunk)
    for _ in run.events():
        pass
    wall = time.perf_counter() - start
    engine = run.engine
    return {
        "size": size,
        "store": run.store.kind,
        "status": run.store.attrs["status"],
        "windows_per_step": [int(n) for n in engine.windows_per_step],
        "wall_seconds": wall,
        "unet_seconds": float(engine.denoiser.unet_seconds),
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_run_mb": rss_before,
        "mask_mb": mask.nbytes / 2**20,
    }


# -- fresh processes ---------------------------------------------------------------
def run_in_subprocess(case: dict[str, Any]) -> dict[str, Any]:
    """Run ``case`` (see :func:`_child`) in a fresh Python process."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "napari_histodiff.bench.sampling", json.dumps(case)],
        capture_output=True, text=True, env=env, check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}


def _run_case_dict(case: dict[str, Any], pipe=None) -> dict[str, Any]:
    if pipe is None:
        pipe = _load(case["model"], case["device"], case.get("threads"))
    common = {k: case[k] for k in ("guidance", "window_batch", "chunk", "scheduler")}
    if case["kind"] == "memory":
        with tempfile.TemporaryDirectory(prefix="histodiff-bench-") as folder:
            return run_memory_case(pipe, case["size"], case["steps"], folder,
                                   **common)
    return run_case(pipe, case["size"], case["strategy"], case["seed"],
                    case["steps"], **common)


def _child(case_json: str) -> int:
    result = _run_case_dict(json.loads(case_json))
    print(_RESULT_MARK + json.dumps(result), flush=True)
    return 0


# -- the whole benchmark -----------------------------------------------------------
def machine_info(device: str) -> dict[str, Any]:
    """Where the figures come from."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the runs (seeds) of one strategy at one size."""
    ok = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"strategy": runs[0]["strategy"], "size": runs[0]["size"],
                           "seeds": [r["seed"] for r in runs]}
    if not ok:
        row["error"] = runs[0]["error"]
        return row
    per_step = [n for r in ok for n in r["windows_per_step"]]
    wall = sum(r["wall_seconds"] for r in ok)
    unet = sum(r["unet_seconds"] for r in ok)
    seams = [r["seam_score"] for r in ok]
    valid = [s for s in seams if s is not None]
    row.update({
        "windows_per_step": float(np.mean(per_step)),
        "windows_per_step_runs": [r["windows_per_step"] for r in ok],
        "wall_seconds": wall / len(ok),
        "unet_seconds": unet / len(ok),
        "wall_over_unet": wall / unet if unet > 0 else None,
        "seconds_per_step": wall / sum(len(r["windows_per_step"]) for r in ok),
        "peak_rss_mb": max((r["peak_rss_mb"] or 0.0) for r in ok) or None,
        "seam_score": float(np.mean(valid)) if valid else None,
        "seam_score_std": float(np.std(valid)) if len(valid) > 1 else None,
        "seam_scores": seams,
    })
    blend = max(r.get("blend_steps", 0) for r in ok)
    if blend:  # random-shift: plain steps, and final steps that blend 3 grids
        runs = [(r["windows_per_step"], min(blend, len(r["windows_per_step"])))
                for r in ok]
        plain = [n for per_step, b in runs for n in per_step[:len(per_step) - b]]
        blended = [n for per_step, b in runs for n in per_step[len(per_step) - b:]]
        row["blend_steps"] = blend
        row["plain_windows_per_step"] = float(np.mean(plain)) if plain else None
        row["blended_windows_per_step"] = float(np.mean(blended))
        if plain and blend < PIPELINE_STEPS:
            # what a run of the pipeline's default length evaluates per step,
            # from the counts measured here
            row["windows_per_step_default_run"] = float(
                (row["plain_windows_per_step"] * (PIPELINE_STEPS - blend)
                 + row["blended_windows_per_step"] * blend) / PIPELINE_STEPS)
    last = [r.get("last_grid_seam_score") for r in ok]
    if any(v is not None for v in last):
        row["last_grid_seam_score"] = float(np.mean([v for v in last
                                                     if v is not None]))
        row["last_grid_seam_scores"] = last
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        row["errors"] = errors
    return row


def check_targets(rows: list[dict[str, Any]], memory: dict[str, Any] | None
                  ) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    by = {(r["strategy"], r["size"]): r for r in rows if "error" not in r}
    out = []
    for size in sorted({r["size"] for r in rows}):
        rs = by.get(("random-shift", size))
        if rs is None:
            continue
        values = {"rs_wall_over_unet": rs["wall_over_unet"]}
        plain = rs.get("plain_windows_per_step") or rs["windows_per_step"]
        for other, key in (("tiled", "rs_over_tiled"),
                           ("diffinfinite", "rs_over_diffinfinite")):
            if (other, size) in by:
                values[key] = plain / by[(other, size)]["windows_per_step"]
        if ("tiled", size) in by and rs.get("windows_per_step_default_run"):
            values["rs_run_over_tiled"] = (rs["windows_per_step_default_run"]
                                           / by[("tiled", size)]["windows_per_step"])
        for name, key, limit in TARGETS:
            if values.get(key) is not None:
                out.append({"target": name, "size": size, "value": values[key],
                            "limit": limit, "met": bool(values[key] <= limit)})
    if memory and memory.get("peak_rss_ratio") is not None:
        name, limit = MEMORY_TARGET
        out.append({"target": name, "size": memory["sizes"], "limit": limit,
                    "value": memory["peak_rss_ratio"],
                    "met": bool(memory["peak_rss_ratio"] <= limit)})
    return out


def run_benchmark(settings: BenchSettings,
                  log: Callable[[str], None] = lambda message: None
                  ) -> dict[str, Any]:
    """Run the benchmark described by ``settings``; return the JSON-able report."""
    import torch

    from ..sampling.strategies import get_strategy

    for name in settings.strategies:
        get_strategy(name)  # an InputError for unknown names, before any work
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = _load_average()
    with tempfile.TemporaryDirectory(prefix="histodiff-bench-model-") as folder:
        model, fresh = ensure_model(settings.model, folder)
        report: dict[str, Any] = {
            "benchmark": "histodiff bench",
            "software": f"napari-histodiff {__version__}",
            "quick": settings.quick,
            "started": started,
            "machine": machine_info(settings.device),
            "model": describe_model(model, fresh),
            "settings": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(settings).items()
                         if k != "model"},
        }
        if settings.threads:
            report["machine"]["torch_threads"] = settings.threads
        base = {"model": model, "device": settings.device,
                "threads": settings.threads, "guidance": settings.guidance,
                "window_batch": settings.window_batch, "chunk": settings.chunk,
                "scheduler": settings.scheduler}
        rows: list[dict[str, Any]] = []
        memory = None
        threads = torch.get_num_threads()
        try:
            pipe = None if settings.isolate else _load(model, settings.device,
                                                       settings.threads)
            _run_table(settings, base, pipe, rows, log)
            if settings.memory_sizes:
                memory = run_memory_mode(settings, base, log)
        finally:
            torch.set_num_threads(threads)
        report["results"] = rows
        if memory is not None:
            report["memory"] = memory
    report["targets"] = check_targets(rows, memory)
    report["load_average"] = {"start": load_start, "end": _load_average()}
    errors: list[str] = []
    for row in rows:
        errors += [row["error"]] if "error" in row else row.get("errors", [])
    if memory:
        errors += [r["error"] for r in memory["results"] if "error" in r]
    report["errors"] = errors
    return report


def _run_table(settings: BenchSettings, base: dict[str, Any], pipe,
               rows: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    """The strategy table: one row per (size, strategy), appended to ``rows``."""
    for size in settings.sizes:
        for strategy in settings.strategies:
            runs = []
            for seed in settings.seeds:
                case = {**base, "kind": "case", "size": int(size),
                        "strategy": strategy, "seed": int(seed),
                        "steps": settings.steps}
                t0 = time.perf_counter()
                result = (run_in_subprocess(case) if pipe is None
                          else _run_case_dict(case, pipe))
                result.setdefault("strategy", strategy)
                result.setdefault("size", int(size))
                result.setdefault("seed", int(seed))
                log(f"{strategy} {size}x{size} seed {seed}: "
                    f"{time.perf_counter() - t0:.1f} s"
                    + (f" ERROR {result['error']}" if "error" in result else ""))
                runs.append(result)
            rows.append(summarize(runs))


def run_memory_mode(settings: BenchSettings, base: dict[str, Any],
                    log: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS of random-shift with the canvas on disk, one process per size."""
    def one(size: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = run_in_subprocess({**base, "kind": "memory", "size": int(size),
                                    "steps": settings.memory_steps})
        result.setdefault("size", int(size))
        if "error" not in result and result["unet_seconds"] > 0:
            result["wall_over_unet"] = result["wall_seconds"] / result["unet_seconds"]
        log(f"memory random-shift {size}x{size} on disk: "
            f"{time.perf_counter() - t0:.1f} s"
            + (f" ERROR {result['error']}" if "error" in result else ""))
        return result

    results = [one(size) for size in settings.memory_sizes]
    ok = [r for r in results if "error" not in r and r.get("peak_rss_mb")]
    ratio = None
    if len(ok) >= 2:
        small = min(ok, key=lambda r: r["size"])
        large = max(ok, key=lambda r: r["size"])
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    return {
        "strategy": "random-shift", "store": "zarr", "steps": settings.memory_steps,
        "sizes": [int(s) for s in settings.memory_sizes],
        "results": results, "peak_rss_ratio": ratio,
    }


def format_table(report: dict[str, Any]) -> str:
    """A short human-readable summary of a report (for stderr)."""
    lines = [f"{'strategy':<15}{'size':>6}{'win/step':>10}{'wall s':>9}"
             f"{'wall/unet':>10}{'RSS MiB':>9}{'seam':>7}"]
    for r in report.get("results", []):
        if "error" in r:
            lines.append(f"{r['strategy']:<15}{r['size']:>6}  error: {r['error']}")
            continue
        seam = "nan" if r["seam_score"] is None else f"{r['seam_score']:.3f}"
        rss = "?" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(
            f"{r['strategy']:<15}{r['size']:>6}{r['windows_per_step']:>10.1f}"
            f"{r['wall_seconds']:>9.1f}{r['wall_over_unet']:>10.3f}{rss:>9}"
            f"{seam:>7}"
        )
    for r in (report.get("memory") or {}).get("results", []):
        if "error" not in r:
            lines.append(f"memory (zarr) {r['size']:>7}  peak RSS "
                         f"{r['peak_rss_mb']:.0f} MiB, wall {r['wall_seconds']:.1f} s")
    for t in report.get("targets", []):
        mark = "met" if t["met"] else "MISSED"
        lines.append(f"target {t['target']} at {t['size']}: {t['value']:.3f} "
                     f"(<= {t['limit']}) {mark}")
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    """``value``, or None for NaN and infinities (not valid JSON)."""
    return float(value) if math.isfinite(value) else None


if __name__ == "__main__":  # a measurement in a fresh process
    sys.exit(_child(sys.argv[1]))
