"""Running the jobs of a manifest on a dask cluster, results as they finish.

:func:`run_manifest` skips rows whose output is already complete (without
sending them to a worker), submits the others as one task each, and hands
every :class:`~.jobs.JobResult` to ``on_result`` the moment it arrives
(``distributed.as_completed``), so a progress bar moves and failures are
reported while the rest still run. A task that dies with its worker is
reported as a failed row like any other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from .jobs import (
    COMPLETE,
    OTHER_SETTINGS,
    JobOptions,
    JobResult,
    output_state,
    run_job,
    state_error,
)
from .manifest import Job


def plan_jobs(jobs: Sequence[Job], out_dir: str | Path, options: JobOptions
              ) -> tuple[list[Job], list[JobResult]]:
    """Split ``jobs`` into those to run and the results of the others.

    A row whose output is complete is ``skipped``; one whose output exists
    with other settings (or was not written by this project), or whose mask
    file is missing, is ``failed`` at once, without a worker.
    """
    out_dir = Path(out_dir)
    todo: list[Job] = []
    early: list[JobResult] = []
    for job in jobs:
        target = out_dir / job.out
        state = output_state(target, job)
        if state == COMPLETE and not options.overwrite:
            early.append(JobResult(job.row, job.out, "skipped"))
            continue
        message = state_error(state, target, job)
        if message and not (options.overwrite and state == OTHER_SETTINGS):
            early.append(JobResult(job.row, job.out, "failed",
                                   error=f"out: {message}"))
        elif not job.mask.is_file():
            early.append(JobResult(job.row, job.out, "failed", error=(
                f"mask: {job.mask} does not exist or is not a file")))
        else:
            todo.append(job)
    return todo, early


def run_manifest(client, jobs: Sequence[Job], out_dir: str | Path,
                 options: JobOptions, *, gpu_resources: bool = False,
                 on_result: Callable[[JobResult], None] | None = None
                 ) -> list[JobResult]:
    """Run ``jobs`` on the cluster of ``client``; return their results.

    Call :func:`plan_jobs` first to skip finished rows without a cluster;
    ``jobs`` are checked again here (and once more on the worker).

    Parameters
    ----------
    client : distributed.Client
    jobs : sequence of Job
    out_dir : path
        Folder of the outputs (must exist).
    options : JobOptions
    gpu_resources : bool
        Ask each task for the worker resource ``GPU=1``.
    on_result : callable, optional
        Called with each result as it arrives (skipped rows first).

    Returns
    -------
    list of JobResult
        In the order they finished.
    """
    from distributed import as_completed

    results: list[JobResult] = []

    def report(res: JobResult) -> None:
        results.append(res)
        if on_result is not None:
            on_result(res)

    todo, early = plan_jobs(jobs, out_dir, options)
    for res in early:
        report(res)
    if not todo:
        return results
    token = secrets.token_hex(3)
    resources = {"GPU": 1} if gpu_resources else None
    futures, job_of = [], {}
    for job in todo:
        fut = client.submit(run_job, job, str(Path(out_dir)), options, pure=False,
                            key=f"histodiff-row{job.row}-{token}",
                            resources=resources)
        futures.append(fut)
        job_of[fut.key] = job
    try:
        for fut in as_completed(futures):
            job = job_of[fut.key]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - the worker died, etc.
                res = JobResult(job.row, job.out, "failed",
                                error=f"{type(exc).__name__}: {exc} (the task "
                                "failed on the cluster)")
            report(res)
    except BaseException:  # interrupted: do not leave the jobs running
        client.cancel(futures)
        raise
    return results
