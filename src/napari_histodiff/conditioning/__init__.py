"""How conditions reach the UNet, and how guidance combines its outputs.

A synthesis is the UNet plus a list of :class:`Condition` objects and a list
of guidance terms; the sampling engine calls one :class:`Denoiser` with the
noisy windows and never changes when a new kind of either arrives.

Conditions (:mod:`.base`): :class:`MaskCondition` (mask channels),
:class:`ClassSetCondition` (the mask generator's class set),
:class:`ClassLabelCondition` (``class_labels``), :class:`TokenCondition`
(cross-attention tokens). Guidance terms (:mod:`.guidance`):
:class:`ClassifierFreeGuidance` over any subset of the conditions, each with
its own scale, and :class:`ClassifierGuidance` (a classifier's gradient).
"""

from .base import Condition, ConditionInputs
from .denoiser import Denoiser
from .guidance import ClassifierFreeGuidance, ClassifierGuidance, GuidanceTerm
from .labels import ClassLabelCondition
from .mask import ClassSetCondition, MaskCondition
from .tokens import TokenCondition

__all__ = ["ClassLabelCondition", "ClassSetCondition", "ClassifierFreeGuidance",
           "ClassifierGuidance", "Condition", "ConditionInputs", "Denoiser",
           "GuidanceTerm", "MaskCondition", "TokenCondition"]
