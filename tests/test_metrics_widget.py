"""The realism panel (issue 14): open through the manifest, measure ticked
synthetic layers against ticked real layers in a worker, show the table and
the closest-pair sheet; bad choices are notifications."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-histodiff"
TIMEOUT = 120_000  # ms; the CPU is shared


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as nt

    seen = {"error": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(nt, f"show_{kind}", seen[kind].append)
    return seen


@pytest.fixture
def panel(make_napari_viewer, qtbot):
    import torch
    from skimage.data import immunohistochemistry

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    img = immunohistochemistry()
    viewer.add_image(np.ascontiguousarray(img[256:]), name="real", rgb=True)
    viewer.add_image(np.ascontiguousarray(img[:256, 256:]), name="synthetic",
                     rgb=True)
    viewer.add_image(np.ascontiguousarray(img[:256, :256]), name="train", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Realism")
    yield viewer, widget
    if widget.worker is not None:
        qtbot.waitUntil(lambda: widget.measure_button.isEnabled(), timeout=TIMEOUT)
    torch.set_num_threads(threads)


def test_measure_shows_table_and_sheet(panel, qtbot, notes):
    viewer, w = panel
    assert type(w).__name__ == "MetricsWidget"
    assert w.lists["real"].count() == 3
    w.lists["synthetic"].set_checked(["synthetic"])
    w.lists["real"].set_checked(["real"])
    w.lists["train"].set_checked(["train"])
    w.tile_size.setValue(16)
    w.measure()
    qtbot.waitUntil(lambda: w.last_report is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.measure_button.isEnabled(), timeout=TIMEOUT)
    report = w.last_report
    assert report.counts["synthetic"]["tiles"] > 100
    assert report.privacy is not None
    text = w.table.toPlainText()
    assert "FID" in text and "authenticity" in text
    sheet = viewer.layers["closest pairs (synthetic | training)"]
    assert sheet.rgb and sheet.data.shape[1] > 4 * 96
    assert "FID" in w.status.text()
    assert not notes["error"]


def test_bad_choices_are_notifications(panel, notes):
    viewer, w = panel
    w.measure()  # nothing ticked
    assert any("tick at least one synthetic" in m for m in notes["error"])
    w.lists["synthetic"].set_checked(["real"])
    w.lists["real"].set_checked(["real"])
    w.measure()
    assert any("'real' is ticked as synthetic and as real" in m
               for m in notes["error"])
    assert w.worker is None
