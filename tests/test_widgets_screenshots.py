"""The user guide's screenshots, taken from the real viewer (opt-in).

Runs the guide's journey with the shipped demo model: load the model, make
and paint a mask, watch an image stream in, regenerate a rectangle, export
it, and open the IHC sample. Skipped unless ``HISTODIFF_SCREENSHOTS`` names
the folder for the PNGs::

    HISTODIFF_SCREENSHOTS=docs/images xvfb-run -a .venv/bin/python -m pytest \\
        tests/test_widgets_screenshots.py
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

OUT = os.environ.get("HISTODIFF_SCREENSHOTS")
TIMEOUT = 900_000
SIZE = 256
STEPS = 20


@pytest.mark.skipif(not OUT, reason="set HISTODIFF_SCREENSHOTS=<folder> to run")
def test_user_guide_screenshots(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from PIL import Image

    from napari_histodiff.models import demo_model_path
    from napari_histodiff.sampling.events import StepEvent

    if demo_model_path() is None:
        pytest.skip("the screenshots need the shipped demo model")
    out = Path(OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HISTODIFF_SETTINGS_FILE", str(tmp_path / "settings.json"))
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)

    def shot(name):
        qtbot.wait(800)
        Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(
            out / name, optimize=True)

    dock, w = viewer.window.add_plugin_dock_widget("napari-histodiff", "HistoDiff")
    dock.setMinimumWidth(420)
    w.model.source.setCurrentText("demo")
    w.model.load()
    qtbot.waitUntil(lambda: w.model.state.pipe is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.model._device_worker is None, timeout=TIMEOUT)
    shot("ui-model.png")

    # a mask from the model's mask generator, then a stroke of nuclei painted
    w.tabs.setCurrentIndex(1)
    w.mask.height.setValue(SIZE)
    w.mask.width.setValue(SIZE)
    w.mask.source.setCurrentIndex(w.mask.source.findData("model"))
    w.mask.seed.setValue(1)
    w.mask.generate_mask()
    qtbot.waitUntil(lambda: "generated mask" in viewer.layers, timeout=TIMEOUT)
    mask = viewer.layers["generated mask"]
    w.mask.palette_group.button(2).click()
    w.mask.brush.setValue(12)
    for t in np.linspace(0, 1, 30):
        mask.paint((int(40 + 60 * t), int(30 + 150 * t)), 2)
    viewer.reset_view()
    shot("ui-mask.png")

    # the image streams in beside the mask
    w.tabs.setCurrentIndex(2)
    w.synthesis.mask_combo.set_layer(mask)
    w.synthesis.steps.setValue(STEPS)
    w.synthesis.seed.setValue(7)
    w.synthesis.generate()
    qtbot.waitUntil(lambda: w.synthesis.job is not None
                    and w.synthesis.job.worker is not None, timeout=TIMEOUT)
    seen = {"step": 0}

    def count(item):
        if isinstance(item, StepEvent):
            seen["step"] = item.step

    w.synthesis.job.worker.yielded.connect(count)
    qtbot.waitUntil(lambda: seen["step"] >= STEPS // 3, timeout=TIMEOUT)
    shot("ui-streaming.png")
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    image = w.synthesis.last_image
    shot("ui-result.png")

    # regenerate a rectangle
    w.synthesis.draw_region()
    shapes = viewer.layers["HistoDiff regions"]
    offset = np.asarray(image.translate)
    shapes.add_rectangles(np.array([[90, 90], [170, 190]]) + offset)
    shapes.mode = "select"
    before = np.asarray(image.data).copy()
    w.synthesis.seed.setValue(11)
    w.synthesis.regenerate()
    qtbot.waitUntil(lambda: not w.synthesis.busy, timeout=TIMEOUT)
    changed = np.any(np.asarray(image.data) != before, axis=-1)
    assert changed[90:170, 90:190].any() and not changed[:80].any()
    viewer.layers.selection.active = image
    shot("ui-regenerate.png")

    # export the rectangle as OME-TIFF with its mask and sidecar
    w.tabs.setCurrentIndex(3)
    w.export.image_combo.set_layer(image)
    w.export._image_changed()
    w.export.extent.setCurrentIndex(w.export.extent.findData("region"))
    w.export.format.setCurrentIndex(w.export.format.findData(".tif"))
    w.export.path.setText("exports/region.tif")
    w.export.export()
    qtbot.waitUntil(lambda: w.export.last_result is not None, timeout=TIMEOUT)
    shot("ui-export.png")
    side = json.loads((tmp_path / "exports" / "region.json").read_text())
    assert side["region"] == [90, 170, 90, 190] and side["seed"] == 7

    # the IHC sample with its automatic mask
    viewer.layers.clear()
    viewer.open_sample("napari-histodiff", "ihc")
    viewer.reset_view()
    shot("ui-sample-ihc.png")
