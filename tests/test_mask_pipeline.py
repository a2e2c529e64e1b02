"""The mask generator: inputs, class sets, sizes beyond a window, smoothness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.cli import main
from napari_histodiff.conditioning import ClassSetCondition
from napari_histodiff.errors import ModelFormatError
from napari_histodiff.models.card import ModelCard
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.pipelines.mask_generation import (
    HistoDiffMaskPipeline,
    upsample_labels,
)
from napari_histodiff.training.data import Sample
from napari_histodiff.training.loop import TrainSettings
from napari_histodiff.training.mask_trainer import (
    MaskModelSpec,
    MaskTrainJob,
    class_set,
    mask_to_fractions,
    train_mask_model,
)

torch.set_num_threads(1)
CLASSES = TissueClasses.from_names("tumor,stroma,fat")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A mask model trained for 3 steps (random-ish weights, right format)."""
    tmp = tmp_path_factory.mktemp("mask")
    mask = np.ones((64, 64), np.uint8)
    mask[20:40, 10:50] = 2
    mask[50:, :] = 3
    job = MaskTrainJob(
        samples=[Sample(np.zeros((64, 64, 3), np.uint8), mask, "toy")],
        classes=CLASSES, run_dir=tmp / "run", out=tmp / "model",
        settings=TrainSettings(steps=3, batch_size=2, warmup=0,
                               checkpoint_every=3),
        spec=MaskModelSpec(window=8, factor=4, channels=(8, 16), layers=1))
    result = train_mask_model(job, "cpu", quiet=True)
    assert result["out"]
    return tmp / "model"


def test_model_dir_has_mask_unet_and_card(model_dir):
    card = ModelCard.load(model_dir)
    assert card.mask_resolution_factor == 4
    assert card.provenance["mask_model"]["steps"] == 3
    assert (model_dir / "mask_unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_generates_only_the_chosen_classes_beyond_one_window(model_dir):
    pipe = HistoDiffMaskPipeline.from_pretrained(model_dir)
    out = pipe(["tumor", "fat"], height=70, width=90, num_inference_steps=3, seed=2)
    assert out.mask.shape == (70, 90)  # canvas 18x23 > the 8-pixel window
    assert set(np.unique(out.mask)) <= {1, 3}
    assert out.probabilities.shape == (4, 18, 23)
    again = pipe(["tumor", "fat"], height=70, width=90, num_inference_steps=3, seed=2)
    assert np.array_equal(out.mask, again.mask)
    single = pipe("stroma", height=16, width=16, num_inference_steps=2)
    assert set(np.unique(single.mask)) == {2}
    assert out.settings["noise_mean"] == "classes"
    plain = pipe(["tumor", "fat"], height=70, width=90, num_inference_steps=3,
                 seed=2, noise_mean="zero")
    assert plain.settings["noise_mean"] == "zero"


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": ["bone"]}, "classes: 'bone'"),
    ({"classes": []}, "classes"),
    ({"classes": [7]}, "classes: id 7"),
    ({"height": 4}, "height"),
    ({"guidance_scale": -1.0}, "guidance_scale"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"seed": -3}, "seed"),
    ({"noise_mean": "grey"}, "noise_mean: 'grey'"),
])
def test_check_inputs_names_the_argument(model_dir, kwargs, match):
    pipe = HistoDiffMaskPipeline.from_pretrained(model_dir)
    args = {"classes": ["tumor"], "height": 16, "width": 16,
            "num_inference_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**args)


def test_model_without_mask_unet_is_explained(tmp_path):
    from napari_histodiff.models.factory import init_model

    init_model(tmp_path / "m", "a,b", patch_size=16, size="tiny")
    with pytest.raises(ModelFormatError, match="no mask generator"):
        HistoDiffMaskPipeline.from_pretrained(tmp_path / "m")


def test_upsampling_gives_smooth_not_blocky_boundaries():
    probs = np.zeros((3, 4, 4), np.float32)
    probs[1] = np.eye(4)[::-1].cumsum(0)  # a staircase diagonal at low res
    probs[2] = 1 - probs[1]
    labels = upsample_labels(probs, (64, 64), np.array([False, True, True]), 2.0)
    assert set(np.unique(labels)) == {1, 2}
    # nearest-neighbour would give 4 straight-edged steps; count boundary runs
    changes = np.abs(np.diff((labels == 1).astype(int), axis=1)).sum(axis=1)
    positions = [int(np.argmax(np.diff((row == 1).astype(int)) != 0))
                 for row in labels if np.any(np.diff((row == 1).astype(int)))]
    assert changes.max() <= 2
    assert len(set(positions)) > 8  # the edge moves row by row, not in 4 jumps


def test_class_set_condition():
    mask = np.ones((1, 16, 16), np.uint8)
    mask[0, :8] = 2
    frac = mask_to_fractions(mask, 4, 4)
    assert frac.shape == (1, 4, 4, 4)
    assert class_set(frac).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    cond = ClassSetCondition(np.array([0, 1, 0, 1]))
    assert cond.window(np.arange(3), np.arange(5)).shape == (4, 3, 5)
    assert not cond.null(2, 2).any()


def test_cli_generate_mask(model_dir, tmp_path, capsys):
    out = tmp_path / "m.png"
    args = ["generate-mask", "--model", str(model_dir), "--classes", "tumor,stroma",
            "--size", "40x48", "--steps", "2", "--out", str(out), "--seed", "1"]
    assert main(args) == 0
    from napari_histodiff.io.masks import read_mask

    assert read_mask(out).shape == (40, 48)
    assert main(args) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args[:4], "tumor,bone", *args[5:], "--overwrite"]) == 2
    assert "bone" in capsys.readouterr().err
