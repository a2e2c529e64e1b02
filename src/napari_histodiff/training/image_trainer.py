"""Training (or fine-tuning) the mask-conditioned image model.

A batch is a set of random crops: the image scaled to [-1, 1] is the clean
sample, and its mask as one channel per class is the condition. With
probability ``cond_dropout`` (and always for unlabelled crops) the condition
is the null mask, all class 0 (``unknown``), which the sampler's
classifier-free guidance contrasts with the real mask.

Latent models (``vae`` given): the crops are encoded by the frozen VAE
(posterior mean, or a sample from the step's seeded generator) and
multiplied by its latent scaling; the condition is the area fraction of each
class in the ``factor x factor`` pixels of every latent pixel. Unconditional
models (``condition="none"``) get no condition channels at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..errors import InputError
from ..models.classes import TissueClasses
from .augment import Augment
from .data import CropSampler, Sample, class_means, describe
from .loop import DiffusionTrainer, TrainSettings, step_rng, step_seed
from .models import build_train_unet, count_parameters, load_unet
from .text_trainer import TextSpec

CONDITIONS = ("mask", "none")


@dataclass
class ImageModelSpec:
    """The architecture of a new image model (ignored when fine-tuning)."""

    patch_size: int = 64
    size: str = "tiny"
    channels: tuple[int, ...] | None = None
    layers: int | None = None


@dataclass
class ImageTrainJob:
    """Everything one image-model training run needs.

    Parameters
    ----------
    samples : list of Sample
        Labelled and unlabelled images (see :mod:`.data`).
    classes : TissueClasses
    run_dir : path
        Checkpoints and loss logs.
    out : path
        The final model directory.
    settings : TrainSettings
    spec : ImageModelSpec
    init_model : path, optional
        Fine-tune the ``unet/`` of this model directory instead of a new one.
    augment : Augment
    unlabelled_fraction : float, optional
        Share of unlabelled crops (default: by area).
    provenance : dict
        Extra facts for the model card (e.g. the preset).
    vae : path, optional
        An autoencoder folder or latent model directory: train a latent
        model on its latents (see
        :func:`napari_histodiff.models.autoencoder.load_autoencoder`).
    condition : {"mask", "none"}
        ``"none"``: an unconditional model (no class channels); with
        ``text``, a model that follows its caption only.
    latent_sample : bool
        Latent models: train on posterior samples (seeded by the step)
        instead of posterior means.
    text : TextSpec, optional
        A text-conditioned model (``UNet2DConditionModel``, cross-attention
        on the captions; :mod:`.text_trainer`).
    """

    samples: list[Sample]
    classes: TissueClasses
    run_dir: Path
    out: Path
    settings: TrainSettings = field(default_factory=TrainSettings)
    spec: ImageModelSpec = field(default_factory=ImageModelSpec)
    init_model: Path | None = None
    augment: Augment = field(default_factory=Augment)
    unlabelled_fraction: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    vae: Path | None = None
    condition: str = "mask"
    latent_sample: bool = False
    text: TextSpec | None = None


def onehot(masks: np.ndarray, num_classes: int) -> torch.Tensor:
    """(B, H, W) ids -> (B, K, H, W) float32 one-hot."""
    ids = torch.from_numpy(np.ascontiguousarray(masks).astype(np.int64))
    return torch.nn.functional.one_hot(ids, num_classes).permute(0, 3, 1, 2).float()


def image_batch_fn(sampler: CropSampler, num_classes: int, batch_size: int,
                   seed: int, cond_dropout: float, augment: Augment):
    """The batch function of :class:`DiffusionTrainer` for image models."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(seed, step, 1)
        images, masks, _ = sampler.sample(rng, batch_size)
        images, masks = augment(rng, images, masks)
        drop = rng.random(batch_size) < cond_dropout
        masks[drop] = 0  # the null condition: all unknown
        x0 = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
        return x0.permute(0, 3, 1, 2).contiguous(), onehot(masks, num_classes)

    return batch


def area_fractions(masks: np.ndarray, num_classes: int, factor: int
                   ) -> torch.Tensor:
    """(B, H, W) ids -> (B, K, H/f, W/f): each class's share of every
    ``factor x factor`` block (one-hot when ``factor`` is 1)."""
    oh = onehot(masks, num_classes)
    return torch.nn.functional.avg_pool2d(oh, factor) if factor > 1 else oh


class LatentEncoder:
    """Crops in [-1, 1] -> scaled latents, by a frozen VAE.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
        Frozen (no gradients), on the training device.
    scaling : float
        The latent scaling of its card.
    sample : bool
        Posterior samples (from a generator seeded per step) instead of means.
    """

    def __init__(self, vae, scaling: float, sample: bool = False):
        self.vae = vae.eval().requires_grad_(False)
        self.scaling = float(scaling)
        self.sample = sample

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        dist = self.vae.encode(x.to(device)).latent_dist
        if self.sample:
            z = dist.sample(generator=torch.Generator().manual_seed(seed))
        else:
            z = dist.mean
        return z.float() * self.scaling


