"""The reader-study widgets in napari (run under Xvfb: ``xvfb-run -a pytest``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_histodiff.study import ReaderSession, Study
from test_study_support import TILE, make_sources, make_study, tissue_image

pytestmark = pytest.mark.gui


@pytest.fixture
def widgets():
    pytest.importorskip("qtpy")
    from napari_histodiff._widgets import study as module

    return module


def _visible(viewer):
    return [layer for layer in viewer.layers if layer.visible]


def _all_text(widget) -> str:
    from qtpy.QtWidgets import QAbstractButton, QLabel, QLineEdit

    parts = [widget.windowTitle()]
    for child in widget.findChildren((QLabel, QAbstractButton, QLineEdit)):
        parts.append(child.text())
    return "\n".join(parts)


def test_reader_widget_shows_no_hint_of_the_source(
    make_napari_viewer, widgets, tmp_path
):
    study = make_study(tmp_path, "single", n=3)
    key = study.read_key()
    viewer = make_napari_viewer()
    own = viewer.add_image(tissue_image(np.random.default_rng(0)), name="slide_0.png")
    widget = widgets.ReaderWidget(viewer)
    assert widget.start(study.path, "ann")

    assert own.visible is False  # the reader's other layers are hidden
    assert [layer.name for layer in _visible(viewer)] == ["case"]
    assert viewer.title == widgets.STUDY_TITLE
    shown = set()
    for _ in range(len(study.case_ids())):
        (layer,) = _visible(viewer)
        assert layer.name == "case" and layer.metadata == {widgets.CASE_KEY: True}
        assert layer.source.path is None and layer.source.reader_plugin is None
        assert tuple(layer.contrast_limits) == (0, 255)
        case_id = widget.session.case_id
        shown.add(case_id)
        np.testing.assert_array_equal(layer.data, study.load_case(case_id)[0])
        text = (
            _all_text(widget)
            + viewer.title
            + "".join(lay.name for lay in viewer.layers)
        )
        assert case_id not in text
        for tile in key.tiles[case_id]:
            assert tile["source"] not in text
        assert "slide_" not in text.replace("slide_0.png", "") and ".zarr" not in text
        widget.choose_answer("real")
        widget.choose_confidence(3)
        assert widget.submit()
    assert shown == set(study.case_ids())
    assert (
        widget.session.at_end and "All 6 cases answered" in widget.progress_label.text()
    )
    assert not [layer for layer in viewer.layers if layer.name == "case"]

    widget.stop()
    assert own.visible is True and viewer.title != widgets.STUDY_TITLE


def test_keys_answer_and_resume_after_closing(make_napari_viewer, widgets, tmp_path):
    study = make_study(tmp_path, "single", n=3)
    viewer = make_napari_viewer()
    widget = widgets.ReaderWidget(viewer)
    assert widget.start(study.path, "bob")
    assert not widget.submit_button.isEnabled()
    keys = viewer.window._qt_viewer._key_map_handler  # the canvas' key handling
    first = widget.session.case_id
    assert keys.press_key("S") and widget._answer == "synthetic"
    assert not widget.submit_button.isEnabled()  # confidence still missing
    assert keys.press_key("4") and keys.press_key("Enter")
    assert widget.session.n_answered == 1 and widget.status.text() == "Saved."
    widget.choose_answer("real")
    widget.comment.setText("odd stroma")
    widget.press_key("2")
    widget.press_key("Enter")
    assert "Case 3 of 6" in widget.progress_label.text()
    keys.press_key("Left")  # no navigation in this study: nothing happens
    assert widget.session.position == 2 and widget.back_button.isHidden()
    assert not [b for b in widget.confidence_group.buttons() if b.isChecked()]
    widget.close()  # napari closed mid-study

    viewer2 = make_napari_viewer()
    again = widgets.ReaderWidget(viewer2)
    assert again.start(study.path, "Bob")  # same reader, other spelling
    assert again.session.position == 2 and again.session.n_answered == 2
    saved = again.session.answers()
    assert (saved[first].answer, saved[first].confidence) == ("synthetic", 4)
    assert "odd stroma" in {a.comment for a in saved.values()}
    again.stop()
    with ReaderSession(study, "bob") as session:
        assert session.n_answered == 2


def test_pairs_navigation_changes_and_training(make_napari_viewer, widgets, tmp_path):
    study = make_study(
        tmp_path, "2afc", n=3, n_training=2, allow_navigation=True, allow_change=True
    )
    viewer = make_napari_viewer()
    widget = widgets.ReaderWidget(viewer)
    assert widget.start(study.path, "cy", training=True)
    assert "TRAINING" in widget.header.text()
    layers = _visible(viewer)
    assert [layer.name for layer in layers] == ["left", "right"]
    assert layers[1].translate[1] > TILE  # side by side, with a gap
    assert widget.restart_button.isHidden()
    for _ in range(2):
        widget.press_key("L")
        widget.press_key("5")
        assert widget.submit()
        assert widget.feedback.text().startswith(("Correct", "Not quite"))
    assert widget.session.at_end and not widget.restart_button.isHidden()
    widget.restart_training()
    assert widget.session.n_answered == 0 and widget.feedback.text() == ""
    assert widget.start(study.path, "cy", training=False)
    assert "TRAINING" not in widget.header.text() and widget.feedback.text() == ""
    widget.press_key("R")
    widget.press_key("1")
    widget.press_key("Enter")
    assert widget.back_button.isEnabled()
    widget.press_key("Left")
    assert widget.session.position == 0 and widget._answer == "right"
    assert "you may change it" in widget.progress_label.text()
    widget.press_key("L")
    widget.press_key("Enter")
    answer = widget.session.answers()[widget.session.order[0]]
    assert (answer.answer, answer.revision) == ("left", 2)
    widget.stop()
    with ReaderSession(study, "cy") as session:
        assert session.n_answered == 1  # the training answer is kept apart


def test_create_widget_from_layers_and_report(make_napari_viewer, widgets, tmp_path):
    rng = np.random.default_rng(3)
    viewer = make_napari_viewer()
    viewer.add_image(tissue_image(rng), name="scan", rgb=True)
    viewer.add_image(
        tissue_image(rng, tint=(180, 100, 190)), name="generated", rgb=True
    )
    viewer.add_image(np.zeros((50, 50), np.uint8), name="mask")  # not RGB: not listed
    _, synthetic = make_sources(tmp_path / "src", n_images=1)
    widget = widgets.StudyCreateWidget(viewer)
    assert widget.source_lists["real"].count() == 2
    widget.set_layer_checked("real", "scan")
    widget.add_paths("synthetic", [synthetic])
    widget.set_layer_checked("synthetic", "generated")
    widget.n_tiles.setValue(4)
    widget.tile_size.setValue(TILE)
    widget.title.setText("Colon study")
    assert widget.create() is None  # no study folder given: a clear message
    assert "study folder is empty" in widget.status.text()

    widget.out.setText(str(tmp_path / "study"))
    widget.seed.setText("11")
    path = widget.create()
    assert path is not None and "Created single study" in widget.status.text()
    study = Study.open(path)
    assert study.settings.title == "Colon study" and len(study.case_ids()) == 8
    sources = study.read_key().settings
    assert sources["real_sources"] == ["layer scan"]
    assert sources["synthetic_sources"][0] == "layer generated"

    widget.report_out.setText(str(tmp_path / "report"))
    assert widget.write_report() is None  # no answers yet
    assert "no reader has answered" in widget.status.text()
    with ReaderSession(study, "ann") as session:
        while not session.finished:
            session.submit("real", 3)
    assert widget.write_report() == tmp_path / "report"
    assert "pooled accuracy 0.500 over 8 answers" in widget.status.text()


def test_a_failed_save_is_reported_and_the_answer_kept_to_retry(
    make_napari_viewer, widgets, tmp_path, monkeypatch
):
    """An unexpected error (a full disk) while saving is shown, not swallowed,
    and the reader's choice stays so that the same case can be saved again."""
    study = make_study(tmp_path, "single", n=3)
    viewer = make_napari_viewer()
    widget = widgets.ReaderWidget(viewer)
    assert widget.start(study.path, "cy")
    shown = []
    monkeypatch.setattr(widgets, "notify_error", lambda exc, *a: shown.append(exc))
    case = widget.session.case_id
    widget.choose_answer("real")
    widget.choose_confidence(5)
    real_submit = widget.session.submit

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(widget.session, "submit", full_disk)
    assert widget.submit() is False
    assert len(shown) == 1 and isinstance(shown[0], OSError)
    assert "No space left" in widget.status.text()
    assert widget.session.case_id == case and widget._answer == "real"
    assert widget.session.n_answered == 0

    monkeypatch.setattr(widget.session, "submit", real_submit)
    assert widget.submit() is True
    assert widget.session.answers()[case].answer == "real"
    widget.stop()


