"""Text-conditioned models: cross-attention training on captions (builtin and
a frozen local transformers encoder), resume, the saved model directory,
generation with a prompt (with and without a mask) and the errors."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError, ModelFormatError
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.models.directory import load_components
from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
from napari_histodiff.training.augment import no_augment
from napari_histodiff.training.data import Sample
from napari_histodiff.training.image_trainer import (
    ImageModelSpec,
    ImageTrainJob,
    make_image_trainer,
    train_image_model,
)
from napari_histodiff.training.loop import TrainSettings
from napari_histodiff.training.text_trainer import TextSpec, TextUNet

torch.set_num_threads(1)
CLASSES = TissueClasses.from_names("dark,light")


def toy_samples(n: int = 3, size: int = 32) -> list[Sample]:
    """Images whose colour follows the mask; the dark share differs per image,
    so composition captions differ between crops."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        mask = np.full((size, size), 2, np.uint8)
        mask[:, : size * (i + 1) // (n + 1)] = 1
        img = np.where(mask[..., None] == 1, 60, 200) * np.ones(3, int)
        img = img.astype(np.uint8) + rng.integers(0, 10, (size, size, 3)).astype(
            np.uint8)
        out.append(Sample(img, mask, f"toy{i}.png"))
    return out


def text_job(tmp_path, name="run", steps=4, every=2, text=None,
             condition="mask", stop=None) -> ImageTrainJob:
    return ImageTrainJob(
        samples=toy_samples(), classes=CLASSES, run_dir=tmp_path / name,
        out=tmp_path / f"{name}-model",
        settings=TrainSettings(steps=steps, batch_size=3, learning_rate=1e-3,
                               warmup=0, checkpoint_every=every, log_every=1,
                               ema_decay=0.9, seed=3, cond_dropout=0.3),
        spec=ImageModelSpec(patch_size=16, channels=(16, 32), layers=1),
        augment=no_augment(), condition=condition,
        text=text or TextSpec(width=16, layers=1, heads=2, max_tokens=8))


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    job = text_job(tmp)
    result = train_image_model(job, "cpu", quiet=True)
    return job, result


def test_text_model_directory_holds_encoder_tokenizer_and_card(text_model):
    job, result = text_model
    out = job.out
    assert (out / "text_encoder").is_dir() and (out / "tokenizer").is_dir()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    card = json.loads((out / "histodiff.json").read_text())
    text = card["text"]
    assert text["encoder"]["kind"] == "builtin"
    assert text["trained_jointly"] is True
    assert text["captions"] == "composition" and text["max_tokens"] == 8
    assert text["null_prompt"] == ""
    parts = load_components(out)
    assert type(parts["unet"]).__name__ == "UNet2DConditionModel"
    assert parts["unet"].config.cross_attention_dim == 16
    assert parts["text"].hidden_size == 16
    assert result["captions"]["captions"] == 4 * 3  # a caption per crop


def test_jointly_trained_encoder_is_the_ema_one_and_changed(text_model, tmp_path):
    """The exported encoder is not its random initialisation: it trained."""
    job, _ = text_model
    fresh = make_image_trainer(text_job(tmp_path, "fresh"), "cpu")
    saved = load_components(job.out)["text"].encoder.state_dict()
    init = fresh.text.prompt_encoder.encoder.state_dict()
    changed = [k for k in saved if not torch.equal(saved[k].float(),
                                                   init[k].float())]
    assert changed, "the text encoder's weights did not change in training"


def test_frozen_builtin_encoder_stays_at_its_initialisation(tmp_path):
    job = text_job(tmp_path, text=TextSpec(width=16, layers=1, heads=2,
                                           max_tokens=8, train_encoder=False))
    trainer = make_image_trainer(job, "cpu")
    assert isinstance(trainer.unet, TextUNet) and trainer.unet.text_encoder is None
    init = {k: v.clone() for k, v in
            trainer.text.prompt_encoder.encoder.state_dict().items()}
    train_image_model(job, "cpu", quiet=True)
    saved = load_components(job.out)["text"].encoder.state_dict()
    assert all(torch.equal(saved[k], init[k]) for k in init)
    card = json.loads((job.out / "histodiff.json").read_text())
    assert card["text"]["trained_jointly"] is False


def test_resume_reaches_the_uninterrupted_weights(tmp_path):
    whole = text_job(tmp_path, "whole")
    train_image_model(whole, "cpu", quiet=True)
    part = text_job(tmp_path, "part")
    first = train_image_model(part, "cpu", quiet=True, stop_after=2)
    assert first["out"] is None
    train_image_model(part, "cpu", quiet=True, resume=True)
    a = load_components(whole.out)
    b = load_components(part.out)
    for key in ("unet",):
        sa, sb = a[key].state_dict(), b[key].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ea, eb = a["text"].encoder.state_dict(), b["text"].encoder.state_dict()
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def test_caption_dropout_gives_empty_prompts(tmp_path):
    job = text_job(tmp_path, text=TextSpec(width=16, layers=1, heads=2,
                                           max_tokens=8, caption_dropout=1.0))
    trainer = make_image_trainer(job, "cpu")
    _, _, kwargs = trainer.batch_fn(0)
    empty = trainer.text.prompt_encoder.tokenize([""]).input_ids
    assert (kwargs["input_ids"].numpy() == empty).all()
    job = text_job(tmp_path, "b", text=TextSpec(width=16, layers=1, heads=2,
                                                max_tokens=8, caption_dropout=0.0))
    trainer = make_image_trainer(job, "cpu")
    _, _, kwargs = trainer.batch_fn(0)
    assert not (kwargs["input_ids"].numpy() == empty).all(axis=1).any()


def test_generation_with_a_prompt_records_it_and_follows_guidance(text_model):
    job, _ = text_model
    pipe = HistoDiffPipeline.from_pretrained(job.out)
    assert pipe.has_text
    mask = np.zeros((32, 32), np.int32)  # no mask: the prompt alone
    a = pipe(mask, prompt="high dark", text_guidance=3.0, num_inference_steps=3,
             seed=1)
    b = pipe(mask, prompt="high light", text_guidance=3.0, num_inference_steps=3,
             seed=1)
    c = pipe(mask, prompt="high dark", text_guidance=3.0, num_inference_steps=3,
             seed=1)
    assert a.image.shape == (32, 32, 3)
    assert np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, b.image)  # the prompt reaches the UNet
    conds = {c["name"]: c for c in a.settings["conditions"]}
    assert conds["text"]["prompt"] == "high dark"
    assert conds["text"]["encoder"]["kind"] == "builtin"
    terms = [g for g in a.settings["guidance"] if g["conditions"] == ["text"]]
    assert terms and terms[0]["scale"] == 3.0
    # with a mask too: both guidance terms are recorded
    mask[:, :16] = 1
    mask[:, 16:] = 2
    d = pipe(mask, prompt="high dark", num_inference_steps=2, seed=1)
    names = sorted(n for g in d.settings["guidance"] for n in g["conditions"])
    assert names == ["mask", "text"]


