"""Canvas latents from pixels: tiled VAE encoding.

Region regeneration with a latent model holds the surroundings of the region
at each step's noise level, so it needs those surroundings as latents. The
image is encoded in tiles with a margin: each tile is encoded with ``margin``
latent pixels of context on every side and only its centre is kept, so the
encoder's receptive field sees the same neighbourhood as it would in one
piece and no tile border shows in the latents.
"""

from __future__ import annotations

import numpy as np


def pad_to_factor(image: np.ndarray, factor: int) -> np.ndarray:
    """Pad (C, H, W) at the bottom and right by reflection to multiples of
    ``factor`` (the canvas covers ``ceil(H / factor)`` latent rows)."""
    _, height, width = image.shape
    ph, pw = -height % factor, -width % factor
    if not ph and not pw:
        return image
    mode = "reflect" if min(height, width) > max(ph, pw) else "edge"
    return np.pad(image, ((0, 0), (0, ph), (0, pw)), mode=mode)


def encode_tiled(vae, image: np.ndarray, factor: int, scaling: float, device,
                 dtype, tile: int = 64, margin: int = 8) -> np.ndarray:
    """Encode ``image`` (3, H, W) in [-1, 1] into scaled latents (C, h, w).

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
    image : np.ndarray
        Float pixels in the model range [-1, 1].
    factor : int
        The VAE's spatial factor; ``h = ceil(H / factor)``.
    scaling : float
        The model card's ``latent_scaling`` (latents are multiplied by it).
    tile, margin : int
        Tile side and context margin, in latent pixels.

    Returns
    -------
    np.ndarray
        float32 (C, h, w): the posterior means times ``scaling``.
    """
    import torch

    padded = pad_to_factor(np.asarray(image, np.float32), factor)
    _, hp, wp = padded.shape
    h, w = hp // factor, wp // factor
    out = np.zeros((vae.config.latent_channels, h, w), np.float32)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + tile + margin), min(w, x + tile + margin)
            pix = padded[:, y0 * factor:y1 * factor, x0 * factor:x1 * factor]
            z = torch.from_numpy(np.ascontiguousarray(pix[None])).to(device, dtype)
            with torch.no_grad():
                mean = vae.encode(z).latent_dist.mean.float().cpu().numpy()[0]
            ty, tx = min(tile, h - y), min(tile, w - x)
            out[:, y:y + ty, x:x + tx] = mean[:, y - y0:y - y0 + ty,
                                              x - x0:x - x0 + tx]
    return out * np.float32(scaling)
