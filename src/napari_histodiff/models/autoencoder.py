"""Autoencoder folders: a trained VAE and the facts the latent models need.

``histodiff train vae --out DIR`` writes::

    DIR/
      histodiff-autoencoder.json   the autoencoder card (below)
      vae/                         diffusers AutoencoderKL: config.json +
                                   diffusion_pytorch_model.safetensors

The card, ``{"format": "napari-histodiff-autoencoder", "format_version": 1,
...}``, holds the spatial ``factor`` (pixels per latent pixel along a side),
``latent_channels``, ``latent_scaling`` (1 / std of the training latents, the
multiplier applied to the VAE latents before diffusion), ``latent_preview``
(a linear map from scaled latents to RGB for cheap live previews),
``reconstruction`` (PSNR and SSIM on held-out images) and ``provenance``.

:func:`load_autoencoder` reads such a folder, or the ``vae/`` of a latent
model directory, from safetensors only, and refuses a VAE that does not fit
its card.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError, OutputExistsError, OutputNotOursError
from .card import CARD_NAME, ModelCard, check_latent_preview

AUTOENCODER_CARD = "histodiff-autoencoder.json"
AUTOENCODER_FORMAT = "napari-histodiff-autoencoder"
AUTOENCODER_VERSION = 1
VAE_DIR = "vae"


@dataclass
class AutoencoderCard:
    """What a trained autoencoder is, beside its diffusers config.

    Parameters
    ----------
    factor : int
        Pixels per latent pixel along one side (4 or 8).
    latent_channels : int
        Channels of the latent.
    latent_scaling : float
        Multiplier of the VAE latents before diffusion: 1 / std of the
        posterior means over the training data (LDM's ``scale_by_std``).
    latent_preview : dict or None
        ``{"weight": 3 rows of C numbers, "bias": 3 numbers}``: RGB in
        [-1, 1] of a latent pixel is ``weight @ z + bias`` for the *scaled*
        latent ``z``, fitted by least squares on the training crops.
    reconstruction : dict
        ``psnr_db``, ``ssim``, ``heldout`` (file names) and how they were
        measured; empty when no held-out images were given.
    provenance : dict
        Data, steps, seed, settings and software that made the weights.
    """

    factor: int
    latent_channels: int
    latent_scaling: float
    latent_preview: dict[str, Any] | None = None
    reconstruction: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("factor", "latent_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < 1:
                raise ModelFormatError(f"{AUTOENCODER_CARD}: {name} must be an "
                                       f"integer >= 1, got {value!r}")
        if self.factor & (self.factor - 1):
            raise ModelFormatError(f"{AUTOENCODER_CARD}: factor must be a power "
                                   f"of 2, got {self.factor}")
        s = self.latent_scaling
        if (isinstance(s, bool) or not isinstance(s, (int, float, np.number))
                or not np.isfinite(s) or not s > 0):
            raise ModelFormatError(f"{AUTOENCODER_CARD}: latent_scaling must be a "
                                   f"finite number > 0, got {s!r}")
        if self.latent_preview is not None:
            check_latent_preview(self.latent_preview, AUTOENCODER_CARD)
            width = len(self.latent_preview["weight"][0])
            if width != self.latent_channels:
                raise ModelFormatError(
                    f"{AUTOENCODER_CARD}: latent_preview maps {width} channels but "
                    f"latent_channels is {self.latent_channels}")
        for name in ("reconstruction", "provenance"):
            if not isinstance(getattr(self, name), dict):
                raise ModelFormatError(f"{AUTOENCODER_CARD}: {name} must be an "
                                       f"object, got {getattr(self, name)!r:.80}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": AUTOENCODER_FORMAT, "format_version": AUTOENCODER_VERSION,
                **asdict(self)}

    def facts(self) -> dict[str, Any]:
        """What a latent model's card keeps of it (its ``autoencoder`` field)."""
        return {"factor": self.factor, "latent_channels": self.latent_channels,
                "latent_scaling": self.latent_scaling,
                "reconstruction": self.reconstruction,
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: Any, source: str = AUTOENCODER_CARD
                  ) -> AutoencoderCard:
        if not isinstance(data, dict) or data.get("format") != AUTOENCODER_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ModelFormatError(f"{source}: not a napari-histodiff autoencoder "
                                   f"card (format {got!r}, expected "
                                   f"{AUTOENCODER_FORMAT!r})")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) \
                or not 1 <= version <= AUTOENCODER_VERSION:
            raise ModelFormatError(f"{source}: format_version {version!r} is not "
                                   f"one this napari-histodiff reads (1 to "
                                   f"{AUTOENCODER_VERSION})")
        fields = {k: v for k, v in data.items()
                  if k not in ("format", "format_version")}
        if "latent_scaling" not in fields:
            raise ModelFormatError(
                f"{source}: the autoencoder card has no latent_scaling (1/std of "
                "the training latents); retrain with `histodiff train vae` or add it")
        known = {f.name for f in dataclass_fields(cls)}
        unknown = sorted(set(fields) - known)
        missing = sorted({"factor", "latent_channels"} - set(fields))
        if unknown or missing:
            raise ModelFormatError(f"{source}: unknown fields {unknown}, missing "
                                   f"fields {missing}; this napari-histodiff knows "
                                   f"{sorted(known)}")
        try:
            return cls(**fields)
        except ModelFormatError as exc:
            message = str(exc).removeprefix(AUTOENCODER_CARD + ":").lstrip()
            raise ModelFormatError(f"{source}: {message}") from exc

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / AUTOENCODER_CARD
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> AutoencoderCard:
        path = Path(directory) / AUTOENCODER_CARD
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ModelFormatError(f"vae: cannot read {path} ({exc.strerror or exc})"
                                   ) from exc
        except ValueError as exc:
            raise ModelFormatError(f"vae: {path} is not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))


def is_autoencoder_dir(path: str | Path) -> bool:
    """True if ``path`` is a folder holding an autoencoder card of ours."""
    card = Path(path) / AUTOENCODER_CARD
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == AUTOENCODER_FORMAT


def save_autoencoder(out: str | Path, vae, card: AutoencoderCard,
                     overwrite: bool = False, argname: str = "out") -> Path:
    """Write an autoencoder folder whole or not at all.

    The folder is written to a temporary sibling and renamed into place; an
    existing ``out`` is replaced only with ``overwrite`` and only when it is
    an autoencoder folder (or empty), never another folder.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is false.
    OutputNotOursError
        ``out`` is a file, or a folder this project did not write as an
        autoencoder.
    """
    from ..outputs import swap_folder, temporary_sibling, write_error

    out = Path(out)
    check_autoencoder_output(out, overwrite, argname)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out, folder=True)
    try:
        tmp.mkdir()
        vae.to("cpu").save_pretrained(tmp / VAE_DIR, safe_serialization=True)
        card.save(tmp)
        check_autoencoder_output(out, overwrite, argname)  # again: time has passed
        if out.is_dir():
            swap_folder(tmp, out)
        else:
            os.replace(tmp, out)
    except BaseException as exc:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputExistsError):
            raise write_error(exc, out, argname) from exc
        raise
    return out


