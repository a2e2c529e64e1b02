"""napari-histodiff: mask-guided diffusion synthesis of histology images.

The core (everything outside ``_widgets``) imports without Qt or napari, and
heavy libraries (torch, diffusers, dask) are imported where they are used, so
that ``import napari_histodiff`` and napari start fast.
"""

from ._version import __version__

__all__ = ["__version__"]
