"""Metrics (issue 14): the feature extractors' weights and the bad inputs,
each refused with the argument, the file or layer, and the value named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from napari_histodiff.errors import InputError
from napari_histodiff.metrics.features import (
    ENCODER_FORMAT,
    check_state,
    make_extractor,
)
from napari_histodiff.metrics.imagesets import load_tiles
from napari_histodiff.training.encoder_net import TileEncoder, random_encoder


def _has_fidelity() -> bool:
    try:
        import torch_fidelity  # noqa: F401
    except Exception:
        return False
    return True


def _encoder_folder(path, net, state=None):
    path.mkdir()
    save_file({k: v.contiguous() for k, v in (state or net.state_dict()).items()},
              str(path / "encoder.safetensors"))
    (path / "config.json").write_text(json.dumps(
        {"format": ENCODER_FORMAT, **net.config()}))
    return path


def test_histo_encoder_folder_round_trip(tmp_path):
    net = random_encoder(5)
    folder = _encoder_folder(tmp_path / "enc", net)
    ex = make_extractor("histo", weights=folder)
    tiles = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8)
    with torch.no_grad():
        ref = net(torch.from_numpy(tiles.transpose(0, 3, 1, 2).copy())).double()
    assert np.allclose(ex(tiles), ref.numpy())
    assert ex.info["name"] == "histo" and len(ex.info["sha256"]) == 64
    # the safetensors file itself (config beside it) works too
    assert make_extractor("histo", weights=folder / "encoder.safetensors").info[
        "sha256"] == ex.info["sha256"]


def test_wrong_shaped_weights_name_the_layer(tmp_path):
    net = TileEncoder()
    state = dict(net.state_dict())
    state["body.4.weight"] = torch.zeros(64, 16, 3, 3)
    folder = _encoder_folder(tmp_path / "bad", net, state)
    with pytest.raises(InputError, match=r"layer 'body.4.weight' has shape "
                       r"\(64, 16, 3, 3\) in the file, \(64, 32, 3, 3\)"):
        make_extractor("histo", weights=folder)
    state = dict(net.state_dict())
    del state["body.2.bias"]
    with pytest.raises(InputError, match="layer 'body.2.bias' is missing"):
        check_state(net, state, "x.safetensors", "the encoder")
    state = dict(net.state_dict(), extra=torch.zeros(1))
    with pytest.raises(InputError, match="layer 'extra' is not in the architecture"):
        check_state(net, state, "x.safetensors", "the encoder")


def test_only_safetensors_are_read(tmp_path):
    pth = tmp_path / "weights.pth"
    torch.save({"a": torch.zeros(1)}, pth)
    with pytest.raises(InputError, match="weights.pth is not a .safetensors file"):
        make_extractor("inception", weights=pth)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        make_extractor("inception", weights=junk)


def test_extractor_names_and_weights_are_checked(tmp_path):
    with pytest.raises(InputError, match="--features: 'vgg' is not one of"):
        make_extractor("vgg")
    with pytest.raises(InputError, match="--weights: the 'random' features take no"):
        make_extractor("random", weights=tmp_path)
    with pytest.raises(InputError, match="--weights: --features inception needs"):
        make_extractor("inception")
    with pytest.raises(InputError, match="is not an encoder folder"):
        make_extractor("histo", weights=tmp_path)


@pytest.mark.skipif(not _has_fidelity(), reason="torch-fidelity with a working "
                    "torchvision is not installed (scripts/install-vision.sh)")
def test_inception_standin_and_wrong_layer(tmp_path):
    """A randomly initialised FID InceptionV3 saved to safetensors is read back
    unchanged; a file with one layer of the wrong shape is refused by name."""
    from napari_histodiff.metrics.features import inception_standin

    net = inception_standin(0)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "inception.safetensors"))
    ex = make_extractor("inception", weights=tmp_path / "inception.safetensors")
    assert ex.info["dimensions"] == 2048
    tiles = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
    with torch.no_grad():
        ref = net(torch.from_numpy(tiles.transpose(0, 3, 1, 2).copy()))[0]
    assert np.allclose(ex(tiles), ref.double().numpy())
    key = "Mixed_6b.branch7x7_1.conv.weight"
    state[key] = torch.zeros(5, 5, 1, 1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match=rf"layer '{key}' has shape \(5, 5, 1, 1\) "
                       r"in the file, \(128, 768, 1, 1\) in the architecture"):
        make_extractor("inception", weights=tmp_path / "bad.safetensors")


@pytest.mark.skipif(_has_fidelity(), reason="torch-fidelity is installed")
def test_inception_without_torch_fidelity_says_what_to_install(tmp_path):
    save_file({"a": torch.zeros(1)}, str(tmp_path / "inception.safetensors"))
    with pytest.raises(InputError, match="install-vision"):
        make_extractor("inception", weights=tmp_path / "inception.safetensors")


def test_grayscale_and_small_images_name_the_file(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(gray)
    with pytest.raises(InputError, match="gray.png.*grayscale"):
        load_tiles([gray], "real", tile_size=32)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 80, 3), np.uint8)).save(small)
    with pytest.raises(InputError, match=r"--real: image .*small.png is 20x80 px, "
                       "smaller than one tile of --tile-size 32"):
        load_tiles([small], "real", tile_size=32)
    with pytest.raises(InputError, match="--tile-size: expected an integer >= 16"):
        load_tiles([small], "real", tile_size=8)
    glass = np.full((64, 64, 3), 250, np.uint8)
    with pytest.raises(InputError, match="none of the 4 tiles of 32 px"):
        load_tiles([("glass", glass)], "real", tile_size=32)


def test_sizes_differ_but_all_are_tiled(tmp_path):
    from skimage.data import immunohistochemistry

    img = immunohistochemistry()
    Image.fromarray(img[:100, :130]).save(tmp_path / "a.png")
    Image.fromarray(img[200:300, 100:164]).save(tmp_path / "b.tif")
    tiles = load_tiles([tmp_path], "real", tile_size=32, min_tissue=0.0)
    assert len(tiles) == 3 * 4 + 3 * 2
    assert sorted(set(tiles.sources)) == [str(tmp_path / "a.png"),
                                          str(tmp_path / "b.tif")]
