"""Guidance terms: how model outputs become the guided prediction.

Two kinds:

:class:`ClassifierFreeGuidance`
    A scale ``w`` on a subset ``S`` of the conditions. With every condition
    on, the model predicts ``e_all``; with the conditions of ``S`` in their
    null form (the others on), ``e_-S``. Terms add up around ``e_all``::

        eps = e_all + sum_i (w_i - 1) * (e_all - e_-S_i)

    One term on the mask is the familiar ``null + w (cond - null)``:
    ``w = 1`` is plain conditional, ``w = 0`` ignores the mask. Two terms
    (mask 2, text 1.5) each push along their own condition's effect given
    the other; with every scale 1 the prediction is plain conditional on
    all. A negative prompt is the null form of a token condition.
``ClassifierGuidance``
    ``eps - s * sqrt(1 - alpha_bar_t) * grad_x log p(y | x_t, t)`` (Dhariwal
    and Nichol 2021, as HistoDiffusion uses it): a noise-aware classifier's
    gradient, computed per window batch with autograd, applied after the
    classifier-free terms. ``alpha_bar_t`` is read from the schedule at the
    step's timestep, so every scheduler and step count works.

:func:`branch_coefficients` turns the classifier-free terms into the set of
UNet branches to evaluate (each a set of conditions in their conditional
form) and the weight of each; branches of weight zero are never evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError

Branch = frozenset  # names of the conditions in their conditional form


def _check_scale(scale, argname: str) -> float:
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.floating
                                                 | np.integer):
        raise InputError(f"{argname}: must be a number, got {scale!r}")
    if not math.isfinite(float(scale)):
        raise InputError(f"{argname}: must be finite, got {scale!r}")
    return float(scale)


class GuidanceTerm:
    """Base class of guidance terms."""

    kind = "abstract"

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError


class ClassifierFreeGuidance(GuidanceTerm):
    """Classifier-free guidance with ``scale`` over the named conditions.

    Parameters
    ----------
    conditions : str or sequence of str
        Names of the conditions this term guides (all nulled together).
    scale : float
        ``w``; 1 adds nothing, 0 removes the conditions' effect, larger
        values strengthen it, negative values push away from it.
    """

    kind = "classifier-free"

    def __init__(self, conditions: str | Sequence[str], scale: float):
        names = (conditions,) if isinstance(conditions, str) else tuple(conditions)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"conditions: name at least one condition, got "
                             f"{conditions!r}")
        self.conditions = names
        self.scale = _check_scale(scale, "scale")

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "conditions": list(self.conditions),
                "scale": self.scale}


class ClassifierGuidance(GuidanceTerm):
    """Steer toward class ``target`` with a noise-aware classifier's gradient.

    Parameters
    ----------
    classifier : callable
        ``classifier(x_t, t) -> logits`` (B, n_classes) for noisy windows
        ``x_t`` (B, C, h, w) and timesteps ``t`` (B,); a ``torch.nn.Module``
        on the UNet's device.
    target : int
        Class index to guide toward.
    scale : float
        ``s``; 0 turns the term off (it is then never evaluated).
    name : str, optional
        The target's name, for the settings.
    """

    kind = "classifier"

    def __init__(self, classifier, target: int, scale: float,
                 name: str | None = None):
        if isinstance(target, bool) or not isinstance(target, int | np.integer) \
                or target < 0:
            raise InputError(f"target: must be a class index >= 0, got {target!r}")
        self.classifier = classifier
        self.target = int(target)
        self.scale = _check_scale(scale, "classifier_scale")
        self.name = name

    def gradient(self, x, t: float):
        """``grad_x log p(target | x, t)`` for a batch ``x`` (torch)."""
        import torch

        with torch.enable_grad():
            xg = x.detach().float().requires_grad_(True)
            tt = torch.full((x.shape[0],), float(t), device=x.device)
            logits = self.classifier(xg, tt).float()
            if logits.ndim != 2 or not 0 <= self.target < logits.shape[1]:
                raise InputError(
                    f"target: class {self.target} is not among the classifier's "
                    f"{logits.shape[-1]} outputs (logits of shape "
                    f"{tuple(logits.shape)})")
            logp = torch.log_softmax(logits, dim=1)[:, self.target].sum()
            (grad,) = torch.autograd.grad(logp, xg)
        return grad

    def apply(self, eps, x, t: float, alpha_bar: float):
        """The guided ``eps`` given the model's ``eps`` for ``x`` at ``t``."""
        if self.scale == 0.0:
            return eps
        grad = self.gradient(x, t).to(eps.dtype)
        return eps - self.scale * math.sqrt(1.0 - alpha_bar) * grad

    def settings(self) -> dict[str, Any]:
        out = {"kind": self.kind, "target": self.target, "scale": self.scale}
        if self.name is not None:
            out["target_name"] = self.name
        return out


def branch_coefficients(condition_names: Sequence[str],
                        terms: Sequence[GuidanceTerm]) -> dict[Branch, float]:
    """UNet branches and their weights for the classifier-free ``terms``.

    The weights sum to one; branches of weight zero are left out (so ``w=1``
    evaluates no null branch and ``w=0`` no conditional one). The first key
    is the all-conditions branch when it is used.

    Raises
    ------
    InputError
        A term names a condition that is not there.
    """
    everything = Branch(condition_names)
    coef: dict[Branch, float] = {everything: 1.0}
    first = True
    for term in terms:
        if not isinstance(term, ClassifierFreeGuidance):
            continue
        unknown = [n for n in term.conditions if n not in everything]
        if unknown:
            raise InputError(
                f"guidance: classifier-free term names {unknown[0]!r}, which is "
                f"not a condition of this synthesis ({sorted(everything) or 'none'})")
        if term.scale == 1.0:
            continue
        without = everything - Branch(term.conditions)
        # the first term sets w itself (not 1 + (w - 1), which can differ in
        # the last bit), so one term gives exactly null + w (cond - null)
        coef[everything] = term.scale if first else \
            coef[everything] + term.scale - 1.0
        first = False
        coef[without] = coef.get(without, 0.0) + 1.0 - term.scale
    return {b: c for b, c in coef.items() if c != 0.0}
