"""Training data: images with label masks, and unlabelled images, as crops.

Three sources may be mixed:

* a folder of images with a folder of masks of the same names (tiles, or
  larger images that are cropped at random);
* single large images with their label images (random crops);
* a folder of unlabelled images, trained with the null (all-``unknown``)
  mask, DiffInfinite's semi-supervised scheme.

Everything is checked when it is loaded, and every error names the file and
says what to do. Batches are drawn by :class:`CropSampler` from a random
generator the caller seeds, so a training step always sees the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..masks.labeller import check_rgb
from ..models.classes import TissueClasses

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class Sample:
    """One training image, with its mask or None when unlabelled."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None  # (H, W) integer ids, or None
    source: str


def read_rgb(path: str | Path, argname: str = "image") -> np.ndarray:
    """Read an RGB image file as (H, W, 3) uint8; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{argname}: {path} does not exist or is not a file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode not in ("RGB", "RGBA"):
                    raise InputError(
                        f"{argname}: {path} is a {im.mode} image, not RGB; "
                        "convert it to 8-bit RGB"
                    )
                arr = np.asarray(im)
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{argname}: cannot read {path}: {exc}") from exc
    return check_rgb(arr, f"{argname} {path}")


def _image_files(folder: Path, argname: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{argname}: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"{argname}: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def load_pair(image_path: str | Path, mask_path: str | Path,
              classes: TissueClasses, min_side: int) -> Sample:
    """Read and check one image with its mask."""
    from ..io.masks import read_mask

    image = read_rgb(image_path, "image")
    mask = read_mask(mask_path, "mask")
    if mask.shape != image.shape[:2]:
        raise InputError(
            f"mask: {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its image "
            f"{image_path} is {image.shape[0]}x{image.shape[1]}; a mask must have "
            "the size of its image"
        )
    classes.validate_mask(mask, f"mask {mask_path}")
    _check_side(image, image_path, min_side)
    return Sample(image, mask.astype(np.uint8 if len(classes) < 256 else np.int32),
                  str(image_path))


def _check_side(image: np.ndarray, path, min_side: int) -> None:
    if min(image.shape[:2]) < min_side:
        raise InputError(
            f"image: {path} is {image.shape[0]}x{image.shape[1]}, smaller than the "
            f"{min_side}-pixel training crop; use larger images or a smaller "
            "--patch-size"
        )


def load_folder_pairs(images: str | Path, masks: str | Path,
                      classes: TissueClasses, min_side: int) -> list[Sample]:
    """Images and masks matched by file name (the stem; suffixes may differ)."""
    images, masks = Path(images), Path(masks)
    image_files = _image_files(images, "images")
    mask_files = {p.stem: p for p in _image_files(masks, "masks")}
    for p in sorted(masks.glob("*.npy")):
        mask_files.setdefault(p.stem, p)
    missing = [p.name for p in image_files if p.stem not in mask_files]
    if missing:
        raise InputError(
            f"masks: no mask in {masks} for image(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; every image needs a mask "
            "of the same name"
        )
    stems = {p.stem for p in image_files}
    orphans = sorted(n for n in mask_files if n not in stems)
    if orphans:
        raise InputError(
            f"masks: {masks} has masks without an image in {images}: "
            f"{', '.join(orphans[:5])}; remove them or add their images"
        )
    return [load_pair(p, mask_files[p.stem], classes, min_side) for p in image_files]


def load_unlabelled(folder: str | Path, min_side: int) -> list[Sample]:
    """Unlabelled images; they train with the null (all-unknown) mask."""
    out = []
    for p in _image_files(Path(folder), "unlabelled"):
        image = read_rgb(p, "unlabelled")
        _check_side(image, p, min_side)
        out.append(Sample(image, None, str(p)))
    return out


class CropSampler:
    """Random square crops from a list of samples, weighted by area.

    Parameters
    ----------
    samples : sequence of Sample
    crop : int
        Crop side in pixels.
    unlabelled_fraction : float or None
        Probability that a crop comes from the unlabelled images; None draws
        in proportion to their area.
    """

    def __init__(self, samples: Sequence[Sample], crop: int,
                 unlabelled_fraction: float | None = None):
        if not samples:
            raise InputError("data: no training images were given")
        self.crop = int(crop)
        self.labelled = [s for s in samples if s.mask is not None]
        self.unlabelled = [s for s in samples if s.mask is None]
        for s in samples:
            _check_side(s.image, s.source, self.crop)
        if unlabelled_fraction is None:
            area = sum(s.image.shape[0] * s.image.shape[1] for s in self.unlabelled)
            total = area + sum(s.image.shape[0] * s.image.shape[1]
                               for s in self.labelled)
            unlabelled_fraction = area / total
        if not self.unlabelled:
            unlabelled_fraction = 0.0
        if not self.labelled:
            unlabelled_fraction = 1.0
        self.unlabelled_fraction = float(unlabelled_fraction)

    @staticmethod
    def _weights(samples: Sequence[Sample]) -> np.ndarray:
        w = np.array([s.image.shape[0] * s.image.shape[1] for s in samples], float)
        return w / w.sum()

    def sample(self, rng: np.random.Generator, batch: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw crops.

        Returns
        -------
        images : (B, crop, crop, 3) uint8
        masks : (B, crop, crop) uint8, zeros for unlabelled crops
        labelled : (B,) bool
        """
        return self.sample_sources(rng, batch)[:3]

    def sample_sources(self, rng: np.random.Generator, batch: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Like :meth:`sample` (the same crops for the same ``rng``), and the
        ``source`` of the image each crop came from (to find its report)."""
        c = self.crop
        sources: list[str] = []
        images = np.empty((batch, c, c, 3), np.uint8)
        masks = np.zeros((batch, c, c), np.uint8)
        labelled = np.zeros(batch, bool)
        for i in range(batch):
            use_unlabelled = rng.random() < self.unlabelled_fraction
            pool = self.unlabelled if use_unlabelled else self.labelled
            s = pool[rng.choice(len(pool), p=self._weights(pool))]
            y = int(rng.integers(0, s.image.shape[0] - c + 1))
            x = int(rng.integers(0, s.image.shape[1] - c + 1))
            images[i] = s.image[y:y + c, x:x + c]
            sources.append(s.source)
            if s.mask is not None:
                masks[i] = s.mask[y:y + c, x:x + c]
                labelled[i] = True
        return images, masks, labelled, sources


def describe(samples: Sequence[Sample]) -> dict:
    """A summary of the data for the model card's provenance."""
    return {
        "labelled_images": [s.source for s in samples if s.mask is not None],
        "unlabelled_images": [s.source for s in samples if s.mask is None],
        "labelled_pixels": int(sum(s.image.shape[0] * s.image.shape[1]
                                   for s in samples if s.mask is not None)),
        "unlabelled_pixels": int(sum(s.image.shape[0] * s.image.shape[1]
                                     for s in samples if s.mask is None)),
    }


def class_means(samples: list[Sample], num_classes: int) -> list[list[float]]:
    """Mean RGB of each class's pixels, in model space ([-1, 1]).

    Row ``k`` is the mean over the labelled pixels of class ``k``; classes
    without pixels, and ``unknown`` (0), get the mean of all pixels, labelled
    or not. The model card keeps these so that samplers can centre the
    initial noise on them (``noise_mean``).
    """
    sums = np.zeros((num_classes, 3))
    counts = np.zeros(num_classes)
    total, n = np.zeros(3), 0
    for sample in samples:
        pixels = sample.image.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
        total += pixels.sum(axis=0)
        n += len(pixels)
        if sample.mask is not None:
            ids = sample.mask.reshape(-1).astype(np.int64)
            counts += np.bincount(ids, minlength=num_classes)[:num_classes]
            for c in range(3):
                sums[:, c] += np.bincount(ids, weights=pixels[:, c],
                                          minlength=num_classes)[:num_classes]
    overall = total / max(n, 1)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None],
                     overall)
    means[0] = overall
    return [[round(float(v), 6) for v in row] for row in means]
