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
      text_encoder/, tokenizer/   optional, text-conditioned models

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
from .weights import (  # noqa: F401  (re-exported: the public names)
    PICKLE_SUFFIXES,
    _convert_hint,
    _read_config,
    check_safe_weights,
    check_safetensors,
    load_part,
)

COMPONENTS_REQUIRED = ("unet", "scheduler")
COMPONENTS_OPTIONAL = ("vae", "mask_unet")



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


def save_components(directory: str | Path, card: ModelCard, *,
                    overwrite: bool = False, argname: str = "out",
                    keep: Path | None = None, **components: Any) -> Path:
    """Write a model directory: each component's folder and the model card.

    ``components`` are ``unet``, ``scheduler`` and optionally ``vae``,
    ``mask_unet`` and ``text`` (a
    :class:`~.text_encoder.PromptEncoder`, written as ``text_encoder/`` and
    ``tokenizer/``) (None: absent). Weights are written as safetensors. The
    ``model_index.json`` is the one diffusers writes for a pipeline, so the
    folder reads the same whichever way it was made.

    The folder is written beside ``directory`` and renamed into place when
    complete (:func:`napari_histodiff.outputs.atomic_output`); an existing
    ``directory`` is an error unless ``overwrite``, and then it must be a model
    directory. ``keep``: component folders of this model directory to copy
    into the new one when they are not given (e.g. ``mask_unet/``).
    """
    import shutil

    from ..outputs import atomic_output

    directory = Path(directory)
    with atomic_output(directory, overwrite, argname, folder=True) as tmp:
        write_components(tmp, card, **components)
        if keep is not None:
            for name in COMPONENTS_REQUIRED + COMPONENTS_OPTIONAL:
                if components.get(name) is None and (keep / name).is_dir() \
                        and not (tmp / name).exists():
                    shutil.copytree(keep / name, tmp / name)
    return directory


def write_components(directory: Path, card: ModelCard, **components: Any) -> Path:
    """Write the components and the card into the existing ``directory``."""
    import json

    import diffusers

    directory = Path(directory)
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
    if components.get("text") is not None:
        components["text"].save(directory)
    (directory / "model_index.json").write_text(json.dumps(index, indent=2,
                                                           sort_keys=True) + "\n")
    card.save(directory)
    return directory


def load_components(path: str | Path, device=None, dtype=None) -> dict[str, Any]:
    """Load the parts of a model directory (safetensors only).

    Returns a dict with ``card``, ``unet``, ``scheduler`` and, where present,
    ``vae``, ``mask_unet`` and ``text`` (a
    :class:`~.text_encoder.PromptEncoder`) (else None).
    """
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        UNet2DConditionModel,
        UNet2DModel,
    )

    path = check_model_dir(path)
    card = ModelCard.load(path)
    kw: dict[str, Any] = {"use_safetensors": True, "low_cpu_mem_usage": False}
    if dtype is not None:
        kw["torch_dtype"] = dtype
    parts: dict[str, Any] = {"card": card}
    unet_class = _read_config(path / "unet" / "config.json").get("_class_name")
    loader = (UNet2DConditionModel if unet_class == "UNet2DConditionModel"
              else UNet2DModel)
    parts["unet"], _ = load_part(loader, path, "unet", "config.json", **kw)
    parts["scheduler"], _ = load_part(DDPMScheduler, path, "scheduler",
                                       "scheduler_config.json")
    parts["vae"] = (
        load_part(AutoencoderKL, path, "vae", "config.json", **kw)[0]
        if (path / "vae").is_dir()
        else None
    )
    parts["mask_unet"] = (
        load_part(UNet2DModel, path, "mask_unet", "config.json", **kw)[0]
        if (path / "mask_unet").is_dir()
        else None
    )
    parts["text"] = None
    if card.text is not None or (path / "text_encoder").is_dir():
        from .text_encoder import load_prompt_encoder

        parts["text"] = load_prompt_encoder(path, "model")
    _check_consistency(path, parts)
    if device is not None:
        for key in ("unet", "vae", "mask_unet"):
            if parts[key] is not None:
                parts[key].to(device)
        if parts["text"] is not None:
            parts["text"].to(device)
    return parts


