"""``histodiff bench``: compare the sampling strategies, print JSON.

See :mod:`napari_histodiff.bench.sampling` for what is measured and
``docs/performance.md`` for figures and how to reproduce them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DeviceError, HistodiffError, InputError


def register(subparsers) -> None:
    """Add the ``bench`` subcommand."""
    from ..bench.sampling import (
        DEFAULT_MEMORY_SIZES,
        DEFAULT_SIZES,
        DEFAULT_STEPS,
        DEFAULT_STRATEGIES,
        QUICK_MEMORY_SIZES,
        QUICK_SIZES,
    )

    def ints(values) -> str:
        return ",".join(str(v) for v in values)

    p = subparsers.add_parser(
        "bench",
        help="benchmark the sampling strategies (windows, time, memory, seams)",
        description=(
            "Synthesise square canvases with each sampling strategy and print "
            "JSON with, per strategy and size: windows evaluated per step, wall "
            "time, wall time / UNet time, peak RSS and the seam score; then "
            "peak RSS of random-shift with the canvas on disk at two sizes. "
            "Each measurement runs in a fresh process. Default model: a "
            "freshly initialised tiny model with a fixed seed."
        ),
    )
    p.add_argument("--suite", choices=("strategies", "latent"), default="strategies",
                   help="strategies (default): the strategy table and memory "
                        "mode; latent: latent vs pixel model at equal output "
                        "size (default sizes 1024,2048, 5 steps, random-shift) "
                        "and latent peak RSS at 1024 and 4096 with the canvas "
                        "on disk")
    p.add_argument("--model", default=None,
                   help="model directory (default: a fresh tiny random model); "
                        "with --suite latent, the latent model")
    p.add_argument("--pixel-model", default=None,
                   help="--suite latent: the pixel model to compare with "
                        "(default: a fresh tiny random one, same UNet size)")
    p.add_argument("--sizes", default=None,
                   help=f"square canvas sides, comma-separated "
                        f"(default {ints(DEFAULT_SIZES)})")
    p.add_argument("--strategies", default=None,
                   help=f"comma-separated (default {ints(DEFAULT_STRATEGIES)})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"denoising steps per run (default {DEFAULT_STEPS})")
    p.add_argument("--seeds", default=None,
                   help="seeds per strategy and size, comma-separated; the seam "
                        "score is averaged over them (default 0)")
    p.add_argument("--scheduler", default="dpm++", help="default dpm++")
    p.add_argument("--guidance", type=float, default=2.0,
                   help="guidance scale (default 2.0)")
    p.add_argument("--window-batch", type=int, default=8,
                   help="windows per UNet call (default 8)")
    p.add_argument("--chunk", type=int, default=256,
                   help="chunk side of the scheduler step and zarr store "
                        "(default 256)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--memory-sizes", default=None,
                   help=f"canvas sides of the memory mode (canvas on disk), "
                        f"comma-separated (default {ints(DEFAULT_MEMORY_SIZES)})")
    p.add_argument("--memory-steps", type=int, default=1,
                   help="steps per memory-mode run (default 1)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the memory mode")
    p.add_argument("--no-table", action="store_true",
                   help="skip the strategy table (memory mode only)")
    p.add_argument("--in-process", action="store_true",
                   help="run the strategy table in this process (peak RSS is "
                        "then the process's, not the run's)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: sizes {ints(QUICK_SIZES)}, memory sizes "
                        f"{ints(QUICK_MEMORY_SIZES)}, 1 step, in-process table")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists")
    p.set_defaults(func=run)
    from .bench_metrics import register as register_metrics
    register_metrics(p)
    from .bench_augment import register as register_augment
    register_augment(p)


def _int_list(text: str | None, name: str, minimum: int) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--{name}: expected comma-separated integers, got "
                         f"{text!r}") from None
    if not values or min(values) < minimum:
        raise InputError(f"--{name}: expected integers >= {minimum}, got {text!r}")
    return values


def settings_from_args(args: argparse.Namespace):
    """Turn command-line arguments into :class:`BenchSettings`."""
    from ..bench.sampling import BenchSettings
    from ..sampling.strategies import STRATEGIES

    strategies = None
    if args.strategies is not None:
        strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown or not strategies:
            raise InputError(f"--strategies: {', '.join(unknown) or 'none given'} "
                             f"not among {', '.join(STRATEGIES)}")
    for name in ("steps", "memory_steps", "window_batch", "chunk"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    import math

    if not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise InputError(f"--guidance: must be a finite number >= 0, got "
                         f"{args.guidance}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads: must be >= 1, got {args.threads}")
    if args.model is not None:
        from ..models import SHIPPED_NAMES, resolve_model_path

        if args.model in SHIPPED_NAMES:
            args.model = str(resolve_model_path(args.model))
        if not Path(args.model).is_dir():
            raise InputError(f"--model: {args.model} is not a model directory")
    memory_sizes = _int_list(args.memory_sizes, "memory-sizes", 8)
    if args.no_memory:
        memory_sizes = ()
    sizes = _int_list(args.sizes, "sizes", 8)
    if args.no_table:
        sizes = ()
    values = {
        "model": args.model,
        "sizes": sizes,
        "strategies": strategies,
        "steps": args.steps,
        "seeds": _int_list(args.seeds, "seeds", 0),
        "scheduler": args.scheduler,
        "guidance": args.guidance,
        "window_batch": args.window_batch,
        "chunk": args.chunk,
        "device": args.device,
        "memory_sizes": memory_sizes,
        "memory_steps": args.memory_steps,
        "threads": args.threads,
    }
    if args.quick:
        return BenchSettings.quick_settings(**values)
    if args.in_process:
        values["isolate"] = False
    return BenchSettings(**{k: v for k, v in values.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print its JSON to stdout, progress to stderr."""
    from ..bench.sampling import format_table, run_benchmark
    from ..devices import resolve_device
    from ..models.factory import default_scheduler
    from ..outputs import check_output
    from ..sampling.schedulers import make_scheduler

    if args.suite == "latent":
        return _run_latent(args)
    settings = settings_from_args(args)
    if args.out is not None:
        check_output(args.out, args.overwrite, "--out", parents=True)
    # checked once here, not in each of the child processes
    try:
        resolve_device(args.device)
    except HistodiffError as exc:
        raise DeviceError(f"--{exc}") from exc
    make_scheduler(args.scheduler, default_scheduler().config)

    def log(message: str) -> None:
        print(f"histodiff bench: {message}", file=sys.stderr, flush=True)

    report = run_benchmark(settings, log=log)
    return _emit(args, report, format_table(report))


