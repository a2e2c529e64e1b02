"""How long a synthesis will take, said before it starts.

The estimate is windows x steps x seconds per window. Seconds per window are
measured once per model, device and precision (one warm-up call and a timed
call of the UNet on a batch of windows with both guidance branches, as a
guided step evaluates them) and cached for the session; the number of
windows comes from the strategy (random-shift's blended final steps evaluate
three grids each). The engine's own work is left out: it is small next to the
UNet on any device (see ``histodiff bench``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .strategies import RandomShift, Strategy, get_strategy

_MEASURED: dict[tuple[Any, ...], float] = {}


def seconds_per_window(pipe, batch: int = 8) -> float:
    """Measured seconds per guided window of ``pipe``'s UNet (cached)."""
    import torch

    unet = pipe.unet
    key = (id(unet), str(unet.device), str(unet.dtype), int(batch))
    if key in _MEASURED:
        return _MEASURED[key]
    size = pipe.card.latent_patch_size
    x = torch.zeros((2 * batch, unet.config.in_channels, size, size),
                    device=unet.device, dtype=unet.dtype)
    t = torch.full((2 * batch,), 500, device=unet.device, dtype=torch.long)
    with torch.no_grad():
        unet(x, t)  # warm-up: first calls pay for allocation and kernels
        if unet.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        unet(x, t)
        if unet.device.type == "cuda":
            torch.cuda.synchronize()
    value = (time.perf_counter() - start) / batch
    _MEASURED[key] = value
    return value


@dataclass
class RunEstimate:
    """What a run will cost: windows in all and seconds (from the measurement)."""

    windows: int
    seconds: float
    seconds_per_window: float

    def describe(self) -> str:
        """``about 2 min (1,200 windows at 0.1 s)`` for the status line."""
        s = self.seconds
        if s < 1:
            when = "under a second"
        elif s < 90:
            when = f"about {s:.0f} s"
        elif s < 5400:
            when = f"about {s / 60:.0f} min"
        else:
            when = f"about {s / 3600:.1f} h"
        return (f"{when} ({self.windows:,} windows at "
                f"{self.seconds_per_window:.3g} s)")


def estimate_run(pipe, shape: tuple[int, int], steps: int,
                 strategy: str | Strategy = "random-shift",
                 seconds: float | None = None) -> RunEstimate:
    """Estimate a synthesis of ``shape`` pixels with ``steps`` steps."""
    strat = get_strategy(strategy)
    f = pipe.card.vae_scale_factor
    h, w = -(-int(shape[0]) // f), -(-int(shape[1]) // f)
    per_step = strat.expected_windows_per_step(h, w, pipe.card.latent_patch_size)
    extra = 0
    if isinstance(strat, RandomShift):  # blended final steps: three grids each
        extra = 2 * min(strat.blend_steps, steps)
    windows = int(round(per_step * (steps + extra)))
    per_window = seconds_per_window(pipe) if seconds is None else seconds
    return RunEstimate(windows, windows * per_window, per_window)
