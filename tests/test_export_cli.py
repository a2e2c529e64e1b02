"""``histodiff export`` (issue 18, items 13 and 14): the Export panel's core
from the command line, QuPath pairs, tile datasets and clear refusals."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from napari_histodiff.cli import main
from napari_histodiff.io.export import export_synthesis, read_sidecar
from napari_histodiff.models.classes import TissueClasses

CLASSES = TissueClasses.from_names("background,nuclei,dab,tissue")


@pytest.fixture
def source(tmp_path):
    """An OME-Zarr output (as histodiff generate writes) and its arrays."""
    rng = np.random.default_rng(5)
    image = rng.integers(40, 220, (72, 96, 3), dtype=np.uint8)
    image[:, 64:] = 250  # glass on the right
    mask = np.kron(rng.integers(1, 5, (6, 8)), np.ones((12, 12), int)).astype(
        np.uint8)
    path = tmp_path / "syn.zarr"
    export_synthesis(path, image, mask, CLASSES, {"model": "demo", "seed": 11},
                     microns_per_pixel=0.5)
    return path, image, mask


def _leftovers(folder):
    return [p.name for p in folder.rglob("*") if ".histodiff-tmp-" in p.name]


def test_export_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "export" in capsys.readouterr().out


def test_qupath_pair_of_a_region(source, tmp_path, capsys):
    import tifffile

    path, image, mask = source
    out = tmp_path / "out"
    rc = main(["export", str(path), "--to", str(out / "case.ome.tif"),
               "--to", str(out / "case.geojson"), "--region", "8,4,72,60"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "case.ome.tif" in text and "case.geojson" in text
    crop = image[4:60, 8:72]
    assert (tifffile.imread(out / "case.ome.tif") == crop).all()
    assert (tifffile.imread(out / "case_mask.tif") == mask[4:60, 8:72]).all()
    with tifffile.TiffFile(out / "case.ome.tif") as tf:
        assert 'PhysicalSizeX="0.5"' in tf.ome_metadata  # from the OME-Zarr
    features = json.loads((out / "case.geojson").read_text())["features"]
    area = {}
    for f in features:
        name = f["properties"]["classification"]["name"]
        ext, *holes = f["geometry"]["coordinates"]
        xs = [p[0] for p in ext]
        assert 0 <= min(xs) and max(xs) <= 64  # pixels of the region
        area[name] = area.get(name, 0) + _area(ext) + sum(_area(h) for h in holes)
    for cls in list(CLASSES)[1:]:
        assert area.get(cls.name, 0) == (mask[4:60, 8:72] == cls.index).sum()
    record = read_sidecar(out / "case.geojson")
    assert record["region"] == [4, 60, 8, 72] and record["seed"] == 11
    assert [e["file_format"] for e in json.loads(
        (out / "case.json").read_text())["exports"]] == ["tiff", "geojson"]


def _area(ring):
    xy = np.asarray(ring, float)
    return 0.5 * np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1])


def test_png_and_jpeg_tiff(source, tmp_path):
    from PIL import Image

    pytest.importorskip("imagecodecs")
    path, image, mask = source
    assert main(["export", str(path), "--to", str(tmp_path / "p.png"),
                 "--to", str(tmp_path / "j.tif"), "--compression", "jpeg"]) == 0
    assert (np.asarray(Image.open(tmp_path / "p.png")) == image).all()
    assert (np.asarray(Image.open(tmp_path / "p_mask.png")) == mask).all()
    assert read_sidecar(tmp_path / "j.tif")["compression"] == "jpeg"


@pytest.mark.parametrize("args, expect", [
    (["--to", "X/a.png", "--region", "0,0,200,10"],
     r"--region: x 0-200, y 0-10 is not inside the 96x72"),
    (["--to", "X/a.png", "--region", "5,5,2,9"], r"--region.*'5,5,2,9'"),
    (["--to", "X/a.png", "--region", "1,2,3"], r"--region.*'1,2,3'"),
    (["--to", "X/a.jpg"], r"--to: a.jpg has suffix '.jpg'.*\.geojson"),
    (["--to", "X/folder"], r"--to: .*folder has no suffix.*--tiles"),
    (["--to", "X/t", "--tiles", "128"], r"tiles: 128 px tiles do not fit"),
    (["--to", "X/a.png", "--min-tissue", "0.2"], r"--min-tissue.*--tiles"),
    (["--to", "X/t", "--tiles", "16", "--min-tissue", "2"],
     r"--min-tissue.*between 0 and 1, got 2"),
    (["--to", "X/a.png", "--to", "X/a.png"], r"--to: .*a.png is given twice"),
])
def test_refusals_name_argument_and_value(source, tmp_path, capsys, args, expect):
    path, _, _ = source
    args = [a.replace("X/", f"{tmp_path}/x/") for a in args]
    try:
        rc = main(["export", str(path), *args])
    except SystemExit as exc:  # argparse's own refusals
        rc = exc.code
    assert rc == 2
    assert re.search(expect, capsys.readouterr().err)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_existing_outputs_need_overwrite(source, tmp_path, capsys):
    path, image, _ = source
    out = tmp_path / "e.ome.tif"
    assert main(["export", str(path), "--to", str(out)]) == 0
    before = out.read_bytes()
    # a second --to that is new is not written either: all are checked first
    rc = main(["export", str(path), "--to", str(tmp_path / "new.png"),
               "--to", str(out), "--region", "0,0,10,10"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--to:" in err and "e.ome.tif" in err and "--overwrite" in err
    assert out.read_bytes() == before and not (tmp_path / "new.png").exists()
    assert main(["export", str(path), "--to", str(out), "--region", "0,0,10,10",
                 "--overwrite"]) == 0
    assert read_sidecar(out)["size"] == [10, 10]
    assert _leftovers(tmp_path) == []


def test_tile_dataset_from_an_output(source, tmp_path, capsys):
    from napari_histodiff.io.tiles import read_manifest

    path, image, mask = source
    out = tmp_path / "tiles"
    assert main(["export", str(path), "--to", str(out), "--tiles", "24"]) == 0
    assert "tile(s) of 24 px" in capsys.readouterr().out
    rows = read_manifest(out)
    # 3 x 4 grid; the column at x 72 is glass only and is left out
    assert len(rows) == 9 and {int(r["x"]) for r in rows} == {0, 24, 48}
    assert all(r["model"] == "demo" and r["seed"] == "11" for r in rows)
    assert rows[0]["source"].endswith("syn.zarr")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["skipped"] == 3 and meta["microns_per_pixel"] == 0.5
    rc = main(["export", str(path), "--to", str(out), "--tiles", "24"])
    assert rc == 2 and "--to:" in capsys.readouterr().err
    assert main(["export", str(path), "--to", str(out), "--tiles", "24",
                 "--min-tissue", "0", "--region", "0,0,48,48", "--overwrite"]) == 0
    assert len(read_manifest(out)) == 4


def test_tile_dataset_from_a_real_image_with_its_mask(tmp_path, capsys):
    from PIL import Image

    from napari_histodiff.io.masks import write_mask
    from napari_histodiff.io.tiles import read_manifest

    rng = np.random.default_rng(6)
    image = rng.integers(60, 200, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "real.png")
    mask = np.ones((40, 40), np.uint8)
    mask[20:] = 2
    write_mask(tmp_path / "labels.png", mask)
    out = tmp_path / "ds"
    assert main(["export", str(tmp_path / "real.png"), "--mask",
                 str(tmp_path / "labels.png"), "--classes", "stroma,tumour",
                 "--to", str(out), "--tiles", "20"]) == 0
    rows = read_manifest(out)
    assert len(rows) == 4
    assert {r["dominant_class"] for r in rows if r["y"] == "20"} == {"tumour"}
    assert rows[0]["model"] == "" and rows[0]["seed"] == ""
    assert json.loads((out / "dataset.json").read_text())["classes"][1]["name"] \
        == "stroma"
    # ids the classes do not cover are refused, naming them
    rc = main(["export", str(tmp_path / "real.png"), "--mask",
               str(tmp_path / "labels.png"), "--classes", "stroma",
               "--to", str(tmp_path / "ds2"), "--tiles", "20"])
    assert rc == 2 and "2" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()
