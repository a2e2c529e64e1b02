"""Model directories: layout, exact round trip, safetensors-only loading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError, ModelFormatError, UnsafeCheckpointError
from napari_histodiff.models.card import ModelCard
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.models.factory import init_model
from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline


def test_layout_is_diffusers_readable(tiny_model_dir):
    from diffusers import DDPMScheduler, UNet2DModel

    for rel in ("histodiff.json", "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "scheduler/scheduler_config.json"):
        assert (tiny_model_dir / rel).is_file(), rel
    unet = UNet2DModel.from_pretrained(tiny_model_dir, subfolder="unet")
    assert unet.config.in_channels == 3 + 4  # RGB + unknown,tumor,stroma,necrosis
    DDPMScheduler.from_pretrained(tiny_model_dir, subfolder="scheduler")
    card = json.loads((tiny_model_dir / "histodiff.json").read_text())
    assert [c["name"] for c in card["classes"]] == [
        "unknown", "tumor", "stroma", "necrosis"]
    assert card["classes"][0]["index"] == 0
    assert card["patch_size"] == 32 and card["space"] == "pixel"


def test_save_load_round_trip_is_exact(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "copy")
    again = HistoDiffPipeline.from_pretrained(tmp_path / "copy")
    assert again.card == tiny_pipe.card
    assert again.card.to_dict() == tiny_pipe.card.to_dict()
    assert dict(again.scheduler.config) == dict(tiny_pipe.scheduler.config)
    a, b = tiny_pipe.unet.state_dict(), again.unet.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and a second save writes byte-identical weights
    again.save_pretrained(tmp_path / "copy2")
    w1 = (tmp_path / "copy/unet/diffusion_pytorch_model.safetensors").read_bytes()
    w2 = (tmp_path / "copy2/unet/diffusion_pytorch_model.safetensors").read_bytes()
    assert w1 == w2


def test_latent_model_round_trip(tmp_path):
    parts = init_model(tmp_path / "lat", "tumor", patch_size=32, latent=True)
    assert (tmp_path / "lat/vae/diffusion_pytorch_model.safetensors").is_file()
    again = HistoDiffPipeline.from_pretrained(tmp_path / "lat")
    assert again.vae is not None and again.card.vae_scale_factor == 4
    assert again.card == parts["card"]


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_pickle_checkpoint_is_refused(tiny_model_dir, tmp_path, suffix):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(suffix))
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code") as info:
        HistoDiffPipeline.from_pretrained(model)
    assert "safetensors" in str(info.value)  # says how to convert


def test_pickle_file_as_model_is_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not even read")
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code"):
        HistoDiffPipeline.from_pretrained(ckpt)


@pytest.mark.parametrize("part", ["scheduler", "unet", "histodiff.json"])
def test_missing_part_is_named(tiny_model_dir, tmp_path, part):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    target = model / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelFormatError, match=part.split(".")[0]):
        HistoDiffPipeline.from_pretrained(model)


def test_card_rejects_foreign_and_inconsistent(tmp_path):
    with pytest.raises(ModelFormatError, match="not a napari-histodiff"):
        ModelCard.from_dict({"format": "something-else"})
    with pytest.raises(ModelFormatError, match="patch_size"):
        ModelCard(classes=TissueClasses.from_names("a"), patch_size=30)


def test_classes_from_names_puts_unknown_first():
    classes = TissueClasses.from_names("tumor,stroma")
    assert classes.names == ["unknown", "tumor", "stroma"]
    assert classes.colormap()[0][3] == 0.0  # unknown is transparent
    with pytest.raises(ValueError, match="must come first"):
        TissueClasses.from_names("tumor,unknown")
    with pytest.raises(ValueError, match="duplicate"):
        TissueClasses.from_names("tumor,tumor")


def test_array_sha256_streams_blocks_like_one_tobytes():
    import hashlib

    from napari_histodiff.hashing import array_sha256, row_blocks

    rng = np.random.default_rng(0)
    for shape in [(3000, 1500), (7, 5, 3), (1,), (0, 4)]:
        a = rng.integers(0, 9, size=shape).astype(np.int32)
        assert array_sha256(a) == hashlib.sha256(a.tobytes()).hexdigest()
    # a non-contiguous view hashes like its contiguous copy
    v = rng.integers(0, 9, size=(400, 300)).astype(np.uint8)[:, ::3]
    expected = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
    assert array_sha256(v) == expected
    blocks = list(row_blocks((3000, 1500)))
    assert len(blocks) > 1 and blocks[0].start == 0 and blocks[-1].stop == 3000


def test_validate_mask_names_every_bad_id_across_blocks():
    from napari_histodiff.models.classes import TissueClasses

    classes = TissueClasses.from_names(["unknown", "tumor", "stroma"])
    mask = np.zeros((3000, 2000), np.int32)
    mask[5, 5] = 7
    mask[2990, 1999] = -1  # in another row block than the 7
    with pytest.raises(InputError, match=r"\[-1, 7\]"):
        classes.validate_mask(mask)
    mask[5, 5] = mask[2990, 1999] = 2
    classes.validate_mask(mask)
