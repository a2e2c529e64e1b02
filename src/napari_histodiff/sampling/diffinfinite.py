"""The DiffInfinite sampler (Aversa et al., arXiv 2306.13384), as the reference.

Re-implemented from the paper's description of its released sampler:

* every canvas pixel has a step counter;
* a window is centred on a random pixel among the least-advanced ones
  (clamped so the window stays on the canvas);
* inside the window, pixels that are already one level ahead are shown to the
  model with their values from the previous level;
* the model output advances only the least-advanced pixels of the window, by
  one deterministic DDIM step; the others keep their values;
* a level is done when every pixel has advanced; windows run one at a time.

It needs about 2.2x the windows of plain tiling and cannot batch windows, which
is why ``random-shift`` is the default; it is kept to compare against.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..arrays import take_2d as _take
from .decode import to_uint8
from .events import Event, StepEvent, WindowsEvent
from .windows import Window

_BLOCK = 4096


def run_diffinfinite(engine) -> Iterator[Event]:
    """Run all levels on ``engine``'s store; see the module docstring."""
    c, h, w = engine.canvas_shape
    p = engine.window
    st = engine.store
    lat = st["latents"]
    prev = st.create("previous", (c, h, w), np.float32)
    counter = np.zeros((h, w), np.int32)
    rng = np.random.default_rng(np.random.SeedSequence([engine.seed, 11]))
    sched = engine.scheduler
    timesteps = [int(t) for t in sched.timesteps]
    abar = sched.alphas_cumprod.double().numpy()
    half = p // 2

    for k, t in enumerate(timesteps):
        a_t = abar[t]
        a_next = abar[timesteps[k + 1]] if k + 1 < len(timesteps) else 1.0
        order = rng.permutation(h * w)
        windows = 0

        def ahead_to_previous(ys, xs, x, k=k):
            ahead = counter[np.ix_(ys, xs)] > k
            if ahead.any():
                old = _take(prev, ys, xs)
                x = np.where(ahead[None], old, x)
            return x

        for start in range(0, order.size, _BLOCK):
            block = order[start : start + _BLOCK]
            block = block[counter.flat[block] == k]
            for idx in block:
                if counter.flat[idx] != k:
                    continue
                i, j = divmod(int(idx), w)
                y0 = int(np.clip(i - half, 0, max(h - p, 0)))
                x0 = int(np.clip(j - half, 0, max(w - p, 0)))
                win = Window(y0, x0, p)
                ys, xs = win.indices(h, w)
                x_in = ahead_to_previous(ys, xs, _take(lat, ys, xs))
                eps = engine.evaluate_arrays([win], [x_in], t)[0].astype(np.float64)
                x0_est = (x_in - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
                x_next = np.sqrt(a_next) * x0_est + np.sqrt(1 - a_next) * eps
                cy, cx, wy, wx = win.inside(h, w)
                todo = counter[cy, cx] == k
                old = np.asarray(lat[:, cy, cx])
                p_old = np.asarray(prev[:, cy, cx])
                prev[:, cy, cx] = np.where(todo[None], old, p_old)
                lat[:, cy, cx] = np.where(todo[None], x_next[:, wy, wx], old)
                counter[cy, cx] = np.where(todo, k + 1, counter[cy, cx])
                _write_preview(engine, cy, cx, x0_est[:, wy, wx], todo)
                windows += 1
                yield WindowsEvent(step=k, done=windows, total=0)
                engine._check()
        engine.windows_per_step.append(windows)
        engine.steps_done = k + 1
        st.set_attrs(step=engine.steps_done)
        regions = []
        if engine.vae is not None and engine.preview_map is None and \
                (k + 1) % engine.preview_every == 0 and k + 1 < len(timesteps):
            regions = list(engine.decode("x0", "preview"))
        yield StepEvent(step=k + 1, total_steps=len(timesteps), timestep=t,
                        regions=regions or [(0, engine.image_shape[0], 0,
                                             engine.image_shape[1])],
                        windows=windows)


def _write_preview(engine, cy, cx, x0: np.ndarray, todo: np.ndarray) -> None:
    if engine.vae is None:
        old = np.asarray(engine.store["preview"][:, cy, cx])
        engine.store["preview"][:, cy, cx] = np.where(todo[None], to_uint8(x0), old)
    elif engine.preview_map is not None:  # latents shown through the linear map
        y0, y1, px0, px1 = engine._pixel_region(cy, cx)
        f = engine.factor
        rgb = engine._mapped_preview(x0, y1 - y0, px1 - px0)
        mark = np.repeat(np.repeat(todo, f, axis=0), f, axis=1)[:y1 - y0, :px1 - px0]
        old = np.asarray(engine.store["preview"][:, y0:y1, px0:px1])
        engine.store["preview"][:, y0:y1, px0:px1] = np.where(mark[None], rgb, old)
    else:
        old = np.asarray(engine.store["x0"][:, cy, cx])
        engine.store["x0"][:, cy, cx] = np.where(todo[None], x0, old)
