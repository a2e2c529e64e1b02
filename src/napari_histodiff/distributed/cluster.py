"""Connecting to a dask cluster, or starting one on this machine.

:func:`open_client` gives a :class:`distributed.Client`:

* ``scheduler`` given: connect to that running scheduler (workers started by
  ``dask worker``, ``dask-cuda-worker``, dask-jobqueue on SLURM ...);
* otherwise a cluster on this machine: one process per worker, each with
  ``threads_per_worker`` threads (1 by default: a synthesis already keeps a
  core or a GPU busy). When the device is a GPU and there are GPUs, there is
  one worker per GPU: ``dask_cuda.LocalCUDACluster`` when dask-cuda is
  installed (it pins each worker to its GPU), else a plain ``LocalCluster``
  whose workers each hold the resource ``GPU=1`` and pick their GPU by worker
  number (:func:`worker_device`).

Every worker gets :class:`.plugins.TorchThreads` (a worker plugin) so that
torch uses as many threads as the worker has, never all the machine's cores
in each.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import HistodiffError, InputError

#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT = 30


@dataclass
class ClusterInfo:
    """What :func:`open_client` started or connected to.

    Attributes
    ----------
    kind : str
        ``scheduler`` (connected to an address), ``local`` or ``local-cuda``.
    workers : int
        Workers at the start.
    gpu_resources : bool
        Jobs must ask for the resource ``GPU=1`` (local cluster with GPUs
        without dask-cuda).
    """

    kind: str
    workers: int
    gpu_resources: bool = False


def cuda_count() -> int:
    """Number of CUDA GPUs visible here (0 without torch CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def wants_gpu(device: str) -> bool:
    """True when ``device`` (auto, cuda, cuda:N, cpu, mps) means a CUDA GPU here."""
    kind = device.split(":")[0]
    return kind in ("auto", "cuda") and cuda_count() > 0


def worker_device(device: str) -> str:
    """The device a job on this worker uses for ``device``.

    On a worker of a local cluster without dask-cuda, ``auto``/``cuda`` on a
    machine with several GPUs become ``cuda:K`` with ``K`` the worker's number
    modulo the GPUs, so that the workers share the GPUs one each. Elsewhere
    (dask-cuda and batch-system workers see one GPU each) ``device`` is kept.
    """
    if device not in ("auto", "cuda"):
        return device
    count = cuda_count()
    if count < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    try:
        index = int(name)
    except (TypeError, ValueError):
        return device
    return f"cuda:{index % count}"


def _check_installed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise HistodiffError(
            "distributed: dask.distributed is not installed; pip install "
            "distributed (it is a dependency of napari-histodiff)")


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1, device: str = "auto",
                processes: bool = True, quiet: bool = True
                ) -> Iterator[tuple[object, ClusterInfo]]:
    """A dask client and what it runs on; the local cluster closes at exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); None starts a
        cluster on this machine.
    workers : int, optional
        Workers of the local cluster (default: the GPUs when the device is a
        GPU, else 2). Not allowed with ``scheduler``.
    threads_per_worker : int
        Threads of each local worker (and torch threads of every worker).
    device : str
        The device jobs ask for (decides between CPU and GPU workers).
    processes : bool
        Local workers in their own processes (default); False runs them as
        threads of this process (tests, debugging).
    quiet : bool
        Keep the cluster's own log lines below warnings.

    Raises
    ------
    InputError
        ``workers`` or ``threads_per_worker`` below 1, ``workers`` with
        ``scheduler``.
    HistodiffError
        The scheduler cannot be reached.
    """
    _check_installed()
    import logging

    from distributed import Client, LocalCluster

    from .plugins import TorchThreads

    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise InputError(f"workers: must be >= 1, got {workers!r}")
    if isinstance(threads_per_worker, bool) or int(threads_per_worker) < 1:
        raise InputError(f"threads_per_worker: must be >= 1, got "
                         f"{threads_per_worker!r}")
    if quiet:
        for name in ("distributed", "distributed.scheduler", "distributed.worker",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # "worker process still alive after 4 s, killing" when a local
        # cluster closes under load is expected, not a warning for users
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    plugin = TorchThreads(threads_per_worker)
    if scheduler is not None:
        if workers is not None:
            raise InputError(
                f"workers: {workers} given with scheduler {scheduler!r}; the "
                "number of workers is the cluster's when connecting to a "
                "scheduler (start or scale its workers instead)")
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise HistodiffError(
                f"scheduler: cannot connect to {scheduler!r} within "
                f"{CONNECT_TIMEOUT} s ({type(exc).__name__}: {exc}); check the "
                "address (tcp://HOST:PORT) and that the scheduler runs") from exc
        try:
            client.register_plugin(plugin)
            info = ClusterInfo("scheduler",
                               len(client.scheduler_info().get("workers", {})))
            yield client, info
        finally:
            client.close()
        return
    gpus = cuda_count() if wants_gpu(device) else 0
    n = int(workers) if workers is not None else (gpus or 2)
    common = dict(n_workers=n, threads_per_worker=int(threads_per_worker),
                  processes=processes, dashboard_address=None)
    if gpus and processes and importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(
            n_workers=min(n, gpus), threads_per_worker=int(threads_per_worker),
            dashboard_address=None)
        info = ClusterInfo("local-cuda", min(n, gpus))
    else:
        resources = {"GPU": 1} if gpus else None
        cluster = LocalCluster(resources=resources, **common)
        info = ClusterInfo("local", n, gpu_resources=bool(gpus))
    try:
        client = Client(cluster)
        try:
            client.register_plugin(plugin)
            yield client, info
        finally:
            client.close()
    finally:
        cluster.close()
