"""Augmentations suited to histology: the dihedral group and mild stain jitter.

Tissue has no preferred orientation, so flips and 90-degree rotations (the
eight symmetries of the square) apply to image and mask together. Stain
jitter perturbs the hematoxylin, eosin and DAB optical densities
(``skimage.color.rgb2hed``) by a small random factor and offset, imitating
the variation between stainings and scanners; the mask is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Which augmentations to apply.

    Parameters
    ----------
    flips : bool
        Random horizontal and vertical flips.
    rotations : bool
        Random 90-degree rotations (crops are square).
    stain_jitter : float
        Relative spread of the stain-density scale, e.g. 0.05 = +-5 %; 0 off.
    stain_shift : float
        Spread of an additive stain-density offset; 0 off.
    """

    flips: bool = True
    rotations: bool = True
    stain_jitter: float = 0.05
    stain_shift: float = 0.005

    def __call__(self, rng: np.random.Generator, images: np.ndarray,
                 masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment a batch: images (B, H, W, 3) uint8, masks (B, H, W)."""
        images, masks = images.copy(), masks.copy()
        for i in range(len(images)):
            img, msk = images[i], masks[i]
            if self.flips and rng.random() < 0.5:
                img, msk = img[:, ::-1], msk[:, ::-1]
            if self.flips and rng.random() < 0.5:
                img, msk = img[::-1], msk[::-1]
            if self.rotations:
                k = int(rng.integers(0, 4))
                img, msk = np.rot90(img, k), np.rot90(msk, k)
            if self.stain_jitter > 0 or self.stain_shift > 0:
                img = jitter_stains(img, rng, self.stain_jitter, self.stain_shift)
            images[i], masks[i] = img, msk
        return images, masks


def jitter_stains(rgb: np.ndarray, rng: np.random.Generator, scale: float,
                  shift: float) -> np.ndarray:
    """Scale and shift the H, E, D optical densities of one uint8 RGB image."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(rgb)
    a = 1.0 + rng.uniform(-scale, scale, 3)
    b = rng.uniform(-shift, shift, 3)
    out = hed2rgb(hed * a + b)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def no_augment() -> Augment:
    """An :class:`Augment` that changes nothing (for tests and evaluation)."""
    return Augment(flips=False, rotations=False, stain_jitter=0.0, stain_shift=0.0)
