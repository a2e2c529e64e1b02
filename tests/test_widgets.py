"""The napari widgets, headless: open through the manifest, paint, synthesise,
cancel, regenerate a region, export and reopen, and report errors.

Uses a tiny random model (patch 32) and 64 x 64 masks with 2-3 steps.
"""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-histodiff"
TIMEOUT = 120_000  # ms; the CPU is shared with other jobs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from napari_histodiff.models.factory import init_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    init_model(path, "background,nuclei,dab,tissue", patch_size=32)
    return path


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch, tiny_model):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": str(tiny_model), "num_inference_steps": 3,
                                "window_batch": 8}))
    monkeypatch.setenv("HISTODIFF_SETTINGS_FILE", str(path))
    return path


@pytest.fixture
def notes(monkeypatch):
    """Messages shown as napari notifications, by kind."""
    import napari.utils.notifications as nt

    seen = {"error": [], "warning": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(nt, f"show_{kind}", seen[kind].append)
    return seen


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "HistoDiff")
    yield viewer, widget
    _wait_idle(qtbot, widget)


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.synthesis.busy, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.model.state.worker is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.model._device_worker is None, timeout=TIMEOUT)


def _mask(widget, size=64):
    widget.mask.height.setValue(size)
    widget.mask.width.setValue(size)
    layer = widget.mask.new_mask()
    layer.data[:, size // 2 :] = 4
    layer.data[: size // 2, : size // 2] = 2
    return layer


def _generate(qtbot, widget, steps=3):
    widget.synthesis.steps.setValue(steps)
    widget.synthesis.generate()
    qtbot.waitUntil(lambda: not widget.synthesis.busy, timeout=TIMEOUT)
    return widget.synthesis.last_image


@pytest.mark.parametrize("name, cls", [
    ("HistoDiff", "HistoDiffWidget"), ("Model", "ModelWidget"), ("Mask", "MaskWidget"),
    ("Synthesise", "SynthesisWidget"), ("Export", "ExportWidget"),
])
def test_each_widget_opens_through_the_manifest(make_napari_viewer, qtbot, name, cls):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert type(widget).__name__ == cls
    model = widget if cls == "ModelWidget" else getattr(widget, "model", None)
    if model is not None:
        qtbot.waitUntil(lambda: model._device_worker is None, timeout=TIMEOUT)
        assert "cpu" in model.present_devices
        assert model.device.itemText(0).startswith("auto (")


def test_model_loads_once_and_shows_classes(dock, qtbot, tiny_model):
    from napari_histodiff.pipelines.cache import MODEL_CACHE

    viewer, w = dock
    assert w.model.classes.count() == 5  # from the card, before loading
    assert "nuclei" in w.model.classes.item(2).text()
    loads = MODEL_CACHE.loads
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    assert "Loaded" in w.model.status.text()
    first = w.model.state.pipe
    w.model.state.pipe = None  # as if chosen again: the cache hands it back
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    assert w.model.state.pipe is first
    assert MODEL_CACHE.loads - loads <= 1


def test_missing_folder_and_absent_gpu_are_notifications(dock, qtbot, notes, tmp_path):
    viewer, w = dock
    w.model.source.setCurrentText(str(tmp_path / "no-such-model"))
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.worker is None, timeout=TIMEOUT)
    assert any("does not exist" in m for m in notes["error"])
    from napari_histodiff.devices import available_devices

    if "cuda" in available_devices():
        pytest.skip("this machine has a GPU")
    w.model.device.setCurrentIndex(w.model.device.findData("cuda"))
    w.model.source.setCurrentText(str(tmp_path))  # any folder; device fails first
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.worker is None, timeout=TIMEOUT)
    assert any("'cuda' is not available" in m and "Model panel" in m
               for m in notes["error"])


