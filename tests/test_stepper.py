"""Chunked scheduler stepping equals stepping the whole canvas at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.models.factory import default_scheduler
from napari_histodiff.sampling.schedulers import make_scheduler
from napari_histodiff.sampling.stepper import ChunkedSchedulerStepper
from napari_histodiff.sampling.store import MemoryStore, ZarrStore

SHAPE = (3, 37, 53)
STEPS = 4  # enough for the multistep solvers to use their history
DETERMINISTIC = ["dpm++", "ddim", "euler", "unipc", "DEISMultistepScheduler",
                 "PNDMScheduler"]


def fake_model_output(x: np.ndarray, k: int) -> np.ndarray:
    """A stand-in for the UNet: depends on the sample and the step."""
    field = np.random.default_rng(100 + k).normal(size=x.shape).astype(np.float32)
    return (0.3 * x + field).astype(np.float32)


def run_chunked(name: str, store, chunk: int, seed: int = 0) -> np.ndarray:
    sched = make_scheduler(name, default_scheduler().config)
    sched.set_timesteps(STEPS)
    store.create("latents", SHAPE, np.float32)
    store.create("model_output", SHAPE, np.float32)
    stepper = ChunkedSchedulerStepper(sched, store, chunk, seed)
    stepper.init_noise()
    for k, t in enumerate(sched.timesteps):
        store["model_output"][...] = fake_model_output(
            np.asarray(store["latents"]), k)
        regions = [region for region, _ in stepper.step(k, t)]
        assert len(regions) == len(stepper.regions)
    return np.asarray(store["latents"])


def run_whole(name: str, seed: int = 0) -> np.ndarray:
    """The reference: the scheduler steps the whole canvas as one tensor."""
    sched = make_scheduler(name, default_scheduler().config)
    sched.set_timesteps(STEPS)
    store = MemoryStore()
    store.create("latents", SHAPE, np.float32)
    store.create("model_output", SHAPE, np.float32)
    ChunkedSchedulerStepper(sched, store, 10_000, seed).init_noise()
    x = torch.from_numpy(store["latents"].copy())[None]
    for k, t in enumerate(sched.timesteps):
        eps = torch.from_numpy(fake_model_output(x[0].numpy(), k))[None]
        x = sched.step(eps, t, x).prev_sample
    return x[0].numpy()


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_chunked_stepping_is_bit_identical_to_one_chunk(name):
    small = run_chunked(name, MemoryStore(), chunk=16)
    one = run_chunked(name, MemoryStore(), chunk=1024)
    whole = run_whole(name)
    assert np.isfinite(small).all()
    np.testing.assert_array_equal(small, one)
    np.testing.assert_array_equal(one, whole)


def test_stochastic_scheduler_same_in_memory_and_on_disk(tmp_path):
    mem = run_chunked("ddpm", MemoryStore(), chunk=16, seed=3)
    disk = run_chunked("ddpm", ZarrStore(tmp_path / "c.zarr", chunk=16), 16, seed=3)
    np.testing.assert_array_equal(mem, disk)
    again = run_chunked("ddpm", MemoryStore(), chunk=16, seed=3)
    np.testing.assert_array_equal(mem, again)
    other = run_chunked("ddpm", MemoryStore(), chunk=16, seed=4)
    assert not np.array_equal(mem, other)


def test_solver_history_lives_in_the_store(tmp_path):
    store = ZarrStore(tmp_path / "c.zarr", chunk=16)
    run_chunked("dpm++", store, chunk=16)
    # DPM-Solver++ keeps earlier model outputs: saved per chunk in the store
    assert any(key.startswith("state") for key in store._group.keys())


def test_initial_noise_independent_of_chunk_and_store(tmp_path):
    def noise(store, chunk):
        sched = make_scheduler("dpm++", default_scheduler().config)
        sched.set_timesteps(2)
        store.create("latents", (3, 300, 270), np.float32)
        store.create("model_output", (3, 300, 270), np.float32)
        ChunkedSchedulerStepper(sched, store, chunk, 7).init_noise()
        return np.asarray(store["latents"])

    a = noise(MemoryStore(), 16)
    b = noise(ZarrStore(tmp_path / "n.zarr", chunk=64), 64)
    np.testing.assert_array_equal(a, b)
    assert abs(float(a.std()) - 1.0) < 0.05


@pytest.mark.parametrize("name", ["dpm++", "ddim", "euler"])
def test_initial_noise_centred_on_the_mean_as_the_forward_process_scales_it(name):
    """``init_noise(mean)`` = the same noise + (what add_noise does to a clean
    value at the first timestep) * mean: alpha_T * mean for VP schedulers,
    mean itself for Euler's (sigma) parameterisation."""
    mean_field = np.random.default_rng(1).uniform(-1, 1, SHAPE).astype(np.float32)

    def init(mean):
        sched = make_scheduler(name, default_scheduler().config)
        sched.set_timesteps(STEPS)
        store = MemoryStore()
        store.create("latents", SHAPE, np.float32)
        ChunkedSchedulerStepper(sched, store, 16, 0).init_noise(mean)
        return np.asarray(store["latents"]), sched

    plain, sched = init(None)
    centred, _ = init(lambda sy, sx: mean_field[:, sy, sx])
    t0 = int(sched.timesteps[0])
    if name == "euler":
        expected_scale = 1.0
    else:
        expected_scale = float(sched.alphas_cumprod[t0]) ** 0.5
    atol = 1e-6 * max(1.0, float(np.abs(plain).max()))  # float32 at Euler's sigma
    np.testing.assert_allclose(centred - plain, expected_scale * mean_field,
                               rtol=1e-4, atol=atol)
