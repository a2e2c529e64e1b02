"""Bad input, CLI and Python API: exit status 2 (or the project's error type),
a message that names the argument or file, no traceback, nothing written."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from _helpers import run_cli
from napari_histodiff.errors import (
    DeviceError,
    HistodiffError,
    InputError,
    ModelFormatError,
    OutputExistsError,
    OutputWriteError,
)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir) -> Path:
    """A folder with a small mask, an RGB image and a copy of the tiny model."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 1
    Image.fromarray(mask).save(root / "mask.png")
    rgb = np.full((64, 64, 3), 200, np.uint8)
    rgb[::4] = (90, 60, 120)
    Image.fromarray(rgb).save(root / "image.png")
    docs = root / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("years of work\n")
    (root / "scans.png").mkdir()  # a folder with a file's name
    (root / "scans.png" / "scan1.png").write_bytes(b"png")
    return root


def _damaged_model(tmp_path: Path, tiny_model_dir: Path, how: str) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    card_path = model / "histodiff.json"
    card = json.loads(card_path.read_text())
    if how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        weights.write_bytes(b"<html>not a model</html>" * 10)
    elif how == "empty-weights":
        weights.write_bytes(b"")
    elif how == "wrong-shape":
        from napari_histodiff.models.factory import build_unet

        build_unet(7 + 3, 3, 32, "small").save_pretrained(
            tmp_path / "other", safe_serialization=True)
        shutil.copy(tmp_path / "other" / weights.name, weights)
    elif how == "bad-config":
        (model / "unet" / "config.json").write_text("{not json")
    elif how == "config-list":
        (model / "unet" / "config.json").write_text("[1, 2]")
    elif how == "config-values":
        config = json.loads((model / "unet" / "config.json").read_text())
        config["block_out_channels"] = "wide"
        (model / "unet" / "config.json").write_text(json.dumps(config))
    elif how == "scheduler-config":
        (model / "scheduler" / "scheduler_config.json").write_text("nope")
    elif how == "card-list":
        card_path.write_text("[1, 2, 3]")
    elif how == "card-version":
        card["format_version"] = "one"
        card_path.write_text(json.dumps(card))
    elif how == "card-patch-mismatch":
        card["patch_size"] = 128
        card_path.write_text(json.dumps(card))
    elif how == "card-patch-string":
        card["patch_size"] = "64"
        card_path.write_text(json.dumps(card))
    elif how == "card-nan":
        card_path.write_text(card_path.read_text().replace(
            '"microns_per_pixel": null', '"microns_per_pixel": NaN'))
    elif how == "card-negative-mpp":
        card["microns_per_pixel"] = -0.5
        card_path.write_text(json.dumps(card))
    elif how == "card-classes":
        card["classes"] = "tumor,stroma"
        card_path.write_text(json.dumps(card))
    elif how == "card-unknown-field":
        card["pach_size"] = 32
        card_path.write_text(json.dumps(card))
    else:  # pragma: no cover
        raise AssertionError(how)
    return model


DAMAGES = {
    # how: (file named in the message, words of what is wrong)
    "truncated": ("diffusion_pytorch_model.safetensors", "truncated"),
    "garbage": ("diffusion_pytorch_model.safetensors", "safetensors"),
    "empty-weights": ("diffusion_pytorch_model.safetensors", "too short"),
    "wrong-shape": ("config.json", "do not fit"),
    "bad-config": ("config.json", "not valid JSON"),
    "config-list": ("config.json", "JSON object"),
    "config-values": ("config.json", "cannot be loaded"),
    "scheduler-config": ("scheduler_config.json", "not valid JSON"),
    "card-list": ("histodiff.json", "JSON object"),
    "card-version": ("histodiff.json", "format_version"),
    "card-patch-mismatch": ("histodiff.json", "sample_size"),
    "card-patch-string": ("histodiff.json", "patch_size"),
    "card-nan": ("histodiff.json", "NaN"),
    "card-negative-mpp": ("histodiff.json", "microns_per_pixel"),
    "card-classes": ("histodiff.json", "classes"),
    "card-unknown-field": ("histodiff.json", "pach_size"),
}


