"""Tissue classes: the label ids a mask may hold, with names and colours.

Index 0 is always ``unknown``. It marks unlabelled pixels and doubles as the
null condition of classifier-free guidance (as in DiffInfinite): a mask that
is all zeros asks the model for tissue without saying which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, UnknownLabelsError
from ..hashing import row_blocks

UNKNOWN = "unknown"

# Colours for the common class names; others get a colour from PALETTE.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "unknown": (0, 0, 0),
    "background": (240, 240, 240),
    "tumor": (200, 40, 60),
    "tumour": (200, 40, 60),
    "stroma": (240, 150, 190),
    "necrosis": (120, 90, 40),
    "nuclei": (60, 60, 200),
    "dab": (150, 90, 30),
    "tissue": (230, 200, 180),
    "immune": (40, 160, 80),
    "fat": (250, 240, 150),
}
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
    (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
    (188, 189, 34), (23, 190, 207),
)  # fmt: skip


@dataclass(frozen=True)
class TissueClass:
    """One class of the segmentation mask.

    Parameters
    ----------
    index : int
        The label id in the mask.
    name : str
        Name shown to users (``tumor``, ``stroma``...).
    color : tuple of int
        RGB colour, 0-255, used for the mask layer and exports.
    """

    index: int
    name: str
    color: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "color": list(self.color)}

    @classmethod
    def from_dict(cls, data: dict) -> TissueClass:
        color = tuple(int(c) for c in data["color"])
        return cls(index=int(data["index"]), name=str(data["name"]), color=color)


class TissueClasses(Sequence[TissueClass]):
    """The ordered list of classes of a model: index ``i`` is label id ``i``.

    Parameters
    ----------
    classes : iterable of TissueClass
        Classes with indices 0..n-1 in order, index 0 named ``unknown``.
    """

    def __init__(self, classes: Iterable[TissueClass]):
        self._classes = tuple(classes)
        if not self._classes:
            raise InputError("classes: at least the 'unknown' class is required")
        for i, c in enumerate(self._classes):
            if c.index != i:
                raise InputError(
                    f"classes: class {c.name!r} has index {c.index}, expected {i}; "
                    "indices must run 0, 1, 2, ... in order"
                )
            if any(not 0 <= v <= 255 for v in c.color) or len(c.color) != 3:
                raise InputError(
                    f"classes: colour of {c.name!r} must be three values 0-255, "
                    f"got {c.color}"
                )
        if self._classes[0].name != UNKNOWN:
            raise InputError(
                f"classes: index 0 must be {UNKNOWN!r} (the null condition), "
                f"got {self._classes[0].name!r}"
            )
        names = [c.name for c in self._classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"classes: duplicate class names {dupes}")

    @classmethod
    def from_names(cls, names: Sequence[str] | str) -> TissueClasses:
        """Build classes from names, adding ``unknown`` at index 0 if absent.

        Parameters
        ----------
        names : sequence of str or str
            Class names, or one comma-separated string
            (``"unknown,tumor,stroma"``).
        """
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        names = [n for n in names if n]
        if any(not n.replace("_", "").replace("-", "").isalnum() for n in names):
            raise InputError(
                f"classes: names may hold letters, digits, '-' and '_' only, "
                f"got {names}"
            )
        if not names or names[0] != UNKNOWN:
            if UNKNOWN in names:
                raise InputError(
                    f"classes: {UNKNOWN!r} must come first (index 0), got {names}"
                )
            names = [UNKNOWN, *names]
        out = []
        spare = iter(PALETTE * (1 + len(names) // len(PALETTE)))
        for i, name in enumerate(names):
            color = NAMED_COLORS.get(name.lower()) or next(spare)
            out.append(TissueClass(i, name, color))
        return cls(out)

    def __getitem__(self, i):  # type: ignore[override]
        return self._classes[i]

    def __len__(self) -> int:
        return len(self._classes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TissueClasses) and self._classes == other._classes

    def __repr__(self) -> str:
        return f"TissueClasses({[c.name for c in self._classes]})"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._classes]

    def index_of(self, name: str) -> int:
        """Label id of a class name; an :class:`InputError` lists the names."""
        for c in self._classes:
            if c.name == name:
                return c.index
        raise InputError(f"class {name!r} is not one of this model's {self.names}")

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self._classes]

    @classmethod
    def from_list(cls, data: list[dict]) -> TissueClasses:
        return cls(TissueClass.from_dict(d) for d in data)

    def colormap(self) -> dict[int, tuple[float, float, float, float]]:
        """RGBA colours in 0-1 by label id, ``unknown`` transparent (for napari)."""
        cmap = {}
        for c in self._classes:
            alpha = 0.0 if c.index == 0 else 1.0
            cmap[c.index] = (*(v / 255 for v in c.color), alpha)
        return cmap

    def validate_mask(self, mask: np.ndarray, name: str = "mask") -> None:
        """Raise an :class:`InputError` if ``mask`` holds ids outside the classes.

        The message names every unknown id, so the user can repaint or remap.
        """
        bad: set[int] = set()
        count = 0
        box = [None, None, None, None]  # y0, y1, x0, x1 of the bad pixels
        for rows in row_blocks(mask.shape):  # blockwise: no canvas-sized copy
            block = mask[rows]
            if block.size and (block.min() < 0 or block.max() >= len(self)):
                wrong = (block < 0) | (block >= len(self))
                bad.update(int(i) for i in np.unique(block[wrong]))
                count += int(wrong.sum())
                ys, xs = np.nonzero(wrong.reshape(block.shape[0], -1)
                                    if block.ndim > 1 else wrong[None])
                y0 = (rows.start or 0) + int(ys.min())
                y1 = (rows.start or 0) + int(ys.max()) + 1
                x0, x1 = int(xs.min()), int(xs.max()) + 1
                box = [y0 if box[0] is None else min(box[0], y0),
                       y1 if box[1] is None else max(box[1], y1),
                       x0 if box[2] is None else min(box[2], x0),
                       x1 if box[3] is None else max(box[3], x1)]
        bad = sorted(bad)
        if bad:
            where = (f"{count} pixel{'s' if count != 1 else ''} in x "
                     f"{box[2]}-{box[3]}, y {box[0]}-{box[1]}")
            raise UnknownLabelsError(
                f"{name}: label ids {bad} are not classes of this model, which "
                f"knows {', '.join(f'{c.index}={c.name}' for c in self._classes)} "
                f"({where}). Repaint or remap those pixels (0 = unknown).",
                ids=bad, box=box, pixels=count)

