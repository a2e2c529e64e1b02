"""A classifier two-sample test: can a small CNN tell synthetic tiles from real?

Lopez-Paz and Oquab (2017, "Revisiting classifier two-sample tests"): if a
classifier trained to separate two samples does no better than chance on
held-out data, the samples are hard to tell apart; its held-out ROC AUC
measures how far apart they are (0.5: indistinguishable to this classifier;
1.0: every held-out synthetic tile scores above every real one).

How it is done here (:func:`classifier_two_sample_test`):

1. **Tiles.** Square tiles of ``tile_size`` pixels are cut at ``stride``
   from every image, never across a block or image border (below).
2. **Disjoint split.** Train and test tiles never overlap. With several
   images in both sets (``split="images"``, the default then), whole images
   go to the test set. With single images (``split="blocks"``), each image is
   cut into a grid of ``block_size`` blocks and whole blocks go to the test
   set; tiles lie inside one block, so no test tile shares a pixel with a
   training tile. When the two sets are paired (the same number of images
   with the same shapes, as when each synthetic image was made from the mask
   of the real image of the same index), the same blocks or image indices are
   held out in both, so the test tiles of the two classes show the same
   places of the tissue. About ``test_fraction`` of the blocks (or images) is
   held out, at least one; which ones is drawn from the seed, so each seed
   also tests another part of the data.
3. **Classifier.** A small CNN (:func:`make_classifier`, about 15,000
   parameters at the default ``width=8``: four 3x3 convolutions, the first at
   full resolution so that pixel-level texture such as speckle is visible to
   it, then global average pooling and one linear output) is trained with
   Adam on balanced batches, each tile turned by a random one of the eight
   flips and 90-degree rotations.
4. **Score.** The held-out tiles are scored by the mean logit over the eight
   flips and rotations, and the ROC AUC of synthetic (label 1) against real
   (label 0) is taken with :func:`sklearn.metrics.roc_auc_score`. The AUC is
   reported as it is: below 0.5 means the classifier learned something about
   the training tiles that is reversed on the held-out ones (content, not
   realism), a sign that the test says nothing at that size of data.

This is repeated for every seed (split, initial weights, batches and
augmentation all come from the seed); the result holds the mean AUC, its
spread and the per-seed values. On the CPU the same seeds, settings and
thread count give the same figures.

The **real-vs-real floor** (``floor_images=``, a second set of real images,
e.g. another region of the same slide) runs the same test between the real
set and that one. Real images differ in content, so the floor is usually
above 0.5: a synthetic set cannot be expected to score below it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..checks import check_int, check_number
from ..errors import InputError
from ._inputs import check_rgb_images

#: Fewest tiles of each class in the training and in the test part.
MIN_TRAIN_TILES = 8
MIN_TEST_TILES = 4
SPLITS = ("auto", "blocks", "images")


@dataclass(frozen=True)
class SeedResult:
    """The test of one seed.

    Attributes
    ----------
    seed : int
    auc : float
        Held-out ROC AUC, synthetic (1) against real (0).
    train_tiles, test_tiles : dict
        Tile counts by class label.
    test_parts : list
        What was held out: ``[image index, block row, block column]`` per
        block (``split="blocks"``) or ``[image index]`` per image, of the
        first set (the second set's are the same when the sets are paired).
    """

    seed: int
    auc: float
    train_tiles: dict[str, int]
    test_tiles: dict[str, int]
    test_parts: list[list[int]]


@dataclass(frozen=True)
class C2STResult:
    """The outcome of :func:`classifier_two_sample_test`.

    Attributes
    ----------
    auc : float
        Mean held-out AUC over the seeds.
    auc_std : float
        Standard deviation over the seeds (``ddof=1``; 0 for one seed).
    auc_min, auc_max : float
    per_seed : tuple of SeedResult
    counts : dict
        ``images`` by class label and the ``train_tiles`` / ``test_tiles``
        of each class, summed over the seeds' runs divided by their number
        (they differ between seeds only when blocks hold different numbers
        of tiles).
    settings : dict
        Every setting of the test, enough to repeat it.
    labels : (str, str)
        The two classes: label 0 (``real``) and label 1 (``synthetic``, or
        ``floor`` for the floor test).
    floor : C2STResult or None
        The real-vs-real floor test, when ``floor_images`` was given.
    """

    auc: float
    auc_std: float
    auc_min: float
    auc_max: float
    per_seed: tuple[SeedResult, ...]
    counts: dict[str, Any]
    settings: dict[str, Any]
    labels: tuple[str, str] = ("real", "synthetic")
    floor: C2STResult | None = field(default=None)

    @property
    def per_seed_auc(self) -> list[float]:
        """The AUC of each seed, in the order of ``settings['seeds']``."""
        return [r.auc for r in self.per_seed]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (for JSON)."""
        out = {
            "auc": self.auc, "auc_std": self.auc_std, "auc_min": self.auc_min,
            "auc_max": self.auc_max, "per_seed_auc": self.per_seed_auc,
            "per_seed": [asdict(r) for r in self.per_seed],
            "counts": self.counts, "settings": self.settings,
            "labels": list(self.labels),
        }
        if self.floor is not None:
            out["floor"] = self.floor.to_dict()
        return out


def make_classifier(width: int = 8):
    """The small CNN of the test: (N, 3, T, T) in [-1, 1] -> (N,) logits.

    Four 3x3 convolutions with ReLU (``width``, 2x, 4x, 4x channels), the
    first three each followed by 2x2 max pooling, then global average
    pooling and a linear output. At ``width=8``: 15,313 parameters.
    """
    import torch.nn as nn

    w = int(width)
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1), nn.Flatten(0),
    )