# -- Python API: damaged model folders ------------------------------------------
@pytest.mark.parametrize("how", list(DAMAGES))
def test_damaged_model_is_a_model_format_error(how, tmp_path, tiny_model_dir):
    from napari_histodiff.models.directory import load_components

    model = _damaged_model(tmp_path, tiny_model_dir, how)
    before = _tree(tmp_path)
    with pytest.raises(ModelFormatError) as info:
        load_components(model)
    name, what = DAMAGES[how]
    assert name in str(info.value) and what in str(info.value), str(info.value)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("how", ["truncated", "card-list", "card-patch-mismatch",
                                 "config-values"])
def test_damaged_model_cli_model_info(how, tmp_path, tiny_model_dir):
    model = _damaged_model(tmp_path, tiny_model_dir, how)
    res = run_cli("model", "info", str(model))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert DAMAGES[how][0] in res.stderr


# -- Python API: init_model ------------------------------------------------------
@pytest.mark.parametrize("kwargs, expect", [
    ({"classes": ""}, "classes"),
    ({"classes": ",,,"}, "classes"),
    ({"classes": "a,,b"}, "empty name"),
    ({"classes": "unknown"}, "only 'unknown'"),
    ({"patch_size": 100000}, "patch_size"),
    ({"patch_size": 20}, "patch_size"),
    ({"microns_per_pixel": -0.25}, "microns_per_pixel"),
    ({"microns_per_pixel": math.nan}, "microns_per_pixel"),
    ({"microns_per_pixel": math.inf}, "microns_per_pixel"),
    ({"size": "huge"}, "size"),
])
def test_init_model_refuses(kwargs, expect, tmp_path):
    from napari_histodiff.models.factory import init_model

    args = {"classes": "a,b", "patch_size": 16, "size": "tiny", **kwargs}
    with pytest.raises(InputError, match=expect):
        init_model(tmp_path / "m", **args)
    assert not (tmp_path / "m").exists()


def test_init_model_overwrite_refuses_a_folder_it_did_not_write(workdir):
    from napari_histodiff.models.factory import init_model

    with pytest.raises(OutputExistsError, match="did not write"):
        init_model(workdir / "docs", "a,b", patch_size=16, overwrite=True)
    assert (workdir / "docs" / "thesis.txt").read_text() == "years of work\n"


def test_card_is_strict_json(tmp_path):
    from napari_histodiff.models.card import ModelCard
    from napari_histodiff.models.classes import TissueClasses

    with pytest.raises(ModelFormatError, match="microns_per_pixel"):
        ModelCard(TissueClasses.from_names("a"), patch_size=16,
                  microns_per_pixel=float("nan"))


# -- Python API: io readers and writers ------------------------------------------
def test_write_mask_suffix(tmp_path):
    from napari_histodiff.io.masks import write_mask

    with pytest.raises(InputError, match="out: .*m.bmp"):
        write_mask(tmp_path / "m.bmp", np.zeros((4, 4), np.uint8))
    assert not any(tmp_path.iterdir())


def test_write_mask_png_refuses_ids_it_cannot_hold(tmp_path):
    from napari_histodiff.io.masks import write_mask

    with pytest.raises(InputError, match="65535"):
        write_mask(tmp_path / "m.png", np.full((4, 4), 70000, np.int32))
    assert not any(tmp_path.iterdir())


def test_write_mask_refuses_existing(tmp_path):
    from napari_histodiff.io.masks import write_mask

    (tmp_path / "m.png").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="m.png"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    assert (tmp_path / "m.png").read_bytes() == b"keep"


def test_write_mask_missing_folder(tmp_path):
    from napari_histodiff.io.masks import write_mask

    with pytest.raises(OutputWriteError, match="does not exist"):
        write_mask(tmp_path / "nope" / "m.png", np.zeros((4, 4), np.uint8))
    assert not any(tmp_path.iterdir())


def test_save_png_needs_png_suffix(tmp_path):
    from napari_histodiff.io.preview import save_png

    with pytest.raises(InputError, match="preview"):
        save_png(tmp_path / "p.jpg", np.zeros((4, 4, 3), np.uint8))
    assert not any(tmp_path.iterdir())


def test_read_synthesis_of_a_plain_folder(workdir):
    from napari_histodiff.io.omezarr import read_synthesis

    with pytest.raises(InputError, match="docs"):
        read_synthesis(workdir / "docs")


