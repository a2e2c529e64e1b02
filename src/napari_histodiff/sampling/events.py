"""Events a synthesis reports while it runs.

A consumer (the CLI progress bar, the napari widget) iterates over the
engine's events; every event is a moment where it may cancel. Regions are
``(y0, y1, x0, x1)`` in pixel coordinates of the output image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Region = tuple[int, int, int, int]


@dataclass
class Event:
    """Base class of engine events."""


@dataclass
class StartEvent(Event):
    """The canvas is ready; ``total_steps`` steps are to run."""

    total_steps: int
    windows_per_step: float
    shape: tuple[int, int]


@dataclass
class WindowsEvent(Event):
    """A batch of windows went through the UNet."""

    step: int
    done: int
    total: int


@dataclass
class StepEvent(Event):
    """A denoising step finished over the whole canvas.

    ``preview`` in the store now holds the model's current estimate of the
    clean image in ``regions``.
    """

    step: int
    total_steps: int
    timestep: int
    regions: list[Region] = field(default_factory=list)
    windows: int = 0


@dataclass
class RegionDoneEvent(Event):
    """Final pixels of ``region`` are written to ``image``."""

    region: Region


@dataclass
class FinishedEvent(Event):
    """The synthesis completed; ``image`` holds the result."""

    steps: int
    windows: int
    seconds: float
    unet_seconds: float


@dataclass
class CancelledEvent(Event):
    """The run stopped on request after completing ``step`` steps."""

    step: int
