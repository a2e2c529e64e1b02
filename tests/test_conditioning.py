"""The conditioning interface (issue 12): conditions, guidance terms, denoiser.

Tiny randomly initialised UNets stand in for trained ones: the tests check
that each condition reaches the UNet in the right place and form, that the
guidance terms combine the branches as documented, and that mismatches are
refused with messages naming both sides.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.conditioning import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    ClassLabelCondition,
    Denoiser,
    MaskCondition,
    TokenCondition,
)
from napari_histodiff.conditioning.guidance import branch_coefficients
from napari_histodiff.errors import InputError
from napari_histodiff.models.card import ModelCard
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.models.factory import default_scheduler
from napari_histodiff.pipelines import HistoDiffPipeline

CPU = torch.device("cpu")
K = 4  # unknown + 3 classes


def class_unet(num_class_embeds=3):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3 + K, out_channels=3,
                       block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       num_class_embeds=num_class_embeds).eval()


def text_unet(dim=12):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=3 + K, out_channels=3,
        block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=dim, norm_num_groups=8, attention_head_dim=4).eval()


def windows_of(mask, n=2, size=8):
    ys = np.arange(size)
    return [(ys, np.arange(i, i + size)) for i in range(n)]


def mask_and_x(seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, K, (8, 9)).astype(np.uint8)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    return mask, x


def counting(unet):
    calls = []
    unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    return calls


def raw(unet, x, chans, **kw):
    inp = torch.from_numpy(np.concatenate([x, chans], axis=1))
    with torch.no_grad():
        return unet(inp, torch.full((x.shape[0],), 500), **kw).sample.numpy()


# -- branches ------------------------------------------------------------------
def test_branch_weights_sum_to_one_and_unused_branches_are_dropped():
    def cfg(names, w):
        return ClassifierFreeGuidance(names, w)

    assert branch_coefficients(["mask"], [cfg("mask", 1.0)]) == {
        frozenset({"mask"}): 1.0}
    assert branch_coefficients(["mask"], [cfg("mask", 0.0)]) == {frozenset(): 1.0}
    assert branch_coefficients(["mask"], [cfg("mask", 2.5)]) == {
        frozenset({"mask"}): 2.5, frozenset(): -1.5}
    two = branch_coefficients(["mask", "text"], [cfg("mask", 2.0), cfg("text", 1.5)])
    assert two == {frozenset({"mask", "text"}): 2.5, frozenset({"text"}): -1.0,
                   frozenset({"mask"}): -0.5}
    assert sum(two.values()) == pytest.approx(1.0)
    with pytest.raises(InputError, match="'text'.*not a condition"):
        branch_coefficients(["mask"], [cfg("text", 2.0)])


@pytest.mark.parametrize("w, batch", [(1.0, 2), (0.0, 2), (2.0, 4)])
def test_a_branch_of_weight_zero_is_never_evaluated(w, batch):
    unet = class_unet(None)
    mask, x = mask_and_x()
    cond = MaskCondition(mask, K)
    calls = counting(unet)
    den = Denoiser(unet, [cond], [ClassifierFreeGuidance("mask", w)], CPU,
                   torch.float32)
    out = den(x, 500, windows_of(mask))
    assert calls == [batch]  # conditional and null branch in one call
    win = np.stack([cond.window(*wi) for wi in windows_of(mask)])
    c, n = raw(unet, x, win), raw(unet, x, np.broadcast_to(cond.null(8, 8), win.shape))
    np.testing.assert_allclose(out, n + w * (c - n), atol=1e-5)


# -- mask + class label, two classifier-free terms at once -------------------------
def test_mask_and_class_label_with_two_guidance_terms():
    unet = class_unet()
    mask, x = mask_and_x(1)
    cond = MaskCondition(mask, K)
    calls = counting(unet)
    den = Denoiser(unet, [cond, ClassLabelCondition(2, null_label=0)],
                   [ClassifierFreeGuidance("mask", 2.0),
                    ClassifierFreeGuidance("label", 1.5)], CPU, torch.float32)
    out = den(x, 500, windows_of(mask))
    assert calls == [6]  # three branches of two windows, one UNet call
    win = np.stack([cond.window(*wi) for wi in windows_of(mask)])
    null = np.broadcast_to(cond.null(8, 8), win.shape)
    two, zero = torch.tensor([2, 2]), torch.tensor([0, 0])
    e_all = raw(unet, x, win, class_labels=two)
    e_no_mask = raw(unet, x, null, class_labels=two)
    e_no_label = raw(unet, x, win, class_labels=zero)
    expected = e_all + 1.0 * (e_all - e_no_mask) + 0.5 * (e_all - e_no_label)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # and the label matters: another label gives another prediction
    other = Denoiser(unet, [cond, ClassLabelCondition(1)],
                     [ClassifierFreeGuidance("mask", 2.0),
                      ClassifierFreeGuidance("label", 1.5)], CPU, torch.float32)
    assert not np.allclose(other(x, 500, windows_of(mask)), out, atol=1e-4)


def pipe_with(unet, patch=16):
    card = ModelCard(classes=TissueClasses.from_names("a,b,c"), patch_size=patch)
    return HistoDiffPipeline(unet=unet, scheduler=default_scheduler(), card=card)


def test_class_label_through_the_pipeline_is_recorded():
    pipe = pipe_with(class_unet())
    mask = np.zeros((20, 24), np.uint8)
    mask[:, 12:] = 2
    kw = dict(num_inference_steps=2, seed=0,
              guidance_terms=[ClassifierFreeGuidance("label", 3.0)])
    a = pipe(mask, conditions=[ClassLabelCondition(1)], **kw)
    b = pipe(mask, conditions=[ClassLabelCondition(2)], **kw)
    assert not np.array_equal(a.image, b.image)
    settings = a.settings
    assert [c["name"] for c in settings["conditions"]] == ["mask", "label"]
    assert settings["conditions"][1]["label"] == 1
    assert settings["guidance"] == [
        {"kind": "classifier-free", "conditions": ["mask"], "scale": 2.0},
        {"kind": "classifier-free", "conditions": ["label"], "scale": 3.0}]


# -- text tokens through a UNet2DConditionModel ----------------------------------
def test_text_tokens_reach_cross_attention_and_a_negative_prompt_is_the_null():
    unet = text_unet()
    mask, x = mask_and_x(2)
    rng = np.random.default_rng(5)
    prompt, negative = rng.standard_normal((2, 6, 12)).astype(np.float32)
    cond = MaskCondition(mask, K)
    den = Denoiser(unet, [cond, TokenCondition(prompt, negative)],
                   [ClassifierFreeGuidance("text", 2.0)], CPU, torch.float32)
    out = den(x, 500, windows_of(mask))
    win = np.stack([cond.window(*wi) for wi in windows_of(mask)])

    def tokens(t):
        return torch.from_numpy(np.broadcast_to(t, (2, 6, 12)).copy())

    c = raw(unet, x, win, encoder_hidden_states=tokens(prompt))
    n = raw(unet, x, win, encoder_hidden_states=tokens(negative))
    np.testing.assert_allclose(out, n + 2.0 * (c - n), atol=1e-5)
    assert not np.allclose(c, n, atol=1e-4)  # the tokens matter


def test_text_conditioned_synthesis_through_the_pipeline():
    pipe = pipe_with(text_unet())
    mask = np.ones((16, 20), np.uint8)
    rng = np.random.default_rng(0)
    prompt, empty = rng.standard_normal((2, 5, 12)).astype(np.float32)
    out = pipe(mask, num_inference_steps=2, seed=0,
               conditions=[TokenCondition(prompt, empty, description={
                   "prompt": "high dab"})],
               guidance_terms=[ClassifierFreeGuidance("text", 1.5)])
    assert out.image.shape == (16, 20, 3)
    text = out.settings["conditions"][1]
    assert text["kind"] == "tokens" and text["prompt"] == "high dab"
    assert text["shape"] == [5, 12]


# -- classifier gradient ---------------------------------------------------------
class TinyClassifier(torch.nn.Module):
    """A random noise-aware classifier of 3-channel windows into 3 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(9, 3)

    def forward(self, x, t):
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return 20.0 * self.head(torch.cat([h, t[:, None] / 1000.0], dim=1))


