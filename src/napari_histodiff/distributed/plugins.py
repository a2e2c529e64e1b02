"""Worker plugins (imported only where dask.distributed is used)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class TorchThreads(WorkerPlugin):
    """Worker plugin: ``torch.set_num_threads(threads)`` on every worker.

    Parameters
    ----------
    threads : int
        Torch intra-op threads of each worker (its dask threads).
    """

    name = "histodiff-torch-threads"

    def __init__(self, threads: int) -> None:
        self.threads = int(threads)

    def setup(self, worker) -> None:
        """Set the threads when the worker starts (or joins later)."""
        import torch

        torch.set_num_threads(self.threads)
