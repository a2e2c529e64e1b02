"""Feature extractors for the distribution and privacy metrics, by name.

FID, KID, precision/recall and the privacy figures are distances between
tile embeddings, so they depend on the embedding: figures from different
extractors are not comparable, and every result records which one was used
(:attr:`FeatureExtractor.info`).

``random``
    A seeded, randomly initialised small CNN
    (:func:`napari_histodiff.training.encoder_net.random_encoder`, 64
    features). Naeem et al. (2020) show that random embeddings rank generative
    models sensibly where ImageNet features do not fit the data. The same
    seed gives the same network on every machine; no file is needed.
``histo``
    The same network trained on histology tiles by our own self-supervised
    trainer (``histodiff train encoder``); ``--weights`` names its folder
    (``config.json`` + ``encoder.safetensors``), else the one shipped in
    ``napari_histodiff/models/encoder`` is used when present.
``inception``
    The standard FID InceptionV3 (the TensorFlow graph of Heusel et al.,
    architecture from the ``torch-fidelity`` package) with its 2048 pool
    features, from a local safetensors file given by ``--weights``: the only
    way to put figures next to published FIDs. Needs torch-fidelity and a
    torchvision built for the installed torch (``scripts/install-vision.sh``,
    not a pip extra: pip would replace torch). Tiles are resized to 299 px
    inside.
``torchvision:NAME``
    Any torchvision classification architecture (``torchvision:resnet50``)
    with weights from a local safetensors file, its classification head
    removed; tiles are resized to 224 px and normalised with the ImageNet
    mean and standard deviation. Needs the same torchvision.

Weights are read from safetensors files only, never unpickled. A file whose
tensors do not fit the architecture is refused with the first layer that
does not fit named (:func:`load_checked`). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..training.encoder_format import ENCODER_CONFIG, ENCODER_FORMAT, ENCODER_WEIGHTS

#: Names accepted by :func:`make_extractor` (plus ``torchvision:NAME``).
EXTRACTORS = ("random", "histo", "inception")
#: Folder of the shipped ``histo`` encoder (present once one is trained).
SHIPPED_ENCODER = Path(__file__).resolve().parent.parent / "models" / "encoder"

_VISION_HINT = (
    "install them with scripts/install-vision.sh PYTHON (torch-fidelity and the "
    "torchvision built for your torch, e.g. torchvision 0.28 for torch 2.13; a "
    "plain `pip install torch-fidelity` would replace torch)")


class FeatureExtractor:
    """An embedding of ``uint8`` RGB tiles.

    Parameters
    ----------
    module : torch.nn.Module
        Takes ``(B, 3, H, W)`` ``uint8`` and returns ``(B, D)`` features.
    name : str
        The extractor's name (``random``, ``histo``, ...).
    info : dict
        What identifies it (seed, weights file and its SHA-256, ...); copied
        into every report.
    device : str
        Where the module runs.
    """

    def __init__(self, module, name: str, info: dict[str, Any],
                 device: str = "cpu"):
        import torch

        self.module = module.eval().requires_grad_(False).to(device)
        self.name = name
        self.device = torch.device(device)
        self.num_features = int(module.num_features)
        self.info = {"name": name, "dimensions": self.num_features, **info}

    def __call__(self, tiles: np.ndarray, batch_size: int = 256,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embed ``(N, H, W, 3)`` ``uint8`` tiles; return ``(N, D)`` float64."""
        import torch

        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise InputError(f"tiles: expected (N, H, W, 3) uint8, got shape "
                             f"{tiles.shape} and dtype {tiles.dtype}")
        out = np.empty((len(tiles), self.num_features), np.float64)
        with torch.inference_mode():
            for start in range(0, len(tiles), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(
                    tiles[start:start + batch_size].transpose(0, 3, 1, 2)))
                feats = self.module(batch.to(self.device))
                out[start:start + len(batch)] = feats.double().cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, len(tiles)), len(tiles))
        if not np.isfinite(out).all():
            raise InputError(f"features: the {self.name} extractor gave NaN or "
                             "infinite features; check its weights")
        return out


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: str | Path, argname: str = "--weights") -> dict:
    """Tensors of a safetensors file; anything else is refused by name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{argname}: {path} is not a file; give a .safetensors "
                         "weights file")
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"{argname}: {path} is not a .safetensors file; weights "
                         "are read from safetensors only (convert a .pth/.pt "
                         "file yourself with safetensors.torch.save_file)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{argname}: {path} is not a readable safetensors file "
                         f"({exc})") from exc


def load_checked(module, state: dict, path: str | Path, what: str,
                 argname: str = "--weights") -> None:
    """Load ``state`` into ``module`` after :func:`check_state`."""
    check_state(module, state, path, what, argname)
    module.load_state_dict({k: state[k] for k in module.state_dict()}, strict=True)


def check_state(module, state: dict, path: str | Path, what: str,
                argname: str = "--weights") -> None:
    """Check that ``state`` has exactly the names and shapes of ``module``'s.

    Raises
    ------
    InputError
        Naming the first layer whose tensor is missing, unexpected or of the
        wrong shape, with both shapes.
    """
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise InputError(f"{argname}: {path} does not fit {what}: layer "
                             f"{key!r} is missing from the file")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise InputError(
                f"{argname}: {path} does not fit {what}: layer {key!r} has shape "
                f"{tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in "
                "the architecture")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise InputError(f"{argname}: {path} does not fit {what}: layer "
                         f"{extra[0]!r} is not in the architecture "
                         f"({len(extra)} unexpected tensor(s))")


# -- random and histo --------------------------------------------------------------


def random_extractor(seed: int = 0, device: str = "cpu") -> FeatureExtractor:
    """The ``random`` extractor: :func:`~..training.encoder_net.random_encoder`."""
    from ..training.encoder_format import DEFAULT_WIDTHS
    from ..training.encoder_net import random_encoder

    net = random_encoder(seed)
    return FeatureExtractor(net, "random", {"seed": int(seed),
                                            "widths": list(DEFAULT_WIDTHS)}, device)


def encoder_paths(weights: str | Path | None, argname: str = "--weights"
                  ) -> tuple[Path, Path]:
    """``(config.json, encoder.safetensors)`` of a ``histo`` encoder.

    ``weights`` is the encoder folder or its safetensors file (with
    ``config.json`` beside it); None means the shipped encoder.
    """
    if weights is None:
        folder = SHIPPED_ENCODER
        if not (folder / ENCODER_WEIGHTS).is_file():
            raise InputError(
                f"{argname}: the 'histo' features need an encoder and none is "
                f"shipped in {folder}; train one with `histodiff train encoder "
                "--out DIR` and pass --weights DIR")
    else:
        folder = Path(weights)
    if folder.is_file():
        folder, file = folder.parent, folder
    else:
        file = folder / ENCODER_WEIGHTS
    config = folder / ENCODER_CONFIG
    if not file.is_file() or not config.is_file():
        raise InputError(f"{argname}: {weights} is not an encoder folder (needs "
                         f"{ENCODER_CONFIG} and {ENCODER_WEIGHTS}); write one with "
                         "`histodiff train encoder --out DIR`")
    return config, file


def read_encoder_config(config: Path, argname: str = "--weights") -> dict[str, Any]:
    """The encoder's ``config.json``, checked."""
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{argname}: {config} is not readable JSON ({exc})") from exc
    widths = data.get("widths") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != ENCODER_FORMAT or \
            not isinstance(widths, list) or not widths or \
            not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                    for w in widths):
        raise InputError(f"{argname}: {config} is not a napari-histodiff encoder "
                         f"config (format {ENCODER_FORMAT!r} and positive integer "
                         "'widths' expected)")
    return data