def p_class(classifier, image: np.ndarray, target: int) -> float:
    x = torch.from_numpy(np.moveaxis(image.astype(np.float32) / 127.5 - 1, -1, 0))
    with torch.no_grad():
        logits = classifier(x[None], torch.zeros(1))
    return float(torch.softmax(logits, 1)[0, target])


@pytest.mark.parametrize("scheduler", ["ddim", "dpm++", "euler"])
def test_classifier_guidance_raises_the_target_probability(tiny_pipe, scheduler):
    clf = TinyClassifier()
    mask = np.zeros((32, 40), np.uint8)
    mask[:, 20:] = 2
    kw = dict(num_inference_steps=6, seed=0, scheduler=scheduler,
              guidance_scale=1.0)
    plain = tiny_pipe(mask, **kw).image
    for target in (0, 1):  # unguided p is about 0.33 and 0.67
        guided = tiny_pipe(mask, guidance_terms=[ClassifierGuidance(
            clf, target, scale=100.0)], **kw)
        # measured: 0.33 -> 0.63-0.65 and 0.67 -> 0.75
        assert p_class(clf, guided.image, target) > \
            p_class(clf, plain, target) + 0.05
        assert guided.settings["guidance"][-1] == {
            "kind": "classifier", "target": target, "scale": 100.0}


