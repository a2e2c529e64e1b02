"""The figures of one realism measurement, as a dataclass, JSON and Markdown.

:func:`napari_histodiff.metrics.measure.measure_realism` fills a
:class:`MetricsReport`; the CLI prints :meth:`MetricsReport.to_json` and
writes :meth:`MetricsReport.to_markdown`. Every report records the feature
extractor (figures from different extractors are not comparable), the seed
and the tile counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

#: Version of the report's layout (bump when a key changes meaning).
REPORT_FORMAT = 1


@dataclass
class MetricsReport:
    """Figures of synthetic tiles against real (and training) tiles.

    Attributes
    ----------
    extractor : dict
        The feature extractor: ``name``, ``dimensions`` and what identifies it
        (seed, weights file and SHA-256).
    seed : int
        Seed of the bootstrap, KID subsets, k-means and tile draws.
    tile_size, min_tissue : int, float
        How images were tiled.
    counts : dict
        Per set (``real``, ``synthetic``, ``train``, ``heldout``): tiles,
        images, grid positions looked at.
    fid, fid_ci, fid_bootstrap_bias, kid, kid_std, kid_ci : float, list
        :func:`.distribution.fid_kid`.
    precision, recall, density, coverage, k : float, int
        :func:`.distribution.precision_recall_density_coverage`.
    privacy : dict or None
        With a training set: ``authenticity``, ``authenticity_heldout``,
        ``C_T`` and its cells, the nearest-neighbour distances and ratio,
        ``heldout_source`` (which set served as held-out real).
    closest_pairs : list of dict
        Synthetic tiles nearest to a training tile: ``synthetic`` and
        ``train`` (image and position), ``distance``.
    seams : dict or None
        Mean seam score of the synthetic and of the real images at one grid.
    mask_fidelity : dict or None
        Mean Dice of the labeller on the synthetic images against their masks.
    spectral : dict or None
        :func:`.spectral.spectral_comparison` of the real and synthetic images.
    c2st : dict or None
        The classifier two-sample test (:mod:`.c2st`), when asked for.
    seconds : dict
        Wall time of the parts.
    """

    extractor: dict[str, Any]
    seed: int
    tile_size: int
    min_tissue: float
    counts: dict[str, dict[str, int]]
    fid: float
    fid_ci: list[float] | None
    fid_bootstrap_bias: float | None
    kid: float
    kid_std: float
    kid_ci: list[float] | None
    kid_subset_size: int
    n_bootstrap: int
    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    privacy: dict[str, Any] | None = None
    closest_pairs: list[dict[str, Any]] = field(default_factory=list)
    seams: dict[str, Any] | None = None
    mask_fidelity: dict[str, Any] | None = None
    spectral: dict[str, Any] | None = None
    c2st: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: the tiles of the closest pairs (synthetic, training); not serialised
    pair_tiles: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Every figure as JSON-friendly values (NaN becomes None)."""
        out = {"format": REPORT_FORMAT}
        for f in fields(self):
            if f.name != "pair_tiles":
                out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_json(self, indent: int = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def sheet_image(self, columns: int = 4, scale: int = 2):
        """The closest pairs as a PIL image, or None without a training set."""
        from .privacy import pairs_image

        if self.pair_tiles is None or not self.closest_pairs:
            return None
        pairs = [(i, i, p["distance"]) for i, p in enumerate(self.closest_pairs)]
        syn, train = self.pair_tiles
        return pairs_image(pairs, syn, train, columns=columns, scale=scale)

    def rows(self) -> list[tuple[str, str]]:
        """``(figure, value)`` rows of the summary table."""
        rows = [("features", _extractor_label(self.extractor)),
                ("tiles (real / synthetic)",
                 f"{self.counts['real']['tiles']} / "
                 f"{self.counts['synthetic']['tiles']} of {self.tile_size} px"),
                ("FID", _with_ci(self.fid, self.fid_ci, ".2f")),
                ("KID", _with_ci(self.kid, self.kid_ci, ".4f")),
                (f"precision (k={self.k})", f"{self.precision:.3f}"),
                (f"recall (k={self.k})", f"{self.recall:.3f}"),
                ("density", f"{self.density:.3f}"),
                ("coverage", f"{self.coverage:.3f}")]
        p = self.privacy
        if p:
            rows += [("authenticity (synthetic)", f"{p['authenticity']:.3f}"),
                     ("authenticity (held-out real)",
                      f"{p['authenticity_heldout']:.3f}"),
                     ("data-copying C_T", f"{p['C_T']:.2f} ({p['cells_used']} of "
                      f"{p['cells']} cells)"),
                     ("NN distance ratio synthetic / held-out",
                      _fmt(p["nn_distance_ratio"], ".3f"))]
        if self.seams:
            rows.append(("seam score synthetic / real (period "
                         f"{self.seams['period']})",
                         f"{_fmt(self.seams['synthetic'], '.3f')} / "
                         f"{_fmt(self.seams['real'], '.3f')}"))
        if self.mask_fidelity:
            rows.append(("mask fidelity (mean Dice)",
                         _fmt(self.mask_fidelity["mean_dice"], ".3f")))
        if self.spectral:
            for key, value in _spectral_rows(self.spectral):
                rows.append((key, value))
        if self.c2st:
            rows.append(("C2ST AUC real vs synthetic", _c2st_label(self.c2st)))
            if isinstance(self.c2st.get("floor"), dict):
                rows.append(("C2ST AUC real vs real (floor)",
                             _c2st_label(self.c2st["floor"])))
        return rows

    def to_markdown(self) -> str:
        """A two-column Markdown table of :meth:`rows`, with the seed."""
        lines = ["| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.rows()]
        lines.append(f"| seed | {self.seed} |")
        return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _with_ci(value: float, ci: list[float] | None, spec: str) -> str:
    text = _fmt(value, spec)
    if ci:
        text += f" [{_fmt(ci[0], spec)}, {_fmt(ci[1], spec)}]"
    return text


def _extractor_label(info: dict[str, Any]) -> str:
    name = str(info.get("name"))
    if "seed" in info:
        name += f" (seed {info['seed']})"
    if "sha256" in info:
        name += f" ({str(info['sha256'])[:12]})"
    return f"{name}, {info.get('dimensions')} dims"


def _spectral_rows(spectral: dict[str, Any]) -> list[tuple[str, str]]:
    """Ratios of the spectral comparison (whatever numbers it holds at the top)."""
    rows = []
    for key, value in spectral.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((f"spectral: {key}", _fmt(float(value), ".3f")))
    return rows


def _c2st_label(c2st: dict[str, Any]) -> str:
    for key in ("auc_mean", "auc", "mean_auc"):
        if isinstance(c2st.get(key), int | float):
            text = _fmt(float(c2st[key]), ".3f")
            for spread in ("auc_std", "std"):
                if isinstance(c2st.get(spread), int | float):
                    text += f" +- {_fmt(float(c2st[spread]), '.3f')}"
                    break
            return text
    return "see JSON"
