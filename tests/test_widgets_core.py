"""The Qt-free parts behind the widgets: settings, the model cache, live canvases."""

import json
import threading
import time

import numpy as np
import pytest

from napari_histodiff import settings as settings_mod
from napari_histodiff._widgets import _settings as store_mod
from napari_histodiff.errors import HistodiffError, ModelFormatError
from napari_histodiff.models.cache import ModelCache, resolve_source, source_kind


# -- settings ---------------------------------------------------------------------
def test_json_settings_roundtrip_and_bad_file(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    monkeypatch.setenv(settings_mod.ENV_FILE, str(path))
    store = store_mod.get_settings()
    assert store.backend == "json" and store.load() == settings_mod.DEFAULTS
    store_mod.save_settings(guidance_scale=3.5, device="cpu", unknown_key=1)
    values = store_mod.load_settings()
    assert values["guidance_scale"] == 3.5 and values["device"] == "cpu"
    assert "unknown_key" not in json.loads(path.read_text())
    path.write_text("{not json")
    assert store_mod.load_settings() == settings_mod.DEFAULTS


def test_json_settings_default_location(monkeypatch):
    monkeypatch.delenv(settings_mod.ENV_FILE, raising=False)
    path = settings_mod.json_settings_path()
    assert path.name == "settings.json" and "napari-histodiff" in str(path)


def test_napari_plugin_settings_backend(tmp_path, monkeypatch):
    """napari 0.9 builds the plugin's settings from the manifest's configurations."""
    from napari import settings as napari_settings

    monkeypatch.delenv(settings_mod.ENV_FILE, raising=False)
    monkeypatch.setattr(napari_settings, "_CFG_PATH", str(tmp_path / "s.yaml"))
    napari_settings._clear_plugin_settings_cache()
    try:
        store = store_mod.get_settings()
        assert store.backend == "napari"
        assert store.load()["model"] == "demo"
        store.save(model="/models/x", guidance_scale=4.0, device="nonsense")
        again = store_mod.NapariSettings().load()
        assert again["model"] == "/models/x" and again["guidance_scale"] == 4.0
        assert again["device"] == "auto"  # refused by the schema's enum
        plugin = napari_settings.get_plugin_settings("napari-histodiff")
        assert plugin.synthesis.guidance_scale == 4.0
    finally:
        napari_settings._clear_plugin_settings_cache()


# -- model cache ------------------------------------------------------------------
def test_source_kinds(tmp_path):
    assert source_kind("demo") == "demo"
    assert source_kind("owner/name") == "hub"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind("./models/x") == "folder"
    with pytest.raises(ModelFormatError, match="does not exist"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(HistodiffError, match="Hugging Face"):
        resolve_source("owner/name", download=False)


def test_cache_loads_once_across_threads(tmp_path):
    calls = []

    def loader(folder, device, fp16):
        calls.append(folder)
        time.sleep(0.2)
        return object()

    cache = ModelCache(loader=loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        cache.get(tmp_path, "cpu"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    assert cache.peek(tmp_path, "cpu") is results[0]
    assert cache.get(str(tmp_path) + "/", "auto") is results[0]  # auto -> cpu here


def test_cache_keeps_the_most_recent(tmp_path):
    cache = ModelCache(loader=lambda f, d, h: object(), max_items=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = cache.get(tmp_path / "a", "cpu")
    cache.get(tmp_path / "b", "cpu")
    assert len(cache) == 1 and cache.peek(tmp_path / "a", "cpu") is None
    assert cache.get(tmp_path / "a", "cpu") is not a


def test_cache_errors_are_for_users(tmp_path):
    from napari_histodiff.devices import available_devices
    from napari_histodiff.errors import DeviceError

    cache = ModelCache(loader=lambda f, d, h: object())
    if "cuda" not in available_devices():
        with pytest.raises(DeviceError, match="not available"):
            cache.get(tmp_path, "cuda")
    with pytest.raises(ModelFormatError, match="does not exist"):
        cache.get(tmp_path / "nope")


# -- live canvas ------------------------------------------------------------------
def test_live_canvas_pyramid_follows_updates(tmp_path, monkeypatch):
    from napari_histodiff._widgets import _live
    from napari_histodiff.sampling.store import ZarrStore

    monkeypatch.setattr(_live, "MULTISCALE_MIN_SIDE", 64)
    monkeypatch.setattr(_live, "LEVEL_MIN_SIDE", 32)
    canvas = _live.LiveCanvas(ZarrStore(tmp_path / "c", chunk=32), (100, 90))
    assert canvas.shapes == [(100, 90), (50, 45), (25, 23)]
    canvas.create_arrays()
    data = canvas.layer_data()
    assert [d.shape for d in data] == [(100, 90, 3), (50, 45, 3), (25, 23, 3)]
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, (3, 40, 30), dtype=np.uint8)
    canvas.write((13, 53, 7, 37), pix)
    full = np.asarray(data[0])
    assert (full[13:53, 7:37] == np.moveaxis(pix, 0, -1)).all()
    # level 1 equals the 2x2 mean of level 0 everywhere
    f = full.astype(np.float32)
    f = np.pad(f, ((0, 0), (0, 0), (0, 0)))
    expect = (f.reshape(50, 2, 45, 2, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    assert (np.asarray(data[1]) == expect).all()
    assert np.asarray(data[2]).any()


def test_live_canvas_from_image_and_small_canvases(tmp_path):
    from napari_histodiff._widgets._live import LiveCanvas, canvas_of

    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    canvas = LiveCanvas.from_image(img, tmp_path / "c")
    assert not canvas.multiscale
    assert (np.asarray(canvas.layer_data()) == img).all()
    assert (np.moveaxis(canvas.read((0, 10, 0, 10)), 0, -1) == img[:10, :10]).all()

    class Layer:
        metadata = {"histodiff_canvas": canvas.key}

    assert canvas_of(Layer()) is canvas
    forced = LiveCanvas.from_image(img, tmp_path / "d", multiscale=True)
    assert forced.multiscale and len(forced.layer_data()) == 2


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(HistodiffError, match="cannot download someone/model"):
        resolve_source("someone/model")
