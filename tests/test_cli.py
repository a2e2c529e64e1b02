"""The ``histodiff`` command, run in a subprocess as a user would."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _helpers import run_cli
from napari_histodiff.cli import build_parser
from napari_histodiff.io.omezarr import read_synthesis


def _subcommand_paths(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    from napari_histodiff.cli import main

    paths = list(_subcommand_paths(build_parser()))
    assert ("model", "init") in paths and ("generate",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as info:
            main([*path, "--help"])
        assert info.value.code == 0, path
        assert "usage: histodiff" in capsys.readouterr().out


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("masks") / "mask.png"
    mask = np.zeros((40, 52), np.uint8)
    mask[:20] = 1
    mask[20:, 30:] = 3
    Image.fromarray(mask).save(path)
    return path


def test_model_init_and_info(tmp_path):
    res = run_cli("model", "init", str(tmp_path / "m"), "--classes",
                  "tumor,stroma,necrosis", "--patch-size", "32")
    assert res.returncode == 0, res.stderr
    assert "untrained" in res.stdout
    res = run_cli("model", "info", str(tmp_path / "m"), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["parameters"]["unet"] > 1_000_000
    assert [c["name"] for c in info["card"]["classes"]] == [
        "unknown", "tumor", "stroma", "necrosis"]


def test_generate_writes_omezarr_and_is_reproducible(tiny_model_dir, mask_png,
                                                     tmp_path):
    args = ["generate", "--model", str(tiny_model_dir), "--mask", str(mask_png),
            "--steps", "2", "--seed", "5", "--quiet"]
    res = run_cli(*args, "--out", str(tmp_path / "a.zarr"), "--preview",
                  str(tmp_path / "a.png"))
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout
    data = read_synthesis(tmp_path / "a.zarr")
    image = np.asarray(data["image"][0])
    assert image.shape == (3, 40, 52) and image.dtype == np.uint8
    assert np.array_equal(np.asarray(data["mask"][0]),
                          np.asarray(Image.open(mask_png)))
    assert data["classes"].names == ["unknown", "tumor", "stroma", "necrosis"]
    s = data["settings"]
    assert (s["seed"], s["num_inference_steps"], s["scheduler"]) == (5, 2, "dpm++")
    assert s["model"] == str(tiny_model_dir)
    assert (s["strategy"], s["blend_steps"]) == ("random-shift", 2)
    assert Image.open(tmp_path / "a.png").size == (52, 40)
    res = run_cli(*args, "--out", str(tmp_path / "b.zarr"))
    assert res.returncode == 0, res.stderr
    again = np.asarray(read_synthesis(tmp_path / "b.zarr")["image"][0])
    assert np.array_equal(image, again)
    assert s["noise_mean"] == "zero"  # this card records no class means
    res = run_cli(*args, "--out", str(tmp_path / "c.zarr"), "--noise-mean", "classes")
    assert res.returncode == 2 and "noise_mean: 'classes' needs" in res.stderr
    assert not (tmp_path / "c.zarr").exists()


def _bad(tmp_path, name, array):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize(
    "case, expect",
    [
        ("unknown-ids", "label ids [9]"),
        ("rgb-mask", "RGB image"),
        ("float-mask", "integer"),
        ("3d-mask", "2-D"),
        ("guidance", "--guidance"),
        ("steps", "--steps"),
        ("device", "not available"),
        ("exists", "exists"),
        ("missing-part", "scheduler"),
        ("pickle", "arbitrary code"),
        ("no-model", "does not exist"),
        ("blend-tiled", "blend_steps only applies to random-shift"),
        ("stride-random", "stride only applies to multidiffusion"),
    ],
)
def test_bad_input_clear_message_nonzero_exit(case, expect, tiny_model_dir,
                                              mask_png, tmp_path):
    import shutil

    import torch

    model, mask, extra = str(tiny_model_dir), str(mask_png), []
    out = tmp_path / "out.zarr"
    if case == "unknown-ids":
        mask = _bad(tmp_path, "m.png", np.full((20, 20), 9, np.uint8))
    elif case == "rgb-mask":
        mask = _bad(tmp_path, "m.png", np.zeros((20, 20, 3), np.uint8))
    elif case == "float-mask":
        mask = _bad(tmp_path, "m.npy", np.zeros((20, 20), np.float32))
    elif case == "3d-mask":
        mask = _bad(tmp_path, "m.npy", np.zeros((2, 20, 20), np.uint8))
    elif case == "guidance":
        extra = ["--guidance", "-1"]
    elif case == "steps":
        extra = ["--steps", "0"]
    elif case == "device":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra = ["--device", "cuda"]
    elif case == "exists":
        out.mkdir()
    elif case in ("missing-part", "pickle"):
        model = tmp_path / "m"
        shutil.copytree(tiny_model_dir, model)
        if case == "missing-part":
            shutil.rmtree(model / "scheduler")
        else:
            w = model / "unet" / "diffusion_pytorch_model.safetensors"
            w.rename(w.with_suffix(".bin"))
    elif case == "no-model":
        model = str(tmp_path / "nowhere")
    elif case == "blend-tiled":
        extra = ["--strategy", "tiled", "--blend-steps", "1"]
    elif case == "stride-random":
        extra = ["--stride", "16"]
    res = run_cli("generate", "--model", str(model), "--mask", str(mask), "--out",
                  str(out), "--steps", "1", "--quiet", *extra)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert expect in res.stderr
    assert "Traceback" not in res.stderr
    if case == "exists":
        assert out.is_dir() and not any(out.iterdir())  # left untouched
    elif case != "exists":
        assert not out.exists()


def test_demo_command_runs_and_says_what_it_did(tmp_path):
    res = run_cli("demo", "--out", str(tmp_path / "d"), "--size", "48x40",
                  "--steps", "2")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "d" / "synthetic.zarr").is_dir()
    assert (tmp_path / "d" / "mask_and_image.png").is_file()
    assert "side by side" in res.stdout
    res = run_cli("demo", "--out", str(tmp_path / "d"), "--size", "48x40",
                  "--steps", "1")
    assert res.returncode == 2 and "--overwrite" in res.stderr