def test_empty_prompt_is_the_null_condition(text_model):
    job, _ = text_model
    pipe = HistoDiffPipeline.from_pretrained(job.out)
    mask = np.zeros((16, 16), np.int32)
    a = pipe(mask, num_inference_steps=2, seed=0)
    b = pipe(mask, prompt="", text_guidance=5.0, num_inference_steps=2, seed=0)
    assert np.array_equal(a.image, b.image)
    assert not [g for g in a.settings["guidance"] if "text" in g["conditions"]]


def test_long_prompt_is_truncated_with_a_warning(text_model):
    job, _ = text_model
    pipe = HistoDiffPipeline.from_pretrained(job.out)
    words = " ".join(["dark"] * 20)  # 20 content tokens; the limit is 8
    with pytest.warns(UserWarning, match=r"prompt: 12 tokens .* dropped"):
        out = pipe(np.zeros((16, 16), np.int32), prompt=words,
                   num_inference_steps=1)
    cond = [c for c in out.settings["conditions"] if c["name"] == "text"][0]
    assert cond["tokens_dropped"][0] == 12


def test_prompt_refused_by_a_model_without_text_encoder(tmp_path):
    from napari_histodiff.models.factory import init_model

    init_model(tmp_path / "plain", classes="dark,light", size="tiny",
               patch_size=16)
    pipe = HistoDiffPipeline.from_pretrained(tmp_path / "plain")
    assert not pipe.has_text
    with pytest.raises(InputError, match=r"prompt: .* has no text encoder"):
        pipe(np.zeros((16, 16), np.int32), prompt="high dark")
    with pytest.raises(InputError, match=r"text_guidance: .* no text encoder"):
        pipe(np.zeros((16, 16), np.int32), text_guidance=2.0)


