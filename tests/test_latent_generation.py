"""Latent models at generation time: previews through the card's linear map,
region regeneration, unconditional models, odd sizes and the load errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_histodiff import HistoDiffPipeline
from napari_histodiff.errors import InputError, ModelFormatError
from napari_histodiff.models.directory import load_components, save_components
from napari_histodiff.models.factory import build_unet, build_vae, init_model
from napari_histodiff.sampling.encode import encode_tiled
from napari_histodiff.sampling.events import StepEvent

STEPS = 3


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory):
    """A random latent model (factor 4, 32-px windows) with a preview map."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("latent") / "model"
    parts = init_model(out, "tumor,stroma", patch_size=32, latent=True)
    weight = [[0.5, 0.1, 0.0, 0.0], [0.0, 0.5, 0.1, 0.0], [0.0, 0.0, 0.5, 0.1]]
    card = replace(parts["card"], latent_preview={"weight": weight,
                                                  "bias": [0.1, 0.0, -0.1]},
                   latent_scaling=0.5)
    save_components(out, card, overwrite=True, unet=parts["unet"],
                    scheduler=parts["scheduler"], vae=parts["vae"])
    return out


@pytest.fixture(scope="module")
def latent_pipe(latent_dir):
    return HistoDiffPipeline.from_pretrained(latent_dir)


