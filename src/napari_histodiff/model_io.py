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

import shutil
from pathlib import Path
from typing import Any

from .classes import TissueClasses
from .errors import (
    InputError,
    ModelFormatError,
    OutputExistsError,
    UnsafeCheckpointError,
)
from .model_card import CARD_NAME, ModelCard

PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth", ".pkl", ".pickle")
COMPONENTS_REQUIRED = ("unet", "scheduler")
COMPONENTS_OPTIONAL = ("vae", "mask_unet")

# Image UNet sizes: (block_out_channels, layers_per_block, attention in last block)
UNET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"block_out_channels": (32, 64, 64), "layers_per_block": 1},
    "small": {"block_out_channels": (64, 128, 128), "layers_per_block": 1},
    "base": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2},
}
LATENT_CHANNELS = 4


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


def build_unet(
    in_channels: int,
    out_channels: int,
    sample_size: int,
    size: str = "tiny",
    num_class_embeds: int | None = None,
):
    """A randomly initialised ``diffusers.UNet2DModel`` of a named size."""
    from diffusers import UNet2DModel

    if size not in UNET_SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(UNET_SIZES)}")
    spec = UNET_SIZES[size]
    n = len(spec["block_out_channels"])
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=spec["block_out_channels"],
        layers_per_block=spec["layers_per_block"],
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(32, spec["block_out_channels"][0]),
        num_class_embeds=num_class_embeds,
    )


def build_vae(size: str = "tiny"):
    """A randomly initialised ``AutoencoderKL`` with a spatial factor of 4."""
    from diffusers import AutoencoderKL

    channels = {"tiny": (32, 64, 64), "small": (64, 128, 128), "base": (64, 128, 256)}
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=channels.get(size, channels["tiny"]),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=32,
        layers_per_block=1,
    )


def default_scheduler():
    """The training noise schedule shared by all samplers."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
    )


def init_model(
    out: str | Path,
    classes: TissueClasses | str,
    patch_size: int = 64,
    size: str = "tiny",
    latent: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    microns_per_pixel: float | None = None,
):
    """Write a randomly initialised model directory and return its pipeline.

    Parameters
    ----------
    out : path
        Directory to create.
    classes : TissueClasses or str
        Classes, or comma-separated names (``unknown`` is added first).
    patch_size : int
        Window side in pixels (multiple of 8; of 32 for latent models).
    size : {"tiny", "small", "base"}
        UNet size.
    latent : bool
        Add a VAE and diffuse in its latent space (spatial factor 4).
    seed : int
        Seed of the random initialisation.
    overwrite : bool
        Replace ``out`` if it exists.
    """
    import torch

    from .pipeline import HistoDiffPipeline

    out = Path(out)
    prepare_output(out, overwrite, "out")
    if isinstance(classes, str):
        classes = TissueClasses.from_names(classes)
    if latent and patch_size % 32:
        raise InputError(f"patch_size: latent models need a multiple of 32, got "
                         f"{patch_size}")
    torch.manual_seed(seed)
    factor = 4 if latent else 1
    channels = LATENT_CHANNELS if latent else 3
    card = ModelCard(
        classes=classes,
        patch_size=patch_size,
        space="latent" if latent else "pixel",
        vae_scale_factor=factor,
        latent_scaling=1.0,
        microns_per_pixel=microns_per_pixel,
        provenance={"kind": "random-init", "seed": seed, "size": size},
    )
    unet = build_unet(channels + len(classes), channels, patch_size // factor, size)
    vae = build_vae(size) if latent else None
    pipe = HistoDiffPipeline(unet=unet, scheduler=default_scheduler(), vae=vae,
                             card=card)
    pipe.save_pretrained(out)
    return pipe


def prepare_output(path: Path, overwrite: bool, argname: str) -> None:
    """Refuse an existing output unless ``overwrite``; then remove it."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(
                f"{argname}: {path} exists; choose another path or pass --overwrite"
            )
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


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
