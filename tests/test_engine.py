"""The synthesis engine through the pipeline: strategies, stores, cancelling.

A tiny random model with 32-pixel windows keeps every run to a fraction of a
second. Where the question is what the engine does with model outputs rather
than what the UNet computes, the denoiser is replaced by a fake one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import zarr

from napari_histodiff.errors import InputError
from napari_histodiff.models.factory import init_model
from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
from napari_histodiff.sampling.events import (
    CancelledEvent,
    FinishedEvent,
    RegionDoneEvent,
    StartEvent,
    StepEvent,
    WindowsEvent,
)
from napari_histodiff.sampling.store import MemoryStore
from napari_histodiff.sampling.strategies import RandomShift

P = 32  # window side of the test model
STRATEGIES = ["random-shift", "tiled", "multidiffusion", "diffinfinite"]
SCHEDULERS = ["dpm++", "dpm++sde", "ddim", "ddpm", "euler", "unipc"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny32"
    init_model(folder, "tumor,stroma,necrosis", patch_size=P, size="tiny", seed=0)
    # One thread: these windows are tiny, and spinning threads on a busy
    # machine cost more than they bring.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HistoDiffPipeline.from_pretrained(folder)
    torch.set_num_threads(threads)


def make_mask(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blocky labels 0..3 whose borders do not follow any window grid."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, (height // 7 + 1, width // 7 + 1))
    return coarse.repeat(7, 0).repeat(7, 1)[:height, :width].astype(np.int32)


class FakeDenoiser:
    """Stands in for the Denoiser; ``fn(x, t)`` gives the model output."""

    def __init__(self, fn):
        self.fn = fn
        self.unet_seconds = 0.0
        self.inputs: list[np.ndarray] = []

    def __call__(self, x, t, windows):
        assert len(windows) == x.shape[0]
        assert all(len(ys) == x.shape[-2] and len(xs) == x.shape[-1]
                   for ys, xs in windows)
        self.inputs.extend(x)
        return self.fn(np.array(x), t).astype(np.float32)


def record_windows(engine) -> list[list]:
    """Wrap ``engine.evaluate_arrays``; return the windows of each call."""
    calls: list[list] = []
    inner = engine.evaluate_arrays

    def wrapped(batch, xs, t):
        calls.append(list(batch))
        return inner(batch, xs, t)

    engine.evaluate_arrays = wrapped
    return calls


# -- every strategy, odd sizes, canvases smaller than the window -----------------
@pytest.mark.parametrize("shape", [(37, 53), (20, 27)])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_runs_on_any_canvas_size(pipe, strategy, shape):
    steps = 2
    events = []
    out = pipe(make_mask(*shape), num_inference_steps=steps, strategy=strategy,
               seed=0, window_batch=4, callback=events.append)
    assert out.image.shape == (*shape, 3) and out.image.dtype == np.uint8
    assert len(np.unique(out.image)) > 10  # not blank
    assert out.cancelled_at is None
    assert len(out.stats["windows_per_step"]) == steps
    assert out.stats["windows"] == sum(out.stats["windows_per_step"])
    assert 0 < out.stats["unet_seconds"] <= out.stats["seconds"]
    step_events = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in step_events] == list(range(1, steps + 1))
    assert [e.windows for e in step_events] == out.stats["windows_per_step"]
    assert isinstance(events[0], StartEvent) and isinstance(events[-1], FinishedEvent)
    done = [e.region for e in events if isinstance(e, RegionDoneEvent)]
    area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in done)
    assert area == shape[0] * shape[1]
    h, w = shape
    if strategy == "random-shift":
        bound = (math.ceil(h / P) + 1) * (math.ceil(w / P) + 1)
        blend = RandomShift().blend_steps  # the last steps blend three grids
        for k, n in enumerate(out.stats["windows_per_step"]):
            assert n <= (3 if k >= steps - blend else 1) * bound
    if strategy == "tiled":
        tiles = math.ceil(h / P) * math.ceil(w / P)
        assert out.stats["windows_per_step"] == [tiles] * steps
    assert out.store.attrs["status"] == "complete"
    assert out.store.attrs["step"] == steps


def test_same_seed_same_pixels_other_seed_other_pixels(pipe):
    mask = make_mask(37, 53)
    a = pipe(mask, num_inference_steps=2, seed=1).image
    b = pipe(mask, num_inference_steps=2, seed=1).image
    c = pipe(mask, num_inference_steps=2, seed=2).image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# -- random-shift: batch size, each pixel once per step, reflection ---------------
def test_random_shift_engine_is_bit_identical_for_any_window_batch(pipe):
    """Same windows, same places, same noise whatever the batch: with a model
    whose per-window output does not depend on the batch, bit-identical."""
    mask = make_mask(70, 45)
    lats = []
    for batch in (1, 3, 16):
        run = pipe.stream(mask, num_inference_steps=3, seed=3, window_batch=batch)
        run.engine.denoiser = FakeDenoiser(lambda x, t: np.tanh(x) + 1e-3 * int(t))
        for _ in run.events():
            pass
        lats.append(np.array(run.store["latents"]))
    for lat in lats[1:]:
        np.testing.assert_array_equal(lat, lats[0])


def test_random_shift_output_independent_of_window_batch(pipe):
    """With the real UNet, CPU conv and linear kernels round differently for
    different batch sizes (about 1e-6 per window), so the canvas agrees to
    float precision and the image to at most one grey level."""
    mask = make_mask(70, 45)
    outs = [
        pipe(mask, num_inference_steps=2, seed=3, window_batch=b, store=MemoryStore())
        for b in (1, 3, 16)
    ]
    for out in outs[1:]:
        np.testing.assert_allclose(out.store["latents"], outs[0].store["latents"],
                                   rtol=0, atol=1e-4)
        diff = np.abs(out.image.astype(int) - outs[0].image)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("shape", [(37, 53), (20, 27), (64, 96)])
def test_random_shift_updates_every_pixel_exactly_once_per_step(pipe, shape):
    """With an identity 'model', the model output must equal the canvas
    everywhere, borders of windows included, and each pixel is covered once."""
    h, w = shape
    steps = 4
    run = pipe.stream(make_mask(h, w), num_inference_steps=steps, seed=5,
                      window_batch=3)
    engine = run.engine
    engine.denoiser = FakeDenoiser(lambda x, t: x)
    calls = record_windows(engine)
    origins = set()
    checked = 0
    for event in run.events():
        if isinstance(event, WindowsEvent) and event.done == event.total:
            wins = [win for batch in calls for win in batch]
            calls.clear()
            assert len(wins) == event.total
            count = np.zeros((h, w), int)
            for win in wins:
                cy, cx, _, _ = win.inside(h, w)
                count[cy, cx] += 1
            # the last steps blend three grids (each still covers every pixel)
            blended = event.step >= steps - RandomShift().blend_steps
            assert (count == (3 if blended else 1)).all()
            origins.add((wins[0].y, wins[0].x))
            lat = np.asarray(run.store["latents"])
            if blended:  # a weighted sum so far, to be divided by the weights
                mean = (np.asarray(run.store["model_output"])
                        / np.asarray(run.store["weight"]))
                np.testing.assert_allclose(mean, lat, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(run.store["model_output"], lat)
            # every window saw the canvas reflected at the edges, never zeros
            padded = np.pad(lat, ((0, 0), (2 * P, 2 * P), (2 * P, 2 * P)),
                            mode="symmetric")
            for win, x in zip(wins, engine.denoiser.inputs, strict=True):
                y0, x0 = win.y + 2 * P, win.x + 2 * P
                np.testing.assert_array_equal(x, padded[:, y0 : y0 + P, x0 : x0 + P])
            engine.denoiser.inputs.clear()
            checked += 1
    assert checked == steps
    assert len(origins) > 1  # the grid moved between steps


# -- multidiffusion: overlapping outputs are averaged ----------------------------
def test_multidiffusion_averages_overlapping_outputs(pipe):
    h, w = 45, 70
    run = pipe.stream(make_mask(h, w), num_inference_steps=2, strategy="multidiffusion",
                      seed=0, window_batch=5)
    engine = run.engine
    counter = iter(range(1, 10_000))
    engine.denoiser = FakeDenoiser(
        lambda x, t: np.stack([np.full(x.shape[1:], next(counter), np.float32)
                               for _ in x]))
    calls = record_windows(engine)
    steps = 0
    for event in run.events():
        if isinstance(event, StepEvent):
            wins = [win for batch in calls for win in batch]
            calls.clear()
            total = np.zeros((h, w))
            count = np.zeros((h, w))
            for win in wins:  # window i output the constant i (in call order)
                cy, cx, _, _ = win.inside(h, w)
                total[cy, cx] += wins.index(win) + 1 + steps * len(wins)
                count[cy, cx] += 1
            assert count.max() > 1
            out = np.asarray(run.store["model_output"])
            np.testing.assert_allclose(out, np.broadcast_to(total / count, out.shape),
                                       rtol=1e-6)
            steps += 1
    assert steps == 2


# -- diffinfinite: every pixel advances exactly once per level -------------------
@pytest.mark.parametrize("shape", [(37, 53), (20, 27)])
def test_diffinfinite_advances_every_pixel_once_per_level(pipe, shape):
    """With a zero 'model', a DDIM step scales a pixel by sqrt(abar_next /
    abar_t); over all levels the factors multiply to 1 / sqrt(abar_first) for a
    pixel advanced exactly once per level, and to something else otherwise."""
    h, w = shape
    steps = 3
    run = pipe.stream(make_mask(h, w), num_inference_steps=steps,
                      strategy="diffinfinite", scheduler="ddim", seed=0)
    engine = run.engine
    engine.denoiser = FakeDenoiser(lambda x, t: np.zeros_like(x))
    calls = record_windows(engine)
    per_level, reported = [], []
    initial = None
    for event in run.events():
        if isinstance(event, StartEvent):
            initial = np.array(run.store["latents"])
        if isinstance(event, StepEvent):
            per_level.append(sum(len(batch) for batch in calls))
            calls.clear()
            reported.append(event.windows)
    abar = engine.scheduler.alphas_cumprod.double().numpy()
    first = int(engine.scheduler.timesteps[0])
    expected = initial / np.sqrt(abar[first])
    np.testing.assert_allclose(run.store["latents"], expected, rtol=1e-4)
    assert reported == per_level == engine.windows_per_step
    assert len(per_level) == steps
    assert all(n >= math.ceil(h * w / P**2) for n in per_level)
    assert run.output().stats["windows"] == sum(per_level)


def test_diffinfinite_refuses_a_non_variance_preserving_scheduler(pipe):
    with pytest.raises(InputError, match="diffinfinite"):
        pipe(make_mask(37, 53), num_inference_steps=2, strategy="diffinfinite",
             scheduler="euler")


# -- schedulers and chunked stepping ---------------------------------------------
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_runs(pipe, scheduler):
    out = pipe(make_mask(37, 53), num_inference_steps=3, scheduler=scheduler,
               seed=0, chunk=16)
    assert out.image.shape == (37, 53, 3)
    lat = np.asarray(out.store["latents"])
    assert np.isfinite(lat).all()
    assert len(np.unique(out.image)) > 10
    assert out.settings["scheduler"] == scheduler


def test_stochastic_dpm_is_seeded(pipe):
    mask = make_mask(37, 53)
    a = pipe(mask, num_inference_steps=3, scheduler="dpm++sde", seed=1)
    b = pipe(mask, num_inference_steps=3, scheduler="dpm++sde", seed=1)
    c = pipe(mask, num_inference_steps=3, scheduler="dpm++sde", seed=2)
    plain = pipe(mask, num_inference_steps=3, scheduler="dpm++", seed=1)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, plain.image)  # the noise is injected


@pytest.mark.parametrize("scheduler", ["dpm++", "unipc"])
def test_chunked_stepping_bit_identical_through_the_pipeline(pipe, scheduler):
    mask = make_mask(37, 53)
    small = pipe(mask, num_inference_steps=3, scheduler=scheduler, seed=0, chunk=16)
    whole = pipe(mask, num_inference_steps=3, scheduler=scheduler, seed=0, chunk=1024)
    np.testing.assert_array_equal(small.store["latents"], whole.store["latents"])
    np.testing.assert_array_equal(small.image, whole.image)


# -- stores ----------------------------------------------------------------------
@pytest.mark.parametrize("strategy,scheduler", [("random-shift", "dpm++"),
                                                ("multidiffusion", "ddpm")])
def test_memory_and_zarr_stores_agree(pipe, tmp_path, strategy, scheduler):
    mask = make_mask(37, 53)
    kw = dict(num_inference_steps=3, strategy=strategy, scheduler=scheduler,
              seed=4, chunk=16)
    mem = pipe(mask, store="memory", **kw)
    disk = pipe(mask, store="zarr", store_path=tmp_path / "canvas.zarr", **kw)
    assert mem.store.kind == "memory" and disk.store.kind == "zarr"
    np.testing.assert_array_equal(mem.image, disk.image)
    np.testing.assert_array_equal(mem.store["latents"], disk.store["latents"][:])
    group = zarr.open_group(str(tmp_path / "canvas.zarr"), mode="r")
    np.testing.assert_array_equal(np.moveaxis(group["image"][:], 0, -1), mem.image)
    assert group.attrs["status"] == "complete"


# -- cancelling ------------------------------------------------------------------
def test_cancel_between_steps_leaves_a_readable_store(pipe, tmp_path):
    path = tmp_path / "cancelled.zarr"
    h, w = 37, 53
    run = pipe.stream(make_mask(h, w), num_inference_steps=3, seed=0, store="zarr",
                      store_path=path, chunk=16)
    events = []
    for event in run.events():
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 1:
            run.cancel()
    assert isinstance(events[-1], CancelledEvent) and events[-1].step == 1
    assert not any(isinstance(e, StepEvent) and e.step > 1 for e in events)
    assert not any(isinstance(e, FinishedEvent) for e in events)
    group = zarr.open_group(str(path), mode="r")  # readable by anyone, from disk
    assert group.attrs["status"] == "cancelled"
    assert group.attrs["step"] == 1
    assert group.attrs["settings"]["seed"] == 0
    preview = group["preview"][:]
    assert preview.shape == (3, h, w) and preview.any()
    assert np.isfinite(group["latents"][:]).all()
    out = run.output()
    assert out.image is None and out.cancelled_at == 1


def test_cancel_inside_the_first_step(pipe):
    run = pipe.stream(make_mask(64, 64), num_inference_steps=2, seed=0,
                      window_batch=1)
    events = []
    for event in run.events():
        events.append(event)
        if isinstance(event, WindowsEvent):
            run.cancel()
    windows = [e for e in events if isinstance(e, WindowsEvent)]
    assert len(windows) == 1  # stopped after the batch it was asked in
    assert events[-1] == CancelledEvent(step=0)
    assert run.store.attrs["status"] == "cancelled" and run.store.attrs["step"] == 0


def test_callback_returning_false_cancels(pipe):
    def stop_after_first_step(event):
        return not (isinstance(event, StepEvent) and event.step == 1)

    out = pipe(make_mask(37, 53), num_inference_steps=3, seed=0,
               callback=stop_after_first_step)
    assert out.image is None and out.cancelled_at == 1
    assert out.store.attrs["status"] == "cancelled"
    assert out.stats == {}


def test_consumer_that_stops_iterating_leaves_a_cancelled_store(pipe):
    run = pipe.stream(make_mask(37, 53), num_inference_steps=3, seed=0)
    events = run.events()
    for event in events:
        if isinstance(event, StepEvent) and event.step == 2:
            break
    events.close()
    assert run.store.attrs["status"] == "cancelled"
    assert run.store.attrs["step"] == 2
    assert np.asarray(run.store["preview"]).any()
