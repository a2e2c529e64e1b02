"""Training checkpoints in safetensors + JSON (never pickle).

A checkpoint is a folder ``checkpoints/step-NNNNNNN/``::

    model.safetensors       the trained weights
    ema.safetensors         the exponential moving average of the weights
    optimizer.safetensors   per-parameter optimizer tensors (Adam moments...)
    state.json              step, optimizer hyper-parameters and scalar state,
                            the UNet config, the training settings
    NAME.safetensors        further trained modules (e.g. ``discriminator``)
    NAME-optimizer.safetensors   and their optimizer tensors

Randomness needs no saved state: every step draws its batch, timesteps and
noise from generators seeded with ``(seed, step)``, so a resumed run sees the
same numbers as an uninterrupted one. A checkpoint is written to a temporary
folder and renamed, so an interruption never leaves a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

CHECKPOINTS = "checkpoints"
STATE = "state.json"


def _step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:07d}"


def optimizer_to_flat(optimizer: torch.optim.Optimizer
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors and JSON-able values."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer,
                        tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> None:
    """Load what :func:`optimizer_to_flat` split back into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


Parts = dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module,
                    ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any], keep: int = 2,
                    parts: Parts | None = None) -> Path:
    """Write a checkpoint for ``step``; keep the newest ``keep`` checkpoints.

    ``parts``: further modules trained alongside, name -> (module, optimizer),
    written as ``NAME.safetensors`` and ``NAME-optimizer.safetensors``.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    final = _step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_cpu_state(model), str(tmp / "model.safetensors"))
    save_file(_cpu_state(ema), str(tmp / "ema.safetensors"))
    tensors, meta = optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": int(step), "optimizer": meta, **extra}
    for name, (module, part_optimizer) in (parts or {}).items():
        save_file(_cpu_state(module), str(tmp / f"{name}.safetensors"))
        tensors, meta = optimizer_to_flat(part_optimizer)
        save_file(tensors, str(tmp / f"{name}-optimizer.safetensors"))
        state.setdefault("parts", {})[name] = {"optimizer": meta}
    (tmp / STATE).write_text(json.dumps(state, indent=1, default=_json_default))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _json_default(value):
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith("step-")
                  and not p.name.endswith(".partial") and (p / STATE).is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"resume: cannot read {path}: {exc}; delete that "
                         "checkpoint folder to resume from the one before") from exc


def load_checkpoint(checkpoint: str | Path, model: torch.nn.Module,
                    ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    parts: Parts | None = None) -> dict[str, Any]:
    """Restore model, EMA, optimizer (and ``parts``); return the state."""
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    state = read_state(checkpoint)
    device = next(model.parameters()).device
    try:
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors"),
                                        device=str(device)))
        ema.load_state_dict(load_file(str(checkpoint / "ema.safetensors"),
                                      device=str(device)))
        opt = load_file(str(checkpoint / "optimizer.safetensors"),
                        device=str(device))
        part_states = {}
        for name, (module, _) in (parts or {}).items():
            if name not in state.get("parts", {}):
                raise RuntimeError(f"it holds no {name}")
            module.load_state_dict(load_file(str(checkpoint / f"{name}.safetensors"),
                                             device=str(device)))
            part_states[name] = load_file(
                str(checkpoint / f"{name}-optimizer.safetensors"), device=str(device))
    except (OSError, RuntimeError) as exc:
        raise InputError(
            f"resume: checkpoint {checkpoint} does not fit this model ({exc}); "
            "resume with the same settings it was written with"
        ) from exc
    # Adam keeps its step counter on the CPU
    opt = {k: (v.cpu() if k.endswith(".step") else v) for k, v in opt.items()}
    optimizer_from_flat(optimizer, opt, state["optimizer"])
    for name, tensors in part_states.items():
        tensors = {k: (v.cpu() if k.endswith(".step") else v)
                   for k, v in tensors.items()}
        optimizer_from_flat(parts[name][1], tensors,
                            state["parts"][name]["optimizer"])
    return state
