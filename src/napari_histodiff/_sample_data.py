"""Sample data: the IHC image with its automatic mask, and a synthetic pair.

``ihc_sample``: scikit-image's immunohistochemistry image (offline, shipped
with scikit-image) and the automatic labeller's mask of it.
``synthetic_sample``: a random-blob mask and the image the demo model makes
from it. The pair ships beside the demo weights (``models/demo/
sample-pair.npz``, made by ``python scripts/make_sample_pair.py`` whenever the
demo is retrained), so opening it costs no synthesis on napari's UI thread; a
pair that does not belong to the installed weights (its ``weights_sha256``
differs) is ignored, and the pair is then made once and kept in the user cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SYNTH_SIZE = (128, 128)
SYNTH_STEPS = 10
SHIPPED_PAIR = "sample-pair.npz"


def _labels_kwargs(classes, name: str, **kwargs: Any) -> dict[str, Any]:
    from napari.utils.colormaps import DirectLabelColormap

    from .masks.tools import class_features, label_colors

    return {"name": name, "colormap": DirectLabelColormap(
        color_dict=label_colors(classes)), "features": class_features(classes),
        "metadata": {"histodiff_classes": classes.to_list()}, **kwargs}


def ihc_sample() -> list[tuple]:
    """The IHC image (RGB) and its automatic tissue mask."""
    from skimage import data

    from .masks.labeller import CLASS_NAMES, auto_label
    from .models.classes import TissueClasses

    rgb = data.immunohistochemistry()
    classes = TissueClasses.from_names(list(CLASS_NAMES))
    mask = auto_label(rgb)
    return [
        (rgb, {"name": "IHC", "rgb": True}, "image"),
        (mask, _labels_kwargs(classes, "IHC mask", opacity=0.5), "labels"),
    ]


def synthetic_sample() -> list[tuple]:
    """A blob mask and its synthetic image from the demo model.

    napari runs sample functions on its UI thread, so the pair is cached in
    the user cache directory after the first time (about 10-30 s on a 2-core
    CPU); it is made again when the demo model changes.
    """
    from .models import resolve_model_path
    from .models.card import ModelCard

    folder = resolve_model_path("demo")
    classes = ModelCard.load(folder).classes
    pair = _read_pair(folder / SHIPPED_PAIR, _weights_sha256(folder))
    if pair is None:
        pair = _read_pair(_cache_file(str(folder)))
    if pair is None:
        from .pipelines.cache import MODEL_CACHE

        pair = make_sample_pair(MODEL_CACHE.get("demo"))
        try:
            _write_pair(_cache_file(str(folder)), *pair)
        except OSError:
            pass  # no cache: made again next time
    mask, image, settings = pair
    width = mask.shape[1]
    return [
        (mask, _labels_kwargs(classes, "synthetic mask"), "labels"),
        (image, {"name": "synthetic image", "rgb": True,
                 "translate": (0, width + 8),
                 "metadata": {"histodiff": settings,
                              "mask_layer": "synthetic mask"}}, "image"),
    ]


def make_sample_pair(pipe):
    """(mask, image, settings) of the sample pair, made with ``pipe``."""
    from .masks.tools import random_blobs

    classes = pipe.card.classes
    mask = random_blobs(SYNTH_SIZE, list(range(1, len(classes))), seed=0)
    out = pipe(mask, num_inference_steps=SYNTH_STEPS, seed=0, store="memory")
    return mask, out.image, out.settings


def write_shipped_pair(model_folder: str | Path) -> Path:
    """Make the pair with the model in ``model_folder`` and write it there."""
    from .pipelines.mask_to_image import HistoDiffPipeline

    folder = Path(model_folder)
    pair = make_sample_pair(HistoDiffPipeline.from_pretrained(folder))
    return _write_pair(folder / SHIPPED_PAIR, *pair,
                       weights_sha256=_weights_sha256(folder))


def _weights_sha256(model_folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(model_folder).glob("unet/*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_pair(path: Path, weights_sha256: str | None = None):
    """(mask, image, settings) from ``path``, or None (missing, damaged, or
    made with other weights than ``weights_sha256``)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as saved:
            if weights_sha256 is not None and \
                    str(saved["weights_sha256"]) != weights_sha256:
                return None
            return (saved["mask"], saved["image"],
                    json.loads(str(saved["settings"])))
    except (OSError, KeyError, ValueError):
        return None


def _write_pair(path: Path, mask, image, settings, weights_sha256: str = "") -> Path:
    import os

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, mask=mask, image=image, settings=json.dumps(settings),
                        weights_sha256=weights_sha256)
    os.replace(tmp, path)
    return path


def _cache_file(model_folder: str) -> Path:
    """Where the sample pair of this model version and these settings is kept."""
    weights = sorted(Path(model_folder).glob("unet/*.safetensors"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]
    key = hashlib.sha256(json.dumps([str(model_folder), stamp, SYNTH_SIZE,
                                     SYNTH_STEPS]).encode()).hexdigest()[:16]
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("napari-histodiff", appauthor=False))
    except ImportError:
        base = Path.home() / ".cache" / "napari-histodiff"
    return base / f"sample-pair-{key}.npz"
