"""Keyboard shortcuts of the panels and Undo of a region regeneration.

Keys are pressed through napari's own key dispatch (the canvas' keymap
handler), so a binding that napari shadowed, or one that shadowed napari's,
would show here. Uses a tiny random model (patch 32) and 64 x 64 masks.
"""

import json

import numpy as np
import pytest

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
    path.write_text(json.dumps({"model": str(tiny_model), "num_inference_steps": 2,
                                "window_batch": 8}))
    monkeypatch.setenv("HISTODIFF_SETTINGS_FILE", str(path))
    return path


@pytest.fixture
def notes(monkeypatch):
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
    qtbot.waitUntil(lambda: not widget.synthesis.busy, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.model.state.worker is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.model._device_worker is None, timeout=TIMEOUT)


def press(viewer, key):
    """Press and release ``key`` as the canvas would (napari's dispatch)."""
    handler = viewer.window._qt_viewer.canvas._key_map_handler
    handled = handler.press_key(key)
    handler.release_key(key)
    return handled


def _mask(widget, size=64):
    widget.mask.height.setValue(size)
    widget.mask.width.setValue(size)
    layer = widget.mask.new_mask()
    layer.data[:, size // 2:] = 3
    layer.data[: size // 2, : size // 2] = 2
    return layer


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.synthesis.busy, timeout=TIMEOUT)


# -- the undo stack (no Qt) ---------------------------------------------------
def test_undo_stack_keeps_order_depth_and_size():
    from napari_histodiff._widgets._undo import RegionUndoStack

    stack = RegionUndoStack(depth=2, max_bytes=10_000)
    px = [np.full((3, 4, 5), i, np.uint8) for i in range(4)]
    records = [{"seed": 1}]
    stack.push("a", (0, 4, 0, 5), px[0], records)
    records.append({"seed": 2})  # the stack keeps its own copy
    stack.push("a", (0, 4, 0, 5), px[1], records)
    stack.push("a", (1, 5, 1, 6), px[2], None)  # over the depth: drops px[0]
    stack.push("b", (0, 4, 0, 5), px[3], None)
    assert stack.count("a") == 2 and stack.count("b") == 1
    newest = stack.pop("a")
    assert newest.region == (1, 5, 1, 6) and newest.records is None
    assert (newest.pixels == 2).all()
    older = stack.pop("a")
    assert (older.pixels == 1).all() and older.records == [{"seed": 1},
                                                            {"seed": 2}]
    assert stack.pop("a") is None
    stack.forget("b")
    assert stack.count("b") == 0 and stack.nbytes == 0
    with pytest.raises(ValueError, match="do not fit"):
        stack.push("a", (0, 4, 0, 4), px[0], None)
    big = RegionUndoStack(max_bytes=3 * 4 * 5 * 2)
    for i in range(3):
        big.push("a", (0, 4, 0, 5), px[i], None)
    assert big.count("a") == 2 and (big.pop("a").pixels == 2).all()


# -- Generate / Cancel ---------------------------------------------------------
@pytest.mark.gui
def test_generate_and_cancel_keys(dock, qtbot):
    from napari_histodiff._widgets.shortcuts import CANCEL_KEY, GENERATE_KEY

    viewer, w = dock
    mask = _mask(w)
    viewer.layers.selection.active = mask  # painting: the Labels layer is active
    w.synthesis.steps.setValue(500)
    assert press(viewer, GENERATE_KEY)
    assert w.synthesis.busy and w.synthesis.job.kind == "generate"
    qtbot.waitUntil(lambda: w.synthesis.job is None or
                    w.synthesis.job.run is not None, timeout=TIMEOUT)
    assert press(viewer, CANCEL_KEY)
    _wait(qtbot, w)
    image = w.synthesis.last_image
    assert image.name.endswith("(cancelled)")
    assert "Cancelled after" in w.synthesis.status.text()
    # a second Generate key while idle starts again; Cancel while idle is harmless
    assert press(viewer, CANCEL_KEY) and not w.synthesis.busy
    w.synthesis.steps.setValue(2)
    press(viewer, GENERATE_KEY)
    _wait(qtbot, w)
    assert "Done" in w.synthesis.status.text()


@pytest.mark.gui
def test_tooltips_name_the_keys(dock):
    _, w = dock
    _mask(w)
    s = w.synthesis
    assert "G" in s.generate_button.toolTip() and "Ctrl" in s.generate_button.toolTip()
    assert "X" in s.cancel_button.toolTip()
    assert "Alt+Z" in s.undo_button.toolTip()
    tips = {b.text(): b.toolTip() for b in w.mask.palette_group.buttons()}
    assert "Ctrl+2" in tips["2 nuclei"] and "Ctrl+4" in tips["4 tissue"]


# -- palette keys --------------------------------------------------------------
@pytest.mark.gui
def test_palette_keys_choose_the_class_and_napari_keys_still_work(dock, notes):
    from napari_histodiff._widgets.shortcuts import PALETTE_KEYS

    viewer, w = dock
    mask = _mask(w)
    other = viewer.add_image(np.zeros((8, 8)), name="other")
    viewer.layers.selection.active = other
    assert set(PALETTE_KEYS.values()) == set(range(1, 10))
    assert press(viewer, "Control-2")
    assert mask.selected_label == 2 and mask.mode == "paint"
    assert viewer.layers.selection.active.name == mask.name
    assert w.mask.palette_group.checkedId() == 2
    press(viewer, "Control-3")
    assert mask.selected_label == 3 and w.mask.palette_group.checkedId() == 3
    # napari's own keys on the Labels layer: 1 erase tool, 4 fill, 2 paint,
    # - and = step the label
    press(viewer, "1")
    assert mask.mode == "erase"
    press(viewer, "4")
    assert mask.mode == "fill"
    press(viewer, "2")
    assert mask.mode == "paint"
    press(viewer, "-")
    assert mask.selected_label == 2 and w.mask.palette_group.checkedId() == 2
    press(viewer, "=")
    assert mask.selected_label == 3
    # a class the model lacks: a notification naming it, nothing changes
    press(viewer, "Control-7")
    assert mask.selected_label == 3
    assert "no class 7" in notes["error"][-1]
    assert "1 background" in notes["error"][-1] and "4 tissue" in notes["error"][-1]


@pytest.mark.gui
def test_keys_are_unbound_with_their_panel(make_napari_viewer, qtbot):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_histodiff._widgets.shortcuts import GENERATE_KEY

    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "HistoDiff")
    qtbot.waitUntil(lambda: widget.model._device_worker is None, timeout=TIMEOUT)
    key = coerce_keybinding(GENERATE_KEY)
    assert key in viewer.keymap and coerce_keybinding("Control-5") in viewer.keymap
    viewer.window.remove_dock_widget(dock)
    widget.deleteLater()  # the panel is destroyed, not only hidden
    qtbot.waitUntil(lambda: key not in viewer.keymap, timeout=5000)
    assert coerce_keybinding("Control-5") not in viewer.keymap