def _emit(args: argparse.Namespace, report: dict, table: str) -> int:
    """Write the JSON to --out (whole or not at all), print the table to
    stderr and the JSON to stdout; exit 1 when a measurement failed."""
    from ..outputs import atomic_output

    text = json.dumps(report, indent=2)
    if args.out is not None:
        with atomic_output(args.out, args.overwrite, "--out", parents=True) as tmp:
            tmp.write_text(text + "\n")
    print(table, file=sys.stderr)
    print(text)
    return 1 if report["errors"] else 0


def _run_latent(args: argparse.Namespace) -> int:
    """``--suite latent``: latent vs pixel at equal size, and latent memory."""
    from ..bench.latent import (
        LATENT_MEMORY_SIZES,
        LATENT_SIZES,
        LATENT_STEPS,
        format_latent_table,
        run_latent_benchmark,
    )
    from ..devices import resolve_device
    from ..outputs import check_output

    settings = settings_from_args(args)  # the shared checks
    if args.pixel_model is not None:
        from ..models import SHIPPED_NAMES, resolve_model_path

        if args.pixel_model in SHIPPED_NAMES:
            args.pixel_model = str(resolve_model_path(args.pixel_model))
        if not Path(args.pixel_model).is_dir():
            raise InputError(f"--pixel-model: {args.pixel_model} is not a model "
                             "directory")
    if args.out is not None:
        check_output(args.out, args.overwrite, "--out", parents=True)
    try:
        resolve_device(args.device)
    except HistodiffError as exc:
        raise DeviceError(f"--{exc}") from exc
    strategy = (settings.strategies[0] if args.strategies is not None
                else "random-shift")

    def log(message: str) -> None:
        print(f"histodiff bench: {message}", file=sys.stderr, flush=True)

    memory = _int_list(args.memory_sizes, "memory-sizes", 8) or LATENT_MEMORY_SIZES
    report = run_latent_benchmark(
        sizes=(() if args.no_table else
               _int_list(args.sizes, "sizes", 8) or LATENT_SIZES),
        memory_sizes=() if args.no_memory else memory,
        steps=args.steps or LATENT_STEPS, memory_steps=args.memory_steps,
        strategy=strategy, scheduler=args.scheduler, guidance=args.guidance,
        window_batch=args.window_batch, chunk=args.chunk, device=args.device,
        threads=args.threads, pixel_model=args.pixel_model,
        latent_model=args.model, log=log)
    return _emit(args, report, format_latent_table(report))