def test_export_overwrite_refuses_a_folder_it_did_not_write(tmp_path):
    from napari_histodiff.io.export import export_synthesis
    from napari_histodiff.models.classes import TissueClasses

    target = tmp_path / "photos.zarr"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(OutputExistsError, match="did not write"):
        export_synthesis(target, np.zeros((8, 8, 3), np.uint8),
                         np.zeros((8, 8), np.uint8), TissueClasses.from_names("a"),
                         overwrite=True)
    assert _tree(tmp_path) == {"photos.zarr", "photos.zarr/holiday.jpg"}


def test_scheduler_that_samplers_cannot_drive():
    from napari_histodiff.models.factory import default_scheduler
    from napari_histodiff.sampling.schedulers import make_scheduler

    with pytest.raises(InputError) as info:
        make_scheduler("FlowMatchEulerDiscreteScheduler", default_scheduler().config)
    text = str(info.value)
    assert "FlowMatchEulerDiscreteScheduler" in text and "DDIMScheduler" in text


def test_pipeline_refuses_flow_matching_scheduler(tiny_pipe):
    with pytest.raises(InputError, match="FlowMatchEulerDiscreteScheduler"):
        tiny_pipe(np.zeros((8, 8), np.uint8), num_inference_steps=1,
                  scheduler="FlowMatchEulerDiscreteScheduler")


def test_open_store_refuses_an_existing_output(tmp_path):
    from napari_histodiff.io.omezarr import write_synthesis
    from napari_histodiff.models.classes import TissueClasses
    from napari_histodiff.sampling.store import open_store

    out = write_synthesis(tmp_path / "o.zarr", np.zeros((3, 8, 8), np.uint8),
                          np.zeros((8, 8), np.uint8), TissueClasses.from_names("a"),
                          {"seed": 1})
    before = (out / "zarr.json").read_text()
    with pytest.raises(OutputExistsError, match="store_path"):
        open_store("zarr", (8, 8), out)
    with pytest.raises(OutputExistsError, match="not a canvas"):
        open_store("zarr", (8, 8), out, overwrite=True)
    assert (out / "zarr.json").read_text() == before


def test_stream_into_an_existing_output_is_refused(tiny_pipe, tmp_path):
    from napari_histodiff.io.omezarr import read_synthesis, write_synthesis

    mask = np.zeros((8, 8), np.uint8)
    out = write_synthesis(tmp_path / "o.zarr", np.zeros((3, 8, 8), np.uint8), mask,
                          tiny_pipe.card.classes, {"seed": 123})
    with pytest.raises(OutputExistsError, match="store_path"):
        tiny_pipe.stream(mask, num_inference_steps=1, store="zarr", store_path=out)
    assert read_synthesis(out)["settings"] == {"seed": 123}


def test_resolve_device_absent():
    import torch

    from napari_histodiff.devices import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="'cuda'"):
        resolve_device("cuda")


