"""One large canvas denoised by several dask workers, step by step.

The single-process engine (:class:`~napari_histodiff.sampling.engine.SynthesisEngine`)
does, at every step: plan the step's windows (a function of seed and step
alone), evaluate them in batches of ``window_batch`` through the denoiser,
put the outputs on a ``model_output`` canvas, then step the scheduler chunk
by chunk (:class:`~napari_histodiff.sampling.stepper.ChunkedSchedulerStepper`:
the scheduler's state is restored per chunk and the noise of stochastic
schedulers is seeded per chunk). Here the same work is split among workers,
and the same seed and settings give the same pixels, bit for bit.

Partition
---------
The canvas rows are cut into **bands** of whole chunk rows: band ``b`` owns
canvas rows ``[r0, r1)`` where ``r0`` and ``r1`` are multiples of ``chunk``
(the last band ends at the canvas edge), and ``chunk`` is both the side of
the chunks the scheduler steps and the chunk side of every array of the
shared zarr store. A band therefore owns whole zarr chunks, and no chunk has
two writers. Each band is a dask actor (:class:`BandWorker`) on its own
worker; it keeps its rows of the canvas, of ``model_output`` and of the
solver's history in memory.

Phases and barriers
-------------------
The shared store holds two canvas buffers, ``latents`` and ``latents_next``.
Step ``k`` reads buffer ``k % 2`` and writes buffer ``(k + 1) % 2``, so a
band reading its neighbours' rows (the halo that its windows reach into)
never reads rows being written in the same phase. The client waits for every
band to finish step ``k`` before it starts step ``k + 1`` (the barrier).
In one step a band

1. plans the step's windows exactly as the engine does and takes every
   *batch* (``window_batch`` consecutive windows of the plan) that holds at
   least one window whose on-canvas part meets its rows. Whole batches, not
   single windows: a UNet's output for a window depends, in the last bits,
   on which other windows share its batch, so the same batches make the
   same bits. Windows across a band border are evaluated by both bands; each
   keeps only its own rows (for overlapping plans, the weighted sums are
   accumulated in the plan's window order, as the engine does);
2. reads each window from the previous buffer (one block of rows: its band
   and the halo), calls the engine's own ``evaluate_arrays``;
3. steps its chunks with a ``ChunkedSchedulerStepper`` over its rows whose
   regions keep their global chunk numbers (the chunks of other bands are
   empty regions), so chunk ``i`` is restored and seeded as in one process;
4. writes its rows of the new canvas to the next buffer.

Step 0 is preceded by the initial noise, written by band 0 alone (the noise
tiles are seeded by their place on the whole canvas). At the end each band
writes its rows of the uint8 image; latent models are decoded by band 0 over
the whole canvas (the tiled decode of the engine).

Supported: pixel and latent models, the ``random-shift`` (with or without
blended final steps), ``tiled`` and ``multidiffusion`` strategies, every
scheduler, mask and class guidance. Not supported: ``diffinfinite`` (it
moves one window at a time, sequentially) and region regeneration.

The store must be on a file system every worker sees (a local disk for a
local cluster, a shared one on a batch cluster).
"""

from __future__ import annotations

import math
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: The two canvas buffers of the shared store (step k reads k % 2).
BUFFERS = ("latents", "latents_next")
#: A region that steps nothing (the chunks of other bands).
EMPTY = (slice(0, 0), slice(0, 0))


@dataclass(frozen=True)
class Band:
    """Canvas rows ``[row0, row1)`` of band ``index``."""

    index: int
    row0: int
    row1: int


def partition(height: int, chunk: int, parts: int) -> list[Band]:
    """Cut ``height`` canvas rows into at most ``parts`` bands of whole chunks.

    The ``ceil(height / chunk)`` chunk rows are shared out as evenly as
    possible (the first bands take one more when they do not divide); a
    canvas with fewer chunk rows than ``parts`` gets one band per chunk row.
    """
    if height < 1 or chunk < 1 or parts < 1:
        raise InputError(f"partition: height, chunk and parts must be >= 1, got "
                         f"{height}, {chunk}, {parts}")
    rows = math.ceil(height / chunk)
    parts = min(parts, rows)
    base, extra = divmod(rows, parts)
    bands, start = [], 0
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        bands.append(Band(i, start * chunk, min((start + n) * chunk, height)))
        start += n
    return bands


