"""Measurements of synthetic images: mask fidelity, seams, and realism and
privacy (FID, KID, precision/recall, density/coverage, authenticity, the
data-copying test).

``measure_realism`` (:mod:`.measure`) and ``MetricsReport``
(:mod:`.report`) are loaded on first use, so importing this package imports
neither torch nor scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MetricsReport", "measure_realism"]


def __getattr__(name: str) -> Any:
    if name == "measure_realism":
        from .measure import measure_realism

        return measure_realism
    if name == "MetricsReport":
        from .report import MetricsReport

        return MetricsReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
