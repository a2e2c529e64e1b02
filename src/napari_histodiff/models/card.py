"""The model card, ``histodiff.json``: what a model directory holds and means.

The card sits beside the diffusers sub-folders (``unet/``, ``scheduler/``,
optional ``vae/`` and ``mask_unet/``) and carries what diffusers does not
know: the tissue classes, the window (patch) size, whether the model works
in pixels or in a VAE's latent space, the physical scale, the conditioning,
and where the weights came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from .classes import TissueClasses

CARD_NAME = "histodiff.json"
CARD_FORMAT = "napari-histodiff-model"
CARD_VERSION = 2
SPACES = ("pixel", "latent")
CONDITIONINGS = ("mask-onehot", "none")


@dataclass
class ModelCard:
    """Everything about a model that its diffusers configs do not say.

    Parameters
    ----------
    classes : TissueClasses
        Label ids, names and colours; index 0 is ``unknown``, the null condition.
    patch_size : int
        Side of the square window the image UNet sees, in pixels.
    space : {"pixel", "latent"}
        Where diffusion runs. Latent models have a ``vae/``.
    vae_scale_factor : int
        Pixels per latent pixel along one side (1 for pixel models).
    latent_scaling : float
        Multiplier applied to VAE latents before diffusion.
    microns_per_pixel : float or None
        Physical pixel size of the training images, if known.
    conditioning : str
        How the mask reaches the UNet; ``"mask-onehot"``: one channel per
        class concatenated to the noisy input; ``"none"``: an unconditional
        model (the UNet takes the noisy canvas only).
    image_channels : int
        Channels of the image (3, RGB).
    provenance : dict
        Data, steps, seed, software version that made the weights.
    mask_resolution_factor : int
        For ``mask_unet/``: how many image pixels one mask-model pixel spans.
    class_means : list of list of float or None
        For each class (by index), the mean clean canvas value of its pixels
        in the training data (model space: [-1, 1] for pixel models), one
        value per canvas channel; ``unknown`` has the mean of all pixels.
        Samplers centre the initial noise on the means of each pixel's class,
        scaled as the forward process scales the clean image at the first
        timestep (:meth:`napari_histodiff.conditioning.MaskCondition.mean_canvas`).
        None: centred on zero.
    latent_preview : dict or None
        Latent models: a linear map from the diffusion latents (VAE latents
        times ``latent_scaling``) to RGB in [-1, 1], ``{"weight": 3 rows of C
        numbers, "bias": 3 numbers}``, fitted when the VAE was trained; live
        previews use it instead of a VAE decode per step. None: previews
        decode.
    autoencoder : dict or None
        Latent models: facts about the VAE (factor, latent channels, the
        reconstruction figures on held-out images, how it was trained).
    text : dict or None
        Text-conditioned models (a ``UNet2DConditionModel`` with
        ``text_encoder/`` and ``tokenizer/``): ``encoder`` (its facts: kind
        ``builtin`` or ``transformers``, source, hidden size, sequence
        length), how captions were made (``captions``, ``levels``,
        ``max_tokens``), the ``null_prompt`` and, in words, what a prompt
        ``meaning``. None: the model takes no prompt.
    """

    classes: TissueClasses
    patch_size: int = 64
    space: str = "pixel"
    vae_scale_factor: int = 1
    latent_scaling: float = 1.0
    microns_per_pixel: float | None = None
    conditioning: str = "mask-onehot"
    image_channels: int = 3
    provenance: dict[str, Any] = field(default_factory=dict)
    mask_resolution_factor: int = 4
    class_means: list[list[float]] | None = None
    latent_preview: dict[str, Any] | None = None
    autoencoder: dict[str, Any] | None = None
    text: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.text is not None and (not isinstance(self.text, dict) or
                                      not isinstance(self.text.get("encoder"),
                                                     dict)):
            raise ModelFormatError(f"{CARD_NAME}: text must be an object with an "
                                   f"'encoder' object, or null; got "
                                   f"{self.text!r:.80}")
        if self.latent_preview is not None:
            check_latent_preview(self.latent_preview, CARD_NAME)
        if self.autoencoder is not None and not isinstance(self.autoencoder, dict):
            raise ModelFormatError(f"{CARD_NAME}: autoencoder must be an object "
                                   f"(a dict) or null, got {self.autoencoder!r:.80}")
        if self.class_means is not None:
            means = self.class_means
            if (not isinstance(means, list) or len(means) != len(self.classes)
                    or any(not isinstance(m, list) or not m for m in means)
                    or len({len(m) for m in means}) != 1
                    or not np.isfinite(np.asarray(means, dtype=float)).all()):
                raise ModelFormatError(
                    f"{CARD_NAME}: class_means must list one row of finite "
                    f"numbers per class ({len(self.classes)} classes), got "
                    f"{means!r:.200}"
                )
        if self.space not in SPACES:
            raise ModelFormatError(f"{CARD_NAME}: space must be one of {SPACES}, "
                                   f"got {self.space!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ModelFormatError(
                f"{CARD_NAME}: conditioning {self.conditioning!r} is not supported; "
                f"this version knows {CONDITIONINGS}"
            )
        if self.patch_size < 8 or self.patch_size % 8:
            raise ModelFormatError(
                f"{CARD_NAME}: patch_size must be a multiple of 8 and >= 8, "
                f"got {self.patch_size}"
            )
        if self.space == "pixel" and self.vae_scale_factor != 1:
            raise ModelFormatError(
                f"{CARD_NAME}: a pixel-space model has vae_scale_factor 1, "
                f"got {self.vae_scale_factor}"
            )

    def _check_types(self) -> None:
        """Every field has the type and range the samplers rely on."""
        if not isinstance(self.classes, TissueClasses):
            raise ModelFormatError(f"{CARD_NAME}: classes must be TissueClasses, "
                                   f"got {type(self.classes).__name__}")
        for name, minimum in (("patch_size", 8), ("vae_scale_factor", 1),
                              ("image_channels", 1), ("mask_resolution_factor", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ModelFormatError(
                    f"{CARD_NAME}: {name} must be an integer >= {minimum}, got "
                    f"{value!r}")
        if not _is_number(self.latent_scaling) or not self.latent_scaling > 0:
            raise ModelFormatError(
                f"{CARD_NAME}: latent_scaling must be a finite number > 0, got "
                f"{self.latent_scaling!r}")
        mpp = self.microns_per_pixel
        if mpp is not None and (not _is_number(mpp) or not mpp > 0):
            raise ModelFormatError(
                f"{CARD_NAME}: microns_per_pixel must be a finite number > 0 or "
                f"null (unknown), got {mpp!r}")
        for name in ("space", "conditioning"):
            if not isinstance(getattr(self, name), str):
                raise ModelFormatError(f"{CARD_NAME}: {name} must be a string, got "
                                       f"{getattr(self, name)!r}")
        if not isinstance(self.provenance, dict):
            raise ModelFormatError(f"{CARD_NAME}: provenance must be an object "
                                   f"(a dict), got {self.provenance!r:.80}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def latent_patch_size(self) -> int:
        """Window side on the canvas the UNet denoises (latent pixels if latent)."""
        return self.patch_size // self.vae_scale_factor

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = self.classes.to_list()
        return {"format": CARD_FORMAT, "format_version": CARD_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CARD_NAME) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelFormatError(
                f"{source}: a model card is a JSON object with format "
                f"{CARD_FORMAT!r}, got a JSON {type(data).__name__}")
        if data.get("format") != CARD_FORMAT:
            raise ModelFormatError(
                f"{source}: not a napari-histodiff model card "
                f"(format {data.get('format')!r}, expected {CARD_FORMAT!r})"
            )
        version = data.get("format_version", 0)
        if not _is_int(version) or version < 0:
            raise ModelFormatError(
                f"{source}: format_version must be an integer (this "
                f"napari-histodiff writes {CARD_VERSION}), got {version!r}")
        if version > CARD_VERSION:
            raise ModelFormatError(
                f"{source}: card version {version} is newer than "
                f"this napari-histodiff understands ({CARD_VERSION}); upgrade it"
            )
        fields = {k: v for k, v in data.items()
                  if k not in ("format", "format_version")}
        known = {f.name for f in dataclass_fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ModelFormatError(
                f"{source}: unknown model card fields {unknown}; this "
                f"napari-histodiff knows {sorted(known)}")
        if fields.get("space") == "latent" and "latent_scaling" not in fields:
            raise ModelFormatError(
                f"{source}: a latent model's card must give latent_scaling (the "
                "factor applied to the VAE latents, 1/std of the training "
                "latents; `histodiff train vae` records it)")
        if "classes" not in fields:
            raise ModelFormatError(
                f"{source}: the model card has no 'classes' (a list of "
                "{index, name, color} objects, 'unknown' first)")
        raw = fields["classes"]
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            raise ModelFormatError(
                f"{source}: 'classes' must be a list of {{index, name, color}} "
                f"objects, got {raw!r:.120}")
        try:
            fields["classes"] = TissueClasses.from_list(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"{source}: malformed 'classes' in the model card ({exc}); each "
                "class needs index, name and color") from exc
        try:
            return cls(**fields)
        except ModelFormatError as exc:
            message = str(exc)
            if message.startswith(CARD_NAME + ":"):
                message = message[len(CARD_NAME) + 1:].lstrip()
            raise ModelFormatError(f"{source}: {message}") from exc
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: malformed model card ({exc})") from exc

    def save(self, directory: str | Path) -> Path:
        """Write ``histodiff.json`` into ``directory`` (strict JSON, no NaN),
        whole or not at all."""
        from ..outputs import atomic_output

        path = Path(directory) / CARD_NAME
        try:
            text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except ValueError as exc:
            raise ModelFormatError(f"{path}: the model card holds a value that "
                                   f"is not JSON ({exc})") from exc
        with atomic_output(path, True, "out") as tmp:
            tmp.write_text(text)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        path = Path(directory) / CARD_NAME
        if not path.is_file():
            raise ModelFormatError(
                f"{directory}: no {CARD_NAME} model card; is this a napari-histodiff "
                "model directory? Create one with `histodiff model init`."
            )
        try:
            data = json.loads(path.read_text(), parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))


def check_latent_preview(preview: Any, source: str) -> None:
    """Refuse a latent preview map that is not 3 x C weights and 3 biases."""
    ok = isinstance(preview, dict) and set(preview) == {"weight", "bias"}
    if ok:
        weight, bias = preview["weight"], preview["bias"]
        ok = (isinstance(weight, list) and len(weight) == 3
              and all(isinstance(r, list) and r for r in weight)
              and len({len(r) for r in weight}) == 1
              and isinstance(bias, list) and len(bias) == 3
              and all(_is_number(v) for r in weight for v in r)
              and all(_is_number(v) for v in bias))
    if not ok:
        raise ModelFormatError(
            f"{source}: latent_preview must be {{\"weight\": 3 rows of C "
            f"numbers, \"bias\": 3 numbers}} or null, got {preview!r:.120}")


def latent_preview_arrays(preview: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The preview map as float32 arrays: weight (3, C), bias (3,)."""
    return (np.asarray(preview["weight"], dtype=np.float32),
            np.asarray(preview["bias"], dtype=np.float32))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and bool(np.isfinite(value)))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (write null or a number)")
