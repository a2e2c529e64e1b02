"""``histodiff generate-many``: the jobs of a CSV manifest on a dask cluster."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..defaults import DEFAULT_SCHEDULER
from ..sampling.engine import DEFAULT_WINDOW_BATCH
from ..sampling.schedulers import scheduler_names
from ..sampling.strategies import DEFAULT_STRATEGY, STRATEGIES
from ._common import add_device_args, nonneg_int, positive_int, progress

EPILOG = """\
MANIFEST columns (header row first; paths relative to the manifest's folder,
which no path may leave): mask, out (OME-Zarr name under --out), seed,
guidance, steps, and optionally class, classifier_scale. Rows are named by
their line (the header is row 1). A finished output is skipped on a re-run.
Exit status: 0 all done or skipped, 1 some job failed, 2 bad input.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate-many", help="run the jobs of a CSV manifest on a dask cluster",
        description="Synthesise one OME-Zarr per row of a CSV manifest, the "
        "jobs spread over the workers of a dask cluster (a local one by "
        "default). Each worker loads the model once.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", metavar="MANIFEST.csv", help="the job manifest")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder of the outputs (made if missing)")
    p.add_argument("--model", default="demo",
                   help="model directory, Hub id or shipped model (default demo)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running dask scheduler (tcp://HOST:PORT); "
                   "default: start a cluster on this machine")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="workers of the local cluster (default: one per GPU, "
                   "else 2); not with --scheduler")
    p.add_argument("--threads-per-worker", type=positive_int, default=1,
                   help="threads (and torch threads) per worker (default 1)")
    p.add_argument("--sampler", default=DEFAULT_SCHEDULER,
                   help=f"diffusion scheduler: {', '.join(scheduler_names())} or "
                   f"a diffusers class (default {DEFAULT_SCHEDULER}; the "
                   "--scheduler of histodiff generate)")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=list(STRATEGIES),
                   help=f"window strategy (default {DEFAULT_STRATEGY})")
    p.add_argument("--blend-steps", type=nonneg_int, default=None,
                   help="random-shift: final blended steps (default 2)")
    p.add_argument("--window-batch", type=positive_int, default=DEFAULT_WINDOW_BATCH,
                   help=f"windows per UNet call (default {DEFAULT_WINDOW_BATCH})")
    p.add_argument("--overwrite", action="store_true",
                   help="run every row again, replacing its output")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE",
                   help="also write every row's result as JSON ('-': stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..distributed.cluster import open_client
    from ..distributed.jobs import JobOptions
    from ..distributed.manifest import read_manifest
    from ..distributed.runner import plan_jobs, run_manifest
    from ..errors import InputError
    from ..models.cache import resolve_source
    from ..outputs import atomic_output, check_output, check_writable
    from ..sampling.strategies import get_strategy

    # Everything cheap first, before any cluster starts: bad input exits 2.
    jobs = read_manifest(args.manifest)
    get_strategy(args.strategy, blend_steps=args.blend_steps)
    if args.scheduler is not None and args.workers is not None:
        raise InputError(f"--workers: {args.workers} given with --scheduler "
                         f"{args.scheduler}; a running cluster has its own "
                         "workers (scale them there)")
    model = str(resolve_source(args.model))
    if args.scheduler is None:  # the workers are this machine's
        from ..devices import resolve_device, resolve_dtype

        resolve_dtype(resolve_device(args.device), args.fp16)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a folder for the outputs")
    if args.json_out not in (None, "-"):
        check_output(args.json_out, args.overwrite, "--json")
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out, "--out")
    options = JobOptions(model=model, device=args.device, fp16=args.fp16,
                         sampler=args.sampler, strategy=args.strategy,
                         blend_steps=args.blend_steps,
                         window_batch=args.window_batch, overwrite=args.overwrite)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    start = time.perf_counter()
    todo, early = plan_jobs(jobs, out, options)
    with progress(len(jobs), "jobs", args.quiet, unit="job") as bar:
        def on_result(res) -> None:
            counts[res.status] += 1
            if res.status == "failed":
                bar.write(f"row {res.row} ({res.out}) failed: {res.error}",
                          file=sys.stderr)
            bar.update(1)
            bar.set_postfix(counts)

        results = list(early)
        for res in early:
            on_result(res)
        if todo:  # a cluster only when something is left to do
            with open_client(args.scheduler, args.workers, args.threads_per_worker,
                             args.device) as (client, info):
                bar.write(f"generate-many: {len(todo)} of {len(jobs)} jobs on "
                          f"{info.workers} worker(s) ({info.kind} cluster)",
                          file=sys.stderr)
                results += run_manifest(client, todo, out, options,
                                        gpu_resources=info.gpu_resources,
                                        on_result=on_result)
    seconds = time.perf_counter() - start
    print(f"generate-many: {counts['done']} done, {counts['skipped']} skipped "
          f"(finished before), {counts['failed']} failed in {seconds:.1f} s; "
          f"outputs in {out}", file=sys.stderr)
    if args.json_out:
        text = json.dumps({"seconds": seconds, **counts, "results": sorted(
            (r.to_dict() for r in results), key=lambda r: r["row"])}, indent=2)
        if args.json_out == "-":
            print(text)
        else:
            with atomic_output(args.json_out, args.overwrite, "--json") as tmp:
                tmp.write_text(text + "\n")
    return 1 if counts["failed"] else 0