def histo_extractor(weights: str | Path | None = None, device: str = "cpu"
                    ) -> FeatureExtractor:
    """The ``histo`` extractor: a trained :class:`TileEncoder` from a folder."""
    from ..training.encoder_net import TileEncoder

    config_path, file = encoder_paths(weights)
    config = read_encoder_config(config_path)
    net = TileEncoder(config["widths"])
    load_checked(net, read_safetensors(file), file, "the histo tile encoder")
    info = {"weights": str(file), "sha256": file_sha256(file),
            "widths": config["widths"],
            "training": config.get("training", {})}
    return FeatureExtractor(net, "histo", info, device)


# -- inception and torchvision (optional extra) ------------------------------------

_PATCH_LOCK = threading.Lock()


def _fidelity_module():
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as fe
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        raise InputError(f"--features inception: torch-fidelity cannot be imported "
                         f"({type(exc).__name__}: {exc}); {_VISION_HINT}") from exc
    return fe


class _Inception:
    """Builds torch-fidelity's FID InceptionV3 without its download or
    ``torch.load``: its loader is replaced, for the constructor only, by one
    that hands over a state checked here (or keeps the initial weights)."""

    @staticmethod
    def build(state: dict | None, path: str | Path | None):
        import torch
        from torch import nn

        fe = _fidelity_module()

        class FIDInception(fe.FeatureExtractorInceptionV3):
            def load_state_dict(self, state_dict, strict=True, assign=False):
                if state_dict is None:  # a stand-in: keep the initial weights
                    return None
                check_state(self, state_dict, path, "the FID InceptionV3")
                return super().load_state_dict(state_dict, strict=True)

        with _PATCH_LOCK:
            original = fe.load_state_dict_from_url
            fe.load_state_dict_from_url = lambda *a, **k: state
            try:
                net = FIDInception("inception-v3-compat", ["2048"])
            finally:
                fe.load_state_dict_from_url = original

        class Pool(nn.Module):
            num_features = 2048

            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, tiles: torch.Tensor) -> torch.Tensor:
                return self.inner(tiles)[0]

        return Pool(net)