def test_mask_layer_palette_brush_and_hover(dock):
    from napari.utils.colormaps import DirectLabelColormap

    viewer, w = dock
    w.mask.height.setValue(64)
    w.mask.width.setValue(48)
    layer = w.mask.new_mask()
    assert layer.data.shape == (64, 48) and not layer.data.any()
    assert isinstance(layer.colormap, DirectLabelColormap)
    assert list(layer.features["class"]) == ["unknown", "background", "nuclei",
                                             "dab", "tissue"]
    assert len(w.mask.palette_group.buttons()) == 5
    w.mask.palette_group.button(3).click()
    assert layer.selected_label == 3 and layer.mode == "paint"
    w.mask.brush.setValue(7)
    assert layer.brush_size == 7
    layer.paint((20, 20), layer.selected_label)  # painting through the layer API
    assert layer.data[20, 20] == 3 and layer.data[0, 0] == 0
    status = layer.get_status((20, 20), world=True)
    assert "dab" in str(status)
    w.mask.set_mode("fill")
    assert layer.mode == "fill"
    layer.selected_label = 2
    assert w.mask.palette_group.checkedId() == 2


def test_specks_and_smoothing_are_undoable(dock, qtbot, notes):
    viewer, w = dock
    layer = _mask(w)
    layer.data[5:7, 40:42] = 1  # a 4-pixel speck inside tissue
    w.mask.speck_size.setValue(10)
    w.mask.remove_specks()
    qtbot.waitUntil(lambda: w.mask.clean_worker is None, timeout=TIMEOUT)
    assert (layer.data[5:7, 40:42] == 4).all()
    assert "4 pixels changed" in notes["info"][-1]
    layer.undo()
    assert (layer.data[5:7, 40:42] == 1).all()
    w.mask.radius.setValue(2.0)
    w.mask.smooth()
    qtbot.waitUntil(lambda: w.mask.clean_worker is None, timeout=TIMEOUT)
    assert set(np.unique(layer.data)) <= {0, 1, 2, 4}


def test_generate_blobs_and_from_image(dock, qtbot, notes):
    viewer, w = dock
    w.mask.height.setValue(40)
    w.mask.width.setValue(50)
    w.mask.source.setCurrentIndex(w.mask.source.findData("blobs"))
    from qtpy.QtCore import Qt

    w.mask.class_list.item(0).setCheckState(Qt.CheckState.Unchecked)  # background
    w.mask.generate_mask()
    layer = viewer.layers["generated mask"]
    assert layer.data.shape == (40, 50) and 1 not in np.unique(layer.data)
    from skimage import data

    viewer.add_image(data.immunohistochemistry()[:64, :80], name="ihc", rgb=True,
                     scale=(0.5, 0.5))
    w.mask.source.setCurrentIndex(w.mask.source.findData("image"))
    w.mask.source_image.refresh()
    w.mask.generate_mask()
    qtbot.waitUntil(lambda: "ihc mask" in viewer.layers, timeout=TIMEOUT)
    mask = viewer.layers["ihc mask"]
    assert mask.data.shape == (64, 80) and tuple(mask.scale) == (0.5, 0.5)
    w.mask.source.setCurrentIndex(w.mask.source.findData("model"))
    w.mask.generate_mask()  # the tiny model has no mask generator
    qtbot.waitUntil(lambda: bool(notes["error"]), timeout=TIMEOUT)
    assert "mask generator" in notes["error"][-1] or "mask model" in notes["error"][-1]


def test_open_mask_file(dock, tmp_path, notes):
    from napari_histodiff.io.masks import write_mask

    viewer, w = dock
    m = np.zeros((32, 32), np.uint8)
    m[:, 16:] = 7  # an id the model lacks
    write_mask(tmp_path / "m.png", m)
    w.mask.open_mask(str(tmp_path / "m.png"))
    assert viewer.layers["m"].data.shape == (32, 32)
    assert any("[7]" in msg for msg in notes["warning"])