def classifier_two_sample_test(
    real_images: Sequence[np.ndarray],
    synthetic_images: Sequence[np.ndarray],
    *,
    tile_size: int = 64,
    seeds: Sequence[int] = (0, 1, 2),
    floor_images: Sequence[np.ndarray] | None = None,
    stride: int | None = None,
    block_size: int | None = None,
    split: str = "auto",
    test_fraction: float = 0.25,
    train_steps: int = 300,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    width: int = 8,
    device: str = "cpu",
) -> C2STResult:
    """Train a small CNN to tell synthetic tiles from real; held-out ROC AUC.

    See the module docstring for the method.

    Parameters
    ----------
    real_images, synthetic_images : sequence of np.ndarray
        Lists of (H, W, 3) uint8 images; sizes may differ.
    tile_size : int
        Side of the square tiles in pixels (>= 8).
    seeds : sequence of int
        One test per seed (split, weights, batches, augmentation).
    floor_images : sequence of np.ndarray, optional
        A second set of real images: the same test of ``real_images`` against
        it is returned as ``floor`` (the real-vs-real floor).
    stride : int, optional
        Step between tile origins inside a block or image; default
        ``tile_size // 8`` (overlapping tiles inside one part only).
    block_size : int, optional
        Side of the blocks of ``split="blocks"``; default ``2 * tile_size``.
    split : {"auto", "blocks", "images"}
        ``images``: whole images are held out (needs at least two images in
        each set); ``blocks``: whole blocks of each image; ``auto``:
        ``images`` when both sets have at least two images, else ``blocks``.
    test_fraction : float
        Fraction of the blocks (or images) held out, in (0, 1); at least one.
    train_steps : int
        Optimiser steps per seed.
    batch_size : int
        Tiles per step, half of each class (even, >= 2).
    learning_rate : float
        Adam's learning rate.
    width : int
        Channels of the CNN's first layer (see :func:`make_classifier`).
    device : str
        Torch device; results are deterministic on ``cpu``.

    Returns
    -------
    C2STResult

    Raises
    ------
    InputError
        Bad images (naming the set and the image index), bad settings, or too
        few tiles in a part (naming the count and the minimum).
    """
    settings = _check_settings(tile_size, seeds, stride, block_size, split,
                               test_fraction, train_steps, batch_size,
                               learning_rate, width, device)
    real = check_rgb_images(real_images, "real_images", settings["tile_size"])
    synth = check_rgb_images(synthetic_images, "synthetic_images",
                             settings["tile_size"])
    result = _run(real, synth, ("real", "synthetic"),
                  ("real_images", "synthetic_images"), settings)
    if floor_images is not None:
        other = check_rgb_images(floor_images, "floor_images", settings["tile_size"])
        floor = _run(real, other, ("real", "floor"), ("real_images", "floor_images"),
                     settings)
        result = C2STResult(**{**result.__dict__, "floor": floor})
    return result


