"""``histodiff bench augment``: does selective class-guided augmentation help?

The HistoDiffusion experiment at our scale, on the IHC image that
scikit-image ships (``skimage.data.immunohistochemistry()``, 512 x 512):

* labels: :func:`napari_histodiff.masks.labeller.auto_label`; a tile's class
  is its dominant label (:func:`~napari_histodiff.training.tiles.tiles_from_masks`);
* the *small real labelled set*: tiles of ``tile_size`` (the model's
  window) on a grid of step ``tile_size / 2`` over the three training
  quadrants (top-left, top-right, bottom-left; tiles never straddle two);
* *held-out* tiles: the bottom-right quadrant, grid step ``tile_size / 4``
  (overlapping, so neighbouring test tiles are correlated; the intervals
  below are over training seeds, not over test tiles);
* the generator: ``--model`` (default a copy of the shipped ``demo``, a
  pixel model trained on the same three quadrants, used with the
  all-``unknown`` mask, its unconditional mode); its noise-aware classifier
  is trained on the small labelled set
  (:func:`~napari_histodiff.training.classifier_trainer.train_classifier`)
  in a working copy, never in the model given;
* synthetic tiles: ``n_per_class`` per class, class-guided
  (:func:`~napari_histodiff.pipelines.augment.augment`), generated once
  (seed 0), scored and selected by the documented rule against the
  centroids of the small labelled set;
* the downstream task: a plain CNN on RGB tiles (:func:`tile_cnn`), trained
  from scratch per seed on (a) the small real set, (b) (a) + every
  synthetic tile, (c) (a) + the selected synthetic tiles, with flips and
  quarter turns, and evaluated on the held-out tiles: accuracy and balanced
  accuracy (mean recall over the classes present), mean and 95 % t
  interval over the seeds, and the paired differences (b - a), (c - a).

Every figure goes into one JSON object, with the settings and the timings.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: t quantiles (two-sided 95 %) for 1 ... 30 degrees of freedom.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


@dataclass
class AugmentBenchSettings:
    """What ``histodiff bench augment`` runs (defaults: the documented run)."""

    model: str = "demo"
    seeds: int = 5
    n_per_class: int = 24
    classifier_scale: float = 10.0
    min_confidence: float = 0.5
    max_per_class: int | None = 12
    steps: int = 15
    scheduler: str = "dpm++"
    batch_size: int = 32
    classifier_steps: int = 300
    classifier_batch: int = 32
    classifier_channels: tuple[int, ...] = (16, 32, 64)
    downstream_steps: int = 200
    downstream_batch: int = 32
    downstream_lr: float = 2e-3
    downstream_width: int = 8
    sweep_scales: tuple[float, ...] = (0.0, 3.0, 10.0)
    sweep_tiles: int = 4
    features: str = "auto"
    encoder: str | None = None
    threads: int | None = None
    device: str = "cpu"

    def check(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or \
                self.seeds < 2:
            raise InputError(f"--seeds: at least 2 seeds for an interval (5 for "
                             f"the documented run), got {self.seeds!r}")
        for name in ("n_per_class", "steps", "batch_size", "classifier_steps",
                     "classifier_batch", "downstream_steps", "downstream_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be an integer "
                                 f">= 1, got {value!r}")


def interval(values) -> dict[str, float]:
    """Mean, standard deviation and 95 % t interval of ``values``."""
    v = np.asarray(values, np.float64)
    n = len(v)
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = (_T975[min(n - 1, len(_T975)) - 1] if n > 1 else math.inf) * sd \
        / math.sqrt(n)
    return {"mean": round(mean, 4), "sd": round(sd, 4),
            "ci95": [round(mean - half, 4), round(mean + half, 4)], "n": n}


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y``."""
    recalls = [float((pred[y == k] == k).mean()) for k in range(n_classes)
               if (y == k).any()]
    return float(np.mean(recalls))


