"""A class label for UNets with a class embedding (``class_labels``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .base import Condition, ConditionInputs, WindowIndices


class ClassLabelCondition(Condition):
    """The same class id for every window; its null form is ``null_label``.

    For a UNet trained with a class embedding and label dropout to a
    reserved null id (classifier-free guidance over the class).

    Parameters
    ----------
    label : int
        Class id given to the UNet.
    null_label : int
        The id the UNet was trained to read as "no class" (default 0).
    name : str
        How guidance terms refer to it (default ``label``).
    """

    kind = "class-label"

    def __init__(self, label: int, null_label: int = 0, name: str = "label"):
        for arg, value in (("label", label), ("null_label", null_label)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                    or value < 0:
                raise InputError(f"{arg}: must be an integer >= 0, got {value!r}")
        self.label = int(label)
        self.null_label = int(null_label)
        self.name = name

    def inputs(self, windows: WindowIndices, size: int, null: bool
               ) -> ConditionInputs:
        value = self.null_label if null else self.label
        return ConditionInputs(class_labels=np.full(len(windows), value, np.int64))

    def check_unet(self, config: Any, window: int) -> None:
        n = getattr(config, "num_class_embeds", None)
        if n is None:
            raise InputError(f"condition {self.name!r}: the UNet has no class "
                             "embedding (num_class_embeds is None)")
        for arg, value in (("label", self.label), ("null_label", self.null_label)):
            if value >= n:
                raise InputError(f"condition {self.name!r}: {arg} {value} is outside "
                                 f"the UNet's {n} class embeddings (0...{n - 1})")

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "label": self.label,
                "null_label": self.null_label}
