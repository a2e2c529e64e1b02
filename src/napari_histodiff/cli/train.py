"""``histodiff train``: train the image model, the mask model, the
autoencoder, or a preset.

::

    histodiff train image --images TILES --masks MASKS --classes tumor,stroma \\
        --out MODEL --run-dir RUN [--unlabelled DIR] [--vae AE] [--resume]
    histodiff train mask  --images TILES --masks MASKS --classes tumor,stroma \\
        --out MODEL --run-dir RUN
    histodiff train vae   --images TILES --heldout IMAGE --out AE [--factor 4]
    histodiff train --preset demo|demo-latent|demo-text [--part ...] [--resume] \\
        [--export] [--install]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import nonneg_float, nonneg_int, positive_float, positive_int

DEFAULT_DEMO_RUN = "training-runs/demo"
DEFAULT_DEMO_LATENT_RUN = "training-runs/demo-latent"
DEFAULT_DEMO_TEXT_RUN = "training-runs/demo-text"
PRESETS = ("demo", "demo-latent", "demo-text")


def _probability(text: str) -> float:
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 32,64,64, got {text!r}"
        ) from None


def _common(p: argparse.ArgumentParser, steps: int, batch: int,
            diffusion: bool = True, lr: float = 5e-4) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=positive_int, default=steps,
                   help=f"total training steps (default {steps})")
    g.add_argument("--batch-size", type=positive_int, default=batch)
    g.add_argument("--lr", type=positive_float, default=lr,
                   help=f"peak learning rate (> 0; default {lr:g})")
    g.add_argument("--warmup", type=nonneg_int, default=200,
                   help="linear learning-rate warm-up steps")
    g.add_argument("--lr-schedule", choices=("constant", "cosine"),
                   default="constant",
                   help="after the warm-up: keep the peak rate (constant) or "
                   "lower it along a cosine to --final-lr times the peak")
    g.add_argument("--final-lr", type=_probability, default=0.1,
                   help="with --lr-schedule cosine: the last step's rate as a "
                   "fraction of the peak (default 0.1)")
    if diffusion:
        g.add_argument("--cond-dropout", type=_probability, default=0.1,
                       help="probability of training with the null condition "
                       "(classifier-free guidance; default 0.1)")
    g.add_argument("--ema", type=_probability, default=0.999,
                   help="EMA decay of the exported weights (0 = none)")
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.add_argument("--checkpoint-every", type=positive_int, default=200,
                   help="steps between checkpoints; an interruption loses at "
                   "most this many (default 200)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--mixed-precision", action="store_true",
                   help="bfloat16 autocast on a CUDA GPU")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --run-dir")
    p.add_argument("--export", action="store_true",
                   help="do not train: write --out from the newest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--images", help="folder of RGB tiles or images")
    g.add_argument("--masks", help="folder of label masks with the same file names")
    g.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="a large RGB image, cropped at random (repeatable, "
                   "with --labels)")
    g.add_argument("--labels", action="append", default=[], metavar="FILE",
                   help="the label image of the --image at the same position")
    g.add_argument("--classes", help="comma-separated class names; label id i is "
                   "the i-th class, 0 = unknown (added if absent)")
    g.add_argument("--init-model", help="fine-tune this model directory instead "
                   "of starting from random weights (its classes are used)")
    g.add_argument("--out", required=False, help="model directory to write")
    g.add_argument("--run-dir", help="checkpoints and loss logs "
                   "(default: OUT.run)")
    g.add_argument("--size", default="tiny", help="UNet size: tiny, small, base")
    g.add_argument("--channels", type=_channels, default=None,
                   help="channels per UNet level, e.g. 32,64,64 (overrides --size)")
    g.add_argument("--layers", type=positive_int, default=None,
                   help="ResNet layers per UNet block")


def _text_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "text conditioning", "a UNet2DConditionModel with cross-attention on a "
        "caption per crop; with --condition none it follows the caption only")
    g.add_argument("--text", metavar="ENCODER", default=None,
                   help="builtin (a small text encoder and tokenizer fitted on "
                   "the captions, trained with the UNet) or transformers:PATH (a "
                   "local CLIP-text, PLIP or BERT folder, frozen)")
    g.add_argument("--captions", choices=("composition", "report", "both"),
                   default="composition",
                   help="composition: from each crop's mask ('high dab; low "
                   "nuclei'); report: the --reports text of its image; both")
    g.add_argument("--reports", metavar="CSV",
                   help="CSV with columns image,text (a report or its summary "
                   "per image file)")
    g.add_argument("--max-tokens", type=positive_int, default=35,
                   help="caption length limit in tokens (default 35): the "
                   "composition first, then whole report sentences in order")
    g.add_argument("--caption-dropout", type=_probability, default=0.1,
                   help="probability of the empty prompt, for text guidance "
                   "(default 0.1, as PathLDM)")
    g.add_argument("--frozen-text-encoder", action="store_true",
                   help="builtin: keep the encoder at its random initialisation "
                   "instead of training it with the UNet")
    g.add_argument("--text-width", type=positive_int, default=64,
                   help="builtin encoder width = cross-attention dim (default 64)")
    g.add_argument("--text-layers", type=positive_int, default=2)
    g.add_argument("--text-heads", type=positive_int, default=4)


def _text_spec(args):
    """The TextSpec of ``--text ...`` (None without --text); text options
    given without --text are refused, not ignored."""
    from ..training.text_trainer import TextSpec

    if args.text is None:
        stray = [flag for flag, given in (
            ("--reports", args.reports is not None),
            ("--captions", args.captions != "composition"),
            ("--frozen-text-encoder", args.frozen_text_encoder)) if given]
        if stray:
            raise InputError(f"{stray[0].lstrip('-')}: only for text models; "
                             "add --text builtin or --text transformers:PATH")
        return None
    return TextSpec(encoder=args.text, captions=args.captions,
                    reports=Path(args.reports) if args.reports else None,
                    max_tokens=args.max_tokens,
                    caption_dropout=args.caption_dropout,
                    train_encoder=not args.frozen_text_encoder,
                    width=args.text_width, layers=args.text_layers,
                    heads=args.text_heads)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the image model, the mask model, or a preset",
        description="Train (or fine-tune) the mask-conditioned image model "
        "('image'), the class-set-conditioned mask generator ('mask'), or run a "
        "preset ('--preset demo' reproduces the shipped demo models).")
    p.add_argument("--preset", choices=PRESETS, help="a documented recipe: demo "
                   "(the pixel demo), demo-latent (autoencoder + latent model) "
                   "or demo-text (a text-and-mask latent model on demo-latent's "
                   "autoencoder)")
    p.add_argument("--part", choices=("vae", "image", "mask", "all"), default="all",
                   help="with --preset: which model to train (default all; vae "
                   "only with demo-latent)")
    p.add_argument("--run-dir", default=None,
                   help=f"with --preset: working folder (default "
                   f"{DEFAULT_DEMO_RUN} or training-runs/demo-latent)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="with --preset: override the preset's step count")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", action="store_true",
                   help="with --preset: write RUN_DIR/model from the newest "
                   "checkpoints instead of training")
    p.add_argument("--install", action="store_true",
                   help="with --preset: copy RUN_DIR/model into the package as "
                   "the demo model (developers)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_preset, what=None)
    sub = p.add_subparsers(dest="what", metavar="{image,mask,vae}")

    pi = sub.add_parser("image", help="train the mask-conditioned image model",
                        description="Train or fine-tune the image model on images "
                        "with label masks, plus optional unlabelled images "
                        "(trained with the null mask).")
    _data_args(pi)
    pi.add_argument("--unlabelled", help="folder of unlabelled RGB images")
    pi.add_argument("--unlabelled-fraction", type=_probability, default=None,
                    help="share of unlabelled crops (default: by area)")
    pi.add_argument("--patch-size", type=positive_int, default=64,
                    help="training crop = model window in pixels (default 64)")
    pi.add_argument("--no-flips", action="store_true")
    pi.add_argument("--no-rotations", action="store_true")
    pi.add_argument("--stain-jitter", type=nonneg_float, default=0.05,
                    help="relative H/E/DAB density jitter (default 0.05; 0 = off)")
    pi.add_argument("--vae", metavar="DIR",
                    help="train a latent model on the latents of this autoencoder "
                    "(histodiff train vae --out) or latent model directory")
    pi.add_argument("--condition", choices=("mask", "none"), default="mask",
                    help="mask: mask-conditioned (default); none: an "
                    "unconditional model (no class channels), e.g. pre-training "
                    "on unlabelled tiles")
    pi.add_argument("--latent-sample", action="store_true",
                    help="with --vae: train on posterior samples instead of "
                    "posterior means")
    _text_args(pi)
    _common(pi, steps=20000, batch=16)
    pi.set_defaults(func=run_image)

    pm = sub.add_parser("mask", help="train the mask generator (mask_unet/)",
                        description="Train the mask generator: a diffusion model "
                        "over masks at 1/FACTOR resolution, conditioned on the "
                        "set of classes present. Written as OUT/mask_unet.")
    _data_args(pm)
    pm.add_argument("--factor", type=positive_int, default=4,
                    help="image pixels per mask pixel (default 4)")
    pm.add_argument("--window", type=positive_int, default=32,
                    help="mask-model window in mask pixels (default 32)")
    _common(pm, steps=6000, batch=32)
    pm.set_defaults(func=run_mask)

    pv = sub.add_parser("vae", help="train the autoencoder of latent models",
                        description="Train a KL autoencoder (diffusers "
                        "AutoencoderKL) on random crops of RGB images; write the "
                        "autoencoder folder OUT (vae/ + histodiff-autoencoder.json) "
                        "with the latent scaling, the latent preview map and "
                        "PSNR/SSIM on --heldout images.")
    g = pv.add_argument_group("data and model")
    g.add_argument("--images", help="folder of RGB images (tiles or large images)")
    g.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="an RGB image, cropped at random (repeatable)")
    g.add_argument("--heldout", action="append", default=[], metavar="FILE",
                   help="a whole image to measure PSNR/SSIM on (repeatable)")
    g.add_argument("--out", required=True, help="the autoencoder folder to write")
    g.add_argument("--run-dir", help="checkpoints and loss logs (default: OUT.run)")
    g.add_argument("--patch-size", type=positive_int, default=64,
                   help="side of the random training crops (default 64)")
    g.add_argument("--factor", type=_vae_factor, default=4,
                   help="pixels per latent pixel along a side: 4 or 8 (default 4)")
    g.add_argument("--latent-channels", type=positive_int, default=4,
                   help="latent channels (default 4; 3 as HistoDiffusion)")
    g.add_argument("--size", default="tiny",
                   help="tiny (CPU), small or base (GPU); default tiny")
    g.add_argument("--channels", type=_channels, default=None,
                   help="widths of the log2(factor)+1 blocks, e.g. 16,32,64 "
                   "(overrides --size)")
    g.add_argument("--ssim-weight", type=nonneg_float, default=0.25,
                   help="weight of 1 - SSIM (default 0.25)")
    g.add_argument("--kl-weight", type=nonneg_float, default=1e-6,
                   help="weight of the KL term per image value (default 1e-6)")
    g.add_argument("--adversarial-start", type=nonneg_int, default=None,
                   help="train a patch discriminator (hinge loss, adaptive "
                   "weight) from this step on (default: none)")
    g.add_argument("--adversarial-weight", type=nonneg_float, default=0.5,
                   help="factor of the adaptive adversarial weight (default 0.5)")
    g.add_argument("--no-flips", action="store_true")
    g.add_argument("--no-rotations", action="store_true")
    g.add_argument("--stain-jitter", type=nonneg_float, default=0.05,
                   help="relative H/E/DAB density jitter (default 0.05; 0 = off)")
    _common(pv, steps=4000, batch=8, diffusion=False, lr=1e-3)
    pv.set_defaults(func=run_vae)
    from .train_encoder import register as register_encoder
    register_encoder(sub)
    from .train_classifier import register as register_classifier
    register_classifier(sub)


def _vae_factor(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 or 8, got {text!r}") from None
    if value not in (4, 8):
        raise argparse.ArgumentTypeError(f"expected 4 or 8, got {value}")
    return value


# -- helpers ------------------------------------------------------------------------
def _setup_torch(args) -> object:
    import torch

    from ..devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def _classes(args):
    from ..models.card import ModelCard
    from ..models.classes import TissueClasses

    if args.init_model:
        from ..models.directory import check_model_dir

        card = ModelCard.load(check_model_dir(args.init_model))
        if card.conditioning == "none" and args.classes:
            # an unconditional model learns the classes when fine-tuned
            return TissueClasses.from_names(args.classes)
        if args.classes and TissueClasses.from_names(args.classes) != card.classes:
            raise InputError(f"classes: {args.classes!r} differs from the classes "
                             f"of --init-model {card.classes.names}")
        return card.classes
    if not args.classes:
        if getattr(args, "condition", "mask") == "none":
            return TissueClasses.from_names([])  # unknown only: no masks needed
        raise InputError("classes: give --classes (e.g. tumor,stroma) or "
                         "--init-model")
    return TissueClasses.from_names(args.classes)


def _samples(args, classes, min_side: int, unlabelled: bool = True):
    from ..training.data import load_folder_pairs, load_pair, load_unlabelled

    samples = []
    unconditional = getattr(args, "condition", "mask") == "none"
    if unconditional and args.images and not args.masks and \
            getattr(args, "text", None) is not None and \
            getattr(args, "captions", "") != "report":
        raise InputError("masks: composition captions are made from masks; give "
                         "--masks (and --classes), or --captions report with "
                         "--reports")
    if unconditional and args.images and not args.masks:
        # an unconditional model needs no masks: the images are unlabelled
        samples += load_unlabelled(args.images, min_side)
    elif bool(args.images) != bool(args.masks):
        raise InputError("images/masks: give --images and --masks together")
    elif args.images:
        samples += load_folder_pairs(args.images, args.masks, classes, min_side)
    if len(args.image) != len(args.labels):
        raise InputError(f"image/labels: give one --labels per --image; got "
                         f"{len(args.image)} images and {len(args.labels)} labels")
    for img, lab in zip(args.image, args.labels, strict=True):
        samples.append(load_pair(img, lab, classes, min_side))
    if unlabelled and getattr(args, "unlabelled", None):
        samples += load_unlabelled(args.unlabelled, min_side)
    if not samples:
        raise InputError("data: give --images/--masks, --image/--labels or "
                         "--unlabelled")
    return samples


def _settings(args):
    from ..training.loop import TrainSettings

    return TrainSettings(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        warmup=args.warmup, lr_schedule=args.lr_schedule,
        final_lr_fraction=args.final_lr,
        cond_dropout=getattr(args, "cond_dropout", 0.0),
        ema_decay=args.ema,
        seed=args.seed, checkpoint_every=args.checkpoint_every,
        mixed_precision=args.mixed_precision)


def _paths(args) -> tuple[Path, Path]:
    if not args.out:
        raise InputError("out: give --out, the model directory to write")
    out = Path(args.out)
    return out, Path(args.run_dir) if args.run_dir else out.with_name(
        out.name + ".run")


def _report(result: dict, run_dir: Path) -> None:
    print(f"steps: {result['step']}, last loss {result['last_loss']:.4f}, "
          f"{result.get('parameters', 0):,} parameters, "
          f"{result.get('steps_per_second', 0):.3f} steps/s")
    print(f"checkpoints and loss curve (loss.csv, loss.png): {run_dir}")
    if result.get("out"):
        print(f"model: {result['out']}")


# -- handlers -----------------------------------------------------------------------
def run_image(args: argparse.Namespace) -> int:
    from ..training.augment import Augment
    from ..training.export import export_image_checkpoint
    from ..training.image_trainer import (
        ImageModelSpec,
        ImageTrainJob,
        train_image_model,
    )

    device = _setup_torch(args)
    out, run_dir = _paths(args)
    classes = _classes(args)
    samples = _samples(args, classes, args.patch_size)
    job = ImageTrainJob(
        samples=samples, classes=classes, run_dir=run_dir, out=out,
        settings=_settings(args),
        spec=ImageModelSpec(args.patch_size, args.size, args.channels, args.layers),
        init_model=Path(args.init_model) if args.init_model else None,
        augment=Augment(flips=not args.no_flips, rotations=not args.no_rotations,
                        stain_jitter=args.stain_jitter,
                        stain_shift=args.stain_jitter / 10),
        unlabelled_fraction=args.unlabelled_fraction,
        vae=Path(args.vae) if args.vae else None, condition=args.condition,
        latent_sample=args.latent_sample, text=_text_spec(args))
    if args.export:
        path, step = export_image_checkpoint(job)
        print(f"model at step {step}: {path}")
        return 0
    result = train_image_model(job, device, resume=args.resume,
                               overwrite=args.overwrite, quiet=args.quiet)
    _report(result, run_dir)
    return 0


def run_mask(args: argparse.Namespace) -> int:
    from ..training.export import export_mask_checkpoint
    from ..training.mask_trainer import MaskModelSpec, MaskTrainJob, train_mask_model

    device = _setup_torch(args)
    out, run_dir = _paths(args)
    run_dir = run_dir if args.run_dir else out.with_name(out.name + ".mask-run")
    classes = _classes(args)
    samples = _samples(args, classes, args.window * args.factor, unlabelled=False)
    job = MaskTrainJob(
        samples=samples, classes=classes, run_dir=run_dir, out=out,
        settings=_settings(args),
        spec=MaskModelSpec(args.window, args.factor, args.size, args.channels,
                           args.layers),
        init_model=Path(args.init_model) if args.init_model else None)
    if args.export:
        path, step = export_mask_checkpoint(job)
        print(f"mask model at step {step}: {path / 'mask_unet'}")
        return 0
    result = train_mask_model(job, device, resume=args.resume,
                              overwrite=args.overwrite, quiet=args.quiet)
    _report(result, run_dir)
    return 0


def run_vae(args: argparse.Namespace) -> int:
    import json

    from ..training.augment import Augment
    from ..training.export import export_vae_checkpoint
    from ..training.vae_trainer import (
        VAELossSettings,
        VAEModelSpec,
        VAETrainJob,
        load_vae_images,
        train_vae,
    )

    device = _setup_torch(args)
    out, run_dir = _paths(args)
    spec = VAEModelSpec(factor=args.factor, latent_channels=args.latent_channels,
                        size=args.size, patch_size=args.patch_size,
                        channels=args.channels)
    spec.check()
    job = VAETrainJob(
        samples=load_vae_images(args.images, args.image, args.patch_size),
        run_dir=run_dir, out=out, settings=_settings(args), spec=spec,
        loss=VAELossSettings(ssim_weight=args.ssim_weight,
                             kl_weight=args.kl_weight,
                             adversarial_start=args.adversarial_start,
                             adversarial_weight=args.adversarial_weight),
        augment=Augment(flips=not args.no_flips, rotations=not args.no_rotations,
                        stain_jitter=args.stain_jitter,
                        stain_shift=args.stain_jitter / 10),
        heldout=[Path(h) for h in args.heldout])
    if args.export:
        card, step = export_vae_checkpoint(job, overwrite=args.overwrite)
        print(json.dumps(_vae_summary(card, {"step": step, "out": str(out)})))
        return 0
    result = train_vae(job, device, resume=args.resume, overwrite=args.overwrite,
                       quiet=args.quiet)
    _report(result, run_dir)
    if result.get("out"):
        from ..models.autoencoder import AutoencoderCard

        print(json.dumps(_vae_summary(AutoencoderCard.load(out), result)))
    return 0


def _vae_summary(card, result: dict) -> dict:
    """The figures ``train vae`` prints as JSON."""
    rec = card.reconstruction
    return {"out": result.get("out"), "steps": result.get("step"),
            "steps_per_second": round(result["steps_per_second"], 4)
            if "steps_per_second" in result else None,
            "factor": card.factor, "latent_channels": card.latent_channels,
            "latent_scaling": card.latent_scaling,
            "preview_r2": card.provenance.get("statistics", {}).get("preview_r2"),
            "psnr_db": rec.get("psnr_db"), "ssim": rec.get("ssim"),
            "heldout": rec.get("heldout", [])}


def run_preset(args: argparse.Namespace) -> int:
    from ..training.export import install_model

    if args.preset is None:
        raise InputError("train: choose 'image', 'mask', 'vae' or --preset "
                         "demo|demo-latent|demo-text (see histodiff train --help)")
    device = _setup_torch(args)
    if args.preset == "demo-latent":
        run_dir = Path(args.run_dir or DEFAULT_DEMO_LATENT_RUN)
        _run_demo_latent(args, run_dir, device)
        name = "demo-latent"
    elif args.preset == "demo-text":
        run_dir = Path(args.run_dir or DEFAULT_DEMO_TEXT_RUN)
        _run_demo_text(args, run_dir, device)
        name = "demo-text"
    else:
        if args.part == "vae":
            raise InputError("part: 'vae' belongs to --preset demo-latent; the "
                             "demo preset trains 'image' and 'mask'")
        run_dir = Path(args.run_dir or DEFAULT_DEMO_RUN)
        _run_demo(args, run_dir, device)
        name = "demo"
    if args.install:
        from ..models import MODELS_DIR

        dest = install_model(run_dir / "model", MODELS_DIR / name)
        print(f"installed the {name} model: {dest}")
    return 0


def _run_demo(args: argparse.Namespace, run_dir: Path, device) -> None:
    from ..training import presets
    from ..training.export import export_image_checkpoint, export_mask_checkpoint
    from ..training.image_trainer import train_image_model
    from ..training.mask_trainer import train_mask_model

    parts = ("mask", "image") if args.part == "all" else (args.part,)
    for part in parts:
        if part == "mask":
            job = presets.demo_mask_job(run_dir, args.steps)
        else:
            job = presets.demo_image_job(run_dir, args.steps)
        if args.export:
            fn = export_mask_checkpoint if part == "mask" else export_image_checkpoint
            path, step = fn(job)
            print(f"{part} model exported at step {step} into {path}")
            continue
        print(f"demo preset, {part} model: {job.settings.steps} steps, seed "
              f"{job.settings.seed}, run folder {job.run_dir}")
        train = train_mask_model if part == "mask" else train_image_model
        result = train(job, device, resume=args.resume, overwrite=True,
                       quiet=args.quiet)
        _report(result, job.run_dir)


def _run_demo_latent(args: argparse.Namespace, run_dir: Path, device) -> None:
    """vae -> image -> mask (the shipped demo's mask_unet/ is copied)."""
    import json

    from ..models.autoencoder import AutoencoderCard
    from ..training import presets
    from ..training.export import export_image_checkpoint, export_vae_checkpoint
    from ..training.image_trainer import train_image_model
    from ..training.vae_trainer import train_vae

    parts = ("vae", "image", "mask") if args.part == "all" else (args.part,)
    for part in parts:
        if part == "mask":
            model = presets.copy_demo_mask_model(run_dir)
            print(f"demo-latent preset: copied the demo's mask_unet/ into {model}")
            continue
        if part == "vae":
            job = presets.demo_vae_job(run_dir, args.steps)
        else:
            job = presets.demo_latent_image_job(run_dir, args.steps)
        if args.export:
            if part == "vae":
                card, step = export_vae_checkpoint(job, overwrite=True)
                print(json.dumps(_vae_summary(card, {"step": step,
                                                     "out": str(job.out)})))
            else:
                path, step = export_image_checkpoint(job)
                print(f"image model exported at step {step} into {path}")
            continue
        print(f"demo-latent preset, {part}: {job.settings.steps} steps, seed "
              f"{job.settings.seed}, run folder {job.run_dir}")
        if part == "vae":
            result = train_vae(job, device, resume=args.resume, overwrite=True,
                               quiet=args.quiet)
            _report(result, job.run_dir)
            if result.get("out"):
                print(json.dumps(_vae_summary(AutoencoderCard.load(job.out),
                                              result)))
        else:
            result = train_image_model(job, device, resume=args.resume,
                                       overwrite=True, quiet=args.quiet)
            _report(result, job.run_dir)


def _run_demo_text(args: argparse.Namespace, run_dir: Path, device) -> None:
    """image (text + mask, on demo-latent's autoencoder) -> mask (copied)."""
    from ..training import presets
    from ..training.export import export_image_checkpoint
    from ..training.image_trainer import train_image_model

    if args.part == "vae":
        raise InputError("part: demo-text has no 'vae' part; it trains on the "
                         "autoencoder of the shipped demo-latent model")
    parts = ("image", "mask") if args.part == "all" else (args.part,)
    for part in parts:
        if part == "mask":
            model = presets.copy_demo_mask_model(run_dir, preset="demo-text")
            print(f"demo-text preset: copied the demo's mask_unet/ into {model}")
            continue
        job = presets.demo_text_image_job(run_dir, args.steps)
        if args.export:
            path, step = export_image_checkpoint(job)
            print(f"text model exported at step {step} into {path}")
            continue
        print(f"demo-text preset, image: {job.settings.steps} steps, seed "
              f"{job.settings.seed}, run folder {job.run_dir}")
        result = train_image_model(job, device, resume=args.resume,
                                   overwrite=True, quiet=args.quiet)
        _report(result, job.run_dir)