def _mask(h=64, w=64):
    mask = np.zeros((h, w), np.int32)
    mask[:, : w // 2] = 1
    mask[: h // 2, w // 2:] = 2
    return mask


def test_preview_map_updates_every_step_without_decoding(latent_pipe, monkeypatch):
    """With a preview map the preview follows every step and the VAE decodes
    once, at the end; the preview is the map applied to the step's x0."""
    decodes = []
    real = type(latent_pipe.vae).decode

    def counting(self, *a, **k):
        decodes.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(type(latent_pipe.vae), "decode", counting)
    run = latent_pipe.stream(_mask(), num_inference_steps=STEPS, seed=1,
                             preview_every=1)
    previews = []
    for event in run.events():
        if isinstance(event, StepEvent) and event.step < STEPS:
            assert event.regions  # every step shows something
            assert not decodes, "no VAE decode before the end"
            previews.append(np.asarray(run.store["preview"]).copy())
    assert "x0" not in run.store
    assert len(previews) == STEPS - 1
    assert not np.array_equal(previews[0], previews[-1])
    # each latent pixel shows as one 4x4 block of the same colour
    block = previews[0][:, :4, :4].reshape(3, -1)
    assert (block == block[:, :1]).all()
    assert decodes  # the final image is decoded
    assert run.output().image.shape == (64, 64, 3)


def test_without_preview_map_previews_decode(latent_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    card = json.loads((model / "histodiff.json").read_text())
    card["latent_preview"] = None
    (model / "histodiff.json").write_text(json.dumps(card))
    pipe = HistoDiffPipeline.from_pretrained(model)
    run = pipe.stream(_mask(), num_inference_steps=STEPS, seed=1, preview_every=1)
    list(run.events())
    assert run.output().image is not None


def test_odd_mask_size_is_padded_and_cropped(latent_pipe):
    out = latent_pipe(_mask(70, 45), num_inference_steps=2, seed=0)
    assert out.image.shape == (70, 45, 3)
    assert out.store["latents"].shape[1:] == (18, 12)  # ceil(70/4), ceil(45/4)


def test_latent_region_regeneration(latent_pipe):
    """Outside the region the output is the context exactly; inside it the
    pixels are new, blending in over a band at the region's edge; the held
    latents end as the encoded context."""
    rng = np.random.default_rng(0)
    context = rng.integers(60, 200, (64, 64, 3)).astype(np.uint8)
    regen = np.zeros((64, 64), bool)
    regen[20:44, 20:44] = True
    out = latent_pipe(_mask(), num_inference_steps=STEPS, seed=2,
                      context_image=context, regenerate=regen)
    from scipy.ndimage import distance_transform_edt

    assert np.array_equal(out.image[~regen], context[~regen])
    depth = distance_transform_edt(regen)
    deep = depth > 9  # beyond the 2-latent band (8 px at factor 4)
    assert deep.any()
    assert (out.image[deep] != context[deep]).any(axis=-1).mean() > 0.9
    # in the band, the closer to the edge the closer to the kept image
    edge = (depth >= 1) & (depth <= 2)
    diff = np.abs(out.image.astype(int) - context.astype(int)).sum(-1)
    assert diff[edge].mean() < diff[deep].mean()
    # held latents end exactly at the encoded context
    vae = latent_pipe.vae
    z = encode_tiled(vae, np.moveaxis(context.astype(np.float32) / 127.5 - 1, -1, 0),
                     4, latent_pipe.card.latent_scaling, "cpu", torch.float32)
    held = ~regen.reshape(16, 4, 16, 4).any(axis=(1, 3))
    assert held.any() and not held.all()
    lat = np.asarray(out.store["latents"])
    np.testing.assert_allclose(lat[:, held], z[:, held], atol=1e-6)
    assert not np.allclose(lat[:, ~held], z[:, ~held], atol=1e-3)


def test_latent_regeneration_diffinfinite_refused(latent_pipe):
    regen = np.zeros((64, 64), bool)
    regen[:8, :8] = True
    with pytest.raises(InputError, match="diffinfinite"):
        latent_pipe(_mask(), num_inference_steps=2, strategy="diffinfinite",
                    context_image=np.zeros((64, 64, 3), np.uint8), regenerate=regen)


def test_encode_tiled_matches_one_piece_when_it_fits(latent_pipe):
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (3, 40, 36)).astype(np.float32)
    vae = latent_pipe.vae
    z = encode_tiled(vae, image, 4, 2.0, "cpu", torch.float32, tile=64)
    with torch.no_grad():
        ref = vae.encode(torch.from_numpy(image[None])).latent_dist.mean[0].numpy()
    np.testing.assert_allclose(z, 2.0 * ref, atol=1e-5)
    # small tiles: the same shape; a margin of context brings them closer to
    # the one-piece result (the encoder's norms and attention see the tile)
    bare = encode_tiled(vae, image, 4, 2.0, "cpu", torch.float32, tile=4, margin=0)
    zt = encode_tiled(vae, image, 4, 2.0, "cpu", torch.float32, tile=4, margin=4)
    assert zt.shape == bare.shape == z.shape
    assert np.abs(zt - z).mean() < np.abs(bare - z).mean()


@pytest.fixture(scope="module")
def unconditional_dir(tmp_path_factory, latent_dir):
    parts = load_components(latent_dir)
    card = replace(parts["card"], conditioning="none")
    out = tmp_path_factory.mktemp("uncond") / "model"
    torch.manual_seed(0)
    unet = build_unet(4, 4, 8, "tiny")
    save_components(out, card, unet=unet, scheduler=parts["scheduler"],
                    vae=parts["vae"])
    return out


def test_unconditional_model_generates_at_any_size(unconditional_dir):
    pipe = HistoDiffPipeline.from_pretrained(unconditional_dir)
    out = pipe(np.zeros((48, 80), np.int32), num_inference_steps=2, seed=0)
    assert out.image.shape == (48, 80, 3)
    assert out.settings["conditions"] == []
    assert out.settings["guidance"] == []


def test_unconditional_model_refuses_a_painted_mask(unconditional_dir):
    pipe = HistoDiffPipeline.from_pretrained(unconditional_dir)
    with pytest.raises(InputError, match="unconditional"):
        pipe(_mask(), num_inference_steps=2)


# -- load errors: one message naming the folder and both values ---------------------
def _edit_card(model, **changes):
    card = json.loads((model / "histodiff.json").read_text())
    for key, value in changes.items():
        if value is ...:
            card.pop(key)
        else:
            card[key] = value
    (model / "histodiff.json").write_text(json.dumps(card))


def test_latent_model_without_vae(latent_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    shutil.rmtree(model / "vae")
    with pytest.raises(ModelFormatError, match="no vae/") as info:
        load_components(model)
    assert str(model) in str(info.value)


def test_vae_factor_differs_from_card(latent_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    shutil.rmtree(model / "vae")
    build_vae("tiny", factor=8).save_pretrained(model / "vae")
    with pytest.raises(ModelFormatError, match="factor 8.*vae_scale_factor 4"):
        load_components(model)


def test_vae_latent_channels_differ_from_unet(latent_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    shutil.rmtree(model / "vae")
    build_vae("tiny", latent_channels=3).save_pretrained(model / "vae")
    with pytest.raises(ModelFormatError, match="takes 7 input channels.*6") as info:
        load_components(model)
    assert "3 latent channels of its vae/" in str(info.value)


def test_latent_card_without_scaling(latent_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    _edit_card(model, latent_scaling=...)
    with pytest.raises(ModelFormatError, match="latent_scaling"):
        load_components(model)


@pytest.mark.parametrize("preview", [
    {"weight": [[1, 0, 0, 0]] * 2, "bias": [0, 0, 0]},
    {"weight": [[1, 0, 0]] * 3, "bias": [0, 0, 0]},
    {"weight": [[1, 0, 0, 0]] * 3},
    [1, 2, 3],
])
def test_bad_preview_map(latent_dir, tmp_path, preview):
    model = tmp_path / "m"
    shutil.copytree(latent_dir, model)
    _edit_card(model, latent_preview=preview)
    with pytest.raises(ModelFormatError, match="latent_preview"):
        load_components(model)