def test_reader_mode_shows_only_the_case_fitted(make_napari_viewer, widgets,
                                                tmp_path):
    """Other (large) layers do not shrink the case to a stamp; the layer list
    and controls are hidden for the reader and come back afterwards; the
    create widget never offers the case as a source."""
    study = make_study(tmp_path, "single", n=2)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4000, 4000, 3), np.uint8), rgb=True, name="big")
    create = widgets.StudyCreateWidget(viewer)
    qt_viewer = viewer.window._qt_viewer
    assert qt_viewer.dockLayerList.isVisible()
    widget = widgets.ReaderWidget(viewer)
    assert widget.start(study.path, "ann")
    (case,) = [layer for layer in viewer.layers if layer.visible]
    canvas = np.asarray(viewer.canvas.size, float)
    side = np.asarray(case.extent.world)[1, -2:] - np.asarray(case.extent.world)[0, -2:]
    shown = viewer.scene.camera.zoom * side  # screen pixels the case takes
    assert shown.max() >= 0.9 * canvas[np.argmax(shown / canvas)]
    assert not qt_viewer.dockLayerList.isVisible()
    assert not qt_viewer.dockLayerControls.isVisible()
    for listing in create.source_lists.values():
        texts = [listing.item(i).text() for i in range(listing.count())]
        assert "layer: case" not in texts and "layer: big" in texts
    widget.stop()
    assert qt_viewer.dockLayerList.isVisible()
    assert qt_viewer.dockLayerControls.isVisible()