def vae_factor(vae) -> int:
    """Pixels per latent pixel along one side of an ``AutoencoderKL``.

    Every encoder block but the last halves the image, so the factor is
    ``2 ** (len(block_out_channels) - 1)``.
    """
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _check_text(path: Path, card: ModelCard, unet, text) -> None:
    """A text model has its encoder, a cross-attention UNet of its width,
    and a card that says so; a model without one has none of these."""
    dim = getattr(unet.config, "cross_attention_dim", None)
    if text is None and (card.text is not None or dim is not None):
        what = ("its card has 'text'" if card.text is not None
                else f"its unet/ is a UNet2DConditionModel (cross_attention_dim "
                     f"{dim})")
        raise ModelFormatError(
            f"model: {path} is a text model ({what}) but has no text_encoder/ "
            "and tokenizer/; copy them from the model it was trained as")
    if text is None:
        return
    if card.text is None:
        raise ModelFormatError(
            f"model: {path} has a text_encoder/ but its {CARD_NAME} has no "
            "'text' saying what the prompts mean; re-export the model")
    if dim is None:
        raise ModelFormatError(
            f"model: {path} has a text_encoder/ but its unet/ has no "
            "cross-attention (a UNet2DModel); the text encoder belongs to "
            "another model")
    if text.hidden_size != dim:
        raise ModelFormatError(
            f"model: {path}/text_encoder gives {text.hidden_size}-wide tokens "
            f"but {path}/unet has cross_attention_dim {dim}")


def _check_consistency(path: Path, parts: dict[str, Any]) -> None:
    card: ModelCard = parts["card"]
    unet = parts["unet"]
    vae = parts["vae"]
    _check_text(path, card, unet, parts.get("text"))
    if card.space == "latent" and vae is None:
        raise ModelFormatError(
            f"model: {path} is a latent model (space 'latent' in {CARD_NAME}) but "
            "has no vae/; copy the autoencoder's vae/ folder into it")
    if card.space == "latent":
        factor = vae_factor(vae)
        if factor != card.vae_scale_factor:
            raise ModelFormatError(
                f"model: {path}/vae has spatial factor {factor} "
                f"({len(vae.config.block_out_channels)} blocks) but {CARD_NAME} "
                f"says vae_scale_factor {card.vae_scale_factor}; the VAE was "
                "trained for another factor than the card says")
        channels = vae.config.latent_channels
    else:
        channels = card.image_channels
    extra = 0 if card.conditioning == "none" else card.num_classes
    expected = channels + extra
    if unet.config.in_channels != expected:
        source = ("latent channels of its vae/" if card.space == "latent"
                  else "image channels")
        classes = f" + {extra} class channels" if extra else ", unconditional"
        raise ModelFormatError(
            f"model: {path}/unet takes {unet.config.in_channels} input channels "
            f"but the model implies {expected} ({channels} {source}{classes})")
    if unet.config.out_channels != channels:
        raise ModelFormatError(
            f"model: {path}/unet gives {unet.config.out_channels} output channels "
            f"but {path} implies {channels} ({card.space} model)")
    if card.latent_preview is not None:
        width = len(card.latent_preview["weight"][0])
        if width != channels:
            raise ModelFormatError(
                f"model: {path}/{CARD_NAME} latent_preview maps {width} channels "
                f"but the canvas has {channels}")
    sample = unet.config.sample_size
    window = card.patch_size // card.vae_scale_factor
    if isinstance(sample, (list, tuple)):
        sample = sample[0] if len(set(sample)) == 1 else sample
    if (card.patch_size % card.vae_scale_factor or sample != window):
        raise ModelFormatError(
            f"model: {path}/{CARD_NAME} gives patch_size {card.patch_size} "
            f"(vae factor {card.vae_scale_factor}: {window}-pixel windows) but "
            f"{path}/unet/config.json has sample_size {sample}; fix the card's "
            "patch_size to sample_size x vae_scale_factor")
