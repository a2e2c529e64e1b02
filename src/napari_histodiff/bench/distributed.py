"""Benchmark of ``histodiff generate-many``: jobs per minute by workers.

``python -m napari_histodiff.bench.distributed`` makes a tiny random model
and a manifest of small CPU-bound jobs in a temporary folder, then runs the
jobs on local clusters of 1 and 2 worker processes (1 thread each, the CPU
device) and prints JSON: jobs per minute of each cluster and the speed-up
over one worker. The clock runs from the first job's submission to the last
result; starting the cluster and loading the model (once per worker, before
the clock) are not counted. It is a benchmark, not a test: the speed-up
needs as many free cores as workers (each job's CPU time is reported beside
its wall time, so a machine whose cores are busy with other work shows as
wall time well above CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _warm(model: str, device: str) -> int:
    """On a worker: load the model into the worker's cache and run one tiny
    synthesis and write (so that no first-use import is timed); its loads."""
    import ome_zarr.writer  # noqa: F401 - imported once, before the clock

    from ..pipelines.cache import MODEL_CACHE

    pipe = MODEL_CACHE.get(model, device)
    pipe(np.zeros((32, 32), np.uint8), num_inference_steps=1, strategy="tiled",
         store="memory")
    return MODEL_CACHE.loads


def make_jobs(folder: Path, jobs: int, size: int, steps: int) -> Path:
    """A tiny model and a manifest of ``jobs`` rows in ``folder``."""
    from ..models.factory import init_model

    init_model(folder / "model", "tumor,stroma,necrosis", patch_size=32,
               size="tiny", seed=0)
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2] = 1
    mask[size // 2 :, : size // 2] = 2
    mask[size // 3 : size // 2, size // 2 :] = 3
    np.save(folder / "mask.npy", mask)
    rows = [f"mask.npy,job{i:03d},{i},2,{steps}" for i in range(jobs)]
    path = folder / "manifest.csv"
    path.write_text("mask,out,seed,guidance,steps\n" + "\n".join(rows) + "\n")
    return path


def measure(manifest: Path, out: Path, workers: int, strategy: str
            ) -> dict[str, Any]:
    """Jobs per minute of a local cluster of ``workers`` processes."""
    from ..distributed.cluster import open_client
    from ..distributed.jobs import JobOptions
    from ..distributed.manifest import read_manifest
    from ..distributed.runner import run_manifest

    jobs = read_manifest(manifest)
    model = str(manifest.parent / "model")
    options = JobOptions(model=model, device="cpu", strategy=strategy)
    with open_client(workers=workers, threads_per_worker=1, device="cpu") as (
            client, _info):
        client.wait_for_workers(workers)
        client.run(_warm, model, "cpu")
        start = time.perf_counter()
        results = run_manifest(client, jobs, out, options)
        seconds = time.perf_counter() - start
    failed = [r.to_dict() for r in results if r.status != "done"]
    job_seconds = [r.seconds for r in results if r.status == "done"]
    cpu_seconds = [r.cpu_seconds for r in results if r.status == "done"]
    return {"workers": workers, "jobs": len(jobs), "failed": len(failed),
            "seconds": round(seconds, 3),
            "jobs_per_minute": round(60 * len(job_seconds) / seconds, 2),
            "mean_job_seconds": round(float(np.mean(job_seconds)), 3)
            if job_seconds else None,
            # CPU time of the thread that ran each job: equal for 1 and 2
            # workers when the jobs are CPU-bound; a wall time above it is
            # time spent waiting for a core
            "mean_job_cpu_seconds": round(float(np.mean(cpu_seconds)), 3)
            if cpu_seconds else None,
            "errors": failed[:3]}


def run(jobs: int = 16, size: int = 64, steps: int = 4,
        workers: Sequence[int] = (1, 2), strategy: str = "tiled"
        ) -> dict[str, Any]:
    """The benchmark's JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="histodiff-bench-dist-") as tmp:
        folder = Path(tmp)
        manifest = make_jobs(folder, jobs, size, steps)
        runs = [measure(manifest, folder / f"out-{n}", n, strategy)
                for n in workers]
    base = runs[0]["jobs_per_minute"]
    for r in runs:
        r["speedup"] = round(r["jobs_per_minute"] / base, 3) if base else None
    return {"benchmark": "generate-many jobs per minute",
            "job": {"mask": [size, size], "steps": steps, "strategy": strategy,
                    "model": "random tiny UNet, 32-px windows", "device": "cpu",
                    "threads_per_worker": 1},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average": list(os.getloadavg())},
            "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m napari_histodiff.bench.distributed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="mask side in pixels")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--strategy", default="tiled")
    args = p.parse_args(argv)
    for name in ("jobs", "size", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: must be >= 1, got {getattr(args, name)}")
    if min(args.workers) < 1:
        p.error(f"--workers: each must be >= 1, got {args.workers}")
    print(json.dumps(run(args.jobs, args.size, args.steps, args.workers,
                         args.strategy), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
