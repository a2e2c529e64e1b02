"""Training the autoencoder (``histodiff train vae``) of latent models.

A diffusers ``AutoencoderKL`` (:func:`napari_histodiff.models.factory.build_vae`)
learns to reconstruct random crops of RGB images. The loss of a step is::

    L1(x, x') + ssim_weight * (1 - SSIM(x, x')) + kl_weight * KL
              [+ w_adv * (-D(x'))  after adversarial_start]

with ``x'`` decoded from a posterior sample drawn from the step's seeded
generator. L1 is the mean absolute error in [-1, 1]; SSIM is that of
pytorch-msssim (11-pixel Gaussian window) on [0, 1]; KL is the divergence of
the posterior from N(0, I) summed over the latent and divided by the number
of image values (3 H W), so ``kl_weight = 1e-6`` is latent-diffusion's
weighting. The optional patch discriminator ``D`` (:class:`PatchDiscriminator`)
trains from step ``adversarial_start`` on with the hinge loss; its weight in
the autoencoder's loss is *adaptive*, as in latent diffusion: ``w_adv =
adversarial_weight * |grad rec| / (|grad adv| + 1e-4)`` with both gradients
taken at the decoder's last layer (clamped to [0, 1e4]), so the adversarial
term never drowns the reconstruction.

At the end, from the EMA weights: the latent scaling (1 / std of the
posterior means of fixed tiles of the training images, LDM's
``scale_by_std``), the linear latent preview map fitted on the same tiles,
and PSNR/SSIM of the whole ``heldout`` images; all recorded in the
autoencoder card (:mod:`napari_histodiff.models.autoencoder`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..errors import InputError
from .augment import Augment
from .data import CropSampler, Sample, describe, read_rgb
from .latents import (
    encode,
    fit_latent_preview,
    grid_tiles,
    latent_scaling_of,
    reconstruction_metrics,
    to_model_space,
)
from .loop import Trainer, TrainSettings, step_rng, step_seed
from .models import build_train_vae, count_parameters

VAE_FACTORS = (4, 8)


@dataclass
class VAEModelSpec:
    """The architecture of a new autoencoder and its training crop.

    Parameters
    ----------
    factor : {4, 8}
        Pixels per latent pixel along a side.
    latent_channels : int
        Channels of the latent (4 as Stable Diffusion, 3 as HistoDiffusion).
    size : {"tiny", "small", "base"}
        Channel widths (:data:`napari_histodiff.models.factory.VAE_SIZES`):
        tiny for CPUs, small/base for GPUs.
    patch_size : int
        Side of the random training crops (a multiple of ``factor``).
    channels : tuple of int, optional
        Widths of the blocks, overriding ``size`` (see
        :func:`.models.build_train_vae`).
    """

    factor: int = 4
    latent_channels: int = 4
    size: str = "tiny"
    patch_size: int = 64
    channels: tuple[int, ...] | None = None

    def check(self) -> None:
        """Raise an :class:`InputError` naming the first bad value."""
        if isinstance(self.factor, bool) or self.factor not in VAE_FACTORS:
            raise InputError(f"factor: expected one of {VAE_FACTORS}, got "
                             f"{self.factor!r}")
        if (isinstance(self.latent_channels, bool)
                or not isinstance(self.latent_channels, int)
                or not 1 <= self.latent_channels <= 64):
            raise InputError(f"latent_channels: expected an integer from 1 to 64, "
                             f"got {self.latent_channels!r}")
        p = self.patch_size
        if isinstance(p, bool) or not isinstance(p, int) or p < 4 * self.factor \
                or p % self.factor:
            raise InputError(f"patch_size: expected a multiple of the factor "
                             f"{self.factor} and >= {4 * self.factor}, got {p!r}")


@dataclass
class VAELossSettings:
    """Weights of the autoencoder's loss terms (see the module docstring).

    Parameters
    ----------
    ssim_weight : float
        Weight of ``1 - SSIM``.
    kl_weight : float
        Weight of the KL term (per image value).
    adversarial_start : int or None
        Step from which the patch discriminator trains and enters the loss;
        None: no discriminator.
    adversarial_weight : float
        Factor of the adaptive adversarial weight.
    disc_channels : int
        Channels of the discriminator's first layer.
    """

    ssim_weight: float = 0.25
    kl_weight: float = 1e-6
    adversarial_start: int | None = None
    adversarial_weight: float = 0.5
    disc_channels: int = 32

    def check(self) -> None:
        for name in ("ssim_weight", "kl_weight", "adversarial_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value)
                    and value >= 0):
                raise InputError(f"{name.replace('_', '-')}: must be a number >= 0,"
                                 f" got {value!r}")
        s = self.adversarial_start
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0):
            raise InputError(f"adversarial-start: must be an integer >= 0, got {s!r}")


@dataclass
class VAETrainJob:
    """Everything one autoencoder training run needs.

    Parameters
    ----------
    samples : list of Sample
        Training images (masks are ignored).
    run_dir : path
        Checkpoints and loss logs.
    out : path
        The autoencoder folder to write.
    settings : TrainSettings
        ``cond_dropout`` is not used.
    spec : VAEModelSpec
    loss : VAELossSettings
    augment : Augment
    heldout : list of path
        Whole images on which PSNR and SSIM are measured at the end.
    provenance : dict
        Extra facts for the card (e.g. the preset).
    """

    samples: list[Sample]
    run_dir: Path
    out: Path
    settings: TrainSettings = field(default_factory=lambda: TrainSettings(
        steps=4000, batch_size=8, learning_rate=1e-3, cond_dropout=0.0))
    spec: VAEModelSpec = field(default_factory=VAEModelSpec)
    loss: VAELossSettings = field(default_factory=VAELossSettings)
    augment: Augment = field(default_factory=Augment)
    heldout: list[Path] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


class PatchDiscriminator(torch.nn.Module):
    """A PatchGAN discriminator: one real/fake logit per image patch.

    Three stride-2 4x4 convolutions (channels ``c``, ``2c``, ``4c``, group
    norm and leaky ReLU) and a 4x4 convolution to one channel: each logit
    sees a patch of about 46 pixels.
    """

    def __init__(self, channels: int = 32):
        super().__init__()
        c = int(channels)
        act = torch.nn.LeakyReLU(0.2)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 4, 2, 1), act,
            torch.nn.Conv2d(c, 2 * c, 4, 2, 1), torch.nn.GroupNorm(8, 2 * c), act,
            torch.nn.Conv2d(2 * c, 4 * c, 4, 2, 1), torch.nn.GroupNorm(8, 4 * c), act,
            torch.nn.Conv2d(4 * c, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def vae_batch_fn(sampler: CropSampler, batch_size: int, seed: int,
                 augment: Augment):
    """``batch(step)`` -> (B, 3, P, P) crops in [-1, 1], seeded by the step."""

    def batch(step: int) -> torch.Tensor:
        rng = step_rng(seed, step, 3)
        images, masks, _ = sampler.sample(rng, batch_size)
        images, _ = augment(rng, images, masks)
        return to_model_space(images)

    return batch


class AutoencoderTrainer(Trainer):
    """Trains an ``AutoencoderKL`` (and optionally a patch discriminator).

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
    batch_fn : callable
        ``batch_fn(step) -> images`` (B, 3, P, P) in [-1, 1], deterministic
        in ``step``.
    settings : TrainSettings
    loss : VAELossSettings
    run_dir : path
    device : torch.device
    state_extra : dict
    """

    loss_label = "autoencoder loss"
    metric_names = ("l1", "one_minus_ssim", "kl", "adversarial", "adaptive_weight",
                    "discriminator")

    def __init__(self, vae, batch_fn, settings: TrainSettings,
                 loss: VAELossSettings, run_dir: str | Path, device,
                 state_extra: dict[str, Any] | None = None):
        loss.check()
        super().__init__(vae, settings, run_dir, device, state_extra)
        self.vae = self.model
        self.batch_fn = batch_fn
        self.loss = loss
        self.disc = None
        if loss.adversarial_start is not None:
            gen = torch.random.get_rng_state()
            torch.manual_seed(step_seed(settings.seed, 0, 50))
            self.disc = PatchDiscriminator(loss.disc_channels).to(self.device)
            torch.random.set_rng_state(gen)
            disc_opt = torch.optim.AdamW(self.disc.parameters(),
                                         lr=settings.learning_rate,
                                         betas=(0.5, 0.9))
            self.parts["discriminator"] = (self.disc, disc_opt)

    def reconstruct_terms(self, model, x: torch.Tensor, seed: int
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                     torch.Tensor]:
        """L1, 1 - SSIM, KL per image value and the reconstruction of ``x``."""
        from pytorch_msssim import ssim

        g = torch.Generator().manual_seed(seed)
        with self.autocast():
            dist = model.encode(x).latent_dist
            z = dist.sample(generator=g)
            rec = model.decode(z).sample
        rec = rec.float()
        l1 = (rec - x).abs().mean()
        one_minus = 1 - ssim((rec + 1) / 2, (x + 1) / 2, data_range=1.0)
        kl = dist.kl().float().mean() / x[0].numel()
        return l1, one_minus, kl, rec

    def train_step(self, step: int) -> float:
        """One step of the autoencoder (and of the discriminator once active)."""
        self.vae.train()
        x = self.batch_fn(step).to(self.device)
        self.set_learning_rate(step, self.optimizer,
                               *(opt for _, opt in self.parts.values()))
        l1, one_minus, kl, rec = self.reconstruct_terms(
            self.vae, x, step_seed(self.settings.seed, step, 98))
        lw = self.loss
        recon = l1 + lw.ssim_weight * one_minus
        total = recon + lw.kl_weight * kl
        adversarial = self.disc is not None and step >= lw.adversarial_start
        self.metrics = {"l1": float(l1.detach()),
                        "one_minus_ssim": float(one_minus.detach()),
                        "kl": float(kl.detach())}
        if adversarial:
            with self.autocast():
                g_adv = -self.disc(rec).float().mean()
            weight = self._adaptive_weight(recon, g_adv)
            total = total + weight * g_adv
            self.metrics.update(adversarial=float(g_adv.detach()),
                                adaptive_weight=float(weight))
        self.optimise(total)
        if adversarial:
            disc, disc_opt = self.parts["discriminator"]
            with self.autocast():
                real = disc(x).float()
                fake = disc(rec.detach()).float()
            d_loss = (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()) / 2
            self.optimise(d_loss, disc, disc_opt)
            self.metrics["discriminator"] = float(d_loss.detach())
        self._update_ema(step)
        self.step = step + 1
        return float(total.detach())

    def _adaptive_weight(self, recon: torch.Tensor, g_adv: torch.Tensor
                         ) -> torch.Tensor:
        last = self.vae.decoder.conv_out.weight
        g_rec = torch.autograd.grad(recon, last, retain_graph=True)[0].norm()
        g_gan = torch.autograd.grad(g_adv, last, retain_graph=True)[0].norm()
        w = (g_rec / (g_gan + 1e-4)).clamp(0, 1e4).detach()
        return w * self.loss.adversarial_weight


def load_vae_images(folder: str | Path | None, files: list[str | Path],
                    min_side: int) -> list[Sample]:
    """The training images of ``--images DIR`` and ``--image FILE``."""
    from .data import IMAGE_SUFFIXES

    paths: list[tuple[Path, str]] = []
    if folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"images: {folder} is not a folder")
        found = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"images: {folder} holds no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        paths += [(p, "images") for p in found]
    paths += [(Path(f), "image") for f in files]
    if not paths:
        raise InputError("images: give --images DIR or --image FILE (the images "
                         "the autoencoder learns to reconstruct)")
    samples = []
    for path, argname in paths:
        image = read_rgb(path, argname)
        if min(image.shape[:2]) < min_side:
            raise InputError(
                f"{argname}: {path} is {image.shape[0]}x{image.shape[1]}, smaller "
                f"than the {min_side}-pixel training crop; use larger images or a "
                "smaller --patch-size")
        samples.append(Sample(image, None, str(path)))
    return samples


def make_vae_trainer(job: VAETrainJob, device) -> AutoencoderTrainer:
    """Build the VAE, data and trainer of ``job``."""
    from ..models.factory import VAE_SIZES

    job.spec.check()
    s = job.spec
    if s.size not in VAE_SIZES:
        raise InputError(f"size: {s.size!r} is not one of {', '.join(VAE_SIZES)}")
    torch.manual_seed(step_seed(job.settings.seed, 0, 51))
    vae = build_train_vae(s.size, s.factor, s.latent_channels, s.channels)
    sampler = CropSampler(job.samples, s.patch_size, 1.0)
    st = job.settings
    batch = vae_batch_fn(sampler, st.batch_size, st.seed, job.augment)
    extra = {"kind": "vae", "vae_config": dict(vae.config), "spec": asdict(s),
             "loss": asdict(job.loss)}
    return AutoencoderTrainer(vae, batch, st, job.loss, job.run_dir, device, extra)


def _heldout_images(paths: list[Path]) -> list[tuple[str, np.ndarray]]:
    return [(Path(p).name, read_rgb(p, "heldout")) for p in paths]


def train_vae(job: VAETrainJob, device="cpu", resume: bool = False,
              overwrite: bool = False, quiet: bool = False,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train, then write the autoencoder folder ``job.out`` (EMA weights).

    Returns a summary: steps, steps per second, last loss, and (when the run
    reached its steps) ``out``, ``latent_scaling``, ``psnr_db``, ``ssim``.
    """
    from ..models.autoencoder import check_autoencoder_output

    check_autoencoder_output(Path(job.out), overwrite or resume, "out")
    heldout = _heldout_images(job.heldout)  # unreadable files stop us now
    trainer = make_vae_trainer(job, device)
    result = trainer.fit(resume=resume, quiet=quiet, stop_after=stop_after)
    result["parameters"] = count_parameters(trainer.vae)
    if trainer.step < job.settings.steps:
        result["out"] = None
        return result
    card = save_vae(job, trainer.ema, trainer.step, heldout, overwrite=True)
    result.update(out=str(job.out), latent_scaling=card.latent_scaling,
                  **{k: card.reconstruction[k] for k in ("psnr_db", "ssim")
                     if k in card.reconstruction})
    return result