# -- CLI ---------------------------------------------------------------------------
def _cli_cases(model: str, w: Path) -> dict[str, tuple[list[str], str]]:
    out = str(w / "new-out")
    return {
        "init-empty-classes": (["model", "init", out, "--classes", ""], "classes"),
        "init-commas": (["model", "init", out, "--classes", ",,,"], "classes"),
        "init-huge-patch": (["model", "init", out, "--classes", "a",
                             "--patch-size", "100000"], "patch_size"),
        "init-odd-patch": (["model", "init", out, "--classes", "a",
                            "--patch-size", "12"], "patch_size"),
        "init-negative-mpp": (["model", "init", out, "--classes", "a",
                               "--microns-per-pixel", "-1"], "--microns-per-pixel"),
        "init-nan-mpp": (["model", "init", out, "--classes", "a",
                          "--microns-per-pixel", "nan"], "--microns-per-pixel"),
        "init-latent-patch": (["model", "init", out, "--classes", "a", "--latent",
                               "--patch-size", "48"], "patch_size"),
        "init-overwrite-docs": (["model", "init", str(w / "docs"), "--classes", "a",
                                 "--overwrite"], "did not write"),
        "init-missing-parent": (["model", "init", str(w / "no" / "m"), "--classes",
                                 "a"], "does not exist"),
        "info-docs": (["model", "info", str(w / "docs")], "histodiff.json"),
        "generate-overwrite-docs": (["generate", "--model", model, "--mask",
                                     str(w / "mask.png"), "--out", str(w / "docs"),
                                     "--overwrite", "--steps", "1"], "did not write"),
        "generate-out-missing-folder": (
            ["generate", "--model", model, "--mask", str(w / "mask.png"), "--out",
             str(w / "no" / "o.zarr"), "--steps", "1"], "does not exist"),
        "generate-preview-missing-folder": (
            ["generate", "--model", model, "--mask", str(w / "mask.png"), "--out",
             out + ".zarr", "--preview", str(w / "no" / "p.png"), "--steps", "1"],
            "preview"),
        "generate-preview-not-png": (
            ["generate", "--model", model, "--mask", str(w / "mask.png"), "--out",
             out + ".zarr", "--preview", str(w / "p.jpg"), "--steps", "1"],
            "preview"),
        "generate-flow-scheduler": (
            ["generate", "--model", model, "--mask", str(w / "mask.png"), "--out",
             out + ".zarr", "--steps", "1", "--scheduler",
             "FlowMatchEulerDiscreteScheduler"], "FlowMatchEulerDiscreteScheduler"),
        "generate-mask-missing-folder": (
            ["generate-mask", "--model", model, "--classes", "a", "--size", "16",
             "--out", str(w / "no" / "m.png")], "does not exist"),
        "generate-mask-suffix": (
            ["generate-mask", "--model", model, "--classes", "a", "--size", "16",
             "--out", str(w / "m.bmp")], "suffix"),
        "label-missing-folder": (["label", str(w / "image.png"), "--out",
                                  str(w / "no" / "m.png")], "does not exist"),
        "label-out-is-folder": (["label", str(w / "image.png"), "--out",
                                 str(w / "scans.png"), "--overwrite"], "is a folder"),
        "label-preview-missing-folder": (
            ["label", str(w / "image.png"), "--out", str(w / "m.png"), "--preview",
             str(w / "no" / "p.png")], "preview"),
        "train-nan-lr": (["train", "image", "--lr", "nan", "--out", out, "--image",
                          str(w / "image.png"), "--labels", str(w / "mask.png"),
                          "--classes", "a", "--steps", "1"], "--lr"),
        "bench-flow-scheduler": (["bench", "--quick", "--scheduler",
                                  "FlowMatchEulerDiscreteScheduler"],
                                 "FlowMatchEulerDiscreteScheduler"),
        "bench-nan-guidance": (["bench", "--quick", "--guidance", "nan"],
                               "--guidance"),
        "bench-out-exists": (["bench", "--quick", "--out", str(w / "image.png")],
                             "--out"),
        "demo-out-is-file": (["demo", "--out", str(w / "image.png"), "--steps", "1"],
                             "out"),
        "canvases-missing-dir": (["canvases", "list", str(w / "no")], "dir"),
    }


CLI_CASES = list(_cli_cases("m", Path("w")))


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_input(case, workdir, tiny_model_dir):
    args, expect = _cli_cases(str(tiny_model_dir), workdir)[case]
    before = _tree(workdir)
    res = run_cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert expect in res.stderr, res.stderr
    assert _tree(workdir) == before
    assert (workdir / "docs" / "thesis.txt").read_text() == "years of work\n"


def test_cli_bench_device_absent_is_checked_once(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = run_cli("bench", "--quick", "--device", "cuda", "--out",
                  str(tmp_path / "b.json"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "--device" in res.stderr
    assert res.stdout == "" and not (tmp_path / "b.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["generate", "init", "label"])
def test_cli_read_only_folder(command, tmp_path, workdir, tiny_model_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        args = {
            "generate": ["generate", "--model", str(tiny_model_dir), "--mask",
                         str(workdir / "mask.png"), "--out", str(ro / "o.zarr"),
                         "--steps", "1"],
            "init": ["model", "init", str(ro / "m"), "--classes", "a"],
            "label": ["label", str(workdir / "image.png"), "--out",
                      str(ro / "m.png")],
        }[command]
        res = run_cli(*args)
    finally:
        ro.chmod(0o755)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "cannot write" in res.stderr and not any(ro.iterdir())


def test_read_only_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    """As root (CI containers) a read-only folder is simulated."""
    import tempfile

    from napari_histodiff.outputs import check_output

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputWriteError, match="out: cannot write in"):
        check_output(tmp_path / "o.zarr", False, "out", folder=True)


def test_every_error_is_a_histodiff_error():
    assert issubclass(OutputWriteError, HistodiffError)
    assert issubclass(OutputWriteError, OSError)