# -- settings -----------------------------------------------------------------------
def _check_settings(tile_size, seeds, stride, block_size, split, test_fraction,
                    train_steps, batch_size, learning_rate, width, device
                    ) -> dict[str, Any]:
    tile = check_int(tile_size, "tile_size", minimum=8)
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or \
            len(seeds) == 0:
        raise InputError(f"seeds: expected a non-empty list of integers, got "
                         f"{seeds!r:.80}")
    seeds = [check_int(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds: each seed once, got {seeds}")
    stride = max(1, tile // 8) if stride is None else check_int(stride, "stride",
                                                               minimum=1)
    block = 2 * tile if block_size is None else check_int(block_size, "block_size",
                                                         minimum=tile)
    if split not in SPLITS:
        raise InputError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    frac = check_number(test_fraction, "test_fraction", minimum=0)
    if not 0 < frac < 1:
        raise InputError(f"test_fraction: must be between 0 and 1, got {frac:g}")
    batch = check_int(batch_size, "batch_size", minimum=2)
    if batch % 2:
        raise InputError(f"batch_size: must be even (half of each class), got "
                         f"{batch}")
    lr = check_number(learning_rate, "learning_rate", minimum=0)
    if lr == 0:
        raise InputError("learning_rate: must be > 0, got 0")
    if not isinstance(device, str):
        raise InputError(f"device: expected a torch device name, got {device!r}")
    return {"tile_size": tile, "seeds": seeds, "stride": stride,
            "block_size": block, "split": split, "test_fraction": frac,
            "train_steps": check_int(train_steps, "train_steps", minimum=1),
            "batch_size": batch, "learning_rate": lr,
            "width": check_int(width, "width", minimum=1), "device": device,
            "augmentation": "8 flips/rotations (train: random; test: mean logit)",
            "classifier": "make_classifier", "auc": "sklearn roc_auc_score"}


# -- the split ----------------------------------------------------------------------
def _positions(y0: int, y1: int, x0: int, x1: int, tile: int, stride: int
               ) -> list[tuple[int, int]]:
    """Tile origins inside the part [y0, y1) x [x0, x1)."""
    return [(y, x) for y in range(y0, y1 - tile + 1, stride)
            for x in range(x0, x1 - tile + 1, stride)]


def _blocks(shape: tuple[int, ...], block: int, tile: int
            ) -> list[tuple[int, int, int, int, int, int]]:
    """Blocks of an image that hold at least one tile:
    ``(row, col, y0, y1, x0, x1)``."""
    h, w = shape[:2]
    out = []
    for r, y0 in enumerate(range(0, h, block)):
        for c, x0 in enumerate(range(0, w, block)):
            y1, x1 = min(y0 + block, h), min(x0 + block, w)
            if y1 - y0 >= tile and x1 - x0 >= tile:
                out.append((r, c, y0, y1, x0, x1))
    return out


def _n_test(n: int, frac: float) -> int:
    return min(n - 1, max(1, int(round(frac * n))))


def _split_images(images, rng, frac, tile, stride, test_idx=None):
    """Tiles ``(image, y, x)`` of train and test, whole images held out."""
    n = len(images)
    if test_idx is None:
        test_idx = sorted(int(i) for i in rng.permutation(n)[:_n_test(n, frac)])
    train, test = [], []
    for i, im in enumerate(images):
        tiles = [(i, y, x) for y, x in _positions(0, im.shape[0], 0, im.shape[1],
                                                  tile, stride)]
        (test if i in test_idx else train).extend(tiles)
    return train, test, test_idx


def _split_blocks(images, rng, frac, tile, stride, block, argname, chosen=None):
    """Tiles ``(image, y, x)`` of train and test, whole blocks held out.

    ``chosen``: the held-out ``(image, row, col)`` of a paired set to reuse.
    """
    train, test, parts = [], [], []
    for i, im in enumerate(images):
        blocks = _blocks(im.shape, block, tile)
        if len(blocks) < 2:
            raise InputError(
                f"{argname}[{i}]: shape {im.shape} holds {len(blocks)} block of "
                f"{block} px, at least 2 needed to hold one out; give a smaller "
                "block_size or tile_size, larger images, or several images "
                "(split='images')")
        if chosen is None:
            k = _n_test(len(blocks), frac)
            held = {(blocks[j][0], blocks[j][1]) for j in rng.permutation(
                len(blocks))[:k]}
        else:
            held = {(r, c) for j, r, c in chosen if j == i}
        for r, c, y0, y1, x0, x1 in blocks:
            tiles = [(i, y, x) for y, x in _positions(y0, y1, x0, x1, tile, stride)]
            if (r, c) in held:
                test.extend(tiles)
                parts.append([i, r, c])
            else:
                train.extend(tiles)
    return train, test, parts


def _paired(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b,
                                                                      strict=True))


def split_tiles(sets: tuple[list[np.ndarray], list[np.ndarray]],
                argnames: tuple[str, str], settings: dict[str, Any], seed: int
                ) -> tuple[list[list], list[list], list[list[int]], str]:
    """Disjoint train and test tiles of both sets for one seed.

    Returns ``(train, test, test_parts, mode)``: ``train[s]`` and ``test[s]``
    are the ``(image, y, x)`` tile origins of set ``s``; ``mode`` is the
    split used (``blocks`` or ``images``).
    """
    tile, stride, frac = (settings["tile_size"], settings["stride"],
                          settings["test_fraction"])
    mode = settings["split"]
    if mode == "auto":
        mode = "images" if min(len(s) for s in sets) >= 2 else "blocks"
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2017]))
    paired = _paired(*sets)
    train, test, held = [], [], None
    for s, (images, argname) in enumerate(zip(sets, argnames, strict=True)):
        reuse = held if (s == 1 and paired) else None
        if mode == "images":
            if len(images) < 2:
                raise InputError(
                    f"{argname}: {len(images)} image, split='images' needs at "
                    "least 2 (whole images are held out); use split='blocks'")
            tr, te, idx = _split_images(
                images, rng, frac, tile, stride,
                None if reuse is None else [p[0] for p in reuse])
            parts = [[i] for i in idx]
        else:
            tr, te, parts = _split_blocks(images, rng, frac, tile, stride,
                                          settings["block_size"], argname, reuse)
        if s == 0:
            held = parts
        train.append(tr)
        test.append(te)
        for part, tiles, least in (("training", tr, MIN_TRAIN_TILES),
                                   ("test", te, MIN_TEST_TILES)):
            if len(tiles) < least:
                raise InputError(
                    f"{argname}: {len(tiles)} {part} tiles of {tile} px "
                    f"(stride {stride}, split {mode!r}), at least {least} needed; "
                    "give larger or more images, or a smaller tile_size or "
                    "stride")
    return train, test, held, mode


