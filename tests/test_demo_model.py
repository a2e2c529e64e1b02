"""The shipped demo models load and generate (skipped in builds without them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_histodiff.masks.labeller import CLASS_NAMES
from napari_histodiff.models import demo_model_path

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(
    demo_model_path() is None,
    reason="this checkout ships no trained demo model (src/napari_histodiff/"
    "models/demo/); make one with `histodiff train --preset demo --install`",
)


def test_demo_model_is_small_and_safetensors_only():
    path = demo_model_path()
    files = [p for p in path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 15 * 2**20
    # weights as safetensors only; besides them, the sample pair (arrays read
    # with allow_pickle=False, see _sample_data._read_pair)
    others = {p.name for p in files if p.suffix not in (".json", ".safetensors")}
    assert others <= {"sample-pair.npz"}


def test_demo_classes_are_the_labeller_classes():
    from napari_histodiff.models.card import ModelCard

    card = ModelCard.load(demo_model_path())
    assert card.classes.names == ["unknown", *CLASS_NAMES]
    # the sampler centres its initial noise on these (noise_mean="auto")
    assert len(card.class_means) == card.num_classes


def test_demo_models_are_what_the_preset_makes():
    """`histodiff train --preset demo --install` reproduces the shipped models:
    the card records the preset's settings, steps and data, and nothing else."""
    from dataclasses import asdict

    from napari_histodiff.models.card import ModelCard
    from napari_histodiff.training import presets

    prov = ModelCard.load(demo_model_path()).provenance
    for part, settings, spec in (
            ("image_model", presets.DEMO_IMAGE_SETTINGS, presets.DEMO_IMAGE_SPEC),
            ("mask_model", presets.DEMO_MASK_SETTINGS, presets.DEMO_MASK_SPEC)):
        info = prov[part]
        assert info["settings"] == asdict(settings), part
        assert info["spec"] == {k: list(v) if isinstance(v, tuple) else v
                                for k, v in asdict(spec).items()}, part
        assert info["steps"] == settings.steps and "history" not in info
        names = sorted(p.rsplit("/", 1)[-1] for p in info["data"]["labelled_images"])
        held = presets.HELDOUT + ".png"
        assert held not in names and len(names) == len(presets.QUADRANTS) - 1
    assert prov["image_preset"]["command"].startswith("histodiff train --preset demo")
    assert prov["mask_model"]["preset"]["command"].startswith(
        "histodiff train --preset demo")


def test_demo_models_generate_a_small_mask_and_image():
    from napari_histodiff.pipelines.mask_generation import HistoDiffMaskPipeline
    from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline

    masks = HistoDiffMaskPipeline.from_pretrained("demo")
    m = masks(["nuclei", "dab"], height=64, width=64, num_inference_steps=4, seed=0)
    assert m.mask.shape == (64, 64) and set(np.unique(m.mask)) <= {2, 3}
    pipe = HistoDiffPipeline.from_pretrained("demo")
    out = pipe(m.mask, num_inference_steps=4, seed=0, store="memory")
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    assert out.image.std() > 5  # not a flat picture
