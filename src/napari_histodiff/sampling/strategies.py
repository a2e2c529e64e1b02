"""Sampling strategies: which windows the UNet sees at each denoising step.

Four strategies share one interface (:class:`Strategy`):

``random-shift`` (default)
    At every step a non-overlapping window grid is shifted by a fresh
    offset. Every pixel gets exactly one model output per step; all windows
    of a step are batched; the scheduler then steps the whole canvas, so
    multistep solvers work unchanged. Window borders move every step, so no
    seam can form. At most (ceil(H/p)+1) x (ceil(W/p)+1) windows a step.
    The offsets follow a randomly started low-discrepancy sequence rather
    than independent draws, so that no two nearby steps (above all the last
    few, which set the fine detail) put their window borders in almost the
    same place; see :class:`RandomShift`.
``tiled``
    A fixed grid: the cheapest baseline, and it shows seams.
``multidiffusion``
    Overlapping windows at a stride, outputs averaged (MultiDiffusion).
``diffinfinite``
    The released DiffInfinite sampler as the reference: per-pixel step
    counters, one window at a time centred on a random least-advanced pixel,
    DDIM steps (see :mod:`.diffinfinite`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .windows import Window, blend_weight, grid_windows


@dataclass(frozen=True)
class StepPlan:
    """The windows of one denoising step and how their outputs combine.

    ``overlapping`` False: every pixel lies in exactly one window, whose
    output it takes. True: outputs are averaged, each window weighted by
    ``weight`` ((size, size); None = uniform).
    """

    windows: list[Window]
    overlapping: bool = False
    weight: np.ndarray | None = None


class Strategy:
    """Base class. ``grid`` strategies produce windows per step (see engine)."""

    name = "abstract"
    #: windows of one step may overlap, outputs are averaged
    overlapping = False

    def plan(self, step: int, num_steps: int, height: int, width: int, size: int,
             seed: int | None = None) -> StepPlan:
        """The :class:`StepPlan` of step ``step`` of ``num_steps``."""
        return StepPlan(self.windows(step, height, width, size, seed),
                        self.overlapping)

    def windows(self, step: int, height: int, width: int, size: int,
                seed: int | None = None) -> list[Window]:
        """The windows of denoising step ``step`` on a ``height`` x ``width``
        canvas.

        ``seed`` is the run's seed: a strategy that moves its windows derives
        them from ``(seed, step)`` alone, so a step's windows do not depend
        on which steps were computed before it.
        """
        raise NotImplementedError

    def expected_windows_per_step(self, height: int, width: int, size: int) -> float:
        raise NotImplementedError

    def settings(self) -> dict:
        return {"strategy": self.name}


#: Steps of the R2 sequence (Roberts 2018): 1/g and 1/g**2 for the plastic
#: number g, the 2-D generalisation of the golden ratio.
_PLASTIC = 1.324717957244746
R2_STEPS = np.array([1 / _PLASTIC, 1 / _PLASTIC**2])


class RandomShift(Strategy):
    """Non-overlapping grid shifted by an offset in [0, p) that changes each step.

    The offset of step ``k`` is ``floor(p * frac(u + k * a))`` per axis, with
    ``u`` uniform random per run (from ``seed``) and ``a`` the R2 steps
    (:data:`R2_STEPS`). Each axis so runs through an irrational rotation:
    the offsets are spread evenly over [0, p) and consecutive steps are
    always far apart (about 0.25 p and 0.43 p), where independent draws
    sometimes give several late steps nearly the same grid. A model whose
    outputs differ slightly from window to window then imprints those
    borders; spreading them averages that out.

    The last ``blend_steps`` steps are different. Their model outputs go
    into the image almost unchanged, so window borders at those steps would
    show (with the demo model the image's step across the last grid's lines
    was 1.3 times the step elsewhere, and 1.18 for the step before; 1.0 for
    all earlier grids). Those steps evaluate three grids, offset by thirds of
    a window on both axes, and blend them with weights that fall to zero at
    every window's edge (:func:`.windows.blend_weight`): each pixel is at
    least a sixth of a window inside one of the three, and the blend is
    continuous across every border. They cost three times the windows of a
    plain step.

    Parameters
    ----------
    blend_steps : int
        Final steps that blend three grids (0: none).
    """

    name = "random-shift"

    def __init__(self, blend_steps: int = 2):
        if int(blend_steps) != blend_steps or blend_steps < 0:
            raise InputError(f"blend_steps: must be an integer >= 0, got "
                             f"{blend_steps!r}")
        self.blend_steps = int(blend_steps)

    def offsets(self, step: int, size: int, seed: int | None) -> tuple[int, int]:
        """Grid offset ``(oy, ox)`` of step ``step`` for windows of ``size``."""
        start = np.random.default_rng(np.random.SeedSequence([
            0 if seed is None else int(seed), 7])).random(2)
        u = np.mod(start + int(step) * R2_STEPS, 1.0)
        oy, ox = (min(int(v), size - 1) for v in np.floor(u * size))
        return oy, ox

    def windows(self, step, height, width, size, seed=None):
        oy, ox = self.offsets(step, size, seed)
        return grid_windows(height, width, size, oy, ox)

    def plan(self, step, num_steps, height, width, size, seed=None):
        if step < num_steps - self.blend_steps:
            return StepPlan(self.windows(step, height, width, size, seed))
        oy, ox = self.offsets(step, size, seed)
        windows = []
        for j in range(3):  # thirds: (0, 0), (1/3, 2/3), (2/3, 1/3) of a window
            dy, dx = (j * size) // 3, ((2 * j) % 3 * size) // 3
            windows += grid_windows(height, width, size, (oy + dy) % size,
                                    (ox + dx) % size)
        return StepPlan(windows, overlapping=True, weight=blend_weight(size))

    def settings(self):
        return {"strategy": self.name, "blend_steps": self.blend_steps}

    def expected_windows_per_step(self, height, width, size):
        def axis(n):  # mean over offsets of ceil((n + o) / p)
            return np.mean([math.ceil((n + o) / size) for o in range(size)])

        return float(axis(height) * axis(width))


class Tiled(Strategy):
    """A fixed non-overlapping grid from the top-left corner."""

    name = "tiled"

    def windows(self, step, height, width, size, seed=None):
        return grid_windows(height, width, size)

    def expected_windows_per_step(self, height, width, size):
        return float(math.ceil(height / size) * math.ceil(width / size))


class MultiDiffusion(Strategy):
    """Overlapping windows at ``stride``, model outputs averaged."""

    name = "multidiffusion"
    overlapping = True

    def __init__(self, stride: int | None = None, stride_fraction: float = 0.5):
        if stride is not None and stride < 1:
            raise InputError(f"stride: must be >= 1, got {stride}")
        if not 0 < stride_fraction <= 1:
            raise InputError(
                f"stride_fraction: must be in (0, 1], got {stride_fraction}"
            )
        self.stride = stride
        self.stride_fraction = stride_fraction

    def _stride(self, size: int) -> int:
        s = self.stride or max(1, int(round(size * self.stride_fraction)))
        if s > size:
            raise InputError(f"stride: {s} is larger than the window ({size}); "
                             "windows would leave gaps")
        return s

    def windows(self, step, height, width, size, seed=None):
        return grid_windows(height, width, size, stride=self._stride(size))

    def expected_windows_per_step(self, height, width, size):
        return float(len(self.windows(0, height, width, size, None)))

    def settings(self):
        return {"strategy": self.name, "stride": self.stride,
                "stride_fraction": self.stride_fraction}


class DiffInfinite(Strategy):
    """Marker for the sequential DiffInfinite sampler (see :mod:`.diffinfinite`)."""

    name = "diffinfinite"

    def expected_windows_per_step(self, height, width, size):
        # Measured on random canvases: about 2.2x the windows of tiling.
        return 2.2 * Tiled().expected_windows_per_step(height, width, size)


STRATEGIES = {
    cls.name: cls for cls in (RandomShift, Tiled, MultiDiffusion, DiffInfinite)
}
DEFAULT_STRATEGY = RandomShift.name


def get_strategy(name: str | Strategy, **options) -> Strategy:
    """A strategy by name (``random-shift``, ``tiled``, ``multidiffusion``,
    ``diffinfinite``); ``options`` go to its constructor (``stride`` of
    multidiffusion, ``blend_steps`` of random-shift); None means default."""
    if isinstance(name, Strategy):
        return name
    if name not in STRATEGIES:
        raise InputError(
            f"strategy: {name!r} is not one of {', '.join(STRATEGIES)}"
        )
    cls = STRATEGIES[name]
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in options:
        if key not in accepted:
            owners = [n for n, c in STRATEGIES.items()
                      if key in inspect.signature(c.__init__).parameters]
            raise InputError(f"strategy: {key} only applies to "
                             f"{' or '.join(owners) or 'no strategy'}")
    return cls(**options)


def batched(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
