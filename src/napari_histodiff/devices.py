"""Choosing the compute device and dtype."""

from __future__ import annotations

from .errors import DeviceError, InputError

DEVICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Devices present on this machine, best first (``cpu`` always last)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str = "auto"):
    """Turn ``auto``/``cuda``/``cuda:1``/``mps``/``cpu`` into a ``torch.device``.

    ``auto`` picks cuda, then mps, then cpu. Asking for a device that is not
    present raises a :class:`DeviceError` that says what is there.
    """
    import torch

    if not isinstance(device, str):
        return torch.device(device)
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise InputError(f"device: {device!r} is not one of {', '.join(DEVICES)}")
    present = available_devices()
    if kind == "auto":
        return torch.device(present[0])
    if kind not in present:
        raise DeviceError(
            f"device: {device!r} is not available on this machine; available: "
            f"{', '.join(present)}. Use --device auto or one of those."
        )
    return torch.device(device)


def resolve_dtype(device, fp16: bool = False):
    """float16 when asked for on a GPU; float32 otherwise (fp16 on CPU is refused)."""
    import torch

    if fp16:
        if torch.device(device).type == "cpu":
            raise InputError("fp16: half precision needs a GPU (cuda or mps); "
                             "drop --fp16 on the CPU")
        return torch.float16
    return torch.float32
