"""Stepping a diffusers scheduler over a large canvas, one chunk at a time.

A diffusers scheduler steps a whole sample tensor and keeps solver history
(DPM-Solver++ keeps earlier model outputs, UniPC the last sample) in its own
attributes. To step a canvas that may not fit in memory, the canvas is cut
into fixed chunks and the scheduler steps each in turn: before a chunk, the
scheduler's scalar state (step index, order counters...) is restored to what
it was at the start of the step, and its sample-shaped state is loaded from
the store for that chunk; after it, the new sample-shaped state is saved back.
Every chunk so sees exactly the scheduler it would have seen alone, and any
diffusers scheduler works unchanged. In-memory and on-disk stores use the same
chunks and the same per-chunk random generators, so they agree bit for bit.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator

import numpy as np

from .store import CanvasStore
from .windows import chunk_regions

NOISE_TILE = 256
# Marks sample-shaped scheduler state that the scheduler has replaced by a
# non-tensor value (PNDM sets ``cur_sample = None``, ``cur_model_output = 0``).
_DROPPED = "dropped"


def chunk_seed(seed: int, step: int, chunk: int) -> int:
    """A seed for one chunk of one step (step -1: the initial noise)."""
    return int(np.random.SeedSequence([seed, step + 1, chunk]).generate_state(1)[0])


class ChunkedSchedulerStepper:
    """Steps ``scheduler`` over the ``latents`` array of ``store`` in chunks.

    Parameters
    ----------
    scheduler : diffusers.SchedulerMixin
        With ``set_timesteps`` already called.
    store : CanvasStore
        Holds ``latents`` and ``model_output`` (C, H, W).
    chunk : int
        Chunk side in canvas pixels.
    seed : int
        Seeds the noise of stochastic schedulers per chunk and step.
    """

    def __init__(self, scheduler, store: CanvasStore, chunk: int, seed: int):
        shape = store["latents"].shape
        self.scheduler = scheduler
        self.store = store
        self.seed = seed
        self.regions = chunk_regions(shape[-2], shape[-1], chunk)
        self._canvas_shape = tuple(shape)
        # name -> None (a tensor), list length (a list of tensors or None) or
        # _DROPPED (the attribute was a tensor and now holds _dropped[name])
        self._sample_state: dict[str, int | str | None] = {}
        self._dropped: dict[str, object] = {}
        self._present: dict[str, list[bool]] = {}
        params = inspect.signature(scheduler.step).parameters
        self._takes_generator = "generator" in params

    def init_noise(self, mean=None) -> None:
        """Fill ``latents`` with the initial noise, tile by tile.

        The noise tiles are fixed (:data:`NOISE_TILE`), so the initial noise
        depends on the seed only, not on the chunk size or the store.

        Parameters
        ----------
        mean : callable, optional
            ``mean(rows, cols) -> (C, h, w)``: the expected clean canvas there.
            The noise is then centred where the forward process puts a clean
            image with that value at the first timestep (``alpha_T * mean``
            for variance-preserving schedulers, ``mean`` for Euler-type ones),
            instead of on zero. Without it, a model that must guess the mean
            colour from pure noise at the first step guesses grey.
        """
        import torch

        lat = self.store["latents"]
        sigma = float(self.scheduler.init_noise_sigma)
        scale = 0.0
        if mean is not None:  # what add_noise does to a clean value of 1
            one = torch.ones(1, 1, 1, 1)
            scale = float(self.scheduler.add_noise(
                one, torch.zeros_like(one), self.scheduler.timesteps[:1]).item())
        tiles = chunk_regions(lat.shape[-2], lat.shape[-1], NOISE_TILE)
        for i, (sy, sx) in enumerate(tiles):
            g = torch.Generator().manual_seed(chunk_seed(self.seed, -1, i))
            shape = (lat.shape[0], sy.stop - sy.start, sx.stop - sx.start)
            tile = (torch.randn(shape, generator=g) * sigma).numpy()
            if mean is not None:
                tile = tile + scale * mean(sy, sx)
            lat[:, sy, sx] = tile

    def step(self, step: int, t) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
        """Step every chunk; yield ``(region, x0_estimate)`` after each.

        ``x0_estimate`` is the model's current estimate of the clean sample in
        that chunk (1, C, h, w), for previews.
        """
        import torch

        sched = self.scheduler
        # What the scheduler held at the start of this step: its scalar state,
        # and which sample-shaped state exists (chunks stepped during this step
        # must not see state that other chunks created in it).
        plan = dict(self._sample_state)
        present = {k: list(v) for k, v in self._present.items()}
        dropped = dict(self._dropped)
        snapshot = {k: v for k, v in sched.__dict__.items() if k not in plan}
        lat, out = self.store["latents"], self.store["model_output"]
        for i, (sy, sx) in enumerate(self.regions):
            sched.__dict__.update(copy.deepcopy(snapshot))
            self._load_sample_state(sy, sx, plan, present, dropped)
            x = torch.from_numpy(np.asarray(lat[:, sy, sx]))[None]
            eps = torch.from_numpy(np.asarray(out[:, sy, sx]))[None]
            kwargs = {"return_dict": True}
            if self._takes_generator:
                kwargs["generator"] = torch.Generator().manual_seed(
                    chunk_seed(self.seed, step, i))
            res = sched.step(eps, t, x, **kwargs)
            x0 = getattr(res, "pred_original_sample", None)
            if x0 is None:
                x0 = self._estimate_x0(x, eps, t)
            self._save_sample_state(sy, sx, x.shape)
            lat[:, sy, sx] = res.prev_sample[0].numpy()
            yield (sy, sx), x0[0].numpy()

    # -- scheduler state -------------------------------------------------------
    def _is_sample_tensor(self, value, shape) -> bool:
        import torch

        return isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(shape)

    def _save_sample_state(self, sy, sx, shape) -> None:
        tracked = self._sample_state
        for name, value in self.scheduler.__dict__.items():
            if self._is_sample_tensor(value, shape):
                self._write_state(f"state/{name}", sy, sx, value)
                tracked[name] = None
            elif name in tracked and not isinstance(value, list | tuple):
                # sample-shaped state the scheduler has reset (PNDM's
                # cur_sample to None): later chunks and steps must see that too
                tracked[name] = _DROPPED
                self._dropped[name] = copy.deepcopy(value)
            elif (
                isinstance(value, list | tuple)
                and (name in tracked
                     or any(self._is_sample_tensor(v, shape) for v in value))
                and all(v is None or self._is_sample_tensor(v, shape) for v in value)
            ):
                self._sample_state[name] = len(value)
                self._present[name] = [v is not None for v in value]
                for j, v in enumerate(value):
                    if v is not None:
                        self._write_state(f"state/{name}/{j}", sy, sx, v)

    def _write_state(self, key, sy, sx, tensor) -> None:
        if key not in self.store:
            self.store.create(key, self._canvas_shape, np.float32)
        self.store[key][:, sy, sx] = tensor[0].float().numpy()

    def _load_sample_state(self, sy, sx, plan, present, dropped) -> None:
        import torch

        def read(key):
            return torch.from_numpy(np.asarray(self.store[key][:, sy, sx]))[None]

        for name, length in plan.items():
            if length == _DROPPED:
                self.scheduler.__dict__[name] = copy.deepcopy(dropped[name])
            elif length is None:
                self.scheduler.__dict__[name] = read(f"state/{name}")
            else:
                self.scheduler.__dict__[name] = [
                    read(f"state/{name}/{j}") if there else None
                    for j, there in enumerate(present[name])
                ]

    def _estimate_x0(self, x, model_output, t):
        """Clean-sample estimate for schedulers that do not report one (VP)."""
        cfg = self.scheduler.config
        ab = self.scheduler.alphas_cumprod[int(t)].to(x.dtype)
        if cfg.get("prediction_type", "epsilon") == "v_prediction":
            return ab.sqrt() * x - (1 - ab).sqrt() * model_output
        if cfg.get("prediction_type", "epsilon") == "sample":
            return model_output
        return (x - (1 - ab).sqrt() * model_output) / ab.sqrt()
