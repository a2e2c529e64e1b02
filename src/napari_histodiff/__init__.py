"""napari-histodiff: mask-guided diffusion synthesis of histology images.

The core (everything outside ``_widgets``) imports without Qt or napari, and
heavy libraries (torch, diffusers, dask) are imported where they are used, so
that ``import napari_histodiff`` and napari start fast.

The public import path of the pipelines is the package itself::

    from napari_histodiff import HistoDiffPipeline, HistoDiffMaskPipeline

(loaded on first use; :mod:`napari_histodiff.pipelines` holds them).
"""

from ._version import __version__

_PIPELINES = ("HistoDiffPipeline", "HistoDiffMaskPipeline", "HistoDiffOutput",
              "MaskOutput", "SynthesisRun")

__all__ = ["__version__", *_PIPELINES]


def __getattr__(name: str):
    if name in _PIPELINES:
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
