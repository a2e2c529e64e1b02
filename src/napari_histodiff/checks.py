"""Checks of scalar arguments shared by the pipelines, the CLI and the widgets.

``True`` is not a number of steps and ``np.float32(2.0)`` is a fine guidance
scale: these checks refuse booleans everywhere and accept numpy scalars.
Every error names the argument and the value.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import InputError


def check_int(value, argname: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an int; refuse bools, floats and values out of range."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise InputError(f"{argname}: must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{argname}: must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{argname}: must be an integer <= {maximum}, got {value}")
    return value


def check_number(value, argname: str, minimum: float | None = None) -> float:
    """``value`` as a finite float; refuse bools, strings, NaN and infinities."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{argname}: must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{argname}: must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{argname}: must be a number >= {minimum:g}, got {value:g}")
    return value