def check_autoencoder_output(out: Path, overwrite: bool, argname: str = "out"
                             ) -> None:
    """Refuse an ``out`` that :func:`save_autoencoder` may not replace.

    Nothing there, an empty folder, or (with ``overwrite``) an autoencoder
    folder can be written; the parent folder must be writable.
    """
    from ..outputs import check_writable

    out = Path(out)
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise OutputNotOursError(f"{argname}: no folder above {out} exists")
    check_writable(parent, argname)
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(f"{argname}: {out} exists; choose another path or "
                                "pass --overwrite")
    if out.is_symlink() or not out.is_dir():
        raise OutputNotOursError(f"{argname}: {out} is not a folder; --overwrite "
                                 "replaces only an autoencoder folder. Choose "
                                 "another path.")
    if any(out.iterdir()) and not is_autoencoder_dir(out):
        raise OutputNotOursError(
            f"{argname}: {out} exists and is not an autoencoder folder (no "
            f"{AUTOENCODER_CARD}); --overwrite replaces only this project's "
            "outputs. Choose another path or remove the folder yourself.")


def load_autoencoder(path: str | Path, argname: str = "vae"
                     ) -> tuple[Any, AutoencoderCard]:
    """Load a VAE and its card from an autoencoder folder or a latent model.

    Parameters
    ----------
    path : path
        An autoencoder folder (``histodiff-autoencoder.json`` + ``vae/``) or a
        latent model directory (``histodiff.json`` + ``vae/``).
    argname : str
        The argument named in error messages.

    Returns
    -------
    vae : diffusers.AutoencoderKL
        In float32, in eval mode.
    card : AutoencoderCard

    Raises
    ------
    ModelFormatError
        Neither kind of folder; no ``vae/``; a card without latent scaling;
        a VAE whose factor (from its block count) or latent channels differ
        from the card's. The message names the folder and both values.
    """
    import torch
    from diffusers import AutoencoderKL

    from .directory import check_safe_weights, load_part
    from .factory import vae_factor

    path = Path(path)
    if (path / AUTOENCODER_CARD).is_file():
        card = AutoencoderCard.load(path)
        model_card = None
    elif (path / CARD_NAME).is_file():
        model_card = ModelCard.load(path)
        if model_card.space != "latent":
            raise ModelFormatError(
                f"{argname}: {path} is a pixel-space model (space "
                f"{model_card.space!r}); give an autoencoder folder (histodiff "
                "train vae --out) or a latent model directory")
        card = None
    else:
        raise ModelFormatError(
            f"{argname}: {path} is neither an autoencoder folder ({AUTOENCODER_CARD}"
            f" + {VAE_DIR}/) nor a latent model directory ({CARD_NAME} + "
            f"{VAE_DIR}/); train one with `histodiff train vae`")
    folder = path / VAE_DIR
    if not (folder / "config.json").is_file():
        raise ModelFormatError(f"{argname}: {path} has no {VAE_DIR}/config.json; "
                               "an autoencoder keeps its VAE in vae/")
    check_safe_weights(folder)
    vae, _ = load_part(AutoencoderKL, path, VAE_DIR, "config.json",
                       use_safetensors=True, low_cpu_mem_usage=False,
                       torch_dtype=torch.float32)
    vae.eval().requires_grad_(False)
    if model_card is not None:
        facts = model_card.autoencoder or {}
        card = AutoencoderCard(
            factor=model_card.vae_scale_factor,
            latent_channels=int(facts.get("latent_channels",
                                          vae.config.latent_channels)),
            latent_scaling=model_card.latent_scaling,
            latent_preview=model_card.latent_preview,
            reconstruction=dict(facts.get("reconstruction", {})),
            provenance=dict(facts.get("provenance", {})))
    assert card is not None
    factor = vae_factor(vae)
    if factor != card.factor:
        raise ModelFormatError(
            f"{argname}: {folder} has spatial factor {factor} "
            f"({len(vae.config.block_out_channels)} blocks) but the card of {path} "
            f"says factor {card.factor}; the VAE was trained for another factor")
    if vae.config.latent_channels != card.latent_channels:
        raise ModelFormatError(
            f"{argname}: {folder} has {vae.config.latent_channels} latent channels "
            f"but the card of {path} says {card.latent_channels}")
    return vae, card