def autoencoder_card(job: VAETrainJob, vae, steps: int,
                     heldout: list[tuple[str, np.ndarray]]):
    """Measure the latent scaling, the preview map and the reconstruction."""
    from ..models.autoencoder import AutoencoderCard

    vae.eval()
    s = job.spec
    tiles, _ = grid_tiles(job.samples, s.patch_size)
    x = to_model_space(tiles)
    latents = encode(vae, x)
    scaling = latent_scaling_of(latents)
    preview, r2 = fit_latent_preview(latents * scaling, x, s.factor)
    recon = reconstruction_metrics(vae, heldout, s.factor)
    provenance = {
        "kind": "trained",
        "software": f"napari-histodiff {__version__}",
        "steps": int(steps),
        "seed": job.settings.seed,
        "settings": asdict(job.settings),
        "spec": asdict(s),
        "loss": asdict(job.loss),
        "augment": asdict(job.augment),
        "data": describe(job.samples),
        "parameters": count_parameters(vae),
        "statistics": {
            "tiles": int(len(tiles)), "tile_size": s.patch_size,
            "latent_std": round(float(latents.double().std()), 6),
            "latent_channel_means": [round(float(v), 6) for v in
                                     latents.double().mean(dim=(0, 2, 3))],
            "latent_channel_stds": [round(float(v), 6) for v in
                                    latents.double().std(dim=(0, 2, 3))],
            "preview_r2": r2,
            "method": ("posterior means of the non-overlapping patch-size tiles "
                       "of the training images (at most 2048, evenly spread); "
                       "latent_scaling = 1 / std of all their values; the "
                       "preview map is the least-squares fit of the scaled "
                       "latents to the tiles' RGB averaged over each latent "
                       "pixel's factor x factor pixels"),
        },
        **job.provenance,
    }
    return AutoencoderCard(factor=s.factor, latent_channels=s.latent_channels,
                           latent_scaling=round(scaling, 6), latent_preview=preview,
                           reconstruction=recon, provenance=provenance)


def save_vae(job: VAETrainJob, vae, steps: int,
             heldout: list[tuple[str, np.ndarray]] | None = None,
             overwrite: bool = True):
    """Measure and write the autoencoder folder ``job.out``; return its card."""
    from ..models.autoencoder import save_autoencoder

    if heldout is None:
        heldout = _heldout_images(job.heldout)
    card = autoencoder_card(job, vae, steps, heldout)
    save_autoencoder(job.out, vae, card, overwrite=overwrite)
    return card
