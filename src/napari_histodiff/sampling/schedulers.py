"""Diffusers schedulers by short name, swappable with ``from_config``."""

from __future__ import annotations

from ..defaults import DEFAULT_SCHEDULER, DEFAULT_STEPS  # noqa: F401 (re-exported)
from ..errors import InputError

# short name -> (diffusers class name, extra config)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                              "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def make_scheduler(name: str, config):
    """A new scheduler of kind ``name`` built from another scheduler's config.

    Parameters
    ----------
    name : str
        A short name (``dpm++``, ``ddim``, ``ddpm``, ``euler``, ``unipc``) or
        the class name of any diffusers scheduler (``PNDMScheduler``).
    config : FrozenDict or dict
        The training noise schedule (``scheduler.config``).
    """
    import diffusers

    class_name, extra = SCHEDULERS.get(name, (name, {}))
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        raise InputError(
            f"scheduler: {name!r} is not known; use one of "
            f"{', '.join(SCHEDULERS)} or a diffusers scheduler class name"
        )
    return cls.from_config(dict(config), **extra)
