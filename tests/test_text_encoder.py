"""Text encoders: the fitted tokenizer, padding and truncation, the builtin
encoder, a tiny local CLIP text model / full CLIP / BERT read by transformers
(nothing is downloaded), saving into a model directory and the errors."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError, ModelFormatError, UnsafeCheckpointError
from napari_histodiff.models import text_encoder as te

CORPUS = [
    "high dab; low nuclei; some background",
    "some dab; high nuclei",
    "low tissue; high background",
    "Invasive carcinoma. Grade two of three.",
    "Nucléi crowded, high grade!",
]


@pytest.fixture(scope="module")
def builtin():
    return te.build_builtin_encoder(CORPUS, max_tokens=6, width=16, layers=1,
                                    heads=2, vocab_size=120, seed=0)


# -------------------------------------------------------------------- tokenizer

def test_fit_tokenizer_is_deterministic_and_keeps_known_words():
    tok = te.fit_tokenizer(CORPUS, vocab_size=120)
    again = te.fit_tokenizer(list(reversed(CORPUS)), vocab_size=120)
    assert tok.get_vocab() == again.get_vocab()
    assert [tok.token_to_id(t) for t in te.SPECIAL_TOKENS] == [0, 1, 2, 3]
    enc = tok.encode("High DAB; low nuclei")
    assert enc.tokens == ["[CLS]", "high", "dab", ";", "low", "nuclei", "[SEP]"]
    # accents stripped and lower-cased: "Nucléi" is the known word nuclei
    assert tok.encode("NUCLÉI", add_special_tokens=False).tokens == ["nuclei"]
    # characters never seen cannot be spelled: [UNK]
    assert "[UNK]" in tok.encode("zq", add_special_tokens=False).tokens
    assert tok.encode("").tokens == ["[CLS]", "[SEP]"]


@pytest.mark.parametrize("captions, match", [
    ([], "empty"), ("high dab", "single string"), (["ok", 3], "item 1"),
    (["", "  "], "all 2 captions are empty"),
])
def test_fit_tokenizer_refuses(captions, match):
    with pytest.raises(InputError, match=f"captions: .*{match}"):
        te.fit_tokenizer(captions)


def test_tokenize_pads_truncates_and_counts_dropped(builtin):
    assert builtin.max_length == 8
    batch = builtin.tokenize(["high dab; low nuclei; some background", "high", ""])
    assert batch.input_ids.shape == (3, 8) and batch.input_ids.dtype == np.int64
    assert batch.attention_mask.dtype == np.int64
    # 8 content tokens, room for 6: two dropped, [SEP] kept at the end
    assert batch.dropped == [2, 0, 0]
    tok = builtin.tokenizer
    assert [tok.id_to_token(int(i)) for i in batch.input_ids[0]] == [
        "[CLS]", "high", "dab", ";", "low", "nuclei", ";", "[SEP]"]
    assert batch.attention_mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    # "" is the null condition: [CLS] [SEP] and padding ([PAD] = 0)
    assert batch.input_ids[2].tolist() == [2, 3, 0, 0, 0, 0, 0, 0]
    assert batch.attention_mask[2].sum() == 2
    with pytest.raises(InputError, match="prompt: got a single string"):
        builtin.tokenize("high dab")


# ----------------------------------------------------------- builtin encoder

def test_builtin_shapes_and_padding_invariance(builtin):
    batch = builtin.tokenize(["high dab", "low nuclei; some background"])
    ids = torch.from_numpy(batch.input_ids)
    mask = torch.from_numpy(batch.attention_mask)
    out = builtin.encode_ids(ids, mask)
    assert out.shape == (2, 8, 16) and out.requires_grad
    changed = ids.clone()
    changed[mask == 0] = 5  # other ids at the padded positions only
    out2 = builtin.encode_ids(changed, mask)
    real = mask.bool()
    assert torch.allclose(out[real], out2[real], atol=1e-6)
    assert not torch.allclose(out[~real], out2[~real])
    # a real token does change the outputs (the test can fail)
    other = ids.clone()
    other[0, 1] = 6
    assert not torch.allclose(builtin.encode_ids(other, mask)[0, 2], out[0, 2])
    out.sum().backward()
    assert builtin.encoder.token_embedding.weight.grad is not None
    builtin.encoder.zero_grad(set_to_none=True)


def test_encode_is_float32_and_does_not_warn(builtin):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors, dropped = builtin.encode(["high dab; low nuclei; some background "
                                           "tissue", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 8, 16)
    assert dropped == [3, 0]  # 9 content tokens, room for 6
    builtin.encoder.eval()  # the attention fast path must not warn either
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again, _ = builtin.encode(["high dab; low nuclei; some background "
                                       "tissue", ""])
    finally:
        builtin.encoder.train()
    np.testing.assert_allclose(again, vectors, atol=1e-6)
    assert builtin.encode([])[0].shape == (0, 8, 16)
    assert builtin.to("cpu") is builtin


def test_builtin_seed_and_facts():
    a = te.build_builtin_encoder(CORPUS, 4, width=16, layers=1, heads=2, seed=1)
    b = te.build_builtin_encoder(CORPUS, 4, width=16, layers=1, heads=2, seed=1)
    c = te.build_builtin_encoder(CORPUS, 4, width=16, layers=1, heads=2, seed=2)
    wa = a.encoder.token_embedding.weight
    assert torch.equal(wa, b.encoder.token_embedding.weight)
    assert not torch.equal(wa, c.encoder.token_embedding.weight)
    facts = a.facts()
    assert facts == {"kind": "builtin", "source": "builtin", "max_length": 6,
                     "hidden_size": 16, "vocab_size": a.tokenizer.get_vocab_size(),
                     "width": 16, "layers": 1, "heads": 2}
    json.dumps(facts)
    with pytest.raises(InputError, match="max_tokens: 0"):
        te.build_builtin_encoder(CORPUS, 0)


def test_builtin_save_load_round_trip(builtin, tmp_path):
    builtin.encoder.save_pretrained(tmp_path / "direct", safe_serialization=True)
    again = te.BuiltinTextEncoder.from_pretrained(
        tmp_path / "direct", use_safetensors=True, low_cpu_mem_usage=False)
    ids = torch.from_numpy(builtin.tokenize(["high dab"]).input_ids)
    mask = (ids != 0).long()
    assert not again.training
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask), builtin.encoder(ids, mask))

    assert te.load_prompt_encoder(tmp_path) is None  # no text_encoder/
    builtin.save(tmp_path)
    assert (tmp_path / "text_encoder" /
            "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    loaded = te.load_prompt_encoder(tmp_path)
    assert loaded.kind == "builtin" and loaded.max_length == builtin.max_length
    assert loaded.facts() == builtin.facts()
    prompts = ["high dab; low nuclei", "", "unseen words zq"]
    assert np.array_equal(loaded.tokenize(prompts).input_ids,
                          builtin.tokenize(prompts).input_ids)
    # train and eval mode take different attention kernels: equal to 1e-6
    np.testing.assert_allclose(loaded.encode(prompts)[0],
                               builtin.encode(prompts)[0], atol=1e-6)


def test_load_prompt_encoder_damaged(builtin, tmp_path):
    builtin.save(tmp_path)
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        te.load_prompt_encoder(tmp_path, argname="model")
    (tmp_path / "text_encoder" / "config.json").write_text("[]")
    with pytest.raises(ModelFormatError, match="config.json must hold a JSON"):
        te.load_prompt_encoder(tmp_path)
    (tmp_path / "text_encoder" / "config.json").write_text('{"x": 1}')
    with pytest.raises(ModelFormatError, match="neither _class_name"):
        te.load_prompt_encoder(tmp_path)


def test_check_cross_attention(builtin):
    te.check_cross_attention(builtin, 16)
    te.check_cross_attention(builtin, (16, 16))
    with pytest.raises(InputError, match=r"text: .*builtin.*hidden size 16.*"
                                         r"cross_attention_dim is 64"):
        te.check_cross_attention(builtin, 64)


# ------------------------------------------------------------- transformers

@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=te.fit_tokenizer(CORPUS, vocab_size=200),
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", bos_token="[CLS]", eos_token="[SEP]",
        model_max_length=77)


def clip_text_config(vocab: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
        pad_token_id=0, bos_token_id=2, eos_token_id=3)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, hf_tokenizer):
    """A tiny randomly initialised CLIPTextModel and its tokenizer, saved."""
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip-text")
    CLIPTextModel(clip_text_config(len(hf_tokenizer))).save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    return folder


def test_load_clip_text_model(clip_dir):
    enc = te.load_transformers_encoder(str(clip_dir), max_tokens=5)
    assert enc.kind == "transformers" and enc.hidden_size == 32
    assert enc.max_length == 7  # 5 + [CLS] [SEP], under 16 positions and 77
    assert enc.source == str(clip_dir.resolve())
    assert not enc.encoder.training
    assert not any(p.requires_grad for p in enc.encoder.parameters())
    batch = enc.tokenize(["high dab; low nuclei; some background", ""])
    assert batch.input_ids.shape == (2, 7) and batch.dropped == [3, 0]
    assert batch.attention_mask[1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors, dropped = enc.encode(["high dab " * 10, "low nuclei"])
    assert vectors.shape == (2, 7, 32) and vectors.dtype == np.float32
    assert dropped == [15, 0]
    facts = enc.facts()
    assert facts["model_type"] == "clip_text_model"
    assert facts["class_name"] == "CLIPTextModel" and facts["max_length"] == 7
    json.dumps(facts)
    # without max_tokens: the position embeddings limit the length
    assert te.load_transformers_encoder(clip_dir).max_length == 16


def test_transformers_save_and_load_prompt_encoder(clip_dir, tmp_path):
    enc = te.load_transformers_encoder(clip_dir, max_tokens=5)
    enc.save(tmp_path)
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    assert not list((tmp_path / "text_encoder").glob("*.bin"))
    loaded = te.load_prompt_encoder(tmp_path)
    assert loaded.kind == "transformers" and loaded.max_length == 7
    assert loaded.source == str((tmp_path / "text_encoder").resolve())
    prompts = ["high dab; low nuclei; some background tissue", ""]
    a, da = enc.encode(prompts)
    b, db = loaded.encode(prompts)
    assert da == db == [4, 0]  # 9 content tokens, room for 5
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="hidden size 32.*cross_attention_dim "
                                         "is 128"):
        te.check_cross_attention(loaded, 128)


def test_full_clip_folder_uses_the_text_part(tmp_path, hf_tokenizer):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=clip_text_config(len(hf_tokenizer)).to_dict(),
        vision_config={"hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16}, projection_dim=8)
    full = CLIPModel(config)
    full.save_pretrained(tmp_path)
    hf_tokenizer.save_pretrained(tmp_path)
    enc = te.load_transformers_encoder(tmp_path, max_tokens=6)
    assert enc.hidden_size == 32 and type(enc.encoder).__name__ == "CLIPTextModel"
    batch = enc.tokenize(["high dab"])
    with torch.no_grad():
        want = full.text_model(input_ids=torch.from_numpy(batch.input_ids),
                               attention_mask=torch.from_numpy(
                                   batch.attention_mask)).last_hidden_state
    np.testing.assert_allclose(enc.encode(["high dab"])[0], want.numpy(),
                               atol=1e-6)


def test_bert_folder_through_automodel(tmp_path, hf_tokenizer):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(hf_tokenizer), hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=24)
              ).save_pretrained(tmp_path)
    hf_tokenizer.save_pretrained(tmp_path)
    enc = te.load_transformers_encoder(tmp_path, max_tokens=40)
    assert enc.max_length == 24 and enc.facts()["model_type"] == "bert"
    assert enc.encode(["high dab", ""])[0].shape == (2, 24, 32)


# ---------------------------------------------------------------- the errors

def test_hub_names_and_missing_paths_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"text: 'openai/clip-vit-base-patch32' "
                                         r"is a name on a model hub.*only from "
                                         r"local folders.*save_pretrained"):
        te.load_transformers_encoder("openai/clip-vit-base-patch32")
    with pytest.raises(InputError, match="prompt_model: .*nope.*not an existing "
                                         "folder"):
        te.load_transformers_encoder(tmp_path / "nope", argname="prompt_model")
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(InputError, match="is a file"):
        te.load_transformers_encoder(tmp_path / "f.json")


def test_folders_that_are_not_text_encoders(tmp_path):
    from transformers import CLIPVisionConfig

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"no config.json.*found notes.txt"):
        te.load_transformers_encoder(empty)
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps(
        {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 32}))
    with pytest.raises(InputError, match=r"config.json has a diffusers "
                                         r"UNet2DConditionModel config"):
        te.load_transformers_encoder(unet)
    vision = tmp_path / "vision"
    CLIPVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32).save_pretrained(vision)
    with pytest.raises(InputError, match=r"clip_vision_model.*without a "
                                         r"vocabulary"):
        te.load_transformers_encoder(vision)


def test_pickle_only_weights_are_refused(tmp_path, hf_tokenizer):
    from safetensors.torch import save_file

    config = clip_text_config(len(hf_tokenizer))
    config.save_pretrained(tmp_path)
    hf_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UnsafeCheckpointError, match=r"text: .*pytorch_model.bin "
                                                    r"is a pickle.*safetensors"):
        te.load_transformers_encoder(tmp_path)
    save_file({"x": torch.zeros(3)}, tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-4])
    with pytest.raises(ModelFormatError, match="model.safetensors.*truncated"):
        te.load_transformers_encoder(tmp_path)


def test_folder_without_tokenizer(clip_dir, tmp_path):
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(clip_dir / name, tmp_path / name)
    with pytest.raises(InputError, match="no usable tokenizer.*save_pretrained"):
        te.load_transformers_encoder(tmp_path)


def test_transformers_missing_is_a_clear_error(clip_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(InputError, match=r"napari-histodiff\[text\]"):
        te.load_transformers_encoder(clip_dir)