# -- undo of a region regeneration ---------------------------------------------
def _regenerate(qtbot, viewer, w, image, box, seed):
    shapes = viewer.layers["HistoDiff regions"] if "HistoDiff regions" in \
        viewer.layers else viewer.add_shapes(name="HistoDiff regions")
    shapes.data = []
    shapes.add_rectangles(np.array(box, float) + np.asarray(image.translate))
    w.synthesis.margin.setValue(16)
    w.synthesis.seed.setValue(seed)
    w.synthesis.regenerate()
    _wait(qtbot, w)


@pytest.mark.gui
def test_undo_restores_the_exact_pixels_and_runs(dock, qtbot, notes):
    from napari_histodiff._widgets._live import canvas_of
    from napari_histodiff._widgets.shortcuts import UNDO_REGION_KEY
    from napari_histodiff.io.export import provenance_runs

    viewer, w = dock
    _mask(w)
    w.synthesis.steps.setValue(2)
    w.synthesis.generate()
    _wait(qtbot, w)
    image = w.synthesis.last_image
    canvas = canvas_of(image)
    s = w.synthesis
    assert not s.undo_button.isEnabled()
    s.undo_region()  # nothing to undo yet
    assert "Nothing to undo" in notes["error"][-1] and image.name in notes["error"][-1]

    def snapshot():
        return (np.asarray(image.data).copy(), np.asarray(canvas.store["image"]).copy(),
                json.loads(json.dumps(image.metadata["histodiff"])))

    first = snapshot()
    assert "regenerated" not in first[2]
    _regenerate(qtbot, viewer, w, image, [[10, 20], [40, 44]], seed=5)
    second = snapshot()
    assert (second[0] != first[0]).any() and s.undo_button.isEnabled()
    _regenerate(qtbot, viewer, w, image, [[30, 30], [60, 60]], seed=6)  # overlaps
    third = snapshot()
    assert len(third[2]["regenerated"]) == 2
    assert [r["seed"] for r in provenance_runs(third[2], None, (64, 64))] == [0, 5, 6]

    press(viewer, UNDO_REGION_KEY)  # the key
    now = snapshot()
    assert (now[0] == second[0]).all() and (now[1] == second[1]).all()
    assert now[2] == second[2]
    assert [r["seed"] for r in provenance_runs(now[2], None, (64, 64))] == [0, 5]
    assert "Undone: x 30-60, y 30-60" in s.status.text()
    s.undo_button.click()  # the button
    now = snapshot()
    assert (now[0] == first[0]).all() and (now[1] == first[1]).all()
    assert now[2] == first[2] and "regenerated" not in now[2]
    assert not s.undo_button.isEnabled()
    press(viewer, UNDO_REGION_KEY)
    assert "Nothing to undo" in notes["error"][-1]


@pytest.mark.gui
def test_undo_keeps_nothing_after_a_cancel_and_forgets_removed_layers(dock, qtbot):
    viewer, w = dock
    _mask(w)
    w.synthesis.generate()
    _wait(qtbot, w)
    image = w.synthesis.last_image
    before = np.asarray(image.data).copy()
    state = w.synthesis.state
    # a cancelled regeneration leaves the image as it was and nothing to undo
    w.synthesis.steps.setValue(500)
    shapes = viewer.add_shapes(name="HistoDiff regions")
    shapes.add_rectangles(np.array([[8, 8], [40, 40]], float)
                          + np.asarray(image.translate))
    w.synthesis.regenerate()
    qtbot.waitUntil(lambda: w.synthesis.job is None or
                    w.synthesis.job.run is not None, timeout=TIMEOUT)
    w.synthesis.cancel()
    _wait(qtbot, w)
    assert (np.asarray(image.data) == before).all()
    key = image.metadata["histodiff_canvas"]
    assert state.region_undo.count(key) == 0
    w.synthesis.steps.setValue(2)
    w.synthesis.regenerate()
    _wait(qtbot, w)
    assert state.region_undo.count(key) == 1
    viewer.layers.remove(image)
    assert state.region_undo.count(key) == 0