def inception_standin(seed: int = 0):
    """A randomly initialised FID InceptionV3 (``inner`` module) for tests and for
    writing a stand-in weights file; its state dict has the real file's layout."""
    import torch

    torch.manual_seed(seed)
    return _Inception.build(None, None).inner


def inception_extractor(weights: str | Path | None, device: str = "cpu"
                        ) -> FeatureExtractor:
    """The ``inception`` extractor from a local safetensors file."""
    if weights is None:
        raise InputError("--weights: --features inception needs the FID InceptionV3 "
                         "weights as a local .safetensors file (converted from "
                         "pt_inception-2015-12-05); nothing is downloaded")
    state = read_safetensors(weights)
    module = _Inception.build(state, weights)
    path = Path(weights)
    return FeatureExtractor(module, "inception", {"weights": str(path),
                                                  "sha256": file_sha256(path)},
                            device)


def torchvision_extractor(arch: str, weights: str | Path | None,
                          device: str = "cpu") -> FeatureExtractor:
    """``torchvision:NAME``: a torchvision classifier without its head."""
    import torch
    from torch import nn

    if weights is None:
        raise InputError(f"--weights: --features torchvision:{arch} needs a local "
                         ".safetensors weights file; nothing is downloaded")
    try:
        import torchvision.models as tvm
    except Exception as exc:
        raise InputError(f"--features torchvision:{arch}: torchvision cannot be "
                         f"imported ({type(exc).__name__}: {exc}); "
                         f"{_VISION_HINT}") from exc
    if arch not in tvm.list_models(module=tvm):
        raise InputError(f"--features: torchvision:{arch} is not a torchvision "
                         "classification model; see torchvision.models.list_models()")
    net = tvm.get_model(arch, weights=None)
    load_checked(net, read_safetensors(weights), weights, f"torchvision {arch}")
    head = None
    for attr in ("fc", "classifier", "heads", "head"):
        if isinstance(getattr(net, attr, None), nn.Module):
            head = attr
            break
    if head is None:
        raise InputError(f"--features: torchvision:{arch} has no fc/classifier/"
                         "head layer to remove")
    with torch.no_grad():
        setattr(net, head, nn.Identity())
        dims = int(net.eval()(torch.zeros(1, 3, 224, 224)).shape[-1])

    class Wrapped(nn.Module):
        num_features = dims

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])
                                 .view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])
                                 .view(1, 3, 1, 1))

        def forward(self, tiles: torch.Tensor) -> torch.Tensor:
            x = tiles.float() / 255.0
            x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear",
                                          antialias=True, align_corners=False)
            return self.inner((x - self.mean) / self.std).flatten(1)

    path = Path(weights)
    return FeatureExtractor(Wrapped(net), f"torchvision:{arch}",
                            {"weights": str(path), "sha256": file_sha256(path),
                             "input_size": 224}, device)


def make_extractor(name: str, *, weights: str | Path | None = None, seed: int = 0,
                   device: str = "cpu") -> FeatureExtractor:
    """The extractor called ``name`` (see the module docstring).

    Parameters
    ----------
    name : str
        ``random``, ``histo``, ``inception`` or ``torchvision:NAME``.
    weights : path, optional
        The weights file or folder (``histo``: default the shipped encoder;
        required by ``inception`` and ``torchvision:NAME``; refused by
        ``random``).
    seed : int
        Seed of the ``random`` network.
    device : str
        Torch device to run on.
    """
    if not isinstance(name, str):
        raise InputError(f"--features: expected a name, got {name!r}")
    if name == "random":
        if weights is not None:
            raise InputError(f"--weights: the 'random' features take no weights "
                             f"(got {weights}); use --features histo, inception "
                             "or torchvision:NAME with a weights file")
        return random_extractor(seed, device)
    if name == "histo":
        return histo_extractor(weights, device)
    if name == "inception":
        return inception_extractor(weights, device)
    if name.startswith("torchvision:") and len(name) > len("torchvision:"):
        return torchvision_extractor(name.split(":", 1)[1], weights, device)
    raise InputError(f"--features: {name!r} is not one of random, histo, inception "
                     "or torchvision:NAME")
