"""Training: the loss falls, resume is exact, bad data is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.training.augment import Augment, no_augment
from napari_histodiff.training.data import CropSampler, Sample
from napari_histodiff.training.image_trainer import (
    ImageModelSpec,
    ImageTrainJob,
    make_image_trainer,
)
from napari_histodiff.training.loop import TrainSettings, step_rng

torch.set_num_threads(1)
CLASSES = TissueClasses.from_names("dark,light")


def toy_samples(n: int = 2, size: int = 24, seed: int = 0) -> list[Sample]:
    """Images whose colour follows a two-class mask: easy to learn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mask = np.ones((size, size), np.uint8)
        mask[:, size // 2:] = 2
        mask = np.rot90(mask, i).copy()
        img = np.where(mask[..., None] == 1, 60, 200).astype(np.uint8)
        img = img + rng.integers(0, 10, img.shape).astype(np.uint8)
        out.append(Sample(img, mask, f"toy{i}"))
    return out


def toy_job(tmp_path, steps=8, every=4, lr=2e-3, name="run") -> ImageTrainJob:
    return ImageTrainJob(
        samples=toy_samples(), classes=CLASSES, run_dir=tmp_path / name,
        out=tmp_path / f"{name}-model",
        settings=TrainSettings(steps=steps, batch_size=4, learning_rate=lr,
                               warmup=0, checkpoint_every=every, log_every=2,
                               ema_decay=0.9, seed=3),
        spec=ImageModelSpec(patch_size=16, channels=(8, 16), layers=1),
        augment=Augment(stain_jitter=0.02, stain_shift=0.002))


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    trainer = make_image_trainer(toy_job(tmp_path, lr=3e-3), "cpu")
    x0, cond = trainer.batch_fn(10_000)  # a batch the steps never see
    with torch.no_grad():
        before = float(trainer.loss_on(trainer.unet, x0, cond, seed=1))
    for step in range(25):
        trainer.train_step(step)
    with torch.no_grad():
        after = float(trainer.loss_on(trainer.unet, x0, cond, seed=1))
    assert after < 0.8 * before


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_resume_gives_the_same_state_as_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    straight = make_image_trainer(toy_job(tmp_path, name="a"), "cpu")
    straight.fit(quiet=True)

    torch.manual_seed(0)
    first = make_image_trainer(toy_job(tmp_path, name="b"), "cpu")
    first.fit(quiet=True, stop_after=4)  # "interrupted" after a checkpoint
    assert first.step == 4
    torch.manual_seed(123)  # a different process: other initial weights
    second = make_image_trainer(toy_job(tmp_path, name="b"), "cpu")
    result = second.fit(resume=True, quiet=True)
    assert result["resumed_from"].endswith("step-0000004")
    assert second.step == 8
    for name in ("unet", "ema"):
        a, b = _weights(getattr(straight, name)), _weights(getattr(second, name))
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    sa = straight.optimizer.state_dict()["state"]
    sb = second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    rows = (tmp_path / "b" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6", "8"]
    assert (tmp_path / "b" / "loss.png").is_file()


def test_cosine_schedule_warms_up_then_falls_to_the_final_fraction():
    from napari_histodiff.training.loop import DiffusionTrainer

    settings = TrainSettings(steps=101, learning_rate=1e-3, warmup=10,
                             lr_schedule="cosine", final_lr_fraction=0.2)
    trainer = DiffusionTrainer.__new__(DiffusionTrainer)
    trainer.settings = settings
    rates = [trainer.learning_rate(s) for s in range(101)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(1e-3)
    assert rates[55] == pytest.approx(0.6e-3)  # half-way: mean of peak and end
    assert rates[100] == pytest.approx(0.2e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    constant = TrainSettings(steps=101, learning_rate=1e-3, warmup=10)
    trainer.settings = constant
    assert trainer.learning_rate(100) == pytest.approx(1e-3)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr_schedule", "cosine!", "lr_schedule: 'cosine!' is not one of"),
    ("final_lr_fraction", 1.5, "final_lr_fraction: must be in [0, 1], got 1.5"),
])
def test_bad_schedule_settings_are_named(field, value, message):
    settings = TrainSettings(**{field: value})
    with pytest.raises(InputError) as err:
        settings.check()
    assert message in str(err.value)


def test_resume_refuses_another_cosine_plan(tmp_path):
    from dataclasses import replace

    job = toy_job(tmp_path, name="c")
    job.settings = replace(job.settings, lr_schedule="cosine")
    make_image_trainer(job, "cpu").fit(quiet=True, stop_after=4)
    longer = toy_job(tmp_path, name="c", steps=16)
    longer.settings = replace(longer.settings, lr_schedule="cosine")
    with pytest.raises(InputError, match="steps: the cosine schedule of the run"):
        make_image_trainer(longer, "cpu").fit(resume=True, quiet=True)
    constant = toy_job(tmp_path, name="c")
    with pytest.raises(InputError, match="lr_schedule: the run in .* was started "
                       "with 'cosine', not 'constant'"):
        make_image_trainer(constant, "cpu").fit(resume=True, quiet=True)
    same = toy_job(tmp_path, name="c")
    same.settings = replace(same.settings, lr_schedule="cosine")
    assert make_image_trainer(same, "cpu").fit(resume=True, quiet=True)["step"] == 8


def test_a_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    trainer = make_image_trainer(toy_job(tmp_path, steps=2, every=2), "cpu")
    trainer.fit(quiet=True)
    again = make_image_trainer(toy_job(tmp_path, steps=2, every=2), "cpu")
    with pytest.raises(InputError, match="--resume"):
        again.fit(quiet=True)


def test_checkpoints_hold_no_pickle(tmp_path):
    trainer = make_image_trainer(toy_job(tmp_path, steps=2, every=2), "cpu")
    trainer.fit(quiet=True)
    files = {p.suffix for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert files <= {".safetensors", ".json", ".csv", ".png"}


def test_batches_are_deterministic_and_null_masks_appear(tmp_path):
    job = toy_job(tmp_path)
    job.settings.cond_dropout = 0.5
    trainer = make_image_trainer(job, "cpu")
    x1, c1 = trainer.batch_fn(5)
    x2, c2 = trainer.batch_fn(5)
    assert torch.equal(x1, x2) and torch.equal(c1, c2)
    assert x1.shape == (4, 3, 16, 16) and c1.shape == (4, 3, 16, 16)
    assert float(x1.min()) >= -1 and float(x1.max()) <= 1
    nulls = [bool((c[0] == 1).all()) for c in trainer.batch_fn(7)[1]]
    assert any(nulls) or any(
        bool((c[0] == 1).all()) for s in range(8, 12) for c in trainer.batch_fn(s)[1])


def test_augmentations_keep_image_and_mask_aligned():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[0, :2, :3] = 255
    mask = (img[..., 0] > 0).astype(np.uint8)
    aug = Augment(stain_jitter=0.0, stain_shift=0.0)
    for seed in range(6):
        a, m = aug(np.random.default_rng(seed), img, mask)
        assert np.array_equal(a[..., 0] > 0, m == 1)
    same, _ = no_augment()(np.random.default_rng(0), img, mask)
    assert np.array_equal(same, img)
    jit, _ = Augment(stain_jitter=0.05)(np.random.default_rng(0),
                                        np.full((1, 8, 8, 3), 128, np.uint8), mask)
    assert np.abs(jit.astype(int) - 128).max() < 40


def test_stain_jitter_keeps_the_colours_of_a_real_image():
    """Zero jitter is the identity, and mild jitter keeps the mean colour: the
    first version went through skimage's clipping rgb2hed/hed2rgb and took
    13-23 grey levels of green from every crop."""
    from skimage import data

    from napari_histodiff.training.augment import jitter_stains

    img = data.immunohistochemistry()
    same = jitter_stains(img, np.random.default_rng(0), 0.0, 0.0)
    assert np.abs(same.astype(int) - img).max() <= 1
    for seed in range(4):
        jit = jitter_stains(img, np.random.default_rng(seed), 0.05, 0.005)
        change = np.abs(jit.mean(axis=(0, 1)) - img.mean(axis=(0, 1)))
        assert change.max() < 5, change
        assert not np.array_equal(jit, img)


def test_unlabelled_crops_get_the_null_mask():
    samples = toy_samples(1) + [Sample(np.full((24, 24, 3), 90, np.uint8), None, "u")]
    sampler = CropSampler(samples, 16, unlabelled_fraction=1.0)
    _, masks, labelled = sampler.sample(step_rng(0, 0), 4)
    assert not labelled.any() and not masks.any()
