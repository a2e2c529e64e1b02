"""Class-guided tiles, the selection rule and ``histodiff augment`` (issue 15)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from napari_histodiff.cli import main
from napari_histodiff.errors import InputError
from napari_histodiff.models.directory import load_components, save_components
from napari_histodiff.models.factory import build_unet, init_model
from napari_histodiff.pipelines.augment import (
    augment,
    classifier_probabilities,
    select_tiles,
    write_dataset,
)
from napari_histodiff.pipelines.class_tiles import generate_class_tiles
from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
from napari_histodiff.training.classifier_trainer import (
    ClassifierTrainSettings,
    train_classifier,
)
from napari_histodiff.training.tiles import LabelledTiles, load_image_folder

torch.set_num_threads(1)
COLOURS = {"red": (200, 60, 60), "blue": (60, 60, 200)}


def colour_tiles(n: int, size: int, seed: int) -> LabelledTiles:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k, rgb in enumerate(COLOURS.values()):
        for _ in range(n):
            noise = rng.normal(0, 30, (size, size, 3))
            images.append(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))
            labels.append(k)
    return LabelledTiles(images, np.array(labels), list(COLOURS),
                         [f"tile{i}" for i in range(len(images))])


def write_folder(root, tiles: LabelledTiles):
    for i, (im, k) in enumerate(zip(tiles.images, tiles.labels, strict=True)):
        folder = root / tiles.class_names[k]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def guided_model(tmp_path_factory):
    """A random mask-conditioned pixel model (16-px windows) whose classifier
    was trained to tell red from blue tiles."""
    out = tmp_path_factory.mktemp("aug") / "model"
    init_model(out, "red,blue", patch_size=16)
    train_classifier(out, colour_tiles(12, 20, 1), ClassifierTrainSettings(
        steps=120, batch_size=16, lr=3e-3, channels=[8, 16], time_dim=16))
    return out


@pytest.fixture(scope="module")
def pipe(guided_model):
    return HistoDiffPipeline.from_pretrained(guided_model)


def test_guidance_raises_the_probability_of_the_class(pipe):
    """Same seeds, with and without guidance: guiding toward a class raises
    the classifier's probability of it on the finished tiles (t = 0), and
    guiding toward the other class lowers it."""
    def p_red(class_name):
        out = generate_class_tiles(pipe, class_name, 8, 10.0 if class_name else None,
                                   num_inference_steps=8, seed=3, batch_size=8)
        return classifier_probabilities(pipe, out.images)[:, 0]

    plain, red, blue = p_red(None), p_red("red"), p_red("blue")
    assert red.mean() > plain.mean() + 0.15, (red, plain)
    assert (red > plain).mean() >= 0.75
    assert blue.mean() < plain.mean() - 0.15, (blue, plain)


def test_tiles_do_not_depend_on_the_batch(pipe):
    a = generate_class_tiles(pipe, "red", 3, 2.0, num_inference_steps=3, seed=1,
                             batch_size=3).images
    b = generate_class_tiles(pipe, "red", 3, 2.0, num_inference_steps=3, seed=1,
                             batch_size=1).images
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    c = generate_class_tiles(pipe, "red", 3, 2.0, num_inference_steps=3, seed=2,
                             batch_size=3).images
    assert not np.array_equal(a, c)


def test_class_tiles_bad_input(pipe):
    with pytest.raises(InputError, match=r"'green' .* knows red, blue"):
        generate_class_tiles(pipe, "green", 2)
    with pytest.raises(InputError, match="n: must be an integer >= 1, got 0"):
        generate_class_tiles(pipe, "red", 0)
    with pytest.raises(InputError, match="classifier_scale: .* without class_name"):
        generate_class_tiles(pipe, None, 2, classifier_scale=2.0)


def test_unconditional_latent_model(tmp_path):
    """The batch is decoded by the VAE of an unconditional latent model."""
    model = tmp_path / "latent"
    parts = init_model(model, "red,blue", patch_size=32, latent=True)
    uncond = tmp_path / "uncond"
    save_components(uncond, replace(parts["card"], conditioning="none"),
                    unet=build_unet(4, 4, 8, "tiny"), scheduler=parts["scheduler"],
                    vae=load_components(model)["vae"])
    train_classifier(uncond, colour_tiles(2, 32, 0), ClassifierTrainSettings(
        steps=2, batch_size=2, channels=[8], time_dim=16))
    out = generate_class_tiles(HistoDiffPipeline.from_pretrained(uncond), "blue", 2,
                               1.0, num_inference_steps=2)
    assert out.images.shape == (2, 32, 32, 3)
    assert out.settings["conditioning"] == "none"
    assert out.settings["guidance"][0]["target_name"] == "blue"


# -- the selection rule -------------------------------------------------------------
def test_selection_rule():
    intended = np.array([0, 0, 0, 0, 1, 1])
    confidence = np.array([0.9, 0.95, 0.4, 0.99, 0.8, 0.7])
    distances = np.array([[1.0, 3.0],   # near 0, confident: candidate
                          [0.5, 3.0],   # nearer: first
                          [0.1, 3.0],   # nearest but not confident
                          [4.0, 2.0],   # confident but nearest to class 1
                          [3.0, 1.0],   # class 1: fine
                          [3.0, 2.0]])  # class 1: fine, further
    sel = select_tiles(intended, confidence, distances, 0.5, 1, ["a", "b"])
    assert sel.kept.tolist() == [False, True, False, False, True, False]
    assert sel.reason == ["beyond the 1 closest", "kept", "confidence below 0.5",
                          "nearest centroid is b", "kept", "beyond the 1 closest"]
    assert sel.rank.tolist() == [1, 0, -1, -1, 0, 1]
    everything = select_tiles(intended, confidence, distances, 0.0, None)
    assert everything.kept.tolist() == [True, True, True, False, True, True]


# -- the dataset --------------------------------------------------------------------
def test_augment_writes_dataset_csv_and_sheet(pipe, tmp_path):
    real = colour_tiles(6, 20, 7)
    result = augment(pipe, ["red", "blue"], 4, real, classifier_scale=10.0,
                     min_confidence=0.6, max_per_class=3, num_inference_steps=4,
                     batch_size=4, features="random")
    assert result.settings["features"]["name"] == "random"
    out = write_dataset(result, tmp_path / "synthetic")
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 8
    assert {r["class"] for r in rows} == {"red", "blue"}
    for r in rows:
        kept = r["kept"] == "1"
        rule = r["nearest"] == r["class"] and float(r["confidence"]) >= 0.6
        assert not kept or rule
        assert (r["file"] != "") == kept
        if kept:
            assert (out / r["file"]).is_file()
    for name in ("red", "blue"):
        n_kept = sum(r["kept"] == "1" for r in rows if r["class"] == name)
        assert n_kept <= 3
        assert len(list((out / name).glob("*.png"))) == n_kept
        assert (out / name).is_dir() == (n_kept > 0)  # no empty class folder
    sheet = np.asarray(Image.open(out / "sheet.png"))
    assert sheet.shape[0] == 2 * (64 + 14)
    summary = json.loads((out / "augment.json").read_text())
    assert summary["counts"]["red"]["generated"] == 4
    assert not list(tmp_path.glob(".*histodiff-tmp*"))
    if all(summary["counts"][c]["kept"] for c in ("red", "blue")):
        again = load_image_folder(out)  # the layout the trainers read
        assert again.class_names == ["blue", "red"]


# -- CLI errors ---------------------------------------------------------------------
@pytest.fixture
def real_dir(tmp_path):
    return write_folder(tmp_path / "real", colour_tiles(3, 20, 0))


def _run(capsys, *args):
    """Exit status and output of ``histodiff augment ARGS`` (argparse errors
    exit through SystemExit)."""
    try:
        code = main(["augment", *args, "--steps", "2", "--threads", "1",
                     "--device", "cpu", "--quiet"])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


def test_cli_augment_runs(guided_model, real_dir, tmp_path, capsys):
    out = tmp_path / "syn"
    code, io = _run(capsys, "--model", str(guided_model), "--class", "red",
                    "--n", "2", "--real", str(real_dir), "--out", str(out),
                    "--features", "random", "--min-confidence", "0")
    assert code == 0, io.err
    summary = json.loads(io.out)
    assert summary["counts"]["red"]["generated"] == 2
    assert summary["features"] == "random"
    assert (out / "scores.csv").is_file() and (out / "red").is_dir()
    code, io = _run(capsys, "--model", str(guided_model), "--class", "red",
                    "--n", "2", "--real", str(real_dir), "--out", str(out))
    assert code == 2 and "--out" in io.err and "exists" in io.err


@pytest.mark.parametrize("extra, match", [
    (["--class", "green", "--n", "2"],
     "--class: 'green' is not a class .* it knows red, blue"),
    (["--class", "red", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["--class", "red", "--n", "2", "--min-confidence", "1.5"],
     "argument --min-confidence: must be in"),
    (["--class", "red", "--class", "red", "--n", "2"], "--class: red given twice"),
    (["--class", "red", "--n", "2", "--features", "random", "--encoder", "x"],
     "--encoder: x given with --features random"),
])
def test_cli_augment_errors(guided_model, real_dir, tmp_path, capsys, extra, match):
    code, io = _run(capsys, "--model", str(guided_model), "--real", str(real_dir),
                    "--out", str(tmp_path / "o"), *extra)
    assert code == 2
    assert re.search(match, io.err), io.err
    assert "Traceback" not in io.err
    assert not (tmp_path / "o").exists()


def test_cli_augment_model_without_classifier(tmp_path, real_dir, capsys):
    model = tmp_path / "bare"
    init_model(model, "red,blue", patch_size=16)
    code, io = _run(capsys, "--model", str(model), "--class", "red", "--n", "2",
                    "--real", str(real_dir), "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"--model: {model} has no classifier/" in io.err


def test_cli_augment_real_lacks_the_class(guided_model, tmp_path, capsys):
    real = tmp_path / "real"
    tiles = colour_tiles(2, 20, 0)
    write_folder(real, tiles)
    for p in (real / "blue").iterdir():
        p.unlink()
    (real / "blue").rmdir()
    (real / "green").mkdir()
    Image.fromarray(tiles.images[0]).save(real / "green" / "g.png")
    code, io = _run(capsys, "--model", str(guided_model), "--class", "blue",
                    "--n", "2", "--real", str(real), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "--real: has no folder for class 'blue'" in io.err


# -- the benchmark's figures --------------------------------------------------------
def test_benchmark_statistics():
    from napari_histodiff.bench.augment import (
        AugmentBenchSettings,
        balanced_accuracy,
        interval,
    )

    y = np.array([0, 0, 0, 0, 1])
    # always predicting the majority: accuracy 0.8, balanced accuracy 0.5
    assert balanced_accuracy(y, np.zeros(5, int), 3) == 0.5
    assert balanced_accuracy(y, y, 3) == 1.0
    ci = interval([0.5, 0.6, 0.7, 0.6, 0.6])
    assert ci["mean"] == 0.6 and ci["n"] == 5
    # t(0.975, 4) = 2.776, sd = 0.0707
    assert ci["ci95"] == pytest.approx([0.6 - 2.776 * 0.07071 / 5 ** 0.5,
                                        0.6 + 2.776 * 0.07071 / 5 ** 0.5], abs=1e-3)
    with pytest.raises(InputError, match="--seeds: at least 2"):
        AugmentBenchSettings(seeds=1).check()


def test_bench_augment_is_registered(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "augment", "--help"])
    assert "--n-per-class" in capsys.readouterr().out


def test_noise_centred_on_the_unknown_mean(guided_model):
    """With class means in the card, the start noise is centred on unknown's
    mean (as the pipeline does for an all-unknown mask); without, refused by
    name when asked for."""
    pipe = HistoDiffPipeline.from_pretrained(guided_model)
    with pytest.raises(InputError, match="noise_mean: 'classes' needs"):
        generate_class_tiles(pipe, None, 2, noise_mean="classes")
    plain = generate_class_tiles(pipe, None, 2, num_inference_steps=2)
    assert plain.settings["noise_mean"] == "zero"
    pipe.card = replace(pipe.card, class_means=[[0.9, 0.9, 0.9]] * 3)
    bright = generate_class_tiles(pipe, None, 2, num_inference_steps=2)
    assert bright.settings["noise_mean"] == "classes"
    assert bright.images.mean() > plain.images.mean() + 10