def test_classifier_guidance_of_scale_zero_changes_nothing(tiny_pipe):
    mask = np.ones((32, 32), np.uint8)
    kw = dict(num_inference_steps=2, seed=1)
    plain = tiny_pipe(mask, **kw).image
    off = tiny_pipe(mask, guidance_terms=[ClassifierGuidance(
        TinyClassifier(), 1, scale=0.0)], **kw).image
    np.testing.assert_array_equal(plain, off)


def test_classifier_guidance_is_the_documented_formula():
    clf = TinyClassifier()
    term = ClassifierGuidance(clf, 1, scale=4.0)
    x = torch.randn(2, 3, 8, 8)
    eps = torch.randn(2, 3, 8, 8)
    xg = x.clone().requires_grad_(True)
    logp = torch.log_softmax(clf(xg, torch.full((2,), 300.0)), 1)[:, 1].sum()
    (grad,) = torch.autograd.grad(logp, xg)
    got = term.apply(eps, x, 300.0, alpha_bar=0.64)
    torch.testing.assert_close(got, eps - 4.0 * 0.6 * grad)


# -- refusals that name both sides ------------------------------------------------
def test_condition_channels_that_do_not_fit_the_unet_are_refused():
    mask, _ = mask_and_x()
    with pytest.raises(InputError, match=r"in_channels=7.*'mask' 5"):
        Denoiser(class_unet(), [MaskCondition(mask, 5)], [], CPU, torch.float32)


def test_window_that_does_not_fit_the_unet_is_refused():
    mask, _ = mask_and_x()
    den = Denoiser(class_unet(), [MaskCondition(mask, K)], [], CPU, torch.float32)
    with pytest.raises(InputError, match="window: 7 .* multiple of 2"):
        den.check_window(7)
    with pytest.raises(InputError, match=r"condition 'mask'.*\(2, 4, 7, 7\).*8x8"):
        den(np.zeros((2, 3, 8, 8), np.float32), 10,
            [(np.arange(7), np.arange(7))] * 2)


def test_tokens_that_do_not_fit_are_refused():
    mask, x = mask_and_x()
    cond = MaskCondition(mask, K)
    tokens = TokenCondition(np.zeros((4, 10)), np.zeros((4, 10)))
    den = Denoiser(text_unet(dim=12), [cond, tokens], [], CPU, torch.float32)
    with pytest.raises(InputError, match="width 10.*cross_attention_dim is 12"):
        den.check_window(8)
    den = Denoiser(class_unet(None), [cond, tokens], [], CPU, torch.float32)
    with pytest.raises(InputError, match="no cross-attention"):
        den(x, 10, windows_of(mask))
    with pytest.raises(InputError, match="null_tokens: shape"):
        TokenCondition(np.zeros((4, 12)), np.zeros((3, 12)))


def test_class_labels_that_do_not_fit_are_refused():
    mask, x = mask_and_x()
    cond = MaskCondition(mask, K)
    den = Denoiser(class_unet(3), [cond, ClassLabelCondition(5)], [], CPU,
                   torch.float32)
    with pytest.raises(InputError, match="label 5 is outside the UNet's 3"):
        den.check_window(8)
    den = Denoiser(class_unet(None), [cond, ClassLabelCondition(1)], [], CPU,
                   torch.float32)
    with pytest.raises(InputError, match="no class embedding"):
        den(x, 10, windows_of(mask))
    with pytest.raises(InputError, match="label: must be an integer"):
        ClassLabelCondition(True)


def test_pipeline_refuses_what_is_not_a_condition_or_term(tiny_pipe):
    mask = np.ones((32, 32), np.uint8)
    with pytest.raises(InputError, match="conditions: expected Condition"):
        tiny_pipe(mask, num_inference_steps=1, conditions=["text"])
    with pytest.raises(InputError, match="guidance_terms: expected a list"):
        tiny_pipe(mask, num_inference_steps=1,
                  guidance_terms=ClassifierFreeGuidance("mask", 2))
    with pytest.raises(InputError, match="two conditions are named 'mask'"):
        tiny_pipe(mask, num_inference_steps=1, conditions=[MaskCondition(mask, 4)])
