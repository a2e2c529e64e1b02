"""Safe weights: safetensors checks, config reading and component loading.

Shared by the model directory (:mod:`.directory`) and the text encoders
(:mod:`.text_encoder`), which must not import each other. Pickle
checkpoints are refused because unpickling a file can run arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelFormatError, UnsafeCheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth", ".pkl", ".pickle")

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
        check_safetensors(safes[0])
        return safes[0]
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeCheckpointError(_convert_hint(pickles[0]))
    raise ModelFormatError(
        f"{folder}: no weights (expected diffusion_pytorch_model.safetensors)"
    )


def check_safetensors(path: Path) -> dict[str, Any]:
    """Read the header of a safetensors file and check it against the file.

    Returns the header (tensor name -> dtype, shape, offsets). A truncated
    file, or one that is not safetensors at all, is a
    :class:`ModelFormatError` that names the file.
    """
    import json
    import struct

    def damaged(what: str) -> ModelFormatError:
        return ModelFormatError(
            f"model: {path} is not a complete safetensors file ({what}); copy the "
            "model again or re-export it")

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise damaged(f"{size} bytes, too short for a header")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100_000_000):
                raise damaged(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise ModelFormatError(f"model: cannot read {path} ({exc.strerror or exc})"
                               ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise damaged("header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            raise damaged(f"tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise damaged(f"the tensors need {8 + n + end} bytes, the file has {size}; "
                      "it is truncated")
    return header


def _read_config(path: Path, error: type[Exception] = ModelFormatError,
                 argname: str = "model") -> dict[str, Any]:
    """A JSON object from ``path``; unreadable or malformed -> ``error``
    naming ``argname`` and the file."""
    import json

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{argname}: cannot read {path} ({exc.strerror or exc})"
                    ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{argname}: {path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise error(f"{argname}: {path} must hold a JSON object, got a JSON "
                    f"{type(config).__name__}")
    return config


def load_part(loader, path: Path, comp: str, config_name: str, **kw):
    """``loader.from_pretrained(path, subfolder=comp)``; failures name the file."""
    import warnings

    config = _read_config(path / comp / config_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            part = loader.from_pretrained(path, subfolder=comp, **kw)
    except Exception as exc:  # diffusers raises many kinds for a damaged folder
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        weights = sorted((path / comp).glob("*.safetensors"))
        target = (f"{path / comp / config_name} and {weights[0].name}" if weights
                  else str(path / comp / config_name))
        raise ModelFormatError(
            f"model: {target} cannot be loaded as a {loader.__name__} "
            f"({type(exc).__name__}: {what[:300]}); the config and the weights "
            "do not fit each other or are damaged. Copy the model again or "
            "re-export it") from exc
    return part, config
