"""A small convolutional tile encoder: the network of the ``random`` and
``histo`` feature extractors of :mod:`napari_histodiff.metrics.features`.

It lives in the training wing because the self-supervised trainer
(:mod:`.encoder_trainer`) trains it and the metrics (a wing above) read it;
the trainer never imports the metrics.

The network takes ``(B, 3, H, W)`` ``uint8`` tiles of any size >= 16 px,
maps them to ``[-1, 1]``, runs ``len(widths)`` 3x3 convolutions (the first
with stride 1, the others with stride 2) with ReLU, and averages the last
feature map over space: one vector of ``widths[-1]`` numbers per tile.

:func:`random_encoder` fills the weights from a seeded
:class:`torch.Generator` on the CPU (He-normal weights, zero biases), so one
seed gives the same network on every machine. Half of its first-layer
filters are then made zero-mean over space: a plain random network answers
mostly to the tiles' mean colour (every filter has a DC part, and colour
varies more between tiles than texture does), so it hardly tells real tissue
from the same pixels shuffled; zero-mean filters see edges and texture only.
With half of each, on 16-px tiles of ``skimage.data.immunohistochemistry()``
(checkerboard split), shuffling the pixels of the held-out tiles raises FID
7-8x and a stain change (haematoxylin x1.4, DAB x0.7) 3.5-5x; an all-plain
network gives 4-5x and 7-8x, an all-zero-mean one 37-45x and 1.5x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .encoder_format import DEFAULT_WIDTHS


class TileEncoder(nn.Module):
    """Convolutions with ReLU and a global average pool.

    Parameters
    ----------
    widths : sequence of int
        Output channels of each convolution; the last is the feature count.
    """

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths: expected positive channel counts, got {widths}")
        layers: list[nn.Module] = []
        inputs = 3
        for i, w in enumerate(widths):
            layers.append(nn.Conv2d(inputs, w, 3, stride=1 if i == 0 else 2,
                                    padding=1))
            layers.append(nn.ReLU())
            inputs = w
        self.body = nn.Sequential(*layers)
        self.widths = widths
        self.num_features = widths[-1]

    def config(self) -> dict[str, Any]:
        """What rebuilds this network: ``{"widths": [...]}``."""
        return {"widths": list(self.widths)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of float tiles already scaled to ``[-1, 1]``."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> ``(B, num_features)`` float32."""
        if tiles.dtype != torch.uint8:
            raise TypeError(f"tiles: expected uint8, got {tiles.dtype}")
        return self.embed(tiles.float() / 127.5 - 1.0)


def random_encoder(seed: int = 0, widths: Sequence[int] = DEFAULT_WIDTHS
                   ) -> TileEncoder:
    """A :class:`TileEncoder` with weights drawn from ``seed`` on the CPU.

    Weights are normal with standard deviation ``sqrt(2 / fan_in)`` (He), biases
    zero, drawn in parameter order from one ``torch.Generator``: the same seed
    gives the same weights on every machine and torch version that keeps the
    generator's stream. The first ``widths[0] // 2`` filters of the first
    layer then have their mean over space (per input channel) subtracted,
    so that they answer to texture and not to flat colour (module docstring).
    """
    net = TileEncoder(widths)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * math.prod(module.kernel_size)
                w = torch.randn(module.weight.shape, generator=gen,
                                dtype=torch.float32)
                module.weight.copy_(w * math.sqrt(2.0 / fan_in))
                module.bias.zero_()
        first = net.body[0].weight
        half = first.shape[0] // 2
        first[:half] -= first[:half].mean(dim=(2, 3), keepdim=True)
    return net.eval().requires_grad_(False)