# -- training -----------------------------------------------------------------------
def _stack(images: list[np.ndarray], tiles: list[tuple[int, int, int]], tile: int):
    """Tiles as a float32 tensor (N, 3, T, T) in [-1, 1]."""
    import torch

    arr = np.stack([images[i][y:y + tile, x:x + tile] for i, y, x in tiles])
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    return x.float() / 127.5 - 1.0


def _dihedral(x, k: int):
    """The ``k``-th (0-7) of the eight flips and 90-degree rotations."""
    import torch

    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _augment(x, g):
    """Each tile of ``x`` turned by a random one of the eight symmetries."""
    import torch

    ks = torch.randint(0, 8, (x.shape[0],), generator=g)
    out = torch.empty_like(x)
    for k in range(8):
        sel = ks == k
        if bool(sel.any()):
            out[sel] = _dihedral(x[sel], k)
    return out


def _scores(model, x, batch: int = 256) -> np.ndarray:
    """Mean logit over the eight symmetries, in batches."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            out.append(torch.stack([model(_dihedral(xb, k)) for k in range(8)]
                                   ).mean(0))
    return torch.cat(out).cpu().numpy().astype(np.float64)


def _train_and_score(xs_train, xs_test, settings, seed: int) -> float:
    import torch
    from sklearn.metrics import roc_auc_score

    dev = torch.device(settings["device"])
    half = settings["batch_size"] // 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
        model = make_classifier(settings["width"]).to(dev)
    g = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, 2]).generate_state(1)[0]))
    opt = torch.optim.Adam(model.parameters(), lr=settings["learning_rate"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    target = torch.cat([torch.zeros(half), torch.ones(half)]).to(dev)
    model.train()
    for _ in range(settings["train_steps"]):
        parts = [x[torch.randint(0, x.shape[0], (half,), generator=g)]
                 for x in xs_train]
        xb = _augment(torch.cat(parts), g).to(dev)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), target)
        loss.backward()
        opt.step()
    model.eval()
    s0, s1 = (_scores(model, x.to(dev)) for x in xs_test)
    labels = np.concatenate([np.zeros(len(s0)), np.ones(len(s1))])
    return float(roc_auc_score(labels, np.concatenate([s0, s1])))


def _run(a: list[np.ndarray], b: list[np.ndarray], labels: tuple[str, str],
         argnames: tuple[str, str], settings: dict[str, Any]) -> C2STResult:
    tile = settings["tile_size"]
    rows, mode = [], settings["split"]
    for seed in settings["seeds"]:
        train, test, parts, mode = split_tiles((a, b), argnames, settings, seed)
        xs_train = [_stack(imgs, t, tile) for imgs, t in zip((a, b), train,
                                                             strict=True)]
        xs_test = [_stack(imgs, t, tile) for imgs, t in zip((a, b), test,
                                                            strict=True)]
        auc = _train_and_score(xs_train, xs_test, settings, seed)
        rows.append(SeedResult(
            seed=seed, auc=auc,
            train_tiles={labels[0]: len(train[0]), labels[1]: len(train[1])},
            test_tiles={labels[0]: len(test[0]), labels[1]: len(test[1])},
            test_parts=parts))
    aucs = np.array([r.auc for r in rows])
    counts = {
        "images": {labels[0]: len(a), labels[1]: len(b)},
        "train_tiles": {k: _mean_count(rows, "train_tiles", k) for k in labels},
        "test_tiles": {k: _mean_count(rows, "test_tiles", k) for k in labels},
    }
    return C2STResult(
        auc=float(aucs.mean()),
        auc_std=float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
        auc_min=float(aucs.min()), auc_max=float(aucs.max()),
        per_seed=tuple(rows), counts=counts,
        settings={**settings, "split_used": mode}, labels=labels)


def _mean_count(rows: list[SeedResult], key: str, label: str) -> float | int:
    values = [getattr(r, key)[label] for r in rows]
    mean = sum(values) / len(values)
    return int(mean) if math.isclose(mean, round(mean)) else mean