def latent_batch_fn(sampler: CropSampler, encoder: LatentEncoder, num_classes: int,
                    factor: int, batch_size: int, seed: int, cond_dropout: float,
                    augment: Augment, condition: str = "mask",
                    with_crops: bool = False):
    """The batch function of latent (and of unconditional) image models.

    With ``encoder`` None the clean samples are the pixels (an unconditional
    pixel model); ``condition="none"`` gives 0 condition channels.
    ``with_crops``: also return the crops' masks (before the condition
    dropout), whether each was labelled, and the image it came from (text
    models caption them, :mod:`.text_trainer`).
    """

    def batch(step: int):
        rng = step_rng(seed, step, 1)
        images, masks, labelled, sources = sampler.sample_sources(rng, batch_size)
        images, masks = augment(rng, images, masks)
        crops = (masks.copy(), labelled, sources)
        drop = rng.random(batch_size) < cond_dropout
        masks[drop] = 0  # the null condition: all unknown
        x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
        x = x.permute(0, 3, 1, 2).contiguous()
        x0 = x if encoder is None else encoder(x, step_seed(seed, step, 97))
        if condition == "none":
            cond = x0.new_zeros((x0.shape[0], 0, *x0.shape[-2:]))
        else:
            cond = area_fractions(masks, num_classes, factor).to(x0.device)
        return (x0, cond, *crops) if with_crops else (x0, cond)

    return batch


def load_job_vae(job: ImageTrainJob):
    """The frozen VAE and card of ``job`` (``--vae`` or ``--init-model``'s)."""
    from ..models.autoencoder import load_autoencoder

    if job.vae is not None:
        return load_autoencoder(job.vae, "vae")
    if job.init_model is not None:
        from ..models.card import ModelCard

        if ModelCard.load(job.init_model).space == "latent":
            return load_autoencoder(job.init_model, "init-model")
    return None, None


def _check_condition(job: ImageTrainJob) -> None:
    if job.condition not in CONDITIONS:
        raise InputError(f"condition: {job.condition!r} is not one of "
                         f"{', '.join(CONDITIONS)}")


def _latent_window(patch: int, factor: int, levels: int) -> int:
    window, step = patch // factor, 2 ** (levels - 1)
    if patch % factor or window % step:
        raise InputError(
            f"patch-size: {patch} pixels must be a multiple of {factor * step} for "
            f"a factor-{factor} autoencoder and {levels} UNet levels "
            f"({patch // factor}-pixel latent windows must divide by {step})")
    return window


def make_image_trainer(job: ImageTrainJob, device) -> DiffusionTrainer:
    """Build the UNet (new or fine-tuned), data and trainer of ``job``."""
    from ..models.factory import UNET_SIZES, default_scheduler

    _check_condition(job)
    if job.text is not None and job.init_model is not None:
        raise InputError("init-model: fine-tuning with --text is not "
                         "supported yet; train the text model from scratch")
    k = len(job.classes)
    vae, ae_card = load_job_vae(job)
    factor = ae_card.factor if ae_card else 1
    sample_channels = ae_card.latent_channels if ae_card else 3
    cond_channels = 0 if job.condition == "none" else k
    text = None
    if job.text is not None:
        from .text_trainer import prepare_text

        text = prepare_text(job.text, job.classes.names, job.settings.seed)
    if job.init_model is not None:
        unet = _init_unet(job, ae_card, sample_channels, cond_channels)
    else:
        s = job.spec
        levels = len(s.channels or UNET_SIZES.get(s.size, UNET_SIZES["tiny"])
                     ["block_out_channels"])
        window = (_latent_window(s.patch_size, factor, levels) if ae_card
                  else s.patch_size)
        if text is not None:
            from .text_trainer import build_text_unet

            unet = build_text_unet(sample_channels + cond_channels,
                                   sample_channels, window,
                                   text.prompt_encoder.hidden_size, s.size,
                                   s.channels, s.layers, seed=job.settings.seed)
        else:
            unet = build_train_unet(sample_channels + cond_channels,
                                    sample_channels, window, s.size, s.channels,
                                    s.layers)
    sampler = CropSampler(job.samples, job.spec.patch_size, job.unlabelled_fraction)
    st = job.settings
    extra = {"kind": "image", "unet_config": dict(unet.config),
             "classes": job.classes.names, "spec": asdict(job.spec)}
    if text is not None:
        return _text_trainer(job, text, unet, sampler, vae, ae_card, factor,
                             extra, device)
    if ae_card is None and job.condition == "mask":
        batch = image_batch_fn(sampler, k, st.batch_size, st.seed, st.cond_dropout,
                               job.augment)
    else:
        encoder = _latent_encoder(job, vae, ae_card, extra, device)
        extra["condition"] = job.condition
        batch = latent_batch_fn(sampler, encoder, k, factor, st.batch_size,
                                st.seed, st.cond_dropout, job.augment,
                                job.condition)
    trainer = DiffusionTrainer(unet, batch, default_scheduler(), st, job.run_dir,
                               device, extra)
    trainer.vae, trainer.autoencoder = vae, ae_card
    return trainer


