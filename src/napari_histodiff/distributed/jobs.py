"""One job of ``histodiff generate-many``, as a dask worker runs it.

:func:`run_job` reads the row's mask, takes the pipeline from the worker
process's :data:`~napari_histodiff.pipelines.cache.MODEL_CACHE` (so each
worker loads a model once and keeps it for every later job), synthesises,
and writes the OME-Zarr with :func:`napari_histodiff.io.omezarr.write_synthesis`
(into a temporary sibling renamed into place when complete, so an output that
exists is whole). It never raises: a failure comes back as a result with the
row and the error, so one bad row does not stop the others.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import DEFAULT_SCHEDULER
from ..errors import HistodiffError, OutputExistsError
from .manifest import Job

#: What :func:`output_state` says about an output folder.
MISSING, COMPLETE, OTHER_SETTINGS, NOT_OURS = (
    "missing", "complete", "other-settings", "not-ours")


@dataclass(frozen=True)
class JobOptions:
    """Settings shared by every job of a run (the manifest sets the rest).

    Attributes
    ----------
    model : str
        Model folder, Hub id or shipped name.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    fp16 : bool
    sampler : str
        Diffusion scheduler (``histodiff generate --scheduler``).
    strategy : str
    blend_steps : int or None
        random-shift only.
    window_batch : int
    overwrite : bool
        Replace outputs this project wrote instead of skipping them.
    """

    model: str
    device: str = "auto"
    fp16: bool = False
    sampler: str = DEFAULT_SCHEDULER
    strategy: str = "random-shift"
    blend_steps: int | None = None
    window_batch: int = 8
    overwrite: bool = False


@dataclass
class JobResult:
    """What a job reports back.

    ``status`` is ``done``, ``skipped`` (complete from an earlier run) or
    ``failed`` (``error`` says why). ``seconds`` is the job's wall time on
    its worker, ``cpu_seconds`` the CPU time of the thread that ran it.
    """

    row: int
    out: str
    status: str
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    model_loads: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_state(path: Path, job: Job) -> str:
    """Whether ``path`` holds the finished output of ``job``.

    Outputs are renamed into place only when complete, so an OME-Zarr of this
    project at ``path`` is whole. Its recorded settings are compared with the
    row (seed, steps, guidance): a finished output of other settings is
    :data:`OTHER_SETTINGS`, not a reason to skip.
    """
    from ..outputs import project_output, zarr_attrs

    if not (path.exists() or path.is_symlink()):
        return MISSING
    if project_output(path) != "ome-zarr":
        return NOT_OURS
    settings = zarr_attrs(path)["histodiff"].get("settings", {})
    same = (settings.get("seed") == job.seed
            and settings.get("num_inference_steps") == job.steps
            and settings.get("guidance_scale") == job.guidance)
    return COMPLETE if same else OTHER_SETTINGS


def state_error(state: str, path: Path, job: Job) -> str | None:
    """The message for an output that blocks ``job`` (None if none blocks)."""
    if state == OTHER_SETTINGS:
        return (f"{path} exists with other settings than {job.describe()} (seed "
                f"{job.seed}, steps {job.steps}, guidance {job.guidance:g}); "
                "remove it, name another output, or pass --overwrite")
    if state == NOT_OURS:
        return (f"{path} exists and napari-histodiff did not write it; remove it "
                "or name another output in the column out")
    return None


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job: Job, out_dir: str, options: JobOptions) -> JobResult:
    """Run one manifest row on this worker; never raises.

    Parameters
    ----------
    job : Job
    out_dir : str
        The folder of every output (``--out``).
    options : JobOptions
    """
    from ..pipelines.cache import MODEL_CACHE

    start, cpu = time.perf_counter(), time.thread_time()
    target = Path(out_dir) / job.out
    result = JobResult(job.row, job.out, "failed", worker=_worker_name())
    work = None
    try:
        state = output_state(target, job)
        if state == COMPLETE and not options.overwrite:
            result.status = "skipped"
            return result
        message = state_error(state, target, job)
        if message and not (options.overwrite and state == OTHER_SETTINGS):
            raise OutputExistsError(f"out: {message}")
        import dask

        from ..io.masks import read_mask
        from ..io.omezarr import write_synthesis
        from ..sampling.store import CANVAS_PREFIX
        from ..sampling.strategies import get_strategy
        from .cluster import worker_device

        mask = read_mask(job.mask, "mask")
        strategy = get_strategy(options.strategy, blend_steps=options.blend_steps)
        pipe = MODEL_CACHE.get(options.model, worker_device(options.device),
                               options.fp16)
        target.parent.mkdir(parents=True, exist_ok=True)
        # used only when the canvas is too large for memory (store "auto")
        work = target.parent / f"{CANVAS_PREFIX}{secrets.token_hex(4)}"
        # dask work inside a task (the OME-Zarr pyramid) would otherwise go
        # to the cluster: another job would start on this worker's thread
        # and the worker would use more cores than it was given
        with dask.config.set(scheduler="synchronous"):
            output = pipe(mask, guidance_scale=job.guidance,
                          num_inference_steps=job.steps, scheduler=options.sampler,
                          strategy=strategy, seed=job.seed,
                          window_batch=options.window_batch, store="auto",
                          store_path=work, class_name=job.class_name,
                          classifier_scale=job.classifier_scale)
            write_synthesis(target, output.store["image"], mask,
                            pipe.card.classes, output.settings,
                            pipe.card.microns_per_pixel,
                            overwrite=options.overwrite)
        result.status = "done"
        result.stats = {k: output.stats[k] for k in ("seconds", "windows")
                        if k in output.stats}
    except HistodiffError as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported with its row, not raised
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        result.error = f"{type(exc).__name__}: {exc}{where}"
    finally:
        if work is not None and work.exists():
            shutil.rmtree(work, ignore_errors=True)
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.thread_time() - cpu
        result.model_loads = MODEL_CACHE.loads
    return result