def test_synthesis_streams_into_a_dask_layer_beside_the_mask(dock, qtbot):
    import dask.array as da

    from napari_histodiff.sampling.events import StepEvent

    viewer, w = dock
    mask_layer = _mask(w)
    frames = []

    def grab(item):
        if isinstance(item, StepEvent) and w.synthesis.job.layer is not None:
            frames.append(np.asarray(w.synthesis.job.layer.data).copy())

    w.synthesis.steps.setValue(3)
    w.synthesis.generate()
    qtbot.waitUntil(lambda: w.synthesis.job is not None and
                    w.synthesis.job.worker is not None, timeout=TIMEOUT)
    w.synthesis.job.worker.yielded.connect(grab)
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    image = w.synthesis.last_image
    assert isinstance(image.data, da.Array) and image.rgb
    assert image.data.shape == (64, 64, 3)
    assert image.translate[1] >= 64 + 8  # to the right of the mask
    assert image.extent.world[0][1] > mask_layer.extent.world[1][1]
    assert len(frames) >= 2
    final = np.asarray(image.data)
    assert any((f != frames[0]).any() for f in frames[1:] + [final])
    assert final.std() > 0
    meta = image.metadata["histodiff"]
    assert meta["seed"] == 0 and meta["num_inference_steps"] == 3
    assert "Done" in w.synthesis.status.text()
    assert not mask_layer.data[0, 0] != 2  # the mask is untouched


def test_grid_placement(dock, qtbot):
    from napari_histodiff._widgets.synth_widget import _grid

    viewer, w = dock
    _mask(w, 48)
    w.synthesis.placement.setCurrentIndex(w.synthesis.placement.findData("grid"))
    image = _generate(qtbot, w, steps=2)
    assert _grid(viewer).enabled and tuple(image.translate) == (0, 0)


def test_cancel_stops_and_keeps_the_partial_image(dock, qtbot):
    from napari_histodiff.sampling.events import StepEvent

    viewer, w = dock
    _mask(w)
    w.synthesis.steps.setValue(200)

    def cancel_on_step(item):
        if isinstance(item, StepEvent):
            w.synthesis.cancel()

    w.synthesis.generate()
    qtbot.waitUntil(lambda: w.synthesis.job is not None and
                    w.synthesis.job.worker is not None, timeout=TIMEOUT)
    w.synthesis.job.worker.yielded.connect(cancel_on_step)
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    assert "Cancelled after" in w.synthesis.status.text()
    step = int(w.synthesis.status.text().split("after ")[1].split()[0])
    assert 1 <= step < 200
    assert w.synthesis.last_image.name.endswith("(cancelled)")
    assert w.synthesis.generate_button.isEnabled()


def test_regenerate_changes_only_the_region(dock, qtbot):
    viewer, w = dock
    _mask(w)
    image = _generate(qtbot, w, steps=2)
    before = np.asarray(image.data).copy()
    w.synthesis.draw_region()
    shapes = viewer.layers["HistoDiff regions"]
    assert shapes.mode == "add_rectangle"
    # draw over the image (world coordinates = image pixels + its translation)
    off = np.asarray(image.translate)
    shapes.add_rectangles(np.array([[10, 20], [40, 44]]) + off)
    w.synthesis.margin.setValue(16)
    w.synthesis.steps.setValue(2)
    w.synthesis.seed.setValue(5)
    w.synthesis.regenerate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    after = np.asarray(image.data)
    changed = np.any(after != before, axis=-1)
    assert changed[10:40, 20:44].mean() > 0.5
    outside = changed.copy()
    outside[10:40, 20:44] = False
    assert not outside.any()
    record = image.metadata["histodiff"]["regenerated"][-1]
    assert record["region"] == [10, 40, 20, 44] and record["seed"] == 5
    assert record["context_box"] == [0, 56, 4, 60]