# -- data ---------------------------------------------------------------------------
def ihc_tiles(tile_size: int):
    """(training tiles, held-out tiles) of the IHC image, classed by the
    labeller's dominant class; held-out classes aligned to the training ones."""
    from skimage.data import immunohistochemistry

    from ..masks.labeller import CLASS_NAMES, auto_label
    from ..training.presets import HELDOUT, QUADRANTS
    from ..training.tiles import align_classes, tiles_from_masks

    rgb = immunohistochemistry()
    mask = auto_label(rgb)
    names = ["unknown", *CLASS_NAMES]
    train_q = [q for q in QUADRANTS if q != HELDOUT]
    step = max(1, tile_size // 2)
    train = tiles_from_masks(
        [rgb[QUADRANTS[q]] for q in train_q], [mask[QUADRANTS[q]] for q in train_q],
        tile_size, names, stride=step, sources=train_q)
    held = tiles_from_masks([rgb[QUADRANTS[HELDOUT]]], [mask[QUADRANTS[HELDOUT]]],
                            tile_size, names, stride=max(1, tile_size // 4),
                            sources=[HELDOUT])
    return train, align_classes(held, train.class_names, "held-out tiles")


# -- the downstream classifier ------------------------------------------------------
def tile_cnn(n_classes: int, width: int = 8):
    """A plain CNN on RGB tiles: three conv-BN-ReLU-pool stages, global
    average pooling, a linear layer."""
    from torch import nn

    layers: list = []
    cin = 3
    for k in range(3):
        cout = width * 2 ** k
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                   nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, n_classes))


