"""Latent-space facts measured with a trained VAE.

* :func:`grid_tiles`: the fixed, non-overlapping tiles of the training
  images on which the statistics below are measured (no randomness).
* :func:`encode`: images in [-1, 1] to posterior means (or seeded samples).
* :func:`latent_scaling_of`: 1 / std of the latents (LDM's ``scale_by_std``).
* :func:`fit_latent_preview`: the least-squares linear map from scaled
  latents to the area-averaged RGB of the ``factor x factor`` pixels each
  latent pixel spans, for cheap live previews.
* :func:`latent_class_means`: per-class mean latent for noise centring.
* :func:`reconstruction_metrics`: PSNR and SSIM of whole held-out images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import Sample

#: Most tiles the statistics are measured on (spread evenly over the data).
MAX_TILES = 2048


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images).astype(np.float32) / 127.5
                         - 1.0)
    return x.permute(0, 3, 1, 2).contiguous()


def grid_tiles(samples: Sequence[Sample], size: int, max_tiles: int = MAX_TILES,
               masks: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Non-overlapping ``size`` x ``size`` tiles of every image, row by row.

    When there are more than ``max_tiles``, evenly spaced ones are kept.
    Returns the tiles (N, size, size, 3) uint8 and, with ``masks``, their
    masks (N, size, size), zeros (``unknown``) for unlabelled images.
    """
    found: list[tuple[int, int, int]] = []
    for i, s in enumerate(samples):
        h, w = s.image.shape[:2]
        found += [(i, y, x) for y in range(0, h - size + 1, size)
                  for x in range(0, w - size + 1, size)]
    if len(found) > max_tiles:
        keep = np.linspace(0, len(found) - 1, max_tiles).round().astype(int)
        found = [found[k] for k in keep]
    tiles = np.stack([samples[i].image[y:y + size, x:x + size]
                      for i, y, x in found])
    if not masks:
        return tiles, None
    labels = np.zeros(tiles.shape[:3], np.int64)
    for n, (i, y, x) in enumerate(found):
        if samples[i].mask is not None:
            labels[n] = samples[i].mask[y:y + size, x:x + size]
    return tiles, labels


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch: int = 32,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Posterior means (or, with ``generator``, samples) of ``images``.

    ``images`` (B, 3, H, W) in [-1, 1]; the result is (B, C, H/f, W/f) on
    the CPU, unscaled.
    """
    device = next(vae.parameters()).device
    out = []
    for start in range(0, len(images), batch):
        dist = vae.encode(images[start:start + batch].to(device)).latent_dist
        z = dist.mean if generator is None else dist.sample(generator=generator)
        out.append(z.float().cpu())
    return torch.cat(out)


def latent_scaling_of(latents: torch.Tensor) -> float:
    """1 / std of all latent values (channels pooled), as LDM's scale_by_std."""
    return float(1.0 / latents.double().std())


def fit_latent_preview(scaled: torch.Tensor, images: torch.Tensor, factor: int
                       ) -> tuple[dict[str, list], list[float]]:
    """Least-squares RGB of scaled latents.

    Parameters
    ----------
    scaled : (B, C, h, w) tensor
        Latents times the latent scaling.
    images : (B, 3, h*factor, w*factor) tensor
        The encoded images in [-1, 1].
    factor : int

    Returns
    -------
    preview : dict
        ``{"weight": 3 x C, "bias": 3}`` with ``rgb = weight @ z + bias``.
    r2 : list of float
        The fraction of the variance of each area-averaged RGB channel the
        map explains on these images.
    """
    target = torch.nn.functional.avg_pool2d(images.double(), factor)
    c = scaled.shape[1]
    z = scaled.double().permute(0, 2, 3, 1).reshape(-1, c).numpy()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    design = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ coef
    r2 = 1 - ((y - fitted) ** 2).sum(0) / np.maximum(
        ((y - y.mean(0)) ** 2).sum(0), 1e-12)
    preview = {"weight": [[round(float(v), 6) for v in row] for row in coef[:c].T],
               "bias": [round(float(v), 6) for v in coef[c]]}
    return preview, [round(float(v), 4) for v in r2]


