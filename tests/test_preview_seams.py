"""Live previews never show the window grid (issue 18 item 1).

Measured with the shipped demo model in one run: the seam score of the
preview at mid-run, on the grid of the step it shows, is about that of the
final image on the same grid, while that step's own clean-image estimate
(what the preview showed before) shows the grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_histodiff.metrics.seams import seam_score
from napari_histodiff.models import demo_model_path
from napari_histodiff.sampling import engine as engine_module
from napari_histodiff.sampling.events import StepEvent
from napari_histodiff.sampling.strategies import RandomShift

pytestmark = pytest.mark.skipif(demo_model_path() is None,
                                reason="needs the shipped demo model")
STEPS = 6
MID = 4


def test_mid_run_preview_shows_no_window_grid(monkeypatch):
    from napari_histodiff import HistoDiffPipeline

    raw = np.zeros((128, 128, 3), np.uint8)  # each step's estimate, unblended
    original = engine_module.SynthesisEngine._set_preview

    def recording(self, sy, sx, pixels, f):
        y0, y1, x0, x1 = self._pixel_region(sy, sx)
        raw[y0:y1, x0:x1] = np.moveaxis(pixels, 0, -1)
        return original(self, sy, sx, pixels, f)

    monkeypatch.setattr(engine_module.SynthesisEngine, "_set_preview", recording)
    pipe = HistoDiffPipeline.from_pretrained("demo")
    mask = np.zeros((128, 128), np.int32)
    mask[:, :64], mask[:64, 64:], mask[64:, 64:] = 1, 2, 3
    run = pipe.stream(mask, num_inference_steps=STEPS, seed=0)
    for event in run.events():
        if isinstance(event, StepEvent) and event.step == MID:
            preview = np.moveaxis(np.asarray(run.store["preview"]), 0, -1).copy()
            estimate = raw.copy()
    p = pipe.card.patch_size
    oy, ox = RandomShift().offsets(MID - 1, p, 0)
    grid = ((-oy) % p, (-ox) % p)
    final = seam_score(run.output().image, p, grid)
    shown = seam_score(preview, p, grid)
    assert shown <= 1.15 * final, (shown, final)
    assert seam_score(estimate, p, grid) > shown + 0.2  # what the blending removes