def _latent_encoder(job: ImageTrainJob, vae, ae_card, extra: dict, device):
    """The frozen VAE encoder of a latent job (None for pixel models); its
    facts go into the checkpoints' ``extra``."""
    if ae_card is None:
        return None
    extra.update(vae=str(job.vae or job.init_model),
                 latent_scaling=ae_card.latent_scaling,
                 latent_sample=job.latent_sample)
    return LatentEncoder(vae.to(device), ae_card.latent_scaling, job.latent_sample)


def _text_trainer(job: ImageTrainJob, text, unet, sampler, vae, ae_card,
                  factor: int, extra: dict, device) -> DiffusionTrainer:
    """The trainer of a text model: a :class:`.text_trainer.TextUNet` (the
    builtin encoder inside it when trained jointly) fed caption tokens."""
    from ..models.factory import default_scheduler
    from .text_trainer import TextUNet, text_batch_fn

    st = job.settings
    encoder = _latent_encoder(job, vae, ae_card, extra, device)
    extra.update(condition=job.condition, text=job.text.settings(),
                 text_encoder=text.prompt_encoder.facts())
    inner = latent_batch_fn(sampler, encoder, len(job.classes), factor,
                            st.batch_size, st.seed, st.cond_dropout, job.augment,
                            job.condition, with_crops=True)
    prompt = text.prompt_encoder.to(device)
    batch = text_batch_fn(inner, text.captioner, prompt, text.trainable,
                          st.seed, st.batch_size, job.text.caption_dropout)
    model = TextUNet(unet, prompt.encoder if text.trainable else None)
    trainer = DiffusionTrainer(model, batch, default_scheduler(), st, job.run_dir,
                               device, extra)
    trainer.vae, trainer.autoencoder = vae, ae_card
    trainer.text = text
    return trainer


def _init_unet(job: ImageTrainJob, ae_card, sample_channels: int,
               cond_channels: int):
    """The UNet of ``--init-model``, checked against the data and the VAE.

    An unconditional model fine-tuned with masks gets zero-initialised class
    channels at its input (HistoDiffusion: unconditional pre-training, then
    conditional fine-tuning), so it starts from exactly its old predictions.
    """
    from ..models.card import ModelCard

    card = ModelCard.load(job.init_model)
    if card.conditioning != "none" and card.classes.names != job.classes.names:
        raise InputError(
            f"init-model: {job.init_model} has classes {card.classes.names}, "
            f"but the training masks use {job.classes.names}"
        )
    if card.space == "pixel" and ae_card is not None:
        raise InputError(f"init-model: {job.init_model} is a pixel-space model; "
                         f"it cannot be fine-tuned on the latents of vae {job.vae}")
    if card.space == "latent" and ae_card is not None \
            and card.vae_scale_factor != ae_card.factor:
        raise InputError(
            f"vae: {job.vae} has factor {ae_card.factor} but init-model "
            f"{job.init_model} was trained with factor {card.vae_scale_factor}")
    unet = load_unet(job.init_model, "unet")
    old_in = unet.config.in_channels
    if unet.config.out_channels != sample_channels:
        raise InputError(
            f"vae: the UNet of init-model {job.init_model} gives "
            f"{unet.config.out_channels} channels but the latents have "
            f"{sample_channels}")
    if old_in != sample_channels + cond_channels:
        if card.conditioning == "none" and old_in == sample_channels:
            unet = _add_input_channels(unet, cond_channels)
        else:
            raise InputError(
                f"condition: init-model {job.init_model} takes {old_in} input "
                f"channels ({card.conditioning!r}), not "
                f"{sample_channels + cond_channels} for --condition {job.condition}")
    job.spec.patch_size = card.patch_size
    return unet


def _add_input_channels(unet, extra: int):
    """A copy of ``unet`` taking ``extra`` more input channels, zero-weighted."""
    from diffusers import UNet2DModel

    config = dict(unet.config)
    config["in_channels"] = unet.config.in_channels + extra
    new = UNet2DModel.from_config(config)
    state = unet.state_dict()
    w = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat(
        [w, w.new_zeros((w.shape[0], extra, *w.shape[2:]))], dim=1)
    new.load_state_dict(state)
    return new


def train_image_model(job: ImageTrainJob, device="cpu", resume: bool = False,
                      overwrite: bool = False, quiet: bool = False,
                      stop_after: int | None = None) -> dict[str, Any]:
    """Train, then write the model directory ``job.out`` with the EMA weights.

    Returns a summary: steps, last loss, seconds, output path (None when
    stopped early by ``stop_after``).
    """
    from ..outputs import check_output

    out = Path(job.out)
    if out.exists() and not overwrite and not resume:
        raise InputError(f"out: {out} exists; choose another path or pass "
                         "--overwrite")
    check_output(out, True, "out", folder=True, parents=True)
    trainer = make_image_trainer(job, device)
    result = trainer.fit(resume=resume, quiet=quiet, stop_after=stop_after)
    result["parameters"] = count_parameters(trainer.unet)
    if trainer.step < job.settings.steps:
        result["out"] = None
        return result
    unet, text = exported_parts(trainer)
    if text is not None:
        result["captions"] = text.caption_stats
    save_image_model(job, unet, trainer.step, trainer.vae, trainer.autoencoder,
                     prompt_encoder=text)
    result["out"] = str(out)
    return result


def exported_parts(trainer: DiffusionTrainer):
    """The EMA UNet to export and, for a text model, its prompt encoder."""
    text = getattr(trainer, "text", None)
    if text is None:
        return trainer.ema, None
    from .text_trainer import exported_prompt_encoder

    return trainer.ema.unet, exported_prompt_encoder(text, trainer.ema)


def save_image_model(job: ImageTrainJob, unet, steps: int, vae=None,
                     autoencoder=None, prompt_encoder=None) -> Path:
    """Write ``job.out``: unet (EMA), scheduler and card; keep a ``mask_unet/``.

    With ``vae`` and its ``autoencoder`` card, a latent model: ``vae/`` is
    written too and the card says ``space: latent`` with the VAE's factor,
    latent scaling and preview map, and class means in latent space. With
    ``prompt_encoder`` (a text model), ``text_encoder/`` and ``tokenizer/``
    are written and the card's ``text`` says what the captions mean.
    """
    from ..models.card import ModelCard
    from ..models.directory import save_components
    from ..models.factory import default_scheduler

    if vae is None:
        vae, autoencoder = load_job_vae(job)
    out = Path(job.out)
    provenance = {
        "kind": "trained",
        "software": f"napari-histodiff {__version__}",
        "image_model": {
            "steps": int(steps),
            "seed": job.settings.seed,
            "settings": asdict(job.settings),
            "spec": asdict(job.spec),
            "init_model": str(job.init_model) if job.init_model else None,
            "condition": job.condition,
            "vae": str(job.vae) if job.vae else None,
            "latent_sample": job.latent_sample,
            "data": describe(job.samples),
            "augment": asdict(job.augment),
            "parameters": count_parameters(unet),
        },
        **job.provenance,
    }
    old_card = None
    if (out / "histodiff.json").is_file():
        old_card = ModelCard.load(out)
        if "mask_model" in old_card.provenance:
            provenance["mask_model"] = old_card.provenance["mask_model"]
    latent: dict[str, Any] = {}
    if autoencoder is not None:
        from .latents import encode, grid_tiles, latent_class_means, to_model_space

        tiles, masks = grid_tiles(job.samples, job.spec.patch_size, masks=True)
        scaled = encode(vae, to_model_space(tiles)) * autoencoder.latent_scaling
        means = latent_class_means(scaled, masks, len(job.classes),
                                   autoencoder.factor)
        latent = {"space": "latent", "vae_scale_factor": autoencoder.factor,
                  "latent_scaling": autoencoder.latent_scaling,
                  "latent_preview": autoencoder.latent_preview,
                  "autoencoder": {**autoencoder.facts(),
                                  "source": str(job.vae or job.init_model)}}
    else:
        means = class_means(job.samples, len(job.classes))
    text = None
    if prompt_encoder is not None:
        from .text_trainer import card_text

        text = card_text(job.text, prompt_encoder)
        provenance["image_model"]["text"] = job.text.settings()
    card = ModelCard(classes=job.classes, patch_size=job.spec.patch_size,
                     provenance=provenance, class_means=means,
                     conditioning="none" if job.condition == "none"
                     else "mask-onehot",
                     mask_resolution_factor=old_card.mask_resolution_factor
                     if old_card else 4, text=text, **latent)
    unet = unet.to("cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside and renamed into place; an existing model directory's
    # mask_unet/ is kept, anything that is not a model directory is refused
    save_components(out, card, overwrite=True, unet=unet,
                    scheduler=default_scheduler(),
                    vae=vae.to("cpu") if vae is not None else None,
                    text=prompt_encoder.to("cpu") if prompt_encoder else None,
                    keep=out if (out / "mask_unet").is_dir() else None)
    return out
