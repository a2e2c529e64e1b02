"""The noise-aware classifier of a model directory (``classifier/``).

HistoDiffusion steers an unconditional latent model toward a class with the
gradient of a classifier on *noisy* latents. This module holds that
classifier's architecture and its folder format; it is trained by
:mod:`napari_histodiff.training.classifier_trainer` and used by the
pipeline's classifier-guidance term
(:class:`napari_histodiff.conditioning.guidance.ClassifierGuidance`).

The architecture is written here because neither diffusers nor torchvision
has a timestep-conditioned image classifier: a small CNN whose every block
adds a projection of the sinusoidal timestep embedding (diffusers'
``get_timestep_embedding``) to its features, then global average pooling and
a linear layer. Global pooling makes it take windows of any size that the
canvas gives it.

Folder::

    MODEL/classifier/config.json          ClassifierConfig as JSON
    MODEL/classifier/model.safetensors    the weights

The config records what the classifier was trained on: the canvas channels,
the window side, the spatial factor, and a fingerprint of the autoencoder
weights (sha256 of ``vae/``'s safetensors), so that a classifier trained for
another latent space or window is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelFormatError

CLASSIFIER_DIR = "classifier"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "napari-histodiff-classifier"
FORMAT_VERSION = 1


@dataclass
class ClassifierConfig:
    """What a noise-aware classifier takes and gives.

    Parameters
    ----------
    class_names : list of str
        Output classes in logit order.
    in_channels : int
        Canvas channels (latent channels, or 3 for pixel models).
    sample_size : int
        Window side (canvas pixels) it was trained on.
    factor : int
        The model's VAE factor (1 for pixel models).
    autoencoder_sha256 : str or None
        Fingerprint of the VAE weights it was trained with (None: pixel model).
    channels : list of int
        Feature channels per block (each block after the first halves the
        resolution).
    time_dim : int
        Width of the timestep embedding.
    num_train_timesteps : int
        The schedule it was trained on (timesteps 0 ... this - 1).
    heldout_accuracy : dict
        Accuracy on held-out tiles per noise level (``{"t=0": 0.9, ...}``).
    provenance : dict
        Data and settings of its training.
    """

    class_names: list[str]
    in_channels: int
    sample_size: int
    factor: int = 1
    autoencoder_sha256: str | None = None
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    time_dim: int = 64
    num_train_timesteps: int = 1000
    heldout_accuracy: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.class_names
        if (not isinstance(names, list) or len(names) < 2
                or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise ModelFormatError(
                f"classifier: class_names must list >= 2 distinct names, got "
                f"{names!r:.120}")
        for name in ("in_channels", "sample_size", "factor", "time_dim",
                     "num_train_timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelFormatError(f"classifier: {name} must be an integer "
                                       f">= 1, got {value!r}")
        if (not isinstance(self.channels, list) or not self.channels
                or any(isinstance(c, bool) or not isinstance(c, int) or c < 8
                       or c % 8 for c in self.channels)):
            raise ModelFormatError(f"classifier: channels must list multiples of "
                                   f"8, got {self.channels!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def index(self, name: str) -> int:
        """Logit index of class ``name``; an unknown name lists the known."""
        if name not in self.class_names:
            raise InputError(
                f"class_name: {name!r} is not a class of this model's classifier; "
                f"it knows {', '.join(self.class_names)}")
        return self.class_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> ClassifierConfig:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFormatError(f"{source}: not a napari-histodiff classifier "
                                   f"config (format {FORMAT!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: format_version {version!r}; this napari-histodiff "
                f"reads up to {FORMAT_VERSION}")
        fields = {k: v for k, v in data.items()
                  if k not in ("format", "format_version")}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ModelFormatError(f"{source}: malformed classifier config "
                                   f"({exc})") from exc
        except ModelFormatError as exc:
            raise ModelFormatError(f"{source}: {exc}") from exc


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class NoiseAwareClassifier:
    """Factory for the torch module (kept out of import time: no torch)."""

    def __new__(cls, config: ClassifierConfig):
        return _build(config)


def _build(config: ClassifierConfig):
    import torch
    from diffusers.models.embeddings import get_timestep_embedding
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, time_dim: int, down: bool):
            super().__init__()
            self.down = nn.Conv2d(cin, cin, 3, stride=2, padding=1) if down \
                else nn.Identity()
            self.norm1 = nn.GroupNorm(_groups(cin), cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.time = nn.Linear(time_dim, cout)
            self.norm2 = nn.GroupNorm(_groups(cout), cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, emb):
            x = self.down(x)
            h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
            h = h + self.time(emb)[:, :, None, None]
            h = self.conv2(torch.nn.functional.silu(self.norm2(h)))
            return h + self.skip(x)

    class Classifier(nn.Module):
        def __init__(self, cfg: ClassifierConfig):
            super().__init__()
            self.config = cfg
            width = cfg.channels
            self.stem = nn.Conv2d(cfg.in_channels, width[0], 3, padding=1)
            self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, cfg.time_dim),
                                          nn.SiLU(),
                                          nn.Linear(cfg.time_dim, cfg.time_dim))
            self.blocks = nn.ModuleList(
                Block(width[max(i - 1, 0)], c, cfg.time_dim, down=i > 0)
                for i, c in enumerate(width))
            self.norm = nn.GroupNorm(_groups(width[-1]), width[-1])
            self.head = nn.Linear(width[-1], cfg.num_classes)

        def forward(self, x, t):
            """Logits (B, classes) of windows ``x`` (B, C, h, w) at timesteps
            ``t`` (B,) (float timesteps are accepted)."""
            t = torch.as_tensor(t, device=x.device).float().reshape(-1)
            if t.numel() == 1:
                t = t.expand(x.shape[0])
            emb = get_timestep_embedding(t, self.config.time_dim).to(x.dtype)
            emb = self.time_mlp(emb)
            h = self.stem(x)
            for block in self.blocks:
                h = block(h, emb)
            h = torch.nn.functional.silu(self.norm(h)).mean(dim=(2, 3))
            return self.head(h)

    return Classifier(config)


def autoencoder_fingerprint(model_dir: str | Path) -> str | None:
    """sha256 of the model's ``vae/`` weights (None for a pixel model)."""
    path = Path(model_dir) / "vae" / "diffusion_pytorch_model.safetensors"
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def classifier_class_names(model_dir: str | Path) -> list[str] | None:
    """The class names of ``MODEL/classifier/`` without loading weights, or
    None when the model has no (readable) classifier (for choosers in the GUI;
    :func:`load_classifier` says what is wrong with a damaged one)."""
    path = Path(model_dir) / CLASSIFIER_DIR / CONFIG_NAME
    try:
        config = ClassifierConfig.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, ModelFormatError):
        return None
    return list(config.class_names)