def test_text_model_without_its_encoder_folder_is_refused(text_model, tmp_path):
    job, _ = text_model
    broken = tmp_path / "broken"
    shutil.copytree(job.out, broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(ModelFormatError, match="text"):
        load_components(broken)


def test_text_spec_errors(tmp_path):
    with pytest.raises(InputError, match="captions: 'report' needs the reports"):
        TextSpec(captions="report").check()
    with pytest.raises(InputError, match="text: 'clip' is neither"):
        TextSpec(encoder="clip").check()
    with pytest.raises(InputError, match="max-tokens"):
        TextSpec(max_tokens=0).check()
    with pytest.raises(InputError, match="init-model: fine-tuning with --text"):
        job = text_job(tmp_path)
        job.init_model = tmp_path
        make_image_trainer(job, "cpu")


def test_report_captions_from_a_csv(tmp_path):
    csv = tmp_path / "reports.csv"
    csv.write_text("image,text\ntoy0.png,Mostly light tissue.\n"
                   "toy1.png,Half dark. Half light.\ntoy2,Dark left part.\n")
    job = text_job(tmp_path, text=TextSpec(width=16, layers=1, heads=2,
                                           max_tokens=20, captions="both",
                                           reports=csv, caption_dropout=0.0))
    trainer = make_image_trainer(job, "cpu")
    masks = np.stack([s.mask[:16, :16] for s in job.samples])
    texts = trainer.text.captioner(masks, np.ones(3, bool),
                                   [s.source for s in job.samples])
    assert texts[0].endswith("Mostly light tissue.")
    assert texts[2].endswith("Dark left part.")  # matched by the stem
    assert texts[0].startswith(("high", "some", "low"))
    missing = tmp_path / "missing.csv"
    missing.write_text("image,text\ntoy0.png,Light.\n")
    job = text_job(tmp_path, "m", text=TextSpec(width=16, layers=1, heads=2,
                                                captions="report", reports=missing))
    trainer = make_image_trainer(job, "cpu")
    with pytest.raises(InputError, match="reports: no row for image toy1.png"):
        trainer.batch_fn(0) if False else trainer.text.captioner(
            masks, np.ones(3, bool), [s.source for s in job.samples])


def test_text_only_model_refuses_a_mask(tmp_path):
    job = text_job(tmp_path, condition="none", steps=2)
    train_image_model(job, "cpu", quiet=True)
    pipe = HistoDiffPipeline.from_pretrained(job.out)
    assert pipe.unet.config.in_channels == 3
    out = pipe(np.zeros((16, 16), np.int32), prompt="high light",
               num_inference_steps=2)
    assert out.image.shape == (16, 16, 3)
    mask = np.ones((16, 16), np.int32)
    with pytest.raises(InputError, match="unconditional"):
        pipe(mask, prompt="high light", num_inference_steps=1)


def test_transformers_encoder_trains_frozen(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = _tiny_clip(tmp_path / "clip", transformers)
    job = text_job(tmp_path, text=TextSpec(encoder=f"transformers:{folder}",
                                           max_tokens=8))
    train_image_model(job, "cpu", quiet=True)
    parts = load_components(job.out)
    assert parts["text"].kind == "transformers"
    assert parts["unet"].config.cross_attention_dim == 32
    card = json.loads((job.out / "histodiff.json").read_text())
    assert card["text"]["trained_jointly"] is False
    # the exported encoder is the frozen one, unchanged
    from transformers import CLIPTextModel

    original = CLIPTextModel.from_pretrained(folder, use_safetensors=True)
    so, ss = original.state_dict(), parts["text"].encoder.state_dict()
    assert all(torch.equal(so[k], ss[k]) for k in so)
    pipe = HistoDiffPipeline.from_pretrained(job.out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing truncated
        pipe(np.zeros((16, 16), np.int32), prompt="high dark",
             num_inference_steps=1)


def _tiny_clip(folder, transformers):
    """A tiny randomly initialised CLIP text model and a tokenizer fitted
    here, saved with save_pretrained (nothing is downloaded)."""
    from napari_histodiff.models.text_encoder import fit_tokenizer

    tok = fit_tokenizer(["high dark; low light", "some dark", "low light"],
                        vocab_size=60)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
        bos_token="[CLS]", eos_token="[SEP]", model_max_length=16)
    config = transformers.CLIPTextConfig(
        vocab_size=max(64, tok.get_vocab_size()), hidden_size=32,
        intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16, pad_token_id=0,
        bos_token_id=tok.token_to_id("[CLS]"), eos_token_id=tok.token_to_id("[SEP]"))
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder
