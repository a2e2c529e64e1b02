"""Randomly initialised models: the UNet and VAE architectures we ship.

``init_model`` writes a model directory of untrained weights (the start of
training, and of tests); it knows the model directory format
(:mod:`.directory`) and no pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..outputs import check_output
from .card import ModelCard
from .classes import TissueClasses
from .directory import save_components, vae_factor  # noqa: F401 (re-export)

# Image UNet sizes: (block_out_channels, layers_per_block, attention in last block)
UNET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"block_out_channels": (32, 64, 64), "layers_per_block": 1},
    "small": {"block_out_channels": (64, 128, 128), "layers_per_block": 1},
    "base": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2},
}
LATENT_CHANNELS = 4
# Largest window side of init_model: one window of 1024 px already takes a
# few GB per UNet step, and images of any size are made window by window, so
# a larger window is almost surely a typo (e.g. 100000).
MAX_PATCH_SIZE = 1024


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


VAE_FACTORS = (4, 8)
VAE_SIZES: dict[str, tuple[int, ...]] = {
    "tiny": (32, 64, 64), "small": (64, 128, 128), "base": (64, 128, 256)}


def build_vae(size: str = "tiny", factor: int = 4,
              latent_channels: int = LATENT_CHANNELS):
    """A randomly initialised ``AutoencoderKL`` of a named size.

    Parameters
    ----------
    size : {"tiny", "small", "base"}
        Channel widths of the blocks (factor 8 repeats the widest block).
    factor : {4, 8}
        Spatial factor: one latent pixel per ``factor x factor`` pixels.
    latent_channels : int
        Channels of the latent (4 as Stable Diffusion, 3 as HistoDiffusion).
    """
    from diffusers import AutoencoderKL

    if size not in VAE_SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(VAE_SIZES)}")
    if isinstance(factor, bool) or factor not in VAE_FACTORS:
        raise InputError(f"factor: expected one of {VAE_FACTORS}, got {factor!r}")
    if (isinstance(latent_channels, bool) or not isinstance(latent_channels, int)
            or not 1 <= latent_channels <= 64):
        raise InputError(f"latent_channels: expected an integer from 1 to 64, "
                         f"got {latent_channels!r}")
    channels = VAE_SIZES[size]
    if factor == 8:
        channels = channels + channels[-1:]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
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
    """Write a randomly initialised model directory; return its components.

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

    Returns
    -------
    dict
        ``card``, ``unet``, ``scheduler`` and ``vae`` (None for pixel models),
        as :func:`.directory.load_components` returns them.
    """
    import math

    import torch

    out = Path(out)
    if isinstance(classes, str):
        names = [n.strip() for n in classes.split(",")]
        if not any(names) or "" in names:
            raise InputError(
                f"classes: {classes!r} holds an empty name; give comma-separated "
                "class names such as tumor,stroma,necrosis")
        classes = TissueClasses.from_names(classes)
    if not isinstance(classes, TissueClasses):
        raise InputError(f"classes: expected TissueClasses or comma-separated "
                         f"names, got {classes!r:.80}")
    if len(classes) < 2:
        raise InputError(
            f"classes: {classes.names} has only 'unknown'; a model needs at "
            "least one tissue class, e.g. --classes tumor,stroma")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or not (
            8 <= patch_size <= MAX_PATCH_SIZE) or patch_size % 8:
        raise InputError(
            f"patch_size: expected a multiple of 8 from 8 to {MAX_PATCH_SIZE}, got "
            f"{patch_size!r} (windows above {MAX_PATCH_SIZE} px take many GB per "
            "step; large images are made window by window anyway)")
    if latent and patch_size % 32:
        raise InputError(f"patch_size: latent models need a multiple of 32, got "
                         f"{patch_size}")
    if microns_per_pixel is not None and (
            isinstance(microns_per_pixel, bool)
            or not isinstance(microns_per_pixel, (int, float))
            or not math.isfinite(microns_per_pixel) or microns_per_pixel <= 0):
        raise InputError(
            f"microns_per_pixel: expected a finite number > 0 (or none if "
            f"unknown), got {microns_per_pixel!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed: expected an integer >= 0, got {seed!r}")
    if size not in UNET_SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(UNET_SIZES)}")
    check_output(out, overwrite, "out", folder=True)
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
    parts: dict[str, Any] = {"card": card, "unet": unet,
                             "scheduler": default_scheduler(), "vae": vae}
    save_components(out, overwrite=overwrite, **parts)
    return parts
