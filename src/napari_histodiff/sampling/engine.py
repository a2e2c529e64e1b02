"""The synthesis engine: denoise a canvas of any size window by window.

The engine owns the loop; a :class:`~.strategies.Strategy` only says which
windows to evaluate. It works on a :class:`~.store.CanvasStore` so the same
code serves small canvases in memory and whole-slide canvases on disk, and it
is a generator of :mod:`.events`: every event is a moment where the consumer
may look at the store (``preview``, ``image``) or cancel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from ..arrays import take_2d
from .decode import decode_tiled, to_uint8
from .events import (
    CancelledEvent,
    Event,
    FinishedEvent,
    RegionDoneEvent,
    StartEvent,
    StepEvent,
    WindowsEvent,
)
from .rows import RowBands
from .stepper import ChunkedSchedulerStepper
from .store import CanvasStore
from .strategies import DiffInfinite, Strategy, Tiled, batched
from .windows import Window

DEFAULT_WINDOW_BATCH = 8
DEFAULT_CHUNK = 256
#: Smallest chunk the scheduler steps: below it the per-chunk overhead of
#: restoring the scheduler state dominates (and 0 or negative is no chunk).
MIN_CHUNK = 8


class Cancelled(Exception):
    """Raised inside the engine loop when a cancel was requested."""


class SynthesisEngine:
    """Runs one synthesis over a canvas store.

    Parameters
    ----------
    denoiser : napari_histodiff.conditioning.Denoiser
        The UNet with its conditions and guidance terms: called with the
        noisy windows, the timestep and where each window lies.
    scheduler : diffusers scheduler
        A fresh scheduler (the engine calls ``set_timesteps``).
    store : CanvasStore
        Where the canvas, previews and the final image live.
    strategy : Strategy
    canvas_shape : (C, h, w)
        Shape of the diffusion canvas (latent shape for latent models).
    image_shape : (H, W)
        Output image size in pixels.
    window : int
        Window side on the canvas.
    num_inference_steps : int
    seed : int
        Seeds the initial noise, stochastic solver noise and window positions.
    window_batch : int
        Windows per UNet call (the conditional and null branch double it).
    chunk : int
        Side of the chunks the scheduler steps (canvas pixels).
    vae : AutoencoderKL or None
        Decoder for latent models.
    latent_scaling : float
    factor : int
        Image pixels per canvas pixel along a side (the VAE factor, else 1).
    preview_every : int
        Latent models without ``preview_map``: decode a preview every this
        many steps (pixel models update the preview every step at no cost).
    preview_map : (weight, bias), optional
        Latent models: arrays (3, C) and (3,) mapping the denoised latents
        (``x0``) per canvas pixel to RGB in [-1, 1] (the model card's
        ``latent_preview``). With it the preview follows every step at almost
        no cost (a 3 x C product per latent pixel, shown in blocks of
        ``factor`` pixels) and the VAE decodes once, at the end.
    context : np.ndarray, optional
        (C, h, w) clean canvas values to hold where ``keep`` is True (region
        regeneration): after every step those pixels are replaced by the
        context noised to the step's level, so the regenerated pixels are
        denoised in agreement with their surroundings, and at the end they
        equal the context exactly.
    keep : np.ndarray, optional
        (h, w) bool, True where the context is held.
    paste : (image, alpha), optional
        Latent region regeneration: (3, H, W) uint8 pixels and (H, W) float32
        weights in [0, 1]. The final image is ``alpha * image + (1 - alpha) *
        decoded``, so kept pixels keep their exact values (a VAE decode would
        only reconstruct them) and the regenerated ones blend in over a
        feathered band at the region's edge.
    noise_mean : callable, optional
        ``noise_mean(rows, cols) -> (C, h, w)``: the expected clean canvas, on
        which the initial noise is centred (see
        :meth:`.stepper.ChunkedSchedulerStepper.init_noise`).
    """

    def __init__(self, *, denoiser, scheduler, store: CanvasStore,
                 strategy: Strategy, canvas_shape, image_shape, window: int,
                 num_inference_steps: int, seed: int,
                 window_batch: int = DEFAULT_WINDOW_BATCH,
                 chunk: int = DEFAULT_CHUNK, vae=None, latent_scaling: float = 1.0,
                 factor: int = 1, preview_every: int = 5, context=None,
                 keep=None, noise_mean=None, preview_map=None, paste=None):
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.store = store
        self.strategy = strategy
        self.canvas_shape = tuple(int(v) for v in canvas_shape)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.window = int(window)
        self.num_inference_steps = int(num_inference_steps)
        self.seed = int(seed)
        self.window_batch = int(window_batch)
        self.chunk = int(chunk)
        self.vae = vae
        self.latent_scaling = float(latent_scaling)
        self.factor = int(factor)
        self.preview_every = max(1, int(preview_every))
        self.context = context
        self.keep = keep
        self.noise_mean = noise_mean
        self.preview_map = preview_map
        self.paste = paste
        #: grid origin (canvas rows/cols mod window) of the step being
        #: stepped, when its windows tile the canvas (see _preview_weight)
        self._grid: tuple[int, int] | None = None
        self._cancel = threading.Event()
        self.windows_evaluated = 0
        self.windows_per_step: list[int] = []
        self.steps_done = 0

    # -- control ------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop at the next window batch (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled

    # -- the run ------------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        """Run the synthesis, yielding events; the result is in ``store['image']``."""
        start = time.perf_counter()
        c, h, w = self.canvas_shape
        H, W = self.image_shape
        st = self.store
        st.create("latents", (c, h, w), np.float32)
        st.create("model_output", (c, h, w), np.float32)
        st.create("preview", (3, H, W), np.uint8)
        st.create("image", (3, H, W), np.uint8)
        if self.vae is not None and self.preview_map is None:
            st.create("x0", (c, h, w), np.float32)
        st.set_attrs(status="running", step=0, total_steps=self.num_inference_steps)
        self.scheduler.set_timesteps(self.num_inference_steps)
        self.stepper = ChunkedSchedulerStepper(self.scheduler, st, self.chunk,
                                               self.seed)
        self.stepper.init_noise(self.noise_mean)
        if self.context is not None:
            self._hold_context(-1, int(self.scheduler.timesteps[0]))
        try:
            yield StartEvent(
                total_steps=self.num_inference_steps,
                windows_per_step=self.strategy.expected_windows_per_step(
                    h, w, self.window),
                shape=(H, W),
            )
            if isinstance(self.strategy, DiffInfinite):
                from .diffinfinite import run_diffinfinite

                yield from run_diffinfinite(self)
            else:
                yield from self._run_grid()
            self._check()
            yield from self._finish()
        except Cancelled:
            st.set_attrs(status="cancelled", step=self.steps_done)
            yield CancelledEvent(step=self.steps_done)
            return
        except GeneratorExit:  # the consumer stopped iterating: a cancel too
            st.set_attrs(status="cancelled", step=self.steps_done)
            raise
        except Exception as exc:  # a model or store failure: the canvas says so
            try:
                st.set_attrs(status="failed", step=self.steps_done,
                             error=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - e.g. the disk is full: keep exc
                pass
            raise
        st.set_attrs(status="complete", step=self.steps_done)
        yield FinishedEvent(
            steps=self.steps_done,
            windows=self.windows_evaluated,
            seconds=time.perf_counter() - start,
            unet_seconds=self.denoiser.unet_seconds,
        )

    def _run_grid(self) -> Iterator[Event]:
        c, h, w = self.canvas_shape
        lat, out = self.store["latents"], self.store["model_output"]
        timesteps = list(self.scheduler.timesteps)
        for k, t in enumerate(timesteps):
            plan = self.strategy.plan(k, len(timesteps), h, w, self.window,
                                      self.seed)
            wins = plan.windows
            self._grid = None
            if not plan.overlapping and wins and k > 0 and \
                    not isinstance(self.strategy, Tiled):
                self._grid = (wins[0].y % self.window, wins[0].x % self.window)
            if plan.overlapping:  # weighted mean of overlapping outputs
                out[...] = 0.0
                weight = self.store.create("weight", (h, w), np.float32)
                win_weight = (np.ones((self.window, self.window), np.float32)
                              if plan.weight is None else plan.weight)
            else:  # one store access per block of windows, not per window
                rows = RowBands(lat, out, wins)
            done = 0
            for batch in batched(wins, self.window_batch):
                if plan.overlapping:
                    eps = self.evaluate(batch, t, lat)
                else:
                    xs = [rows.read(win) for win in batch]
                    eps = self.evaluate_arrays(batch, xs, t)
                for win, e in zip(batch, eps, strict=True):
                    if plan.overlapping:
                        cy, cx, wy, wx = win.inside(h, w)
                        ww = win_weight[wy, wx]
                        out[:, cy, cx] = out[:, cy, cx] + e[:, wy, wx] * ww
                        weight[cy, cx] = weight[cy, cx] + ww
                    else:
                        rows.write(win, e)
                done += len(batch)
                yield WindowsEvent(step=k, done=done, total=len(wins))
                self._check()
            if plan.overlapping:
                for sy, sx in self.stepper.regions:
                    out[:, sy, sx] = out[:, sy, sx] / weight[sy, sx]
            self.windows_per_step.append(len(wins))
            yield from self._step_canvas(k, t, last=k == len(timesteps) - 1)

    def evaluate(self, batch: list[Window], t, source) -> np.ndarray:
        """Guided model output for a batch of windows read from ``source``."""
        _, h, w = self.canvas_shape
        xs = [take_2d(source, *win.indices(h, w)) for win in batch]
        return self.evaluate_arrays(batch, xs, t)

    def evaluate_arrays(self, batch: list[Window], xs: list[np.ndarray], t):
        """Guided model output for windows whose noisy contents are ``xs``."""
        import torch

        _, h, w = self.canvas_shape
        x_in = self.scheduler.scale_model_input(torch.from_numpy(np.stack(xs)), t)
        self.windows_evaluated += len(batch)
        return self.denoiser(x_in.numpy(), t, [win.indices(h, w) for win in batch])

    def _hold_context(self, k: int, t_next: int | None) -> None:
        """Hold the context in every chunk (see :meth:`_hold_chunk`)."""
        for i, (sy, sx) in enumerate(self.stepper.regions):
            self._hold_chunk(k, t_next, i, sy, sx)

    def _hold_chunk(self, k: int, t_next: int | None, i: int, sy: slice,
                    sx: slice) -> None:
        """Set held pixels of chunk ``i`` to the context noised to ``t_next``.

        ``t_next`` None means the clean end of sampling: the context itself.
        """
        import torch

        from .stepper import chunk_seed

        keep = self.keep[sy, sx]
        if not keep.any():
            return
        lat = self.store["latents"]
        ctx = self.context[:, sy, sx]
        if t_next is None:
            held = ctx
        else:
            g = torch.Generator().manual_seed(chunk_seed(self.seed + 1_000_003, k, i))
            noise = torch.randn(ctx.shape, generator=g).numpy()
            a = float(self.scheduler.alphas_cumprod[int(t_next)])
            held = np.sqrt(a) * ctx + np.sqrt(1 - a) * noise
        cur = np.asarray(lat[:, sy, sx])
        lat[:, sy, sx] = np.where(keep[None], held, cur).astype(np.float32)

    def _step_canvas(self, k: int, t, last: bool) -> Iterator[Event]:
        if self.context is not None:
            ts = self.scheduler.timesteps
            t_next = None if last else int(ts[k + 1])
        regions = []
        for i, ((sy, sx), x0) in enumerate(self.stepper.step(k, t)):
            if self.context is not None:
                self._hold_chunk(k, t_next, i, sy, sx)
            region = self._pixel_region(sy, sx)
            if self.vae is None:
                self._set_preview(sy, sx, to_uint8(x0), 1)
            elif self.preview_map is not None:
                y0, y1, x0_, x1 = region
                self._set_preview(sy, sx, self._mapped_preview(
                    x0, y1 - y0, x1 - x0_), self.factor)
            else:
                self.store["x0"][:, sy, sx] = x0
            regions.append(region)
        self.steps_done = k + 1
        self.store.set_attrs(step=self.steps_done)
        if (self.vae is not None and self.preview_map is None and not last
                and (k + 1) % self.preview_every == 0):
            regions = list(self.decode("x0", "preview"))
        yield StepEvent(step=k + 1, total_steps=self.num_inference_steps,
                        timestep=int(t), regions=regions,
                        windows=self.windows_per_step[-1] if self.windows_per_step
                        else 0)

    def _preview_weight(self, sy: slice, sx: slice) -> np.ndarray | None:
        """Weight (h, w) of this step's estimate in the preview of a chunk.

        Neighbouring windows give slightly different clean-image estimates,
        so a preview of one step's estimate shows the window grid as blocks
        (the final image does not: later steps reconcile them). Near this
        step's window borders the preview therefore keeps what earlier steps
        showed there, where those borders lay elsewhere (random-shift moves
        the grid each step): the weight rises from 0 at a border to 1 a
        quarter window inside. None: take the estimate everywhere (first
        step, tiled, blended and overlapping steps).
        """
        if self._grid is None:
            return None
        p = self.window

        def axis(idx: np.ndarray, origin: int) -> np.ndarray:
            r = (idx - origin) % p + 0.5
            return np.clip(np.minimum(r, p - r) / (p / 4.0), 0.0, 1.0)

        wy = axis(np.arange(sy.start, sy.stop), self._grid[0])
        wx = axis(np.arange(sx.start, sx.stop), self._grid[1])
        return (wy[:, None] * wx[None, :]).astype(np.float32)

    def _set_preview(self, sy: slice, sx: slice, pixels: np.ndarray,
                     f: int) -> None:
        """Write the preview of canvas chunk ``(sy, sx)`` (``pixels``: uint8,
        its image region), blended by :meth:`_preview_weight`."""
        y0, y1, x0, x1 = self._pixel_region(sy, sx)
        weight = self._preview_weight(sy, sx)
        if weight is not None:
            weight = np.repeat(np.repeat(weight, f, axis=0), f, axis=1)
            weight = weight[:y1 - y0, :x1 - x0][None]
            old = np.asarray(self.store["preview"][:, y0:y1, x0:x1], np.float32)
            pixels = np.rint(weight * pixels + (1.0 - weight) * old).astype(np.uint8)
        self.store["preview"][:, y0:y1, x0:x1] = pixels

    def _mapped_preview(self, x0: np.ndarray, height: int, width: int
                        ) -> np.ndarray:
        """(3, height, width) uint8 preview of latents ``x0`` (C, h, w) through
        the linear preview map, each latent pixel shown as f x f pixels."""
        weight, bias = self.preview_map
        rgb = np.tensordot(weight, x0, axes=1) + bias[:, None, None]
        f = self.factor
        rgb = np.repeat(np.repeat(rgb, f, axis=1), f, axis=2)
        return to_uint8(rgb[:, :height, :width])

    def _pixel_region(self, sy: slice, sx: slice):
        f = self.factor
        H, W = self.image_shape
        return (sy.start * f, min(sy.stop * f, H), sx.start * f, min(sx.stop * f, W))

    def decode(self, source: str, target: str):
        """Tiled, Hann-blended VAE decode of a latent array into uint8 pixels."""
        p = next(self.vae.parameters())
        yield from decode_tiled(
            self.vae, self.store, source, target, self.image_shape, self.window,
            self.latent_scaling, p.device, p.dtype,
        )

    def _paste(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Blend the kept pixels back into a decoded region (see ``paste``)."""
        pixels, alpha = self.paste
        a = alpha[y0:y1, x0:x1][None]
        if not a.any():
            return
        decoded = np.asarray(self.store["image"][:, y0:y1, x0:x1], np.float32)
        kept = pixels[:, y0:y1, x0:x1].astype(np.float32)
        out = np.rint(a * kept + (1.0 - a) * decoded)
        self.store["image"][:, y0:y1, x0:x1] = np.clip(out, 0, 255).astype(np.uint8)

    def _finish(self) -> Iterator[Event]:
        """Write the final image and report each finished region."""
        st = self.store
        if self.vae is None:
            lat, img, prev = st["latents"], st["image"], st["preview"]
            for sy, sx in self.stepper.regions:
                pix = to_uint8(lat[:, sy, sx])
                img[:, sy, sx] = pix
                prev[:, sy, sx] = pix
                yield RegionDoneEvent(region=self._pixel_region(sy, sx))
        else:
            for region in self.decode("latents", "image"):
                y0, y1, x0, x1 = region
                if self.paste is not None:
                    self._paste(y0, y1, x0, x1)
                st["preview"][:, y0:y1, x0:x1] = st["image"][:, y0:y1, x0:x1]
                yield RegionDoneEvent(region=region)
        for name in ("model_output", "weight", "x0", "previous"):
            st.delete(name)