def test_regenerate_adopts_an_opened_image(dock, qtbot):
    viewer, w = dock
    mask = _mask(w, 48)
    rgb = np.full((48, 48, 3), 200, np.uint8)
    image = viewer.add_image(rgb, rgb=True, name="opened")
    w.synthesis.image_combo.set_layer(image)
    w.synthesis.mask_combo.set_layer(mask)
    shapes = viewer.add_shapes(name="HistoDiff regions")
    shapes.add_rectangles(np.array([[8, 8], [24, 30]]))
    w.synthesis.steps.setValue(2)
    w.synthesis.regenerate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    out = np.asarray(image.data)
    assert (out[:8] == 200).all() and (out[8:24, 8:30] != 200).any()
    assert "histodiff_canvas" in image.metadata


def test_bad_choices_are_notifications_and_keep_the_mask(dock, qtbot, notes):
    viewer, w = dock
    w.synthesis.generate()  # no mask layer
    assert "No mask layer" in notes["error"][-1]
    w.synthesis.regenerate()  # no image
    assert "No image layer" in notes["error"][-1]
    layer = _mask(w)
    layer.data[0:4, 0:4] = 9  # a class the model lacks
    painted = layer.data.copy()
    w.synthesis.generate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    assert "[9]" in notes["error"][-1] and "Repaint" in notes["error"][-1]
    assert (layer.data == painted).all() and layer in viewer.layers
    # no empty image; the unknown ids are outlined where they are
    assert [ly.name for ly in viewer.layers] == [layer.name, "unknown labels"]
    assert w.synthesis.generate_button.isEnabled()


def test_worker_failure_does_not_freeze_or_lose_the_mask(dock, qtbot, notes,
                                                         monkeypatch):
    viewer, w = dock
    layer = _mask(w)
    painted = layer.data.copy()
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    pipe = w.model.state.pipe

    def broken(*args, **kwargs):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(pipe, "stream", broken)
    w.synthesis.generate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    assert "simulated out of memory" in notes["error"][-1]
    assert (layer.data == painted).all()
    layer.paint((1, 1), 3)  # still paintable
    assert layer.data[1, 1] == 3


def test_export_whole_and_region_then_reopen(dock, qtbot, tmp_path):
    import tifffile

    viewer, w = dock
    mask = _mask(w)
    image = _generate(qtbot, w, steps=2)
    w.export.image_combo.set_layer(image)
    w.export._image_changed()
    assert w.export.mask_combo.currentText() == mask.name
    w.export.path.setText(str(tmp_path / "whole.zarr"))
    w.export.export()
    qtbot.waitUntil(lambda: w.export.last_result is not None, timeout=TIMEOUT)
    layers = viewer.open(str(tmp_path / "whole.zarr"), plugin=PLUGIN)
    img2, mask2 = layers
    assert (np.asarray(img2.data) == np.asarray(image.data)).all()
    assert (np.asarray(mask2.data) == mask.data).all()
    assert list(mask2.features["class"])[4] == "tissue"
    assert img2.metadata["histodiff"]["seed"] == 0
    # a rectangle as OME-TIFF
    shapes = viewer.add_shapes(name="HistoDiff regions")
    shapes.add_rectangles(np.array([[4, 6], [20, 30]]) + np.asarray(image.translate))
    w.export.extent.setCurrentIndex(w.export.extent.findData("region"))
    w.export.format.setCurrentIndex(w.export.format.findData(".tif"))
    w.export.path.setText(str(tmp_path / "part.tif"))
    w.export.last_result = None
    w.export.export()
    qtbot.waitUntil(lambda: w.export.last_result is not None, timeout=TIMEOUT)
    part = tifffile.imread(tmp_path / "part.tif")
    assert (part == np.asarray(image.data)[4:20, 6:30]).all()
    side = json.loads((tmp_path / "part.json").read_text())
    assert side["region"] == [4, 20, 6, 30] and side["seed"] == 0
    assert side["settings"]["num_inference_steps"] == 2


def test_export_refuses_to_overwrite_a_typed_path(dock, qtbot, tmp_path, notes):
    viewer, w = dock
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="img")
    (tmp_path / "x.png").write_bytes(b"")
    w.export.image_combo.refresh()
    w.export.format.setCurrentIndex(w.export.format.findData(".png"))
    w.export.path.setText(str(tmp_path / "x.png"))
    w.export.export()
    qtbot.waitUntil(lambda: w.export.export_button.isEnabled(), timeout=TIMEOUT)
    assert "exists" in notes["error"][-1]


