"""Bad training data is refused with a message naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_histodiff.cli import main
from napari_histodiff.errors import InputError
from napari_histodiff.models.classes import TissueClasses
from napari_histodiff.training.data import load_folder_pairs, load_unlabelled

CLASSES = TissueClasses.from_names("a,b")


def write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


def rgb(size=32):
    return np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8)


def good(tmp_path, n=2):
    for i in range(n):
        write(tmp_path / "img", f"t{i}.png", rgb())
        write(tmp_path / "msk", f"t{i}.png", np.full((32, 32), 1 + i % 2, np.uint8))
    return tmp_path / "img", tmp_path / "msk"


def test_good_pairs_load(tmp_path):
    samples = load_folder_pairs(*good(tmp_path), CLASSES, 16)
    assert len(samples) == 2 and samples[0].mask.shape == (32, 32)


def test_empty_folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        load_folder_pairs(tmp_path / "img", tmp_path / "msk", CLASSES, 16)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        load_unlabelled(tmp_path / "nope", 16)


def test_unmatched_names(tmp_path):
    img, msk = good(tmp_path)
    write(img, "extra.png", rgb())
    with pytest.raises(InputError, match="extra.png"):
        load_folder_pairs(img, msk, CLASSES, 16)
    (img / "extra.png").unlink()
    write(msk, "orphan.png", np.ones((32, 32), np.uint8))
    with pytest.raises(InputError, match="orphan"):
        load_folder_pairs(img, msk, CLASSES, 16)


def test_size_mismatch_names_both_files(tmp_path):
    img, msk = good(tmp_path)
    write(msk, "t1.png", np.ones((30, 32), np.uint8))
    with pytest.raises(InputError, match=r"t1.png is 30x32 .* 32x32"):
        load_folder_pairs(img, msk, CLASSES, 16)


def test_class_outside_the_list(tmp_path):
    img, msk = good(tmp_path)
    write(msk, "t0.png", np.full((32, 32), 7, np.uint8))
    with pytest.raises(InputError, match=r"t0.png.*\[7\]"):
        load_folder_pairs(img, msk, CLASSES, 16)


def test_not_rgb(tmp_path):
    img, msk = good(tmp_path)
    write(img, "t0.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="t0.png is a L image, not RGB"):
        load_folder_pairs(img, msk, CLASSES, 16)


def test_unreadable(tmp_path):
    img, msk = good(tmp_path)
    (img / "t0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read .*t0.png"):
        load_folder_pairs(img, msk, CLASSES, 16)


def test_too_small_for_the_crop(tmp_path):
    with pytest.raises(InputError, match="smaller than the 64-pixel"):
        load_folder_pairs(*good(tmp_path), CLASSES, 64)


def test_cli_trains_resumes_and_writes_a_loadable_model(tmp_path, capsys):
    from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline

    img, msk = good(tmp_path)
    write(tmp_path / "unl", "u.png", rgb())
    base = ["train", "image", "--images", str(img), "--masks", str(msk),
            "--unlabelled", str(tmp_path / "unl"), "--classes", "a,b",
            "--out", str(tmp_path / "model"), "--run-dir", str(tmp_path / "run"),
            "--patch-size", "16", "--channels", "8,16", "--layers", "1",
            "--batch-size", "2", "--checkpoint-every", "2", "--warmup", "0",
            "--device", "cpu", "--threads", "1", "--quiet"]
    assert main([*base, "--steps", "2"]) == 0
    assert main([*base, "--steps", "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "steps: 3" in out
    pipe = HistoDiffPipeline.from_pretrained(tmp_path / "model")
    prov = pipe.card.provenance["image_model"]
    assert prov["steps"] == 3 and prov["seed"] == 0
    assert prov["data"]["unlabelled_images"]
    assert (tmp_path / "run" / "loss.png").is_file()
    # bad input through the CLI: exit status 2 and the file named
    write(msk, "t0.png", np.full((32, 32), 9, np.uint8))
    assert main([*base, "--steps", "2", "--overwrite"]) == 2
    assert "t0.png" in capsys.readouterr().err


def test_cli_cosine_schedule_is_recorded_and_kept_on_resume(tmp_path, capsys):
    from napari_histodiff.models.card import ModelCard

    img, msk = good(tmp_path)
    base = ["train", "image", "--images", str(img), "--masks", str(msk),
            "--classes", "a,b", "--out", str(tmp_path / "model"),
            "--run-dir", str(tmp_path / "run"), "--patch-size", "16",
            "--channels", "8,16", "--layers", "1", "--batch-size", "2",
            "--checkpoint-every", "2", "--warmup", "0", "--device", "cpu",
            "--threads", "1", "--quiet", "--lr-schedule", "cosine",
            "--final-lr", "0.25"]
    assert main([*base, "--steps", "2"]) == 0
    settings = ModelCard.load(tmp_path / "model").provenance["image_model"]["settings"]
    assert settings["lr_schedule"] == "cosine"
    assert settings["final_lr_fraction"] == 0.25
    capsys.readouterr()
    assert main([*base, "--steps", "4", "--resume"]) == 2
    assert "steps: the cosine schedule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: out of [0, 1]
        main([*base, "--final-lr", "2"])
    assert info.value.code == 2
    assert "--final-lr: must be in [0, 1], got 2" in capsys.readouterr().err


def test_class_means_of_labelled_pixels_and_overall_for_the_rest():
    from napari_histodiff.training.data import Sample, class_means

    img = np.zeros((2, 4, 3), np.uint8)
    img[0] = 255            # class 1: white
    img[1, :2] = (0, 0, 0)  # class 2: black
    img[1, 2:] = 51         # class 0 (unknown): grey
    mask = np.array([[1, 1, 1, 1], [2, 2, 0, 0]], np.uint8)
    unlabelled = Sample(np.full((2, 2, 3), 255, np.uint8), None, "u")
    means = np.array(class_means([Sample(img, mask, "a"), unlabelled], 4))
    np.testing.assert_allclose(means[1], 1.0)
    np.testing.assert_allclose(means[2], -1.0)
    # unknown and the absent class 3: the mean of all 12 pixels
    overall = (8 * 255 + 2 * 0 + 2 * 51) / 12 / 127.5 - 1.0
    np.testing.assert_allclose(means[0], overall, atol=1e-6)
    np.testing.assert_allclose(means[3], overall, atol=1e-6)
