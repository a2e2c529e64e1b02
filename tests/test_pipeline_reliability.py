"""Pipelines refuse bad scalar arguments, runs that cannot fit, and model
outputs that are not numbers (issue 17, defects 2, 6, 7 and 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.errors import InputError, ModelOutputError, ResourceError
from napari_histodiff.sampling import budget

MASK = np.ones((32, 32), np.uint8)


@pytest.mark.parametrize("chunk", [-1, 0, 7, 2.5, True])
def test_chunk_below_the_minimum_is_refused_by_name(tiny_pipe, chunk):
    with pytest.raises(InputError, match=r"^chunk: must be an integer"):
        tiny_pipe(MASK, num_inference_steps=1, chunk=chunk)


@pytest.mark.parametrize("arg", ["num_inference_steps", "seed", "window_batch",
                                 "guidance_scale"])
def test_true_is_not_a_number(tiny_pipe, arg):
    with pytest.raises(InputError, match=f"^{arg}: must be"):
        tiny_pipe(MASK, **{"num_inference_steps": 1, arg: True})


def test_numpy_scalars_are_numbers(tiny_pipe):
    out = tiny_pipe(MASK, num_inference_steps=np.int64(1), seed=np.int32(2),
                    guidance_scale=np.float32(2.0), window_batch=np.uint8(4))
    assert out.image.shape == (32, 32, 3)
    assert out.settings["guidance_scale"] == 2.0
    assert type(out.settings["guidance_scale"]) is float  # JSON-safe


def test_mask_generator_checks_the_same_way():
    from napari_histodiff import HistoDiffMaskPipeline

    masks = HistoDiffMaskPipeline.from_pretrained("demo")
    with pytest.raises(InputError, match="^height: must be an integer"):
        masks(["nuclei"], height=True, width=64)
    with pytest.raises(InputError, match="classes: True is not one"):
        masks([True], height=64, width=64)
    out = masks(["nuclei"], height=24, width=24, num_inference_steps=1,
                guidance_scale=np.float32(1.5))
    assert out.mask.shape == (24, 24)


def test_a_canvas_that_cannot_fit_in_memory_is_refused_before_allocation(tiny_pipe,
                                                                          monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 10 * 1024 ** 2)
    mask = np.ones((2048, 2048), np.uint8)
    with pytest.raises(ResourceError, match=r"store: a 2048 x 2048 canvas in memory "
                       r"needs about 0\.\d GiB .* 0\.0 GiB are available"):
        tiny_pipe(mask, num_inference_steps=1, store="memory")


def test_auto_moves_a_large_canvas_to_disk_and_checks_the_disk(tiny_pipe, tmp_path,
                                                               monkeypatch):
    # the 256 x 256 canvas needs about 3.4 MiB: more than half of 2 MiB
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 1024 ** 2)
    run = tiny_pipe.stream(np.ones((256, 256), np.uint8), num_inference_steps=1,
                           store="auto", store_path=tmp_path / "canvas")
    assert type(run.store).__name__ == "ZarrStore"

    class Tiny:
        free = 1000

    monkeypatch.setattr(budget.shutil, "disk_usage", lambda p: Tiny)
    with pytest.raises(ResourceError, match="store_path: the canvas needs up to"):
        tiny_pipe.stream(np.ones((256, 256), np.uint8), num_inference_steps=1,
                         store="zarr", store_path=tmp_path / "canvas2")


def test_huge_generated_mask_is_refused_with_the_estimate():
    from napari_histodiff import HistoDiffMaskPipeline

    masks = HistoDiffMaskPipeline.from_pretrained("demo")
    with pytest.raises(ResourceError, match=r"size: a 100000 x 100000 mask needs "
                       r"about \d+\.\d GiB"):
        masks(["nuclei"], height=100000, width=100000)


def test_nan_weights_stop_the_run_with_an_error(tiny_pipe, tmp_path):
    from napari_histodiff import HistoDiffPipeline

    pipe = HistoDiffPipeline(unet=type(tiny_pipe.unet).from_config(
        tiny_pipe.unet.config), scheduler=tiny_pipe.scheduler, card=tiny_pipe.card)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.fill_(float("nan"))
    run = pipe.stream(MASK, num_inference_steps=2, store="zarr",
                      store_path=tmp_path / "c")
    with pytest.raises(ModelOutputError, match="NaN or infinite .* damaged"):
        for _ in run.events():
            pass
    assert run.store.attrs["status"] == "failed"
    assert "ModelOutputError" in run.store.attrs["error"]


def test_stream_refuses_an_existing_output_unless_asked(tiny_pipe, tmp_path):
    from napari_histodiff.errors import HistodiffError

    first = tiny_pipe.stream(MASK, num_inference_steps=1, store="zarr",
                             store_path=tmp_path / "canvas")
    for _ in first.events():
        pass
    with pytest.raises(HistodiffError, match="canvas"):
        tiny_pipe.stream(MASK, num_inference_steps=1, store="zarr",
                         store_path=tmp_path / "canvas")
    again = tiny_pipe.stream(MASK, num_inference_steps=1, store="zarr",
                             store_path=tmp_path / "canvas", store_overwrite=True)
    assert again.store.attrs["settings"]["num_inference_steps"] == 1


def test_save_pretrained_replaces_only_a_model_folder(tiny_pipe, tmp_path):
    from napari_histodiff.errors import OutputExistsError

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        tiny_pipe.save_pretrained(docs, overwrite=True)
    assert (docs / "thesis.txt").read_text() == "mine"
    tiny_pipe.save_pretrained(tmp_path / "m")
    tiny_pipe.save_pretrained(tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "histodiff.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_damaged_mask_unet_config_is_a_model_format_error(tmp_path):
    import shutil

    from napari_histodiff import HistoDiffMaskPipeline
    from napari_histodiff.errors import ModelFormatError
    from napari_histodiff.models import demo_model_path

    model = tmp_path / "m"
    shutil.copytree(demo_model_path(), model)
    (model / "mask_unet" / "config.json").write_text('{"in_channels": "many"}')
    with pytest.raises(ModelFormatError, match="mask_unet"):
        HistoDiffMaskPipeline.from_pretrained(model)
