"""The pipeline: guidance, determinism, schedulers, input checks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_histodiff.conditioning import (
    ClassifierFreeGuidance,
    Denoiser,
    MaskCondition,
)
from napari_histodiff.devices import resolve_device, resolve_dtype
from napari_histodiff.errors import DeviceError, InputError


class _RecordingUNet(torch.nn.Module):
    """Output depends on the class channels, so cond and null differ."""

    def __init__(self):
        super().__init__()
        self.batches = []
        self.config = SimpleNamespace(in_channels=6, out_channels=3, sample_size=8,
                                      block_out_channels=(4, 4))

    def forward(self, x, t):
        self.batches.append(x.shape[0])
        out = x[:, :3] * 0 + x[:, 3:].argmax(1, keepdim=True).float()

        class R:
            sample = out

        return R()


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_guidance_formula_and_single_batched_call(w):
    unet = _RecordingUNet()
    cond_src = MaskCondition(np.full((8, 8), 2), num_classes=3)
    den = Denoiser(unet, [cond_src], [ClassifierFreeGuidance("mask", w)],
                   torch.device("cpu"), torch.float32)
    ys = xs = np.arange(8)
    out = den(np.zeros((2, 3, 8, 8), np.float32), 10, [(ys, xs)] * 2)
    # cond branch predicts 2 everywhere, null branch 0: null + w (cond - null)
    np.testing.assert_allclose(out, 2.0 * w)
    assert len(unet.batches) == 1  # both branches in one call
    assert unet.batches[0] == (2 if w in (0.0, 1.0) else 4)


def test_onehot_channels(small_mask):
    cond = MaskCondition(small_mask, num_classes=4)
    ch = cond.window(np.arange(37), np.arange(45))
    assert ch.shape == (4, 37, 45)
    assert np.array_equal(ch.argmax(0), small_mask)
    assert np.all(ch.sum(0) == 1)
    null = cond.null(5, 6)
    assert null[0].min() == 1 and null[1:].max() == 0


def test_same_seed_same_pixels_other_seed_differs(tiny_pipe, small_mask):
    kw = dict(num_inference_steps=2, guidance_scale=2.0)
    a = tiny_pipe(small_mask, seed=3, **kw).image
    b = tiny_pipe(small_mask, seed=3, **kw).image
    c = tiny_pipe(small_mask, seed=4, **kw).image
    assert a.shape == (37, 45, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["dpm++", "ddim", "ddpm", "euler",
                                  "UniPCMultistepScheduler"])
def test_schedulers_swap_by_name(tiny_pipe, small_mask, name):
    out = tiny_pipe(small_mask, num_inference_steps=2, scheduler=name, seed=0)
    assert out.image.shape == (37, 45, 3)
    assert out.settings["scheduler"] == name
    assert type(tiny_pipe.scheduler).__name__ == "DDPMScheduler"  # untouched


def test_settings_recorded(tiny_pipe, small_mask):
    out = tiny_pipe(small_mask, num_inference_steps=2, guidance_scale=1.5, seed=9)
    s = out.settings
    assert s["seed"] == 9 and s["guidance_scale"] == 1.5
    assert s["num_inference_steps"] == 2 and s["strategy"] == "random-shift"
    assert s["software"].startswith("napari-histodiff")
    assert len(s["mask_sha256"]) == 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask": np.zeros((4, 4, 3), np.uint8)}, "2-D"),
        ({"mask": np.zeros((8, 8), np.float32)}, "integer"),
        ({"mask": np.full((8, 8), 7, np.uint8)}, r"\[7\]"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"seed": -1}, "seed"),
        ({"window_batch": 0}, "window_batch"),
        ({"scheduler": "nope"}, "scheduler"),
        ({"strategy": "nope"}, "strategy"),
    ],
)
def test_bad_inputs_name_the_argument(tiny_pipe, kwargs, match):
    args = {"mask": np.zeros((8, 8), np.uint8), "num_inference_steps": 1}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        tiny_pipe(**args)


def test_devices():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="device"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="fp16"):
        resolve_dtype("cpu", fp16=True)


def test_region_regeneration_changes_only_the_region(tiny_pipe, small_mask):
    base = tiny_pipe(small_mask, num_inference_steps=2, seed=1).image
    regen = np.zeros(small_mask.shape, bool)
    regen[8:20, 10:30] = True
    out = tiny_pipe(small_mask, num_inference_steps=2, seed=2, context_image=base,
                    regenerate=regen).image
    assert np.array_equal(out[~regen], base[~regen])
    assert not np.array_equal(out[regen], base[regen])
    with pytest.raises(InputError, match="regenerate"):
        tiny_pipe(small_mask, num_inference_steps=1, context_image=base,
                  regenerate=np.zeros(small_mask.shape, bool))


def test_noise_mean_from_the_card(tiny_model_dir, small_mask, tmp_path):
    """A card without class means: auto = zero and 'classes' is refused; with
    them, auto = classes, the output changes and the settings say which."""
    import shutil

    from napari_histodiff.errors import InputError
    from napari_histodiff.models.card import ModelCard
    from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline

    plain = HistoDiffPipeline.from_pretrained(tiny_model_dir, device="cpu")
    assert plain.card.class_means is None
    out = plain(small_mask, num_inference_steps=2, seed=0)
    assert out.settings["noise_mean"] == "zero"
    with pytest.raises(InputError, match="noise_mean: 'classes' needs"):
        plain(small_mask, num_inference_steps=2, noise_mean="classes")
    with pytest.raises(InputError, match="noise_mean: 'grey'"):
        plain(small_mask, num_inference_steps=2, noise_mean="grey")

    folder = tmp_path / "with-means"
    shutil.copytree(tiny_model_dir, folder)
    card = ModelCard.load(folder)
    card.class_means = [[0.0, 0.0, 0.0], [0.9, -0.5, 0.2], [-0.3, 0.4, 0.8],
                        [0.5, 0.5, -0.9]]
    card.save(folder)
    pipe = HistoDiffPipeline.from_pretrained(folder, device="cpu")
    assert pipe.card.class_means == card.class_means  # round trip
    centred = pipe(small_mask, num_inference_steps=2, seed=0)
    zero = pipe(small_mask, num_inference_steps=2, seed=0, noise_mean="zero")
    assert centred.settings["noise_mean"] == "classes"
    np.testing.assert_array_equal(zero.image, out.image)
    assert not np.array_equal(centred.image, zero.image)


def test_malformed_class_means_are_refused(tiny_model_dir):
    from napari_histodiff.errors import ModelFormatError
    from napari_histodiff.models.card import ModelCard

    card = ModelCard.load(tiny_model_dir)
    for bad in ([[0.0, 0.0, 0.0]], [[0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 2],
                [[float("nan")] * 3] * 4):
        with pytest.raises(ModelFormatError, match="class_means"):
            ModelCard(classes=card.classes, class_means=bad)
