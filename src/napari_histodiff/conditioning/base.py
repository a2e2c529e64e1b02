"""What a condition hands the UNet for a batch of windows.

A condition is one input the model is conditioned on: the tissue mask, a
class label, the tokens of a prompt. For every batch of windows the
denoiser asks each condition for its :class:`ConditionInputs`, in its
conditional form or in its null form (what classifier-free guidance
compares against: the all-unknown mask, the null class, the empty or the
negative prompt). A condition contributes any of

* ``channels``: extra input channels concatenated to the noisy windows;
* ``encoder_hidden_states``: cross-attention tokens
  (``UNet2DConditionModel``);
* ``class_labels``: class ids for a UNet with a class embedding.

New kinds of condition are new subclasses of :class:`Condition`; the
denoiser, the engine and the strategies do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

#: Canvas rows and columns of each window of a batch (folded into the canvas).
WindowIndices = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class ConditionInputs:
    """A condition's contribution to one UNet call, for a batch of B windows.

    Attributes
    ----------
    channels : np.ndarray or None
        (B, K, h, w) float32, concatenated to the noisy input.
    encoder_hidden_states : np.ndarray or None
        (B, L, D) float32 cross-attention tokens.
    class_labels : np.ndarray or None
        (B,) int64 class ids.
    """

    channels: np.ndarray | None = None
    encoder_hidden_states: np.ndarray | None = None
    class_labels: np.ndarray | None = None


class Condition:
    """One thing the UNet is conditioned on (base class).

    Subclasses set :attr:`name` (unique within a synthesis, used by guidance
    terms to refer to it) and :attr:`kind`, and implement :meth:`inputs`.
    """

    #: how a guidance term and the recorded settings refer to this condition
    name: str = "condition"
    #: ``channels``, ``tokens`` or ``class-label``
    kind: str = "abstract"
    #: input channels this condition adds (``channels`` kind)
    channels: int = 0

    def inputs(self, windows: WindowIndices, size: int, null: bool
               ) -> ConditionInputs:
        """The conditional (``null=False``) or null inputs of a window batch.

        Parameters
        ----------
        windows : list of (ys, xs)
            Canvas rows and columns of each window.
        size : int
            Window side on the canvas.
        null : bool
            The null form (for classifier-free guidance).
        """
        raise NotImplementedError

    def check_unet(self, config: Any, window: int) -> None:
        """Raise :class:`InputError` if the UNet (its ``config``) cannot take
        this condition; the message names both."""

    def settings(self) -> dict[str, Any]:
        """What this condition was, for the settings of every output."""
        return {"name": self.name, "kind": self.kind}


def check_names(conditions: Sequence[Condition]) -> dict[str, Condition]:
    """The conditions by name; refuse two with the same name."""
    by_name: dict[str, Condition] = {}
    for cond in conditions:
        if not isinstance(cond, Condition):
            raise InputError(f"conditions: expected Condition objects, got "
                             f"{type(cond).__name__}")
        if cond.name in by_name:
            raise InputError(f"conditions: two conditions are named "
                             f"{cond.name!r}; give each its own name")
        by_name[cond.name] = cond
    return by_name
