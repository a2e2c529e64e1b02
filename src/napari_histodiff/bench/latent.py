"""Latent against pixel diffusion: ``histodiff bench --suite latent``.

Two models with the same UNet (size and window in canvas pixels differ only
by the VAE factor: a 64-pixel window is a 64-pixel canvas window for the pixel
model and a 16-latent-pixel one for the factor-4 latent model) synthesise the
same square canvases with the same strategy, steps, scheduler and threads,
each run in a fresh process (:func:`.sampling.run_in_subprocess`). The
latent figure is end to end: denoising plus the tiled decode. Then the latent
model runs with the canvas on disk at a small and a large size, and the peak
RSS of the two is compared.

By default both models are freshly initialised with a fixed seed (speed and
memory do not depend on the weights); ``latent_model``/``pixel_model`` take
trained ones (e.g. the shipped ``demo`` and ``demo-latent``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .sampling import (
    MODEL_CLASSES,
    MODEL_PATCH,
    MODEL_SEED,
    describe_model,
    machine_info,
    run_in_subprocess,
)

LATENT_SIZES = (1024, 2048)
LATENT_MEMORY_SIZES = (1024, 4096)
LATENT_STEPS = 5
#: Targets of the latent-diffusion issue: speed-up at equal output size, and
#: peak RSS of the largest memory size over the smallest (canvas on disk).
SPEEDUP_TARGET = 8.0
MEMORY_RATIO_TARGET = 1.5


def _models(folder: Path, pixel: str | None, latent: str | None,
            size: str) -> dict[str, tuple[str, bool]]:
    from ..models import resolve_model_path
    from ..models.factory import init_model

    out = {}
    for kind, given in (("pixel", pixel), ("latent", latent)):
        if given is not None:
            out[kind] = (str(resolve_model_path(given)), False)
            continue
        path = folder / f"{kind}-model"
        init_model(path, MODEL_CLASSES, patch_size=MODEL_PATCH, size=size,
                   latent=kind == "latent", seed=MODEL_SEED, overwrite=True)
        out[kind] = (str(path), True)
    return out


def run_latent_benchmark(sizes: Sequence[int] = LATENT_SIZES,
                         memory_sizes: Sequence[int] = LATENT_MEMORY_SIZES,
                         steps: int = LATENT_STEPS, memory_steps: int = 1,
                         strategy: str = "random-shift", scheduler: str = "dpm++",
                         guidance: float = 2.0, window_batch: int = 8,
                         chunk: int = 256, device: str = "cpu",
                         threads: int | None = None, pixel_model: str | None = None,
                         latent_model: str | None = None, size: str = "tiny",
                         log: Callable[[str], None] = lambda message: None,
                         ) -> dict[str, Any]:
    """Measure latent vs pixel synthesis; return the JSON-ready report.

    Returns
    -------
    dict
        ``models`` (what was measured), ``table`` (one row per model kind
        and size: wall seconds, megapixels per minute), ``speedup`` per size
        (pixel wall time / latent wall time), ``memory`` (latent, canvas on
        disk: peak RSS per size and their ratio), ``targets`` and ``errors``.
    """
    report: dict[str, Any] = {"suite": "latent", "machine": machine_info(device),
                              "settings": {"sizes": list(sizes),
                                           "memory_sizes": list(memory_sizes),
                                           "steps": steps,
                                           "memory_steps": memory_steps,
                                           "strategy": strategy,
                                           "scheduler": scheduler,
                                           "guidance": guidance,
                                           "window_batch": window_batch,
                                           "chunk": chunk, "threads": threads}}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="histodiff-bench-latent-") as tmp:
        models = _models(Path(tmp), pixel_model, latent_model, size)
        report["models"] = {k: describe_model(p, fresh) for k, (p, fresh)
                            in models.items()}
        base = {"device": device, "threads": threads, "guidance": guidance,
                "window_batch": window_batch, "chunk": chunk,
                "scheduler": scheduler}
        rows = []
        for side in sizes:
            for kind in ("pixel", "latent"):
                log(f"{kind} model, {side} x {side}, {steps} steps")
                case = {**base, "kind": "table", "model": models[kind][0],
                        "size": side, "strategy": strategy, "seed": 0,
                        "steps": steps}
                result = run_in_subprocess(case)
                if "error" in result:
                    errors.append(f"{kind} {side}: {result['error']}")
                    continue
                wall = result["wall_seconds"]
                rows.append({"model": kind, "size": side, "wall_seconds": wall,
                             "unet_seconds": result["unet_seconds"],
                             "megapixels_per_minute": side * side / 1e6 / wall * 60,
                             "peak_rss_mb": result["peak_rss_mb"],
                             "windows_per_step": result["windows_per_step"]})
        report["table"] = rows
        speedup = {}
        for side in sizes:
            by = {r["model"]: r for r in rows if r["size"] == side}
            if len(by) == 2:
                speedup[str(side)] = by["pixel"]["wall_seconds"] / \
                    by["latent"]["wall_seconds"]
        report["speedup"] = speedup
        memory = []
        for side in memory_sizes:
            log(f"latent model, canvas on disk, {side} x {side}")
            case = {**base, "kind": "memory", "model": models["latent"][0],
                    "size": side, "steps": memory_steps}
            result = run_in_subprocess(case)
            if "error" in result:
                errors.append(f"memory {side}: {result['error']}")
                continue
            memory.append({"size": side, "peak_rss_mb": result["peak_rss_mb"],
                           "wall_seconds": result["wall_seconds"],
                           "store": result["store"]})
    ratio = None
    if len(memory) >= 2 and memory[0]["peak_rss_mb"]:
        ratio = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
    report["memory"] = {"runs": memory, "largest_over_smallest": ratio}
    report["targets"] = [
        {"name": f"latent end to end >= {SPEEDUP_TARGET:g}x faster, {side} px",
         "value": value, "limit": SPEEDUP_TARGET, "met": value >= SPEEDUP_TARGET}
        for side, value in speedup.items()
    ] + ([{"name": "latent peak RSS, largest / smallest size, canvas on disk",
           "value": ratio, "limit": MEMORY_RATIO_TARGET,
           "met": ratio <= MEMORY_RATIO_TARGET}] if ratio is not None else [])
    report["errors"] = errors
    return report


def format_latent_table(report: dict[str, Any]) -> str:
    """A plain-text summary for the terminal."""
    lines = ["model   size   wall s   Mpx/min"]
    for r in report["table"]:
        lines.append(f"{r['model']:<7} {r['size']:>5} {r['wall_seconds']:8.1f} "
                     f"{r['megapixels_per_minute']:9.2f}")
    for side, value in report["speedup"].items():
        lines.append(f"speed-up at {side}: {value:.1f}x")
    ratio = report["memory"]["largest_over_smallest"]
    if ratio is not None:
        lines.append(f"latent peak RSS largest/smallest (disk canvas): {ratio:.2f}")
    return "\n".join(lines)