class BandWorker:
    """The rows of one band, kept on one worker (a dask actor).

    Parameters
    ----------
    model : str
        Model folder (as resolved by the client).
    device : str
    fp16 : bool
    mask : np.ndarray or path
        The whole mask (pixel resolution); a path is read on the worker.
    params : dict
        Keyword arguments of ``HistoDiffPipeline.prepare`` (guidance_scale,
        num_inference_steps, scheduler, strategy, seed, window_batch, chunk,
        noise_mean, class_name, classifier_scale).
    store_path : str
        The shared zarr store (created by the client).
    band : Band
    """

    def __init__(self, model: str, device: str, fp16: bool, mask, params: dict,
                 store_path: str, band: Band):
        from ..pipelines.cache import MODEL_CACHE
        from ..sampling.store import MemoryStore, ZarrStore
        from ..sampling.strategies import DiffInfinite
        from .cluster import worker_device

        if not isinstance(mask, np.ndarray):
            from ..io.masks import read_mask

            mask = read_mask(mask, "mask")
        self.pipe = MODEL_CACHE.get(model, worker_device(device), fp16)
        # The pipeline's own set-up (checks, conditions, guidance, scheduler,
        # noise mean); its store stays empty: the engine is never run.
        run = self.pipe.prepare(mask, store=MemoryStore(), **params)
        eng = self.engine = run.engine
        if isinstance(eng.strategy, DiffInfinite):
            raise InputError("strategy: diffinfinite moves one window at a time "
                             "and cannot be split among workers; use "
                             "random-shift, tiled or multidiffusion")
        self.settings = run.settings
        self.band = band
        self.shared = ZarrStore(store_path, chunk=eng.chunk)
        self.c, self.h, self.w = eng.canvas_shape
        self.height = band.row1 - band.row0
        eng.scheduler.set_timesteps(eng.num_inference_steps)
        self.timesteps = list(eng.scheduler.timesteps)
        self.windows = 0
        self.seconds = 0.0

    def steps(self) -> int:
        """Denoising steps of the run."""
        return len(self.timesteps)

    # -- set-up ------------------------------------------------------------------
    def create(self) -> None:
        """Band 0: make the shared arrays and write the initial noise."""
        from ..sampling.stepper import ChunkedSchedulerStepper

        eng, st = self.engine, self.shared
        for name in BUFFERS:
            st.create(name, (self.c, self.h, self.w), np.float32)
        st.create("image", (3, *eng.image_shape), np.uint8)
        whole = ChunkedSchedulerStepper(eng.scheduler, st, eng.chunk, eng.seed)
        whole.init_noise(eng.noise_mean)

    def start(self) -> None:
        """Take this band's rows of the initial canvas; set up the stepper."""
        from ..sampling.stepper import ChunkedSchedulerStepper
        from ..sampling.store import MemoryStore
        from ..sampling.windows import chunk_regions

        eng, r0, r1 = self.engine, self.band.row0, self.band.row1
        self.local = MemoryStore()
        lat = self.local.create("latents", (self.c, self.height, self.w), np.float32)
        lat[...] = np.asarray(self.shared[BUFFERS[0]][:, r0:r1, :])
        self.local.create("model_output", lat.shape, np.float32)
        self.stepper = ChunkedSchedulerStepper(eng.scheduler, self.local, eng.chunk,
                                               eng.seed)
        # every chunk of the canvas in the engine's order, so that chunk i is
        # restored and seeded as chunk i; other bands' chunks step nothing
        self.stepper.regions = [
            (slice(sy.start - r0, sy.stop - r0), sx) if r0 <= sy.start < r1
            else EMPTY for sy, sx in chunk_regions(self.h, self.w, eng.chunk)]

    # -- one step ----------------------------------------------------------------
    def _rows(self, win) -> tuple[int, int] | None:
        """This band's canvas rows under the window's on-canvas part."""
        cy = win.inside(self.h, self.w)[0]
        y0, y1 = max(cy.start, self.band.row0), min(cy.stop, self.band.row1)
        return (y0, y1) if y0 < y1 else None

    def step(self, k: int) -> dict[str, Any]:
        """Denoising step ``k`` of this band (see the module docstring)."""
        from ..arrays import take_2d
        from ..sampling.strategies import batched

        start = time.perf_counter()
        eng, r0 = self.engine, self.band.row0
        t = self.timesteps[k]
        plan = eng.strategy.plan(k, len(self.timesteps), self.h, self.w,
                                 eng.window, eng.seed)
        mine = [b for b in batched(plan.windows, eng.window_batch)
                if any(self._rows(win) is not None for win in b)]
        out = self.local["model_output"]
        if plan.overlapping:
            out[...] = 0.0
            weight = np.zeros((self.height, self.w), np.float32)
            win_weight = (np.ones((eng.window, eng.window), np.float32)
                          if plan.weight is None else plan.weight)
        if mine:
            reads = [win.indices(self.h, self.w)[0] for b in mine for win in b]
            lo = min(int(r.min()) for r in reads)
            hi = max(int(r.max()) for r in reads) + 1
            block = np.asarray(self.shared[BUFFERS[k % 2]][:, lo:hi, :])
        for batch in mine:
            xs = []
            for win in batch:
                ys, cols = win.indices(self.h, self.w)
                xs.append(take_2d(block, ys - lo, cols))
            eps = eng.evaluate_arrays(batch, xs, t)
            self.windows += len(batch)
            for win, e in zip(batch, eps, strict=True):
                rows = self._rows(win)
                if rows is None:
                    continue
                cy, cx, wy, wx = win.inside(self.h, self.w)
                y0, y1 = rows
                wy = slice(wy.start + y0 - cy.start, wy.start + y1 - cy.start)
                by = slice(y0 - r0, y1 - r0)
                if plan.overlapping:
                    ww = win_weight[wy, wx]
                    out[:, by, cx] = out[:, by, cx] + e[:, wy, wx] * ww
                    weight[by, cx] = weight[by, cx] + ww
                else:
                    out[:, by, cx] = e[:, wy, wx]
        if plan.overlapping:
            out[...] = out / weight
        for _ in self.stepper.step(k, t):
            pass
        self.shared[BUFFERS[(k + 1) % 2]][:, r0:self.band.row1, :] = \
            self.local["latents"]
        seconds = time.perf_counter() - start
        self.seconds += seconds
        return {"band": self.band.index, "step": k + 1, "batches": len(mine),
                "seconds": seconds}

    # -- the end -----------------------------------------------------------------
    def finish(self) -> None:
        """Pixel models: write this band's rows of the uint8 image."""
        from ..sampling.decode import to_uint8

        if self.engine.vae is None:
            self.shared["image"][:, self.band.row0:self.band.row1, :] = to_uint8(
                self.local["latents"])

    def decode(self) -> None:
        """Latent models, band 0: decode the final canvas into ``image``."""
        eng = self.engine
        if eng.vae is None:
            return
        final = BUFFERS[len(self.timesteps) % 2]
        from ..sampling.decode import decode_tiled

        p = next(eng.vae.parameters())
        for _ in decode_tiled(eng.vae, self.shared, final, "image", eng.image_shape,
                              eng.window, eng.latent_scaling, p.device, p.dtype):
            pass

    def info(self) -> dict[str, Any]:
        """What the client writes with the image, and this band's work."""
        card = self.pipe.card
        return {"classes": card.classes.to_list(), "settings": self.settings,
                "microns_per_pixel": card.microns_per_pixel,
                "band": [self.band.row0, self.band.row1], "windows": self.windows,
                "seconds": self.seconds}


