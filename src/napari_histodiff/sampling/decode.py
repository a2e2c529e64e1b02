"""Pixels from the canvas: value conversion and seam-free tiled VAE decoding."""

from __future__ import annotations

import numpy as np

from ..arrays import take_2d
from .store import CanvasStore
from .windows import Window, grid_windows


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Model range [-1, 1] to uint8 [0, 255] (values outside are clipped)."""
    return np.clip((np.asarray(x) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def hann_weights(size: int, floor: float = 1e-3) -> np.ndarray:
    """2-D Hann weights, highest in the middle, never exactly zero."""
    w = np.hanning(size + 2)[1:-1]
    return (np.outer(w, w) + floor).astype(np.float32)


def decode_tiled(vae, store: CanvasStore, source: str, target: str,
                 image_shape: tuple[int, int], tile: int, scaling: float,
                 device, dtype, batch: int = 4):
    """Decode latent array ``source`` into uint8 ``target`` (3, H, W) in tiles.

    Tiles of ``tile`` latent pixels overlap by half and are blended with Hann
    weights, so no tile border shows. Memory is bounded by the tile batch:
    sums are accumulated in the store. Yields each finished pixel region
    ``(y0, y1, x0, x1)`` once all tiles touching it are done (at the end).
    """
    import torch

    lat = store[source]
    _, h, w = lat.shape
    tile = min(tile, max(h, w))
    f = None
    wts = hann_weights(tile)
    windows = grid_windows(h, w, tile, stride=max(1, tile // 2))
    for start in range(0, len(windows), batch):
        group = windows[start : start + batch]
        xs = []
        for win in group:
            ys_, xs_ = win.indices(h, w)
            xs.append(take_2d(lat, ys_, xs_))
        z = torch.from_numpy(np.stack(xs)).to(device, dtype) / scaling
        with torch.no_grad():
            img = vae.decode(z).sample.float().cpu().numpy()
        if f is None:
            f = img.shape[-1] // tile
            pw = np.kron(wts, np.ones((f, f), np.float32))
            if "decode/acc" not in store:
                store.create("decode/acc", (3, h * f, w * f), np.float32)
                store.create("decode/weight", (h * f, w * f), np.float32)
            acc, wsum = store["decode/acc"], store["decode/weight"]
        for win, pix in zip(group, img, strict=True):
            pwin = Window(win.y * f, win.x * f, tile * f)
            cy, cx, wy, wx = pwin.inside(h * f, w * f)
            acc[:, cy, cx] = acc[:, cy, cx] + pix[:, wy, wx] * pw[wy, wx]
            wsum[cy, cx] = wsum[cy, cx] + pw[wy, wx]
    out = store[target]
    height, width = image_shape
    for win in grid_windows(height, width, 512):
        cy, cx, _, _ = win.inside(height, width)
        a = np.asarray(store["decode/acc"][:, cy, cx])
        wsum = np.asarray(store["decode/weight"][cy, cx])
        out[:, cy, cx] = to_uint8(a / wsum)
        yield (cy.start, cy.stop, cx.start, cx.stop)
    store.delete("decode/acc")
    store.delete("decode/weight")
