"""The ``histo`` tile encoder: ``histodiff train encoder`` (SimCLR) writes a
folder that ``--features histo`` reads (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from napari_histodiff.cli import main
from napari_histodiff.errors import InputError
from napari_histodiff.training.encoder_trainer import (
    EncoderSettings,
    nt_xent,
    train_encoder,
)


@pytest.fixture(scope="module")
def ihc_file(tmp_path_factory):
    from skimage.data import immunohistochemistry

    path = tmp_path_factory.mktemp("enc") / "ihc.png"
    Image.fromarray(immunohistochemistry()).save(path)
    return path


def test_nt_xent_prefers_matching_pairs():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    matched = nt_xent(z, z + 0.01 * torch.randn(8, 16), 0.2)
    shuffled = nt_xent(z, torch.randn(8, 16), 0.2)
    assert matched < 0.5
    assert shuffled > 0.5 * np.log(15)  # chance: ln(2 * 8 - 1)


def test_train_encoder_cli_writes_a_histo_encoder(ihc_file, tmp_path, capsys):
    out = tmp_path / "encoder"
    rc = main(["train", "encoder", "--images", str(ihc_file), "--out", str(out),
               "--steps", "12", "--batch-size", "8", "--crop", "32",
               "--threads", "1", "--quiet"])
    assert rc == 0
    config = json.loads(capsys.readouterr().out)
    assert config == json.loads((out / "config.json").read_text())
    assert config["training"]["steps"] == 12
    # twelve steps already beat chance (ln(2B - 1) for B = 8)
    assert config["training"]["final_loss"] < config["training"]["chance_loss"]
    from napari_histodiff.metrics.features import make_extractor

    ex = make_extractor("histo", weights=out)
    tiles = np.asarray(Image.open(ihc_file))[None, :32, :32]
    assert ex(tiles).shape == (1, 64)
    assert ex.info["training"]["objective"] == "SimCLR NT-Xent"
    # no silent replacement
    assert main(["train", "encoder", "--images", str(ihc_file), "--out", str(out),
                 "--steps", "1", "--batch-size", "2", "--quiet"]) == 2


def test_same_seed_same_encoder(ihc_file, tmp_path):
    settings = EncoderSettings(steps=3, batch_size=4, crop=32, threads=1)
    train_encoder([ihc_file], tmp_path / "a", settings)
    train_encoder([ihc_file], tmp_path / "b", settings)
    a = (tmp_path / "a" / "encoder.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "encoder.safetensors").read_bytes()


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 1}, "--batch-size: contrastive training needs >= 2"),
    ({"crop": 8}, "--crop: expected >= 16"),
    ({"temperature": 0.0}, "--temperature: expected a number > 0"),
])
def test_bad_settings_are_named(ihc_file, tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train_encoder([ihc_file], tmp_path / "x", EncoderSettings(**change))


def test_shipped_histo_encoder(ihc_file):
    """The encoder in the package: small, safetensors, and it tells shuffled
    pixels and a stain change from held-out real tiles."""
    from napari_histodiff.metrics import distribution as D
    from napari_histodiff.metrics.features import SHIPPED_ENCODER, make_extractor
    from napari_histodiff.metrics.imagesets import load_tiles

    files = [p for p in SHIPPED_ENCODER.iterdir() if p.is_file()]
    assert {p.name for p in files} == {"config.json", "encoder.safetensors"}
    assert sum(p.stat().st_size for p in files) <= 5 * 2**20
    torch.set_num_threads(1)
    ex = make_extractor("histo")
    assert ex.info["training"]["final_loss"] < ex.info["training"]["chance_loss"]
    tiles = load_tiles([ihc_file], "real", tile_size=32)
    even = ((tiles.positions // 32).sum(axis=1) % 2) == 0
    real, held = tiles.tiles[even], tiles.tiles[~even]
    rng = np.random.default_rng(0)
    shuffled = held.reshape(len(held), -1, 3).copy()
    for t in shuffled:
        rng.shuffle(t)
    f_real, f_held = ex(real), ex(held)
    f_shuffled = ex(shuffled.reshape(held.shape))
    fid_held = D.fid_kid(f_real, f_held, n_bootstrap=0)["fid"]
    assert D.fid_kid(f_real, f_shuffled, n_bootstrap=0)["fid"] > 10 * fid_held
