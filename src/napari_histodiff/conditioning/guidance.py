"""Classifier-free guidance over batches of windows (:class:`GuidedDenoiser`)."""

from __future__ import annotations

import time

import numpy as np


class GuidedDenoiser:
    """The UNet with classifier-free guidance over batches of windows.

    ``prediction = null + w * (cond - null)``; ``w = 1`` is plain conditional
    (the null branch is skipped), ``w = 0`` unconditional (the conditional
    branch is skipped). Otherwise both branches run in one batched call.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
    guidance_scale : float
        ``w >= 0``.
    device, dtype : torch device and dtype for the UNet inputs.

    Attributes
    ----------
    unet_seconds : float
        Wall time spent inside UNet calls (for the benchmark).
    evaluations : int
        Windows evaluated (a window counts once even with both branches).
    """

    def __init__(self, unet, guidance_scale: float, device, dtype):
        self.unet = unet
        self.guidance_scale = float(guidance_scale)
        self.device = device
        self.dtype = dtype
        self.unet_seconds = 0.0
        self.evaluations = 0
        self.unet_calls = 0

    def __call__(self, x: np.ndarray, t, cond: np.ndarray, null: np.ndarray):
        """Guided model output for windows ``x`` (B, C, h, w) at timestep ``t``.

        ``cond`` and ``null`` are (B, K, h, w) condition channels.
        """
        import torch

        w = self.guidance_scale
        if w == 1.0:
            xs, cs = x, cond
        elif w == 0.0:
            xs, cs = x, null
        else:
            xs, cs = np.concatenate([x, x]), np.concatenate([cond, null])
        inp = torch.from_numpy(np.concatenate([xs, cs], axis=1)).to(
            self.device, self.dtype
        )
        tt = torch.full((inp.shape[0],), int(t), device=self.device, dtype=torch.long)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = self.unet(inp, tt).sample
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.unet_seconds += time.perf_counter() - start
        self.unet_calls += 1
        self.evaluations += x.shape[0]
        out = out.float()
        if w not in (0.0, 1.0):
            c, n = out.chunk(2)
            out = n + w * (c - n)
        return out.cpu().numpy()