def test_menu_commands(make_napari_viewer, notes):
    from skimage import data

    from napari_histodiff._widgets.commands import auto_label_layer, new_mask_layer

    viewer = make_napari_viewer()
    auto_label_layer(viewer)  # nothing selected
    assert "Select an RGB image" in notes["error"][-1]
    viewer.add_image(data.immunohistochemistry()[:64, :64], rgb=True, name="ihc")
    new_mask_layer(viewer)
    assert viewer.layers["mask"].data.shape == (64, 64)
    viewer.layers.selection.active = viewer.layers["ihc"]
    auto_label_layer(viewer)
    assert set(np.unique(viewer.layers["ihc mask"].data)) <= {1, 2, 3, 4}
    # the same commands from napari's menus (viewer injected by napari)
    from napari._app_model import get_app_model

    app = get_app_model()
    menus = {mid: [getattr(i, "command", None) for i in app.menus.get_menu(mid)]
             for mid in ("napari/layers/segment", "napari/file/new_layer")}
    assert "napari-histodiff.auto_label" in [c.id for c in
                                             menus["napari/layers/segment"] if c]
    viewer.layers.selection.active = viewer.layers["ihc"]
    app.commands.execute_command("napari-histodiff.new_mask").result()
    assert "mask [1]" in viewer.layers
    # napari appends the plugin's name to menu entries: once, not twice
    texts = []

    def walk(menu):
        for action in menu.actions():
            if action.menu():
                walk(action.menu())
            elif "HistoDiff" in action.text():
                texts.append(action.text())

    for action in viewer.window._qt_window.menuBar().actions():
        if action.menu():
            walk(action.menu())
    assert "New tissue mask (HistoDiff)" in texts
    assert "Auto-label tissue (HistoDiff)" in texts
    # (the all-in-one dock is named after the plugin: "HistoDiff (HistoDiff)")
    assert not [t for t in texts if t.count("HistoDiff") > 1
                and t != "HistoDiff (HistoDiff)"]


def test_sample_data_through_napari(make_napari_viewer, monkeypatch, tmp_path):
    from napari_histodiff import _sample_data
    from napari_histodiff.pipelines.cache import MODEL_CACHE

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "ihc")
    assert [ly.name for ly in viewer.layers] == ["IHC", "IHC mask"]
    from napari_histodiff.models import demo_model_path

    if demo_model_path() is None:
        return  # the synthetic pair needs the shipped demo model
    # the shipped pair opens without any synthesis on the UI thread
    def no_model(*_a, **_k):
        raise AssertionError("the shipped pair needs no model")

    monkeypatch.setattr(MODEL_CACHE, "get", no_model)
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "synthetic")
    shipped = viewer.layers["synthetic image"]
    assert shipped.data.shape == (*_sample_data.SYNTH_SIZE, 3)
    assert shipped.metadata["histodiff"]["num_inference_steps"] == \
        _sample_data.SYNTH_STEPS
    monkeypatch.undo()
    # without it (other weights, or none shipped): made once, then cached
    monkeypatch.setattr(_sample_data, "SHIPPED_PAIR", "absent.npz")
    monkeypatch.setattr(_sample_data, "SYNTH_SIZE", (48, 48))
    monkeypatch.setattr(_sample_data, "SYNTH_STEPS", 2)
    monkeypatch.setattr(_sample_data, "_cache_file",
                        lambda folder: tmp_path / "pair.npz")
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "synthetic")
    image = viewer.layers["synthetic image"]
    assert image.data.shape == (48, 48, 3) and (tmp_path / "pair.npz").is_file()
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "synthetic")  # from the cache, the same pixels
    assert (viewer.layers["synthetic image"].data == image.data).all()
    assert viewer.layers["synthetic image"].metadata["histodiff"]["seed"] == 0


