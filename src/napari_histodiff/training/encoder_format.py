"""The tile encoder's folder format and default shape (no torch import, so
that ``histodiff --help`` stays fast).

An encoder folder holds ``config.json`` (``format``, ``widths``,
``training``) and ``encoder.safetensors`` (the
:class:`~.encoder_net.TileEncoder` state).
"""

from __future__ import annotations

#: Channel widths of the default network (64 features per tile).
DEFAULT_WIDTHS = (16, 32, 64, 64)
ENCODER_FORMAT = "napari-histodiff-encoder"
ENCODER_CONFIG = "config.json"
ENCODER_WEIGHTS = "encoder.safetensors"
