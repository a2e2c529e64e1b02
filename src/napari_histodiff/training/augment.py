"""Augmentations suited to histology: the dihedral group and mild stain jitter.

Tissue has no preferred orientation, so flips and 90-degree rotations (the
eight symmetries of the square) apply to image and mask together. Stain
jitter perturbs the hematoxylin, eosin and DAB optical densities (colour
deconvolution, Ruifrok and Johnston 2001) by a small random factor and
offset, imitating
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
    """Scale and shift the H, E, D optical densities of one uint8 RGB image.

    Optical density is ``-ln((I + 1) / 256)`` per RGB channel; it is split
    into hematoxylin, eosin and DAB densities with the Ruifrok-Johnston
    matrix (``skimage.color.hed_from_rgb``), each density is multiplied by
    ``1 + U(-scale, scale)`` and offset by ``U(-shift, shift)``, and the
    result is mixed back. The two matrices are exact inverses and nothing is
    clipped in between, so with no jitter the image comes back unchanged.

    (``skimage.color.rgb2hed`` clips negative densities to zero, which does
    not round-trip: through ``rgb2hed``/``hed2rgb`` this IHC image lost about
    20 grey levels of green, i.e. every training crop turned magenta.)
    """
    from skimage.color import hed_from_rgb, rgb_from_hed

    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    stains = od @ hed_from_rgb
    a = 1.0 + rng.uniform(-scale, scale, 3)
    b = rng.uniform(-shift, shift, 3)
    out = 256.0 * np.exp(-((stains * a + b) @ rgb_from_hed)) - 1.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def no_augment() -> Augment:
    """An :class:`Augment` that changes nothing (for tests and evaluation)."""
    return Augment(flips=False, rotations=False, stain_jitter=0.0, stain_shift=0.0)
