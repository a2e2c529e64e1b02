"""The session's pipeline cache (see :class:`..models.cache.ModelCache`)."""

from __future__ import annotations

from pathlib import Path

from ..models.cache import ModelCache


def load_pipeline(folder: Path, device: str, fp16: bool):
    """``HistoDiffPipeline.from_pretrained`` as the cache's loader."""
    from .mask_to_image import HistoDiffPipeline

    return HistoDiffPipeline.from_pretrained(folder, device=device, fp16=fp16)


#: Pipelines loaded in this session, by (folder, device, dtype).
MODEL_CACHE = ModelCache(load_pipeline)
