"""Latent image models: trained on a frozen VAE's latents, loadable, resumable,
unconditional or mask-conditioned, and refused when the VAE does not fit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from napari_histodiff.errors import InputError
from napari_histodiff.models.autoencoder import AUTOENCODER_CARD, load_autoencoder
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.models.directory import load_components
from napari_histodiff.training.augment import no_augment
from napari_histodiff.training.data import Sample
from napari_histodiff.training.image_trainer import (
    ImageModelSpec,
    ImageTrainJob,
    _add_input_channels,
    make_image_trainer,
    train_image_model,
)
from napari_histodiff.training.loop import TrainSettings
from napari_histodiff.training.vae_trainer import (
    VAEModelSpec,
    VAETrainJob,
    train_vae,
)

torch.set_num_threads(1)
CLASSES = TissueClasses.from_names("dark,light")


def toy_samples(n: int = 2, size: int = 32) -> list[Sample]:
    """Images whose colour follows a two-class mask (left/right halves)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        mask = np.ones((size, size), np.uint8)
        mask[:, size // 2:] = 2
        mask = np.rot90(mask, i).copy()
        img = np.where(mask[..., None] == 1, 60, 200) * np.ones(3, int)
        img = img.astype(np.uint8)
        out.append(Sample(img + rng.integers(0, 10, img.shape).astype(np.uint8),
                          mask, f"toy{i}"))
    return out


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ae")
    job = VAETrainJob(
        samples=[Sample(s.image, None, s.source) for s in toy_samples()],
        run_dir=tmp / "run", out=tmp / "ae",
        settings=TrainSettings(steps=2, batch_size=2, learning_rate=1e-3, warmup=0,
                               checkpoint_every=2, cond_dropout=0.0, seed=1),
        spec=VAEModelSpec(patch_size=16, channels=(8, 16, 16)),
        augment=no_augment())
    train_vae(job, "cpu", quiet=True)
    return job.out


def latent_job(tmp_path, vae, name="run", steps=2, every=2, condition="mask",
               init=None) -> ImageTrainJob:
    return ImageTrainJob(
        samples=toy_samples(), classes=CLASSES, run_dir=tmp_path / name,
        out=tmp_path / f"{name}-model",
        settings=TrainSettings(steps=steps, batch_size=2, learning_rate=1e-3,
                               warmup=0, checkpoint_every=every, log_every=1,
                               ema_decay=0.9, seed=3),
        spec=ImageModelSpec(patch_size=16, channels=(8, 16), layers=1),
        augment=no_augment(), vae=vae, condition=condition, init_model=init)


def test_train_image_vae_writes_a_loadable_latent_model(autoencoder, tmp_path):
    job = latent_job(tmp_path, autoencoder)
    result = train_image_model(job, "cpu", quiet=True)
    parts = load_components(result["out"])
    card, unet, vae = parts["card"], parts["unet"], parts["vae"]
    assert vae is not None and vae.config.latent_channels == 4
    assert (unet.config.in_channels, unet.config.out_channels) == (4 + 3, 4)
    assert unet.config.sample_size == 16 // 4
    _, ae = load_autoencoder(autoencoder)
    assert card.space == "latent" and card.vae_scale_factor == 4
    assert card.patch_size == 16 and card.conditioning == "mask-onehot"
    assert card.latent_scaling == ae.latent_scaling
    assert card.latent_preview == ae.latent_preview
    assert card.autoencoder["factor"] == 4
    assert card.autoencoder["latent_channels"] == 4
    # class means in latent space: recomputed here from the definition
    with torch.no_grad():
        sums, area = np.zeros((3, 4)), np.zeros(3)
        everything = []
        for s in job.samples:
            for y in (0, 16):
                for x in (0, 16):
                    crop = s.image[y:y + 16, x:x + 16].astype(np.float32) / 127.5 - 1
                    t = torch.from_numpy(crop).permute(2, 0, 1)[None]
                    z = vae.encode(t).latent_dist.mean[0].numpy() * ae.latent_scaling
                    m = s.mask[y:y + 16, x:x + 16]
                    for k in range(3):
                        frac = (m == k).reshape(4, 4, 4, 4).mean(axis=(1, 3))
                        sums[k] += (z * frac).sum(axis=(1, 2))
                        area[k] += frac.sum()
                    everything.append(z.reshape(4, -1))
    overall = np.concatenate(everything, axis=1).mean(axis=1)
    expected = [overall, sums[1] / area[1], sums[2] / area[2]]
    np.testing.assert_allclose(card.class_means, expected, atol=1e-4)
    # an autoencoder can also be taken from a latent model directory
    _, again = load_autoencoder(result["out"])
    assert again.latent_scaling == ae.latent_scaling and again.factor == 4


def test_batches_are_scaled_latents_with_area_fractions(autoencoder, tmp_path):
    trainer = make_image_trainer(latent_job(tmp_path, autoencoder), "cpu")
    x0, cond = trainer.batch_fn(7)
    assert x0.shape == (2, 4, 4, 4) and cond.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(cond.sum(dim=1).numpy(), 1.0, atol=1e-6)
    assert torch.equal(cond * 16, (cond * 16).round())  # 4 x 4 pixels per cell
    again, _ = trainer.batch_fn(7)
    assert torch.equal(x0, again)


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_latent_resume_reaches_the_uninterrupted_weights(autoencoder, tmp_path):
    torch.manual_seed(0)
    straight = make_image_trainer(latent_job(tmp_path, autoencoder, "a", 4), "cpu")
    straight.fit(quiet=True)
    torch.manual_seed(0)
    first = make_image_trainer(latent_job(tmp_path, autoencoder, "b", 4), "cpu")
    first.fit(quiet=True, stop_after=2)
    torch.manual_seed(9)
    second = make_image_trainer(latent_job(tmp_path, autoencoder, "b", 4), "cpu")
    assert second.fit(resume=True, quiet=True)["step"] == 4
    for name in ("unet", "ema"):
        a, b = _weights(getattr(straight, name)), _weights(getattr(second, name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_condition_none_trains_an_unconditional_model(autoencoder, tmp_path,
                                                      capsys):
    from napari_histodiff.cli import main

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for s in toy_samples():
        Image.fromarray(s.image).save(tiles / f"{s.source}.png")
    out = tmp_path / "uncond"
    code = main(["train", "image", "--images", str(tiles), "--condition", "none",
                 "--vae", str(autoencoder), "--out", str(out), "--patch-size", "16",
                 "--channels", "8,16", "--layers", "1", "--steps", "2",
                 "--batch-size", "2", "--warmup", "0", "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    parts = load_components(out)
    assert parts["card"].conditioning == "none"
    assert parts["card"].classes.names == ["unknown"]
    assert parts["unet"].config.in_channels == 4  # latents only
    # fine-tuned with masks: zero-initialised class channels are added
    job = latent_job(tmp_path, autoencoder, "tuned", init=out)
    trainer = make_image_trainer(job, "cpu")
    assert trainer.unet.config.in_channels == 4 + 3
    result = train_image_model(job, "cpu", quiet=True)
    assert load_components(result["out"])["card"].conditioning == "mask-onehot"


def test_added_class_channels_leave_the_predictions_unchanged():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4,
                       block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    wider = _add_input_channels(unet, 3)
    x, cond = torch.randn(2, 4, 8, 8), torch.rand(2, 3, 8, 8)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = unet(x, t).sample
        b = wider(torch.cat([x, cond], dim=1), t).sample
    torch.testing.assert_close(a, b)


def _edited(autoencoder, tmp_path, edit):
    folder = tmp_path / "edited-ae"
    shutil.copytree(autoencoder, folder)
    data = json.loads((folder / AUTOENCODER_CARD).read_text())
    edit(data)
    (folder / AUTOENCODER_CARD).write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: d.update(factor=8), ["factor 4", "factor 8"]),
    (lambda d: d.update(latent_channels=3, latent_preview=None),
     ["4 latent channels", "says 3"]),
    (lambda d: d.pop("latent_scaling"), ["no latent_scaling"]),
])
def test_cli_refuses_a_vae_that_does_not_fit_its_card(autoencoder, tmp_path, capsys,
                                                      edit, named):
    from napari_histodiff.cli import main

    folder = _edited(autoencoder, tmp_path, edit)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    Image.fromarray(toy_samples()[0].image).save(tiles / "a.png")
    code = main(["train", "image", "--images", str(tiles), "--condition", "none",
                 "--vae", str(folder), "--out", str(tmp_path / "m"),
                 "--patch-size", "16", "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(folder) in err and all(n in err for n in named), err
    assert not (tmp_path / "m").exists()


def test_a_window_the_latent_unet_cannot_halve_is_named(autoencoder, tmp_path):
    job = latent_job(tmp_path, autoencoder)
    job.spec.patch_size = 20  # 5 latent pixels: not divisible by 2
    with pytest.raises(InputError, match="patch-size: 20 pixels must be a multiple "
                       "of 8"):
        make_image_trainer(job, "cpu")


def test_a_pixel_model_cannot_be_fine_tuned_on_latents(autoencoder, tmp_path):
    pixel = latent_job(tmp_path, None, "pixel")
    train_image_model(pixel, "cpu", quiet=True)
    job = latent_job(tmp_path, autoencoder, "bad", init=pixel.out)
    with pytest.raises(InputError, match="init-model: .* is a pixel-space model"):
        make_image_trainer(job, "cpu")
