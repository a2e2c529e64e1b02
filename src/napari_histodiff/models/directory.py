"""Creating, saving and safely loading model directories.

A model directory is readable by diffusers component by component
(``UNet2DModel.from_pretrained(path, subfolder="unet")``) and holds the
model card ``histodiff.json``::

    my-model/
      histodiff.json
      unet/        config.json + diffusion_pytorch_model.safetensors
      scheduler/   scheduler_config.json
      vae/         optional, latent models
      mask_unet/   optional, the mask generator

Weights are read from safetensors only. Pickle checkpoints (``.bin``,
``.pt``, ``.ckpt``, ``.pth``) are refused because unpickling a file can run
arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import (
    ModelFormatError,
    UnsafeCheckpointError,
)
from .card import CARD_NAME, ModelCard

PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth", ".pkl", ".pickle")
COMPONENTS_REQUIRED = ("unet", "scheduler")
COMPONENTS_OPTIONAL = ("vae", "mask_unet")



def _convert_hint(path: Path) -> str:
    return (
        f"{path} is a pickle checkpoint: loading it can run arbitrary code, so "
        "napari-histodiff refuses it. If you trust its origin, convert it once "
        "in a separate environment: load it with "
        "torch.load(path, weights_only=True) and save the state dict with "
        "safetensors.torch.save_file(state_dict, "
        "'diffusion_pytorch_model.safetensors'), or call "
        "model.save_pretrained(folder, safe_serialization=True) in diffusers."
    )


def check_safe_weights(folder: Path) -> Path:
    """Return the safetensors weights of a component folder.

    Raises
    ------
    UnsafeCheckpointError
        If the folder only has pickle checkpoints.
    ModelFormatError
        If it has no weights at all.
    """
    safes = sorted(folder.glob("*.safetensors"))
    if safes:
        return safes[0]
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeCheckpointError(_convert_hint(pickles[0]))
    raise ModelFormatError(
        f"{folder}: no weights (expected diffusion_pytorch_model.safetensors)"
    )


def check_model_dir(path: str | Path) -> Path:
    """Check that ``path`` is a complete model directory; return it as a Path.

    The error names what is missing and how to make a model directory.
    """
    path = Path(path)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(_convert_hint(path))
    if not path.exists():
        raise ModelFormatError(
            f"model: {path} does not exist. Give a model directory made by "
            "`histodiff model init` or `histodiff train`, or `demo`."
        )
    if not path.is_dir():
        raise ModelFormatError(f"model: {path} is a file, not a model directory")
    missing = [c for c in COMPONENTS_REQUIRED if not (path / c).is_dir()]
    if not (path / CARD_NAME).is_file():
        missing.insert(0, CARD_NAME)
    if missing:
        raise ModelFormatError(
            f"model: {path} lacks {', '.join(missing)}; a model directory holds "
            f"{CARD_NAME}, unet/, scheduler/ (and optionally vae/, mask_unet/)"
        )
    for comp in ("unet", "vae", "mask_unet"):
        if (path / comp).is_dir():
            if not (path / comp / "config.json").is_file():
                raise ModelFormatError(f"model: {path / comp} lacks config.json")
            check_safe_weights(path / comp)
    if not (path / "scheduler" / "scheduler_config.json").is_file():
        raise ModelFormatError(
            f"model: {path / 'scheduler'} lacks scheduler_config.json"
        )
    return path


def save_components(directory: str | Path, card: ModelCard,
                    **components: Any) -> Path:
    """Write a model directory: each component's folder and the model card.

    ``components`` are ``unet``, ``scheduler`` and optionally ``vae`` and
    ``mask_unet`` (None: absent). Weights are written as safetensors. The
    ``model_index.json`` is the one diffusers writes for a pipeline, so the
    folder reads the same whichever way it was made.
    """
    import json

    import diffusers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": "HistoDiffPipeline",
                             "_diffusers_version": diffusers.__version__}
    for name in ("mask_unet", "scheduler", "unet", "vae"):
        part = components.get(name)
        if part is None:
            index[name] = [None, None]
            continue
        if name == "scheduler":
            part.save_pretrained(directory / name)
        else:
            part.save_pretrained(directory / name, safe_serialization=True)
        index[name] = ["diffusers", type(part).__name__]
    (directory / "model_index.json").write_text(json.dumps(index, indent=2,
                                                           sort_keys=True) + "\n")
    card.save(directory)
    return directory


def load_components(path: str | Path, device=None, dtype=None) -> dict[str, Any]:
    """Load the parts of a model directory (safetensors only).

    Returns a dict with ``card``, ``unet``, ``scheduler`` and, where present,
    ``vae`` and ``mask_unet`` (else None).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

    path = check_model_dir(path)
    card = ModelCard.load(path)
    kw: dict[str, Any] = {"use_safetensors": True, "low_cpu_mem_usage": False}
    if dtype is not None:
        kw["torch_dtype"] = dtype
    parts: dict[str, Any] = {"card": card}
    parts["unet"] = UNet2DModel.from_pretrained(path, subfolder="unet", **kw)
    parts["scheduler"] = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    parts["vae"] = (
        AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
        if (path / "vae").is_dir()
        else None
    )
    parts["mask_unet"] = (
        UNet2DModel.from_pretrained(path, subfolder="mask_unet", **kw)
        if (path / "mask_unet").is_dir()
        else None
    )
    _check_consistency(path, parts)
    if device is not None:
        for key in ("unet", "vae", "mask_unet"):
            if parts[key] is not None:
                parts[key].to(device)
    return parts


def _check_consistency(path: Path, parts: dict[str, Any]) -> None:
    card: ModelCard = parts["card"]
    unet = parts["unet"]
    channels = 4 if card.space == "latent" else card.image_channels
    expected = channels + card.num_classes
    if unet.config.in_channels != expected:
        raise ModelFormatError(
            f"model: {path}/unet takes {unet.config.in_channels} input channels "
            f"but the card implies {expected} ({channels} image + "
            f"{card.num_classes} class channels)"
        )
    if card.space == "latent" and parts["vae"] is None:
        raise ModelFormatError(f"model: {path} is a latent model but has no vae/")
