"""UNets and VAEs to train: built from a size name or explicit channels, or
loaded.

Sizes are those of :data:`napari_histodiff.models.factory.UNET_SIZES` and
:data:`~napari_histodiff.models.factory.VAE_SIZES`; ``channels`` and
``layers`` override them (e.g. ``48,96,144`` with 2 layers per block).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError


def build_train_unet(in_channels: int, out_channels: int, sample_size: int,
                     size: str = "tiny", channels: Sequence[int] | None = None,
                     layers: int | None = None, attention: bool = True):
    """A randomly initialised ``UNet2DModel``.

    Parameters
    ----------
    in_channels, out_channels : int
    sample_size : int
        Window side the model is trained on.
    size : str
        A named size (``tiny``, ``small``, ``base``).
    channels : sequence of int, optional
        Channels per resolution level (overrides ``size``).
    layers : int, optional
        ResNet layers per block (overrides ``size``).
    attention : bool
        Self-attention in the lowest-resolution block.
    """
    from diffusers import UNet2DModel

    from ..models.factory import UNET_SIZES

    if size not in UNET_SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(UNET_SIZES)}")
    spec = dict(UNET_SIZES[size])
    if channels is not None:
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or any(c < 8 or c % 8 for c in channels):
            raise InputError(f"channels: give >= 2 levels, each a multiple of 8, "
                             f"got {channels}")
        spec["block_out_channels"] = channels
    if layers is not None:
        if layers < 1:
            raise InputError(f"layers: must be >= 1, got {layers}")
        spec["layers_per_block"] = int(layers)
    n = len(spec["block_out_channels"])
    if sample_size % 2 ** (n - 1):
        raise InputError(f"patch_size: {sample_size} must be divisible by "
                         f"{2 ** (n - 1)} for {n} resolution levels")
    last_down = "AttnDownBlock2D" if attention else "DownBlock2D"
    first_up = "AttnUpBlock2D" if attention else "UpBlock2D"
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=spec["block_out_channels"],
        layers_per_block=spec["layers_per_block"],
        down_block_types=("DownBlock2D",) * (n - 1) + (last_down,),
        up_block_types=(first_up,) + ("UpBlock2D",) * (n - 1),
        norm_num_groups=min(32, min(spec["block_out_channels"])),
    )


def build_train_vae(size: str = "tiny", factor: int = 4, latent_channels: int = 4,
                    channels: Sequence[int] | None = None):
    """A randomly initialised ``AutoencoderKL``.

    Parameters
    ----------
    size : str
        A named size (:func:`napari_histodiff.models.factory.build_vae`).
    factor : {4, 8}
        Pixels per latent pixel along a side.
    latent_channels : int
    channels : sequence of int, optional
        Channels per block, ``log2(factor) + 1`` of them, each a multiple of
        8 (overrides ``size``; e.g. ``16,32,64`` for a fast CPU model). Group
        norms then use 8 groups unless every width divides by 32.
    """
    from ..models.factory import VAE_FACTORS, build_vae

    if channels is None:
        return build_vae(size, factor, latent_channels)
    from diffusers import AutoencoderKL

    channels = tuple(int(c) for c in channels)
    blocks = int(factor).bit_length()  # log2(factor) + 1 for powers of two
    if len(channels) != blocks or any(c < 8 or c % 8 for c in channels):
        raise InputError(f"channels: a factor-{factor} autoencoder needs {blocks} "
                         f"widths, each a multiple of 8, got {channels}")
    if factor not in VAE_FACTORS:
        raise InputError(f"factor: expected one of {VAE_FACTORS}, got {factor!r}")
    groups = 32 if all(c % 32 == 0 for c in channels) else 8
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        norm_num_groups=groups, layers_per_block=1)


def load_unet(model_dir: str | Path, subfolder: str):
    """Load ``model_dir/subfolder`` (safetensors only) in float32."""
    import torch
    from diffusers import UNet2DModel

    from ..models.directory import check_safe_weights

    folder = Path(model_dir) / subfolder
    if not (folder / "config.json").is_file():
        raise InputError(f"init-model: {folder} has no config.json; give a model "
                         f"directory with a {subfolder}/ folder")
    check_safe_weights(folder)
    return UNet2DModel.from_pretrained(model_dir, subfolder=subfolder,
                                       use_safetensors=True,
                                       low_cpu_mem_usage=False,
                                       torch_dtype=torch.float32)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
