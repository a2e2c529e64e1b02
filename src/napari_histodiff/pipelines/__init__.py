"""Pipelines, one readable file each (diffusers style).

``HistoDiffPipeline`` (:mod:`.mask_to_image`): mask -> image.
``HistoDiffMaskPipeline`` (:mod:`.mask_generation`): class set -> mask.
"""

from .mask_generation import HistoDiffMaskPipeline, MaskOutput
from .mask_to_image import HistoDiffOutput, HistoDiffPipeline, SynthesisRun

__all__ = ["HistoDiffMaskPipeline", "HistoDiffOutput", "HistoDiffPipeline",
           "MaskOutput", "SynthesisRun"]