def test_shipped_pair_of_other_weights_is_ignored(tmp_path):
    import numpy as np

    from napari_histodiff import _sample_data

    path = tmp_path / "pair.npz"
    _sample_data._write_pair(path, np.zeros((4, 4), np.int32),
                             np.zeros((4, 4, 3), np.uint8), {"seed": 0},
                             weights_sha256="abc")
    assert _sample_data._read_pair(path, "abc") is not None
    assert _sample_data._read_pair(path, "other") is None


def test_mask_model_of_the_demo(dock, qtbot):
    from napari_histodiff.models import demo_model_path

    if demo_model_path() is None:
        pytest.skip("this build ships no demo model")
    viewer, w = dock
    w.model.source.setCurrentText("demo")
    w.mask.height.setValue(64)
    w.mask.width.setValue(64)
    w.mask.source.setCurrentIndex(w.mask.source.findData("model"))
    w.mask.seed.setValue(3)
    w.mask.generate_mask()
    qtbot.waitUntil(lambda: "generated mask" in viewer.layers, timeout=TIMEOUT)
    layer = viewer.layers["generated mask"]
    assert layer.data.shape == (64, 64) and layer.data.min() >= 1
    assert layer.metadata["histodiff_mask"]["seed"] == 3


def test_event_loop_stays_responsive_during_synthesis(dock, qtbot):
    """The longest stall of the Qt event loop while a synthesis streams in,
    with panning, zooming and painting going on (loose bound: shared CPU)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "responsiveness.py"
    spec = importlib.util.spec_from_file_location("responsiveness", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    viewer, w = dock
    mask = _mask(w, 128)
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    result = bench.measure(viewer, w, mask, steps=4,
                           process=lambda: qtbot.wait(1))
    print("event-loop stall during synthesis:", result)
    assert result["steps_seen"] == 4 and "Done" in result["status"]
    assert result["ticks"] > 10
    assert result["longest_stall_ms"] < 1000


def test_large_outputs_are_multiscale(dock, qtbot, monkeypatch):
    from napari_histodiff._widgets import _live

    monkeypatch.setattr(_live, "MULTISCALE_MIN_SIDE", 32)
    monkeypatch.setattr(_live, "LEVEL_MIN_SIDE", 16)
    viewer, w = dock
    _mask(w)
    image = _generate(qtbot, w, steps=2)
    assert image.multiscale and [d.shape for d in image.data] == [
        (64, 64, 3), (32, 32, 3), (16, 16, 3)]
    full = np.asarray(image.data[0]).astype(np.float32)
    half = (full.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    assert (np.asarray(image.data[1]) == half).all()


def test_closing_the_dock_leaves_napari_working(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "HistoDiff")
    qtbot.waitUntil(lambda: widget.model._device_worker is None, timeout=TIMEOUT)
    viewer.window.remove_dock_widget(dock)
    qtbot.wait(50)
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="after")
    viewer.layers["after"].name = "renamed"
    viewer.layers.clear()


@pytest.fixture(scope="module")
def latent_model(tmp_path_factory):
    """A random latent model (factor 4) whose card has a preview map."""
    from dataclasses import replace

    from napari_histodiff.models.directory import save_components
    from napari_histodiff.models.factory import init_model

    path = tmp_path_factory.mktemp("models") / "latent"
    parts = init_model(path, "background,nuclei,dab,tissue", patch_size=32,
                       latent=True)
    card = replace(parts["card"], latent_preview={
        "weight": [[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0.5, 0]],
        "bias": [0.0, 0.0, 0.0]})
    save_components(path, card, overwrite=True, unet=parts["unet"],
                    scheduler=parts["scheduler"], vae=parts["vae"])
    return path


def test_latent_model_streams_previews_and_regenerates(dock, qtbot, latent_model):
    """The same panel serves a latent model: previews every step, then a
    region regenerated with everything outside it unchanged."""
    from napari_histodiff.sampling.events import StepEvent

    viewer, w = dock
    w.model.source.setCurrentText(str(latent_model))
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    assert w.model.state.pipe.card.space == "latent"
    _mask(w)
    frames = []

    def grab(item):
        if isinstance(item, StepEvent) and w.synthesis.job.layer is not None:
            frames.append(np.asarray(w.synthesis.job.layer.data).copy())

    w.synthesis.steps.setValue(3)
    w.synthesis.generate()
    qtbot.waitUntil(lambda: w.synthesis.job is not None and
                    w.synthesis.job.worker is not None, timeout=TIMEOUT)
    w.synthesis.job.worker.yielded.connect(grab)
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    image = w.synthesis.last_image
    assert image.data.shape == (64, 64, 3)
    assert len(frames) >= 2 and any(f.std() > 0 for f in frames)
    before = np.asarray(image.data).copy()
    shapes = viewer.add_shapes(name="HistoDiff regions")
    shapes.add_rectangles(np.array([[16, 16], [48, 48]]) + np.asarray(image.translate))
    w.synthesis.steps.setValue(2)
    w.synthesis.seed.setValue(3)
    w.synthesis.regenerate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    after = np.asarray(image.data)
    changed = np.any(after != before, axis=-1)
    assert changed[24:40, 24:40].mean() > 0.5
    changed[16:48, 16:48] = False
    assert not changed.any()


def test_class_chooser_follows_the_classifier_and_guides(dock, qtbot, tmp_path):
    """A model with classifier/ fills the Synthesise panel's class chooser;
    the chosen class and scale reach the synthesis and its settings."""
    from napari_histodiff.models.classifier import (
        ClassifierConfig,
        NoiseAwareClassifier,
        autoencoder_fingerprint,
        save_classifier,
    )
    from napari_histodiff.models.factory import init_model

    model = tmp_path / "guided"
    init_model(model, "background,nuclei,dab,tissue", patch_size=32, latent=True)
    cfg = ClassifierConfig(class_names=["dab", "nuclei"], in_channels=4,
                           sample_size=8, factor=4,
                           autoencoder_sha256=autoencoder_fingerprint(model))
    save_classifier(model, NoiseAwareClassifier(cfg))
    viewer, w = dock
    assert not w.synthesis.guide_class.isEnabled()  # the tiny model has none
    w.model.source.setCurrentText(str(model))
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    combo = w.synthesis.guide_class
    assert combo.isEnabled()
    assert [combo.itemData(i) for i in range(combo.count())] == [None, "dab",
                                                                  "nuclei"]
    combo.setCurrentIndex(combo.findData("nuclei"))
    w.synthesis.classifier_scale.setValue(4.0)
    _mask(w, 32)
    image = _generate(qtbot, w, steps=2)
    guidance = image.metadata["histodiff"]["guidance"]
    assert guidance[-1] == {"kind": "classifier", "target": 1, "scale": 4.0,
                            "target_name": "nuclei"}


def test_unknown_labels_say_how_many_and_where(dock, qtbot, notes):
    viewer, w = dock
    layer = _mask(w)
    layer.data[10:20, 30:34] = 9  # not a class of the tiny model
    before = np.array(layer.data)
    _generate(qtbot, w, steps=1)
    message = notes["error"][-1]
    assert "label ids [9]" in message
    assert "40 pixels in x 30-34, y 10-20" in message
    box = viewer.layers["unknown labels"]
    corners = np.asarray(box.data[0])
    assert corners.min(axis=0).tolist() == [10, 30]
    assert corners.max(axis=0).tolist() == [20, 34]
    assert np.array_equal(layer.data, before)  # nothing repainted silently


def test_regeneration_message_reads_x_then_y():
    from napari_histodiff._widgets._common import describe_region

    assert describe_region((80, 170, 100, 200)) == "x 100-200, y 80-170"


def test_time_estimate_before_generate(dock, qtbot):
    """Before a run the panel says how long it will take: windows x steps x
    the seconds per window measured for this model and device."""
    from napari_histodiff.sampling.estimate import estimate_run, seconds_per_window

    viewer, w = dock
    assert "load the model" in w.synthesis.estimate.text()
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    _mask(w, 64)
    w.synthesis.steps.setValue(10)
    qtbot.waitUntil(lambda: "windows" in w.synthesis.estimate.text(),
                    timeout=TIMEOUT)
    pipe = w.model.state.pipe
    expected = estimate_run(pipe, (64, 64), 10, w.synthesis.strategy.currentText())
    assert expected.seconds_per_window == seconds_per_window(pipe)  # cached
    assert f"{expected.windows:,} windows" in w.synthesis.estimate.text()
    w.synthesis.steps.setValue(20)
    more = estimate_run(pipe, (64, 64), 20, w.synthesis.strategy.currentText())
    assert more.windows > expected.windows
    assert f"{more.windows:,} windows" in w.synthesis.estimate.text()


def test_estimate_counts_the_windows_a_run_evaluates(tiny_model):
    from napari_histodiff import HistoDiffPipeline
    from napari_histodiff.sampling.estimate import estimate_run

    pipe = HistoDiffPipeline.from_pretrained(tiny_model)
    mask = np.ones((64, 96), np.int32)
    for strategy in ("random-shift", "tiled"):
        out = pipe(mask, num_inference_steps=4, strategy=strategy, seed=0)
        counted = sum(out.stats["windows_per_step"])
        guess = estimate_run(pipe, mask.shape, 4, strategy).windows
        assert abs(guess - counted) <= 0.25 * counted, (strategy, guess, counted)


def test_generated_mask_goes_beside_the_painted_one(dock, qtbot):
    """A generated mask never lands on a painted one, and the palette shows a
    class the new mask includes (issue 18 item 3)."""
    from qtpy.QtCore import Qt

    viewer, w = dock
    painted = _mask(w, 48)
    w.mask.source.setCurrentIndex(w.mask.source.findData("blobs"))
    w.mask.class_list.item(0).setCheckState(Qt.CheckState.Unchecked)  # background
    w.mask.generate_mask()
    generated = viewer.layers["generated mask"]
    (py0, px0), (py1, px1) = np.asarray(painted.extent.world)[:, -2:]
    (gy0, gx0), (gy1, gx1) = np.asarray(generated.extent.world)[:, -2:]
    assert gx0 > px1  # to the right, not on top
    included = {int(v) for v in np.unique(generated.data)} - {0}
    assert generated.selected_label in included
    checked = w.mask.palette_group.checkedId()
    assert checked == generated.selected_label and checked != 1


def test_model_loading_and_mask_labelling_show_activity(dock, qtbot, monkeypatch):
    """Model loading and mask generation show a napari activity bar while
    they run, closed when they end (issue 18 item 2)."""
    from napari_histodiff._widgets import _common

    shown = []
    real = _common.busy_progress

    def recording(description):
        bar = real(description)
        shown.append((description, bar))
        return bar

    monkeypatch.setattr("napari_histodiff._widgets._state.busy_progress", recording)
    monkeypatch.setattr("napari_histodiff._widgets.mask_widget.busy_progress",
                        recording)
    viewer, w = dock
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.model.state.worker is None, timeout=TIMEOUT)
    from skimage import data

    viewer.add_image(data.immunohistochemistry()[:48, :48], name="ihc", rgb=True)
    w.mask.source.setCurrentIndex(w.mask.source.findData("image"))
    w.mask.source_image.refresh()
    w.mask.generate_mask()
    qtbot.waitUntil(lambda: "ihc mask" in viewer.layers, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.mask.generate_button.isEnabled(), timeout=TIMEOUT)
    names = [d for d, _ in shown]
    assert any(d.startswith("Loading model") for d in names)
    assert "Label image" in names
    assert all(bar.disable for _, bar in shown)  # every bar closed at the end