def apply_latent_preview(preview: dict[str, list], scaled: torch.Tensor
                         ) -> torch.Tensor:
    """(B, C, h, w) scaled latents -> (B, 3, h, w) preview RGB in [-1, 1]."""
    w = torch.tensor(preview["weight"], dtype=torch.float32)
    b = torch.tensor(preview["bias"], dtype=torch.float32)
    return torch.einsum("rc,bchw->brhw", w, scaled.float()) + b[None, :, None, None]


def latent_class_means(scaled: torch.Tensor, masks: np.ndarray, num_classes: int,
                       factor: int) -> list[list[float]]:
    """Mean scaled latent of each class, weighted by its area fraction.

    Row ``k`` is ``sum_p a_k(p) z(p) / sum_p a_k(p)`` over latent pixels
    ``p``, where ``a_k(p)`` is the area fraction of class ``k`` in the
    ``factor x factor`` pixels of ``p`` (the latent models' condition);
    classes without pixels, and ``unknown`` (0), get the mean of all latents.
    The sampler's mean canvas is then ``sum_k a_k(p) mean_k``.
    """
    ids = torch.from_numpy(np.ascontiguousarray(masks).astype(np.int64))
    onehot = torch.nn.functional.one_hot(ids, num_classes).permute(0, 3, 1, 2)
    frac = torch.nn.functional.avg_pool2d(onehot.double(), factor)
    z = scaled.double()
    sums = torch.einsum("bkhw,bchw->kc", frac, z)
    area = frac.sum(dim=(0, 2, 3))
    overall = z.mean(dim=(0, 2, 3))
    means = torch.where(area[:, None] > 0, sums / area.clamp(min=1e-12)[:, None],
                        overall[None])
    means[0] = overall
    return [[round(float(v), 6) for v in row] for row in means]


def pad_to_multiple(image: np.ndarray, factor: int) -> np.ndarray:
    """Reflect-pad an (H, W, 3) image at the bottom and right to multiples of
    ``factor`` (unchanged if it already is one)."""
    h, w = image.shape[:2]
    ph, pw = -h % factor, -w % factor
    if not (ph or pw):
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")


@torch.no_grad()
def reconstruct(vae, image: np.ndarray, factor: int) -> np.ndarray:
    """Encode (posterior mean) and decode one whole (H, W, 3) uint8 image.

    The image is reflect-padded to a multiple of ``factor`` and the
    reconstruction cropped back to (H, W); returns uint8.
    """
    h, w = image.shape[:2]
    x = to_model_space(pad_to_multiple(image, factor)[None])
    device = next(vae.parameters()).device
    z = vae.encode(x.to(device)).latent_dist.mean
    y = vae.decode(z).sample.float().cpu()[0, :, :h, :w]
    rgb = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 images (pytorch-msssim: 11-px Gaussian
    window, sigma 1.5, K = 0.01/0.03, data range 255, mean over channels)."""
    from pytorch_msssim import ssim as _ssim

    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ssim(ta, tb, data_range=255.0))


def reconstruction_metrics(vae, images: Sequence[tuple[str, np.ndarray]],
                           factor: int) -> dict[str, Any]:
    """PSNR and SSIM of whole images through the VAE.

    Returns ``psnr_db`` and ``ssim`` (means over the images), ``heldout``
    (their names), ``per_image`` and ``method``.
    """
    per = []
    for name, rgb in images:
        rec = reconstruct(vae, rgb, factor)
        per.append({"name": name, "height": int(rgb.shape[0]),
                    "width": int(rgb.shape[1]),
                    "psnr_db": round(psnr(rgb, rec), 3),
                    "ssim": round(ssim(rgb, rec), 4)})
    if not per:
        return {}
    return {
        "psnr_db": round(float(np.mean([p["psnr_db"] for p in per])), 3),
        "ssim": round(float(np.mean([p["ssim"] for p in per])), 4),
        "heldout": [p["name"] for p in per],
        "per_image": per,
        "method": ("whole images, reflect-padded at the bottom/right to a "
                   f"multiple of {factor} and cropped back; posterior mean; "
                   "decoded values clamped to [-1, 1] and rounded to uint8; "
                   "PSNR over all pixels and channels (peak 255); SSIM of "
                   "pytorch-msssim (11-px Gaussian window, sigma 1.5), mean "
                   "over channels; means over the images"),
    }