def train_downstream(images: np.ndarray, labels: np.ndarray, n_classes: int,
                     steps: int, batch: int, lr: float, seed: int, width: int = 8):
    """Train :func:`tile_cnn` on (N, S, S, 3) uint8 tiles; return it (eval)."""
    import torch

    from ..training.loop import step_rng, step_seed

    torch.manual_seed(step_seed(seed, 0, 31))
    net = tile_cnn(n_classes, width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    y_all = torch.as_tensor(labels, dtype=torch.long)
    net.train()
    for step in range(steps):
        rng = step_rng(seed, step, 5)
        idx = rng.integers(len(images), size=batch)
        x = x_all[idx]
        k = int(rng.integers(4))
        x = torch.rot90(x, k, dims=(2, 3))
        if rng.random() < 0.5:
            x = torch.flip(x, dims=(3,))
        loss = torch.nn.functional.cross_entropy(net(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def predict(net, images: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        return torch.cat([net(x[s:s + 256]).argmax(1)
                          for s in range(0, len(x), 256)]).numpy()


# -- the run ------------------------------------------------------------------------
def run_augment_benchmark(settings: AugmentBenchSettings | None = None,
                          work_dir: str | Path | None = None,
                          log=None) -> dict[str, Any]:
    """Run the benchmark (module docstring); return JSON-ready results."""
    import torch

    from ..models import resolve_model_path
    from ..models.directory import check_model_dir
    from ..pipelines.augment import augment
    from ..pipelines.mask_to_image import HistoDiffPipeline
    from ..training.classifier_trainer import (
        ClassifierTrainSettings,
        train_classifier,
    )

    s = settings or AugmentBenchSettings()
    s.check()
    if s.threads:
        torch.set_num_threads(s.threads)
    log = log or (lambda text: None)
    times: dict[str, float] = {}
    source = check_model_dir(resolve_model_path(s.model))
    from ..models.card import ModelCard

    tile = ModelCard.load(source).patch_size
    t0 = time.perf_counter()
    train, held = ihc_tiles(tile)
    names = list(train.class_names)
    few = {n: c for n, c in train.counts().items() if c < 2}
    if few:
        raise InputError(f"real tiles: class(es) {few} have fewer than 2 training "
                         "tiles; the benchmark needs at least 2 per class")
    times["data"] = time.perf_counter() - t0
    log(f"real tiles {train.counts()}, held-out {held.counts()}")

    tmp = Path(tempfile.mkdtemp(prefix="histodiff-bench-augment-",
                                dir=None if work_dir is None else str(work_dir)))
    try:
        model = tmp / "model"
        shutil.copytree(source, model, ignore=shutil.ignore_patterns("classifier"))
        t0 = time.perf_counter()
        clf = train_classifier(
            model, train, ClassifierTrainSettings(
                steps=s.classifier_steps, batch_size=s.classifier_batch, seed=0,
                channels=list(s.classifier_channels)),
            held, device=torch.device(s.device))
        times["classifier_training"] = time.perf_counter() - t0
        log(f"classifier held-out accuracy {clf.heldout_accuracy}")
        pipe = HistoDiffPipeline.from_pretrained(model, device=s.device)
        t0 = time.perf_counter()
        result = augment(pipe, names, s.n_per_class, train,
                         classifier_scale=s.classifier_scale,
                         min_confidence=s.min_confidence,
                         max_per_class=s.max_per_class, num_inference_steps=s.steps,
                         scheduler=s.scheduler, seed=0, batch_size=s.batch_size,
                         features=s.features, encoder=s.encoder)
        times["generation_and_scoring"] = time.perf_counter() - t0
        log(f"synthetic {result.counts()}")
        t0 = time.perf_counter()
        sweep = guidance_sweep(pipe, names, s, s.sweep_scales, s.sweep_tiles)
        times["guidance_sweep"] = time.perf_counter() - t0
        classifier_report = {"heldout_accuracy": clf.heldout_accuracy,
                             "train_accuracy": clf.train_accuracy,
                             "steps": s.classifier_steps}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    real_x, real_y = train.stack(tile), train.labels
    held_x, held_y = held.stack(tile), held.labels
    kept = result.selection.kept
    sets = {
        "a_real": (real_x, real_y),
        "b_real_plus_all_synthetic": (np.concatenate([real_x, result.images]),
                                      np.concatenate([real_y, result.intended])),
        "c_real_plus_selected_synthetic": (
            np.concatenate([real_x, result.images[kept]]),
            np.concatenate([real_y, result.intended[kept]])),
    }
    runs: dict[str, dict[str, list[float]]] = {
        k: {"accuracy": [], "balanced_accuracy": []} for k in sets}
    t0 = time.perf_counter()
    for seed in range(s.seeds):
        for key, (x, y) in sets.items():
            net = train_downstream(x, y, len(names), s.downstream_steps,
                                   s.downstream_batch, s.downstream_lr, seed,
                                   s.downstream_width)
            pred = predict(net, held_x)
            runs[key]["accuracy"].append(float((pred == held_y).mean()))
            runs[key]["balanced_accuracy"].append(
                balanced_accuracy(held_y, pred, len(names)))
        log(f"seed {seed}: " + ", ".join(
            f"{k[:1]} {v['accuracy'][-1]:.3f}/{v['balanced_accuracy'][-1]:.3f}"
            for k, v in runs.items()))
    times["downstream"] = time.perf_counter() - t0
    table = {k: {m: interval(v) for m, v in r.items()} for k, r in runs.items()}
    diffs = {}
    for key in ("b_real_plus_all_synthetic", "c_real_plus_selected_synthetic"):
        diffs[f"{key[:1]}_minus_a"] = {
            m: interval(np.subtract(runs[key][m], runs["a_real"][m]))
            for m in ("accuracy", "balanced_accuracy")}
    majority = int(np.bincount(real_y).argmax())
    return {
        "benchmark": "histodiff bench augment",
        "settings": asdict(s),
        "data": {
            "image": "skimage.data.immunohistochemistry()",
            "labels": "masks.labeller.auto_label, dominant class per tile",
            "tile_size": tile,
            "classes": names,
            "real_tiles_per_class": train.counts(),
            "heldout_tiles_per_class": held.counts(),
            "real": "top-left, top-right, bottom-left quadrants, grid step "
                    f"{max(1, tile // 2)}",
            "heldout": f"bottom-right quadrant, grid step {max(1, tile // 4)}",
        },
        "generator": {"model": s.model, "conditioning": result.settings[
            "conditioning"], "features": result.settings["features"]},
        "classifier": classifier_report,
        "synthetic": {
            "per_class": result.counts(),
            "mean_confidence": {n: round(float(result.confidence[
                result.intended == k].mean()), 4) for k, n in enumerate(names)},
            "guidance_sweep": sweep,
        },
        "baselines": {
            "majority_class_accuracy": round(float((held_y == majority).mean()), 4),
            "chance_balanced_accuracy": round(1 / len(names), 4),
        },
        "results": table,
        "differences": diffs,
        "runs": runs,
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }


def guidance_sweep(pipe, names: list[str], s: AugmentBenchSettings,
                   scales=(0.0, 1.0, 3.0, 10.0), n: int = 8) -> dict[str, Any]:
    """Mean classifier probability (t = 0) of each class on ``n`` tiles
    guided toward it at each scale (0: the same unguided tiles for every
    class), same seeds throughout."""
    from ..pipelines.augment import classifier_probabilities
    from ..pipelines.class_tiles import generate_class_tiles

    known = pipe.classifier.config.class_names
    out: dict[str, Any] = {"tiles_per_point": n, "scales": list(scales),
                           "mean_probability": {}}
    plain = None
    for name in names:
        row = []
        for scale in scales:
            if scale == 0.0:
                if plain is None:
                    images = generate_class_tiles(
                        pipe, None, n, None, s.steps, s.scheduler, seed=1,
                        batch_size=s.batch_size).images
                    plain = classifier_probabilities(pipe, images)
                probs = plain
            else:
                images = generate_class_tiles(
                    pipe, name, n, scale, s.steps, s.scheduler, seed=1,
                    batch_size=s.batch_size).images
                probs = classifier_probabilities(pipe, images)
            row.append(round(float(probs[:, known.index(name)].mean()), 4))
        out["mean_probability"][name] = row
    return out
