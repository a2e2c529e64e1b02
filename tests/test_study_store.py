"""Creating study folders: layout, truth key, blinding, damaged and foreign folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_histodiff.errors import InputError, OutputExistsError
from napari_histodiff.study import ReaderSession, Study, create_study, load_rgb
from napari_histodiff.study.images import open_rgb
from test_study_support import TILE, make_sources, make_study


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("single"), "single", n=5, n_training=2)


def test_single_study_layout_and_key(single):
    study = Study.open(single.path)
    ids = study.case_ids()
    assert len(ids) == 10 and len(study.case_ids(training=True)) == 4
    assert not set(ids) & set(study.case_ids(True))
    key = study.read_key()
    assert sorted(key.truth.values()) == ["real"] * 5 + ["synthetic"] * 5
    assert key.settings["seed"] == 7 and key.settings["tile_size"] == TILE
    for case_id in ids:
        pixels = study.load_case(case_id)
        assert pixels.shape == (1, TILE, TILE, 3) and pixels.dtype == np.uint8
        (tile,) = key.tiles[case_id]
        assert tile["label"] == key.truth[case_id] and tile["tissue"] >= 0.5
        # the stored pixels are exactly the source pixels: nothing re-encoded
        source = open_rgb(tile["source"]).read(tile["y"], tile["x"], TILE, TILE)
        np.testing.assert_array_equal(pixels[0], source)
    assert study.read_training_key().settings == {"training": True}


def test_pairs_hold_one_real_and_one_synthetic_tile(tmp_path):
    study = make_study(tmp_path, "2afc", n=6)
    key = study.read_key()
    assert sorted(key.truth.values()) == ["left"] * 3 + ["right"] * 3  # balanced
    for case_id, side in key.truth.items():
        pixels = study.load_case(case_id)
        assert pixels.shape == (2, TILE, TILE, 3)
        labels = [t["label"] for t in key.tiles[case_id]]
        assert labels[0 if side == "left" else 1] == "synthetic"
        assert sorted(labels) == ["real", "synthetic"]
        synthetic = key.tiles[case_id][0 if side == "left" else 1]
        source = load_rgb(synthetic["source"])
        y, x = synthetic["y"], synthetic["x"]
        np.testing.assert_array_equal(
            pixels[0 if side == "left" else 1], source[y : y + TILE, x : x + TILE]
        )


def test_rating_study_never_asks_confidence(tmp_path):
    study = make_study(tmp_path, "rating", n=3, ask_confidence=True)
    assert study.settings.ask_confidence is False and len(study.case_ids()) == 6


def test_blinding_nothing_but_pixels_differs(single):
    """Real (PNG) and synthetic (OME-Zarr) cases are stored indistinguishably."""
    study = single
    key = study.read_key()
    cases = study.path / "cases"
    names = sorted(p.name for p in cases.iterdir())
    assert names == sorted(f"{i}.npy" for i in study.case_ids())  # nothing else
    stats = {i: study.case_path(i).stat() for i in study.case_ids()}
    headers = {i: study.case_path(i).read_bytes()[:128] for i in study.case_ids()}
    for attribute in ("st_size", "st_mtime", "st_mode"):
        values = {getattr(s, attribute) for s in stats.values()}
        assert len(values) == 1, attribute
    assert len(set(headers.values())) == 1
    # ids are 64 random bits (from the OS, not the seed), so they carry no label
    for case_id in study.case_ids():
        assert len(case_id) == 16 and int(case_id, 16) >= 0
    # the manifest, which readers open, lists cases without any label
    manifest_text = (study.path / "study.json").read_text()
    for word in ("real", "synthetic", "slide_", "generated_", ".png", ".zarr"):
        assert word not in manifest_text.lower()
    # the truth is only in the key, kept apart from the cases
    assert all(key.truth.values())
    assert not any(p.suffix == ".json" for p in cases.iterdir())


def test_key_outside_the_folder_and_reader_never_needs_it(tmp_path):
    key_file = tmp_path / "elsewhere" / "key.json"
    study = make_study(tmp_path, n=2, key_path=key_file)
    assert key_file.is_file() and not (study.path / "key").exists()
    with pytest.raises(InputError, match="--key"):
        study.read_key()
    assert len(study.read_key(key_file).truth) == 4
    with ReaderSession(study, "ann") as session:  # no key anywhere in reach
        while not session.finished:
            session.submit("real", 3)
    other = make_study(tmp_path / "other", n=2)
    with pytest.raises(InputError, match="belongs to another study"):
        other.read_key(key_file)


def test_foreign_and_damaged_folders_give_clear_errors(tmp_path, single):
    with pytest.raises(InputError, match="does not exist"):
        Study.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a reader study folder"):
        Study.open(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "study.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a napari-histodiff study manifest"):
        Study.open(foreign)
    (foreign / "study.json").write_text("{ not json")
    with pytest.raises(InputError, match="damaged"):
        Study.open(foreign)

    copy = tmp_path / "copy"
    shutil.copytree(single.path, copy)
    manifest = json.loads((copy / "study.json").read_text())
    manifest["format_version"] = 99
    (copy / "study.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="Update napari-histodiff"):
        Study.open(copy)
    manifest["format_version"] = 1
    (copy / "study.json").write_text(json.dumps(manifest))

    victim = copy / "cases" / f"{single.case_ids()[0]}.npy"
    data = victim.read_bytes()
    victim.write_bytes(data[:-10])
    with pytest.raises(InputError, match="damaged.*bytes"):
        Study.open(copy)
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    study = Study.open(copy)  # same size: caught when the case is loaded
    with pytest.raises(InputError, match="checksum"):
        study.load_case(single.case_ids()[0])
    victim.unlink()
    with pytest.raises(InputError, match="missing"):
        Study.open(copy)
    victim.write_bytes(data)

    (copy / "answers.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="cannot use .* as an answers database"):
        ReaderSession(copy, "ann")
    (copy / "answers.sqlite").unlink()
    with pytest.raises(InputError, match="answers database .* is missing"):
        Study.open(copy)
    shutil.copy(
        make_study(tmp_path / "third", n=2).answers_path, copy / "answers.sqlite"
    )
    with pytest.raises(InputError, match="belongs to another study"):
        ReaderSession(copy, "ann")


def test_output_rules(tmp_path):
    real, synthetic = make_sources(tmp_path / "src")
    out = tmp_path / "study"
    options = {"n": 2, "tile_size": TILE}
    create_study(out, [real], [synthetic], **options)
    with pytest.raises(OutputExistsError, match="exists"):
        create_study(out, [real], [synthetic], **options)
    first = Study.open(out).uid
    assert (
        create_study(out, [real], [synthetic], overwrite=True, **options).uid != first
    )
    with ReaderSession(out, "ann") as session:
        session.submit("real", 2)
    with pytest.raises(OutputExistsError, match="1 answer"):
        create_study(out, [real], [synthetic], overwrite=True, **options)
    (tmp_path / "mine").mkdir()
    with pytest.raises(OutputExistsError, match="not a study folder"):
        create_study(tmp_path / "mine", [real], [synthetic], overwrite=True, **options)
    # a failed creation leaves nothing behind
    with pytest.raises(InputError, match="only"):
        create_study(tmp_path / "big", [real], [synthetic], n=10_000, tile_size=TILE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"n": 0}, "n=0"),
        ({"tile_size": 8}, "tile_size=8"),
        ({"design": "3afc"}, "design='3afc'"),
        ({"allow_change": True}, "allow_navigation"),
        ({"min_tissue": 1.5}, "min_tissue"),
        ({"n_training": -1}, "n_training"),
    ],
)
def test_bad_options(tmp_path, options, words):
    real, synthetic = make_sources(tmp_path / "src", n_images=1)
    settings = {"n": 2, "tile_size": TILE, **options}
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        create_study(tmp_path / "s", [real], [synthetic], **settings)