def generate_canvas(client, model: str, mask, out: str | Path, *,
                    guidance_scale: float | None = None,
                    num_inference_steps: int | None = None,
                    scheduler: str | None = None, strategy=None, seed: int = 0,
                    window_batch: int | None = None, chunk: int | None = None,
                    noise_mean: str = "auto", class_name: str | None = None,
                    classifier_scale: float | None = None, device: str = "auto",
                    fp16: bool = False, bands: int | None = None,
                    store_path: str | Path | None = None, overwrite: bool = False,
                    on_step: Callable[[int, int], None] | None = None
                    ) -> dict[str, Any]:
    """Synthesise one canvas with its rows split among the cluster's workers.

    The pixels equal those of ``HistoDiffPipeline(...)(mask, ...)`` with the
    same settings in one process (see the module docstring for how).

    Parameters
    ----------
    client : distributed.Client
    model : str
        Model folder, Hub id or shipped name.
    mask : np.ndarray or path
        (H, W) integer labels, or a mask file every worker can read.
    out : path
        The OME-Zarr to write (renamed into place when complete).
    guidance_scale, num_inference_steps, scheduler, strategy, seed, \
window_batch, chunk, noise_mean, class_name, classifier_scale
        As for ``HistoDiffPipeline.__call__`` (None: its default). ``chunk``
        is also the band granularity: bands are whole chunk rows.
    device : str
    fp16 : bool
    bands : int, optional
        Number of bands (default: one per worker); at most one per worker.
    store_path : path, optional
        The shared zarr store, on a file system every worker sees (default:
        a hidden folder beside ``out``); removed at the end.
    overwrite : bool
        Replace an existing output this project wrote.
    on_step : callable, optional
        ``on_step(step, total)`` after each barrier.

    Returns
    -------
    dict
        ``out``, ``bands`` (rows and windows of each), ``seconds``.
    """
    from ..models.cache import resolve_source
    from ..models.card import ModelCard
    from ..outputs import check_output
    from ..sampling.engine import DEFAULT_CHUNK
    from ..sampling.store import CANVAS_PREFIX, ZarrStore

    start = time.perf_counter()
    out = check_output(out, overwrite, "out", folder=True)
    folder = resolve_source(model)
    card = ModelCard.load(folder)
    shape = mask.shape if isinstance(mask, np.ndarray) else None
    if shape is None:
        from ..io.masks import read_mask

        shape = read_mask(mask, "mask").shape
        mask = str(Path(mask).absolute())
    params = {k: v for k, v in dict(
        guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
        scheduler=scheduler, strategy=strategy, window_batch=window_batch,
        chunk=chunk).items() if v is not None}
    params.update(seed=seed, noise_mean=noise_mean, class_name=class_name,
                  classifier_scale=classifier_scale)
    step_chunk = params.get("chunk", DEFAULT_CHUNK)
    workers = list(client.scheduler_info()["workers"])
    if not workers:
        raise InputError("client: the cluster has no workers")
    if bands is not None and not 1 <= int(bands) <= len(workers):
        raise InputError(f"bands: must be from 1 to the {len(workers)} workers, "
                         f"got {bands}")
    height = math.ceil(shape[0] / card.vae_scale_factor)
    plan = partition(height, int(step_chunk), int(bands or len(workers)))
    store_path = Path(store_path) if store_path is not None else \
        out.absolute().parent / f"{CANVAS_PREFIX}{secrets.token_hex(4)}"
    if store_path.exists():  # it is removed at the end: it must be ours alone
        raise InputError(f"store_path: {store_path} exists; give a path that does "
                         "not exist yet (the shared canvas is made there and "
                         "removed when the image is written)")
    ZarrStore(store_path, chunk=int(step_chunk))  # made once, by the client
    actors = []
    try:
        futures = [client.submit(BandWorker, str(folder), device, fp16, mask,
                                 params, str(store_path), band, actor=True,
                                 workers=[workers[band.index]],
                                 allow_other_workers=False, pure=False)
                   for band in plan]
        actors = [f.result() for f in futures]
        actors[0].create().result()
        _all(a.start() for a in actors)
        steps = actors[0].steps().result()
        for k in range(steps):
            _all(a.step(k) for a in actors)  # the barrier of step k
            if on_step is not None:
                on_step(k + 1, steps)
        _all(a.finish() for a in actors)
        actors[0].decode().result()
        infos = _all(a.info() for a in actors)
        from ..io.omezarr import write_synthesis
        from ..models.classes import TissueClasses

        first = infos[0]
        settings = {**first["settings"], "distributed": {
            "bands": [i["band"] for i in infos], "chunk": int(step_chunk)}}
        image = ZarrStore(store_path, chunk=int(step_chunk))["image"]
        mask_array = mask if isinstance(mask, np.ndarray) else None
        if mask_array is None:
            from ..io.masks import read_mask

            mask_array = read_mask(mask, "mask")
        write_synthesis(out, image, mask_array,
                        TissueClasses.from_list(first["classes"]), settings,
                        first["microns_per_pixel"], overwrite=overwrite)
        return {"out": str(out), "bands": [
            {"rows": i["band"], "windows": i["windows"], "seconds": i["seconds"]}
            for i in infos], "seconds": time.perf_counter() - start}
    finally:
        del actors
        shutil.rmtree(store_path, ignore_errors=True)


def _all(futures) -> list:
    """Wait for every actor call (the barrier); the first error is raised."""
    futures = list(futures)
    return [f.result() for f in futures]
