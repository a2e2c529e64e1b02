"""``histodiff metrics`` and ``measure_realism`` end to end (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from napari_histodiff.cli import main


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """train: top-left quadrant; real: bottom half; synthetic: top-right."""
    from skimage.data import immunohistochemistry

    img = immunohistochemistry()
    root = tmp_path_factory.mktemp("metrics")
    paths = {}
    for name, crop in (("train", img[:256, :256]), ("real", img[256:]),
                       ("synthetic", img[:256, 256:])):
        paths[name] = root / f"{name}.png"
        Image.fromarray(crop).save(paths[name])
    return paths


def _args(files, out, *extra):
    return ["metrics", "--real", str(files["real"]), "--synthetic",
            str(files["synthetic"]), "--tile-size", "16", "--bootstrap", "3",
            "--out", str(out), "--quiet", *extra]


def test_cli_writes_json_table_and_sheet(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(_args(files, out, "--train", str(files["train"]), "--pairs", "4"))
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text())
    assert printed == saved
    assert printed["extractor"]["name"] == "random"
    assert printed["extractor"]["seed"] == 0
    assert printed["counts"]["train"]["tiles"] > 100
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert isinstance(printed[key], float)
    assert printed["fid_ci"][0] <= printed["fid"] <= printed["fid_ci"][1]
    privacy = printed["privacy"]
    assert privacy["heldout_source"] == "real"
    assert 0 <= privacy["authenticity"] <= 1
    assert isinstance(privacy["C_T"], float)
    assert len(printed["closest_pairs"]) == 4
    assert printed["seams"]["period"] == 64
    table = (out / "metrics.md").read_text()
    assert "| FID |" in table and "data-copying C_T" in table
    with Image.open(out / "closest_pairs.png") as sheet:
        assert sheet.size[0] > 4 * 96
    # outputs are never replaced silently
    assert main(_args(files, out)) == 2
    assert "exists" in capsys.readouterr().err


def test_fixed_seed_reproduces_the_figures(files):
    from napari_histodiff.metrics import measure_realism

    kw = {"tile_size": 16, "n_bootstrap": 3, "train": [files["train"]],
          "seam_period": None}
    a = measure_realism([files["real"]], [files["synthetic"]], seed=0, **kw)
    b = measure_realism([files["real"]], [files["synthetic"]], seed=0, **kw)
    c = measure_realism([files["real"]], [files["synthetic"]], seed=1, **kw)
    da, db, dc = (r.to_dict() for r in (a, b, c))
    for d in (da, db, dc):
        d.pop("seconds")
    assert da == db
    assert da["fid"] != dc["fid"]
    assert dc["extractor"]["seed"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--features", "nope"], "--features: 'nope' is not one of"),
    (["--real", "missing.png"], "missing.png does not exist"),
    (["--tile-size", "300"], "smaller than one tile of --tile-size 300"),
    (["--tile-size", "64"], "--real: 15 tiles, but FID with the random features "
                            "(64 dimensions) needs at least 65"),
    (["--train", "train-missing.png"], "train-missing.png does not exist"),
    (["--k", "500"], "with k=500 neighbours needs at least 501"),
])
def test_cli_bad_input_exits_2(files, tmp_path, capsys, extra, message):
    assert main(_args(files, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_cli_bad_number_exits_2(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_args(files, tmp_path / "o", "--tile-size", "8"))
    assert exc.value.code == 2
    assert "--tile-size: must be >= 16, got 8" in capsys.readouterr().err


def test_heldout_without_train_is_refused(files, tmp_path, capsys):
    rc = main(_args(files, tmp_path / "o", "--heldout", str(files["real"])))
    assert rc == 2
    assert "--heldout" in capsys.readouterr().err


def test_masks_give_mask_fidelity(files, tmp_path):
    from napari_histodiff.masks.labeller import auto_label, fit_thresholds
    from napari_histodiff.metrics import measure_realism

    real = np.asarray(Image.open(files["real"]))
    syn = np.asarray(Image.open(files["synthetic"]))
    mask = auto_label(syn, fit_thresholds(real))
    report = measure_realism([files["real"]], [files["synthetic"]], masks=[mask],
                             tile_size=16, n_bootstrap=0, seam_period=None)
    # the labeller's own labels as the mask: the synthetic image follows it
    assert report.mask_fidelity["mean_dice"] > 0.99
    wrong = np.roll(mask, 64, axis=1)
    worse = measure_realism([files["real"]], [files["synthetic"]], masks=[wrong],
                            tile_size=16, n_bootstrap=0, seam_period=None)
    assert worse.mask_fidelity["mean_dice"] < 0.9
    assert "mask fidelity" in report.to_markdown()


def test_c2st_goes_into_the_report(files):
    pytest.importorskip("napari_histodiff.metrics.c2st")
    from napari_histodiff.metrics import measure_realism

    report = measure_realism(
        [files["real"]], [files["synthetic"]], train=[files["train"]],
        tile_size=16, n_bootstrap=0, seam_period=None, c2st=True,
        c2st_options={"tile_size": 32, "seeds": (0,), "train_steps": 5})
    assert 0.0 <= report.c2st["auc"] <= 1.0
    assert "auc" in report.c2st["floor"]  # real against the training image
    table = report.to_markdown()
    assert "C2ST AUC real vs synthetic" in table and "(floor)" in table
    assert report.to_dict()["c2st"]["settings"]["train_steps"] == 5


def test_ome_zarr_output_is_read_with_its_mask(files, tmp_path):
    """A `histodiff generate` OME-Zarr: tiled band by band, its own mask used."""
    from napari_histodiff.io.omezarr import write_synthesis
    from napari_histodiff.masks.labeller import CLASS_NAMES, auto_label, fit_thresholds
    from napari_histodiff.metrics import measure_realism
    from napari_histodiff.models.classes import TissueClasses

    real = np.asarray(Image.open(files["real"]))
    syn = np.asarray(Image.open(files["synthetic"]))
    mask = auto_label(syn, fit_thresholds(real))
    classes = TissueClasses.from_names(",".join(CLASS_NAMES))
    zarr_path = write_synthesis(tmp_path / "syn.zarr", syn.transpose(2, 0, 1), mask,
                                classes, {"seed": 0})
    report = measure_realism([files["real"]], [zarr_path], tile_size=16,
                             n_bootstrap=0)
    png = measure_realism([files["real"]], [files["synthetic"]], tile_size=16,
                          n_bootstrap=0)
    assert report.counts["synthetic"] == png.counts["synthetic"]
    assert report.fid == pytest.approx(png.fid)
    assert report.mask_fidelity["mean_dice"] > 0.99
    assert png.mask_fidelity is None


def test_bench_metrics_prints_json(capsys):
    rc = main(["bench", "metrics", "--tiles", "100", "--tile-size", "32",
               "--bootstrap", "0", "--threads", "1"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["counts"]["real"]["tiles"] == 100
    assert result["features"]["name"] == "random"
    assert result["seconds"]["total"] > 0
    assert set(result["privacy"]) >= {"authenticity", "C_T", "nn_distance_ratio"}


def test_one_mask_per_synthetic_image(files, tmp_path, capsys):
    mask = tmp_path / "m.npy"
    np.save(mask, np.ones((256, 256), np.uint8))
    rc = main(_args(files, tmp_path / "o", "--masks", str(mask), str(mask)))
    assert rc == 2
    assert "--masks: 2 mask(s) for 1 synthetic image(s)" in capsys.readouterr().err
