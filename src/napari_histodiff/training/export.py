"""Writing model directories from checkpoints, and installing the demo model.

A run that is still going (or was stopped) can be exported at any of its
checkpoints: the EMA weights of the newest one become the model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import InputError
from .checkpoint import latest_checkpoint, load_checkpoint


def _latest(run_dir: Path) -> Path:
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise InputError(f"run-dir: {run_dir} holds no checkpoint to export; "
                         "train first (checkpoints are written every N steps)")
    return ckpt


def export_image_checkpoint(job) -> tuple[Path, int]:
    """Write ``job.out`` from the newest checkpoint in ``job.run_dir``."""
    from .image_trainer import exported_parts, make_image_trainer, save_image_model

    trainer = make_image_trainer(job, "cpu")
    state = load_checkpoint(_latest(job.run_dir), trainer.unet, trainer.ema,
                            trainer.optimizer)
    unet, text = exported_parts(trainer)
    return (save_image_model(job, unet, int(state["step"]), prompt_encoder=text),
            int(state["step"]))


def export_mask_checkpoint(job) -> tuple[Path, int]:
    """Write ``job.out/mask_unet`` from the newest checkpoint in ``job.run_dir``."""
    from .mask_trainer import make_mask_trainer, save_mask_model

    trainer = make_mask_trainer(job, "cpu")
    state = load_checkpoint(_latest(job.run_dir), trainer.unet, trainer.ema,
                            trainer.optimizer)
    return save_mask_model(job, trainer.ema, int(state["step"])), int(state["step"])


def export_vae_checkpoint(job, overwrite: bool = False):
    """Write the autoencoder folder ``job.out`` from the newest checkpoint.

    Returns its card (latent scaling, preview map and held-out figures
    measured from the checkpoint's EMA weights) and the checkpoint's step.
    """
    from ..models.autoencoder import check_autoencoder_output
    from .vae_trainer import make_vae_trainer, save_vae

    check_autoencoder_output(job.out, overwrite, "out")
    trainer = make_vae_trainer(job, "cpu")
    state = load_checkpoint(_latest(job.run_dir), trainer.vae, trainer.ema,
                            trainer.optimizer, parts=trainer.parts)
    step = int(state["step"])
    return save_vae(job, trainer.ema, step, overwrite=overwrite), step


def install_model(model_dir: str | Path, dest: str | Path) -> Path:
    """Copy a complete model directory (weights, configs, card) to ``dest``.

    Only the files a model directory needs are copied (no checkpoints or
    logs), replacing ``dest``.
    """
    from ..models.directory import check_model_dir
    from ..outputs import atomic_output

    src = check_model_dir(model_dir)
    dest = Path(dest)
    # written beside dest and renamed into place; dest is replaced only if it
    # is a model directory
    with atomic_output(dest, True, "dest", folder=True, parents=True) as tmp:
        shutil.copy2(src / "histodiff.json", tmp / "histodiff.json")
        for comp in ("unet", "scheduler", "vae", "mask_unet"):
            if (src / comp).is_dir():
                (tmp / comp).mkdir()
                for f in (src / comp).iterdir():
                    if f.suffix in (".json", ".safetensors"):
                        shutil.copy2(f, tmp / comp / f.name)
    return dest
