"""Evidence maths: Dice, the comparison sheet, mask shape statistics, and the
whole evidence run on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_histodiff.bench.demo_evidence import comparison_sheet, side_by_side
from napari_histodiff.errors import InputError
from napari_histodiff.metrics.mask_fidelity import (
    dice_per_class,
    fidelity_table,
    mask_statistics,
    mean_dice,
    mean_mask_statistics,
)

torch.set_num_threads(1)
NAMES = ["unknown", "a", "b", "c"]


def test_dice_per_class_and_its_mean():
    target = np.array([[1, 1, 2, 2]])
    pred = np.array([[1, 2, 2, 2]])
    scores = dice_per_class(pred, target, [1, 2, 3])
    assert scores[1] == pytest.approx(2 * 1 / (1 + 2))
    assert scores[2] == pytest.approx(2 * 2 / (3 + 2))
    assert np.isnan(scores[3])  # in neither mask: not counted
    assert mean_dice(scores) == pytest.approx((2 / 3 + 4 / 5) / 2)
    with pytest.raises(InputError, match=r"pred: shape \(1, 3\) differs"):
        dice_per_class(pred[:, :3], target, [1])


def test_fidelity_table_lists_each_scale_and_the_ceiling():
    rows = [{"guidance": 0.0, "dice": {"a": 0.25, "b": 0.5}, "mean_dice": 0.375},
            {"guidance": 2.0, "dice": {"a": 0.75, "b": 1.0}, "mean_dice": 0.875}]
    table = fidelity_table(rows, {"a": 0.9, "b": 0.8}).splitlines()
    assert table[0] == "| guidance | a | b | mean |"
    assert table[2] == "| 0 | 0.25 | 0.50 | **0.38** |"
    assert table[3] == "| 2 | 0.75 | 1.00 | **0.88** |"
    assert table[4] == "| real image (labeller ceiling) | 0.90 | 0.80 | 0.85 |"


def test_comparison_sheet_puts_the_same_place_in_one_column():
    rng = np.random.default_rng(0)
    real, syn, mask = (rng.integers(0, 255, (8, 12, 3), dtype=np.uint8)
                       for _ in range(3))
    sheet = comparison_sheet(real, syn, mask, crop=4, gap=1)
    assert sheet.shape == (3 * 4 + 2, 6 * 4 + 5, 3)  # 2x3 crops side by side
    # the fifth crop is rows 4-7, columns 4-7 of each source
    x0 = 4 * 5
    np.testing.assert_array_equal(sheet[0:4, x0:x0 + 4], mask[4:8, 4:8])
    np.testing.assert_array_equal(sheet[5:9, x0:x0 + 4], real[4:8, 4:8])
    np.testing.assert_array_equal(sheet[10:14, x0:x0 + 4], syn[4:8, 4:8])


def test_side_by_side_leaves_white_gaps():
    a, b = np.zeros((3, 2, 3), np.uint8), np.full((3, 4, 3), 7, np.uint8)
    row = side_by_side([a, b], gap=1)
    assert row.shape == (3, 7, 3)
    assert (row[:, 2] == 255).all() and (row[:, 3:] == 7).all()


def test_mask_statistics_tell_blobs_from_speckle():
    one = np.ones((10, 10), np.uint8)
    st = mask_statistics(one, NAMES)
    assert st["boundary"] == 0 and st["area"] == {"a": 1.0}
    assert st["regions_per_mpx"] == pytest.approx(1e4) and st["region_px"] == 100

    halves = one.copy()
    halves[:, 5:] = 2
    st = mask_statistics(halves, NAMES)
    assert st["boundary"] == pytest.approx(10 / 180)  # 10 of 90+90 pairs differ
    assert st["area"] == {"a": 0.5, "b": 0.5}
    assert st["mean_region_px"] == {"a": 50.0, "b": 50.0}
    assert st["region_px"] == 50

    checker = (np.indices((10, 10)).sum(0) % 2 + 1).astype(np.uint8)
    st = mask_statistics(checker, NAMES)
    assert st["boundary"] == 1.0 and st["region_px"] == 1
    assert st["regions_per_mpx"] == pytest.approx(1e6)

    # a speck in a large region: the random pixel's region stays large
    speck = one.copy()
    speck[0, 0] = 3
    st = mask_statistics(speck, NAMES)
    assert st["mean_region_px"] == {"a": 99.0, "c": 1.0}
    assert st["region_px"] == pytest.approx((99**2 + 1) / 100)
    mean = mean_mask_statistics([mask_statistics(m, NAMES) for m in (one, checker)])
    assert mean == {"boundary": 0.5, "regions_per_mpx": pytest.approx(505000),
                    "region_px": 50.5}
    with pytest.raises(InputError, match="mask: expected a non-empty 2-D"):
        mask_statistics(np.zeros((2, 2, 2), np.uint8), NAMES)


def test_demo_evidence_on_a_tiny_model_writes_every_file(tmp_path):
    """The whole evidence run, with a randomly initialised tiny model."""
    from napari_histodiff.bench.demo_evidence import demo_evidence
    from napari_histodiff.io.masks import read_mask
    from napari_histodiff.models.factory import init_model
    from napari_histodiff.training.data import Sample
    from napari_histodiff.training.loop import TrainSettings
    from napari_histodiff.training.mask_trainer import (
        MaskModelSpec,
        MaskTrainJob,
        train_mask_model,
    )
    from napari_histodiff.training.presets import demo_classes, write_demo_data

    classes = demo_classes()
    model = tmp_path / "model"
    init_model(model, classes, patch_size=32, size="tiny")
    data = write_demo_data(tmp_path / "run")
    mask = read_mask(data / "masks" / "top-left.png")
    train_mask_model(MaskTrainJob(
        samples=[Sample(np.zeros((*mask.shape, 3), np.uint8), mask, "tl")],
        classes=classes, run_dir=tmp_path / "mask-run", out=model,
        settings=TrainSettings(steps=1, batch_size=2, warmup=0),
        spec=MaskModelSpec(window=16, factor=4, channels=(8, 16), layers=1)),
        "cpu", quiet=True)
    out = tmp_path / "evidence"
    summary = demo_evidence(model, tmp_path / "run", out, guidance_scales=(0, 2),
                            steps=1, mask_seeds=(0, 1), mask_steps=1)
    for name in ("demo-heldout-sheet.png", "demo-guidance.png",
                 "demo-fidelity.json", "demo-fidelity.md", "demo-masks.png",
                 "demo-masks.md"):
        assert (out / name).is_file(), name
    assert [r["guidance"] for r in summary["rows"]] == [0.0, 2.0]
    assert set(summary["real_image_dice"]) <= set(classes.names[1:])
    # one ruler: the labeller's thresholds fitted on the real quadrant
    assert summary["labeller"]["dab_threshold"] > 0
    assert all(0 <= r["mean_dice_own_thresholds"] <= 1 for r in summary["rows"])
    saved = json.loads((out / "demo-fidelity.json").read_text())
    assert saved["rows"][1]["mean_dice"] == summary["rows"][1]["mean_dice"]
    masks = summary["masks"]
    assert masks["seeds"] == [0, 1] and set(masks["real"]) == {
        "boundary", "regions_per_mpx", "region_px"}
    assert 0 < masks["real"]["boundary"] < 0.5  # the labeller's masks are regions
    assert "| generated |" in (out / "demo-masks.md").read_text()
