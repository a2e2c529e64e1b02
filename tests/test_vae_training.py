"""The autoencoder trainer: runs, resumes exactly, measures its latents, and
its folders are refused when they do not fit their card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from napari_histodiff.errors import ModelFormatError, OutputNotOursError
from napari_histodiff.models.autoencoder import (
    AUTOENCODER_CARD,
    load_autoencoder,
    save_autoencoder,
)
from napari_histodiff.training.augment import no_augment
from napari_histodiff.training.data import Sample
from napari_histodiff.training.latents import (
    apply_latent_preview,
    encode,
    grid_tiles,
    to_model_space,
)
from napari_histodiff.training.loop import TrainSettings
from napari_histodiff.training.vae_trainer import (
    VAELossSettings,
    VAEModelSpec,
    VAETrainJob,
    make_vae_trainer,
    train_vae,
)

torch.set_num_threads(1)


COLOURS = [(200, 60, 60), (60, 60, 200), (60, 180, 80), (180, 100, 60)]


def toy_images(n: int = 2, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Two flat colours (top half the complement of the bottom), a little
    noise: quick to learn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.empty((size, size, 3))
        img[:] = COLOURS[(i + seed) % len(COLOURS)]
        img[: size // 2] = 255 - img[: size // 2]
        img += rng.integers(0, 6, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def toy_job(tmp_path, name="run", steps=4, every=2, adversarial=None, lr=5e-3,
            heldout=()) -> VAETrainJob:
    samples = [Sample(im, None, f"toy{i}") for i, im in enumerate(toy_images(3))]
    return VAETrainJob(
        samples=samples, run_dir=tmp_path / name, out=tmp_path / f"{name}-ae",
        settings=TrainSettings(steps=steps, batch_size=4, learning_rate=lr,
                               warmup=0, checkpoint_every=every, log_every=2,
                               ema_decay=0.5, seed=5, cond_dropout=0.0),
        spec=VAEModelSpec(factor=4, latent_channels=4, patch_size=16,
                          channels=(8, 16, 16)),
        loss=VAELossSettings(adversarial_start=adversarial),
        augment=no_augment(), heldout=list(heldout))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy autoencoder trained for 60 steps, with a held-out image."""
    tmp = tmp_path_factory.mktemp("vae")
    held = tmp / "held.png"
    Image.fromarray(toy_images(1, size=36, seed=3)[0]).save(held)
    job = toy_job(tmp, steps=60, every=60, heldout=[held])
    job.loss.ssim_weight = 0.1  # flat toy colours: L1 first
    result = train_vae(job, "cpu", quiet=True)
    return job, result


