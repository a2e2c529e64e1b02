"""Class guidance through a model's classifier/: the API, the CLI and the
errors (the guidance *sign* with a trained classifier is tested with the
classifier training, tests/test_classifier_training.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from _helpers import run_cli
from napari_histodiff import HistoDiffPipeline
from napari_histodiff.errors import InputError, ModelFormatError
from napari_histodiff.models.classifier import (
    ClassifierConfig,
    NoiseAwareClassifier,
    autoencoder_fingerprint,
    load_classifier,
    save_classifier,
)
from napari_histodiff.models.factory import build_vae, init_model


@pytest.fixture(scope="module")
def guided_dir(tmp_path_factory):
    """A random latent model (32-px windows = 8 latent px) with a random
    classifier over two classes."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("guided") / "model"
    init_model(out, "tumour,stroma", patch_size=32, latent=True)
    cfg = ClassifierConfig(class_names=["tumour", "stroma"], in_channels=4,
                           sample_size=8, factor=4,
                           autoencoder_sha256=autoencoder_fingerprint(out))
    save_classifier(out, NoiseAwareClassifier(cfg))
    return out


def test_class_guidance_changes_the_image_and_is_recorded(guided_dir):
    pipe = HistoDiffPipeline.from_pretrained(guided_dir)
    mask = np.ones((32, 48), np.int32)
    plain = pipe(mask, num_inference_steps=3, seed=0)
    guided = pipe(mask, num_inference_steps=3, seed=0, class_name="stroma",
                  classifier_scale=50.0)
    off = pipe(mask, num_inference_steps=3, seed=0, class_name="stroma",
               classifier_scale=0.0)
    assert not np.array_equal(plain.image, guided.image)
    assert np.array_equal(plain.image, off.image)  # scale 0 is no guidance
    term = guided.settings["guidance"][-1]
    assert term == {"kind": "classifier", "target": 1, "scale": 50.0,
                    "target_name": "stroma"}


def test_class_guidance_bad_input(guided_dir, tmp_path):
    pipe = HistoDiffPipeline.from_pretrained(guided_dir)
    mask = np.ones((32, 32), np.int32)
    with pytest.raises(InputError, match="'necrosis'.*knows tumour, stroma"):
        pipe(mask, num_inference_steps=1, class_name="necrosis")
    with pytest.raises(InputError, match="classifier_scale.*without class_name"):
        pipe(mask, num_inference_steps=1, classifier_scale=2.0)
    with pytest.raises(InputError, match="classifier_scale"):
        pipe(mask, num_inference_steps=1, class_name="tumour", classifier_scale=-1)
    bare = tmp_path / "bare"
    init_model(bare, "tumour,stroma", patch_size=32, latent=True)
    with pytest.raises(InputError, match="no classifier/.*train classifier"):
        HistoDiffPipeline.from_pretrained(bare)(mask, num_inference_steps=1,
                                                class_name="tumour")


def test_classifier_for_another_autoencoder_or_window_is_refused(guided_dir,
                                                                 tmp_path):
    other = tmp_path / "other"
    shutil.copytree(guided_dir, other)
    shutil.rmtree(other / "vae")
    torch.manual_seed(1)
    build_vae("tiny").save_pretrained(other / "vae")
    with pytest.raises(ModelFormatError, match="autoencoder .* but .*/vae is"):
        load_classifier(other, 4, 4, 8)
    with pytest.raises(ModelFormatError, match="8-pixel windows .* 16-pixel"):
        load_classifier(guided_dir, 4, 4, 16)
    with pytest.raises(ModelFormatError, match="4-channel latents .* 3-channel"):
        load_classifier(guided_dir, 3, 4, 8)
    with pytest.raises(ModelFormatError, match="factor 4 .* factor 8"):
        load_classifier(guided_dir, 4, 8, 8)


def test_damaged_classifier_weights_name_the_layer(guided_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "m"
    shutil.copytree(guided_dir, model)
    weights = model / "classifier" / "model.safetensors"
    state = load_file(str(weights))
    state["head.weight"] = torch.zeros(3, state["head.weight"].shape[1])
    save_file(state, str(weights))
    with pytest.raises(ModelFormatError, match=r"head.weight has shape \(3,"):
        load_classifier(model)
    (model / "classifier" / "config.json").write_text("{}")
    with pytest.raises(ModelFormatError, match="not a napari-histodiff classifier"):
        load_classifier(model)


def test_cli_generate_with_class_and_size(guided_dir, tmp_path):
    out = tmp_path / "out.zarr"
    res = run_cli("generate", "--model", str(guided_dir), "--size", "32x40",
                  "--out", str(out), "--steps", "2", "--class", "tumour",
                  "--classifier-scale", "5", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "class 'tumour'" in res.stdout
    attrs = json.dumps(json.loads((out / "zarr.json").read_text())["attributes"])
    assert '"kind": "classifier", "target": 0, "scale": 5.0, "target_name": ' \
        '"tumour"' in attrs


@pytest.mark.parametrize("args, words", [
    (["--class", "necrosis"], ["necrosis", "tumour, stroma"]),
    (["--classifier-scale", "2"], ["--classifier-scale", "--class"]),
    (["--class", "tumour", "--classifier-scale", "-1"], ["--classifier-scale"]),
    (["--size", "4x4"], ["--size"]),
])
def test_cli_class_guidance_errors(guided_dir, tmp_path, args, words):
    out = tmp_path / "out.zarr"
    res = run_cli("generate", "--model", str(guided_dir), "--out", str(out),
                  "--steps", "1", "--quiet", *(["--size", "32x32"]
                                               if "--size" not in args else []),
                  *args)
    assert res.returncode == 2, res.stderr
    for word in words:
        assert word in res.stderr
    assert not out.exists()