def save_classifier(model_dir: str | Path, module, overwrite: bool = False) -> Path:
    """Write ``module`` (and its config) as ``MODEL/classifier/``, atomically."""
    from safetensors.torch import save_file

    from ..outputs import atomic_output

    target = Path(model_dir) / CLASSIFIER_DIR
    with atomic_output(target, overwrite, "out", folder=True) as tmp:
        (tmp / CONFIG_NAME).write_text(
            json.dumps(module.config.to_dict(), indent=2, allow_nan=False) + "\n")
        state = {k: v.detach().cpu().contiguous()
                 for k, v in module.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
    return target


def load_classifier(model_dir: str | Path, canvas_channels: int | None = None,
                    factor: int | None = None, window: int | None = None):
    """Load ``MODEL/classifier/`` (safetensors only); check it fits the model.

    Parameters
    ----------
    model_dir : path
    canvas_channels, factor, window : int, optional
        The model's canvas channels, VAE factor and window side (canvas
        pixels): a classifier trained for other ones is refused, naming both
        values; so is one trained with another autoencoder (fingerprint of
        ``vae/``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(model_dir) / CLASSIFIER_DIR
    if not folder.is_dir():
        raise InputError(
            f"class_name: {model_dir} has no classifier/ for class guidance; "
            "train one with `histodiff train classifier --model "
            f"{model_dir} --images DIR`")
    config_path = folder / CONFIG_NAME
    try:
        data = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{config_path}: unreadable classifier config "
                               f"({exc})") from exc
    config = ClassifierConfig.from_dict(data, str(config_path))
    if canvas_channels is not None and config.in_channels != canvas_channels:
        raise ModelFormatError(
            f"{folder}: the classifier takes {config.in_channels}-channel "
            f"latents but {model_dir} denoises {canvas_channels}-channel ones; "
            "it was trained for another model")
    if factor is not None and config.factor != factor:
        raise ModelFormatError(
            f"{folder}: the classifier was trained at VAE factor {config.factor} "
            f"but {model_dir} has factor {factor}")
    if window is not None and config.sample_size != window:
        raise ModelFormatError(
            f"{folder}: the classifier was trained on {config.sample_size}-pixel "
            f"windows of the canvas but {model_dir} denoises {window}-pixel ones")
    here = autoencoder_fingerprint(model_dir)
    if config.autoencoder_sha256 != here:
        raise ModelFormatError(
            f"{folder}: the classifier was trained with the autoencoder "
            f"{str(config.autoencoder_sha256)[:12]}... but {model_dir}/vae is "
            f"{str(here)[:12]}...; retrain it for this model's latents")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelFormatError(f"{folder}: no {WEIGHTS_NAME} (weights are read "
                               "from safetensors only)")
    module = NoiseAwareClassifier(config)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{weights}: not a readable safetensors file "
                               f"({exc})") from exc
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ModelFormatError(f"{weights}: lacks {key} (layer of the "
                                   "classifier its config describes)")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelFormatError(
                f"{weights}: {key} has shape {tuple(state[key].shape)}, the "
                f"config implies {tuple(value.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelFormatError(f"{weights}: unexpected tensors {extra[:3]}")
    module.load_state_dict(state)
    module.eval()
    return module