def test_training_writes_an_autoencoder_folder_with_its_figures(trained):
    job, result = trained
    assert result["out"] == str(job.out) and result["step"] == 60
    assert (job.out / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(job.out.rglob("*.bin"))
    data = json.loads((job.out / AUTOENCODER_CARD).read_text())
    assert data["format"] == "napari-histodiff-autoencoder"
    assert data["format_version"] == 1
    assert (data["factor"], data["latent_channels"]) == (4, 4)
    rec = data["reconstruction"]
    assert rec["heldout"] == ["held.png"] and rec["per_image"][0]["width"] == 36
    assert 5 < rec["psnr_db"] < 60 and -1 <= rec["ssim"] <= 1
    assert rec["psnr_db"] == result["psnr_db"]
    header = (job.run_dir / "loss.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "loss", "learning_rate", "time"]
    assert {"l1", "one_minus_ssim", "kl"} <= set(header)
    assert (job.run_dir / "loss.png").is_file()


def test_reconstruction_improves_with_training(trained):
    job, result = trained
    untrained = toy_job(job.run_dir.parent, name="untrained", steps=1, lr=1e-9,
                        heldout=job.heldout)
    first = train_vae(untrained, "cpu", quiet=True)
    assert result["psnr_db"] > first["psnr_db"] + 1.5


def test_latent_scaling_is_one_over_the_std_of_the_training_latents(trained):
    job, _ = trained
    vae, card = load_autoencoder(job.out)
    tiles, _ = grid_tiles(job.samples, 16)
    assert len(tiles) == 3 * 4  # three 32-px images, four 16-px tiles each
    with torch.no_grad():
        z = torch.cat([vae.encode(to_model_space(t[None])).latent_dist.mean
                       for t in tiles])
    assert card.latent_scaling == pytest.approx(1 / float(z.std()), rel=1e-4)
    assert float((z * card.latent_scaling).std()) == pytest.approx(1, rel=1e-4)


def test_preview_map_is_the_least_squares_fit_and_follows_the_decode(trained):
    job, _ = trained
    vae, card = load_autoencoder(job.out)
    tiles, _ = grid_tiles(job.samples, 16)
    x = to_model_space(tiles)
    scaled = encode(vae, x) * card.latent_scaling
    preview = apply_latent_preview(card.latent_preview, scaled)
    target = torch.nn.functional.avg_pool2d(x, 4)
    # normal equations: the residual is orthogonal to every latent channel
    residual = (target - preview).double()
    for c in range(4):
        assert abs(float((residual * scaled[:, c:c + 1]).mean())) < 1e-4
    assert abs(float(residual.mean())) < 1e-4
    # the recorded R^2 is that of this fit
    r2 = 1 - ((target - preview) ** 2).sum(dim=(0, 2, 3)) / (
        (target - target.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum(dim=(0, 2, 3))
    stats = card.provenance["statistics"]
    np.testing.assert_allclose(stats["preview_r2"], r2.numpy(), atol=2e-3)
    # and it shows what the (barely trained) decoder paints, at latent resolution
    with torch.no_grad():
        decoded = vae.decode(scaled / card.latent_scaling).sample
    pooled = torch.nn.functional.avg_pool2d(decoded, 4)
    r = np.corrcoef(pooled.flatten().numpy(), preview.flatten().numpy())[0, 1]
    r_input = np.corrcoef(target.flatten().numpy(), preview.flatten().numpy())[0, 1]
    print("preview correlation with the decode", r, "with the input", r_input)
    assert r > 0.3


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    straight = make_vae_trainer(toy_job(tmp_path, "a", adversarial=2), "cpu")
    straight.fit(quiet=True)
    first = make_vae_trainer(toy_job(tmp_path, "b", adversarial=2), "cpu")
    first.fit(quiet=True, stop_after=2)
    torch.manual_seed(123)  # another process
    second = make_vae_trainer(toy_job(tmp_path, "b", adversarial=2), "cpu")
    result = second.fit(resume=True, quiet=True)
    assert result["resumed_from"].endswith("step-0000002") and second.step == 4
    for name in ("vae", "ema", "disc"):
        a, b = _weights(getattr(straight, name)), _weights(getattr(second, name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = (tmp_path / "b" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    assert rows[-1].split(",")[-1] != ""  # the discriminator's loss is logged
    ckpt = sorted((tmp_path / "b" / "checkpoints").iterdir())[-1]
    assert (ckpt / "discriminator.safetensors").is_file()


def _ae_folder(trained, tmp_path, edit):
    import shutil

    job, _ = trained
    folder = tmp_path / "edited"
    shutil.copytree(job.out, folder)
    data = json.loads((folder / AUTOENCODER_CARD).read_text())
    edit(data)
    (folder / AUTOENCODER_CARD).write_text(json.dumps(data))
    return folder


def test_a_vae_of_another_factor_than_its_card_is_refused(trained, tmp_path):
    folder = _ae_folder(trained, tmp_path, lambda d: d.update(factor=8))
    with pytest.raises(ModelFormatError) as err:
        load_autoencoder(folder)
    msg = str(err.value)
    assert str(folder) in msg and "factor 4" in msg and "factor 8" in msg


def test_latent_channels_differing_from_the_card_are_refused(trained, tmp_path):
    folder = _ae_folder(trained, tmp_path,
                        lambda d: d.update(latent_channels=3, latent_preview=None))
    with pytest.raises(ModelFormatError) as err:
        load_autoencoder(folder)
    msg = str(err.value)
    assert str(folder) in msg and "4 latent channels" in msg and "says 3" in msg


def test_a_card_without_latent_scaling_is_refused(trained, tmp_path):
    folder = _ae_folder(trained, tmp_path, lambda d: d.pop("latent_scaling"))
    with pytest.raises(ModelFormatError, match="no latent_scaling") as err:
        load_autoencoder(folder)
    assert str(folder) in str(err.value)


def test_save_replaces_only_an_autoencoder_folder(trained, tmp_path):
    job, _ = trained
    vae, card = load_autoencoder(job.out)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(OutputNotOursError, match="not an autoencoder folder"):
        save_autoencoder(foreign, vae, card, overwrite=True)
    assert (foreign / "holiday.jpg").read_bytes() == b"not ours"
    again = save_autoencoder(tmp_path / "copy", vae, card)
    save_autoencoder(again, vae, card, overwrite=True)  # ours: replaced
    assert not [p for p in tmp_path.iterdir() if "histodiff-" in p.name]


def test_cli_trains_an_autoencoder_and_prints_its_figures(tmp_path, capsys):
    from napari_histodiff.cli import main

    images = tmp_path / "tiles"
    images.mkdir()
    for i, im in enumerate(toy_images()):
        Image.fromarray(im).save(images / f"t{i}.png")
    out = tmp_path / "ae"
    code = main(["train", "vae", "--images", str(images), "--out", str(out),
                 "--patch-size", "16", "--steps", "2", "--batch-size", "2",
                 "--warmup", "0", "--heldout", str(images / "t0.png"),
                 "--quiet", "--threads", "1"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["factor"] == 4 and figures["heldout"] == ["t0.png"]
    assert figures["latent_scaling"] > 0 and figures["psnr_db"] is not None
    assert (out / AUTOENCODER_CARD).is_file()


@pytest.mark.parametrize(("args", "named"), [
    (["--factor", "5"], ["--factor", "5"]),
    (["--factor", "eight"], ["--factor", "eight"]),
])
def test_cli_refuses_a_bad_factor(tmp_path, capsys, args, named):
    from napari_histodiff.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "vae", "--images", str(tmp_path), "--out",
              str(tmp_path / "ae"), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(n in err for n in named)


def test_python_api_refuses_a_bad_factor(tmp_path):
    from napari_histodiff.errors import InputError

    job = toy_job(tmp_path)
    job.spec.factor = 6
    with pytest.raises(InputError, match=r"factor: expected one of \(4, 8\), got 6"):
        make_vae_trainer(job, "cpu")


def test_bad_training_images_are_named(tmp_path):
    from napari_histodiff.errors import InputError
    from napari_histodiff.training.vae_trainer import load_vae_images

    with pytest.raises(InputError, match=r"images: .*empty holds no images"):
        (tmp_path / "empty").mkdir()
        load_vae_images(tmp_path / "empty", [], 16)
    small = tmp_path / "small.png"
    Image.fromarray(toy_images(1, size=12)[0]).save(small)
    with pytest.raises(InputError, match=r"image: .*small.png is 12x12, smaller "
                       "than the 16-pixel training crop"):
        load_vae_images(None, [small], 16)
