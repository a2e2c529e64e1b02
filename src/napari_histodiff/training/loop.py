"""Training loops: the shared machinery and the denoising-diffusion loop.

:class:`Trainer` is what every trainer of this package shares: AdamW with a
warm-up and an optional cosine learning-rate schedule, an exponential moving
average (EMA) of the weights, checkpoints every N steps (safetensors + JSON,
:mod:`.checkpoint`), resuming from the newest one, and the loss log as CSV
and PNG. A subclass says what one optimiser step does (:meth:`train_step`).

:class:`DiffusionTrainer` trains an epsilon-predicting UNet. It knows
nothing about images or masks: a *batch function* turns a step number into
clean samples ``x0`` (B, C, H, W) and condition channels (B, K, H, W). The
loop draws timesteps uniformly over the training schedule and Gaussian
noise, feeds ``concat(noisy x0, condition)`` to the UNet and regresses the
noise (epsilon) with a mean squared error. The autoencoder trainer
(:mod:`.vae_trainer`) is the other subclass.

Every random number of step ``n`` comes from generators seeded with
``(seed, n)``, so resuming from a checkpoint gives the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

BatchFn = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainSettings:
    """Optimisation settings of a training run.

    Parameters
    ----------
    steps : int
        Total optimiser steps (a resumed run continues up to this number).
    batch_size : int
    learning_rate : float
        Peak AdamW learning rate, reached after ``warmup`` steps.
    warmup : int
        Linear warm-up steps.
    lr_schedule : str
        After the warm-up: ``"constant"`` keeps the peak rate; ``"cosine"``
        lowers it along half a cosine to ``final_lr_fraction`` times the peak
        at ``steps``. Small steps at the end settle the weights that are kept.
    final_lr_fraction : float
        With ``"cosine"``: the rate at the last step, as a fraction of the peak.
    weight_decay : float
    cond_dropout : float
        Probability of replacing a sample's condition by the null condition
        (classifier-free guidance).
    ema_decay : float
        Decay of the weight average (0 disables it: EMA = the weights).
    seed : int
        Seeds data, timesteps and noise.
    checkpoint_every : int
        Steps between checkpoints; an interruption loses at most this many.
    log_every : int
        Steps averaged into one row of the loss log.
    grad_clip : float
        Maximum gradient norm (0: no clipping).
    mixed_precision : bool
        bfloat16 autocast on a CUDA GPU (ignored on the CPU).
    """

    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup: int = 100
    lr_schedule: str = "constant"
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0
    cond_dropout: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    grad_clip: float = 1.0
    mixed_precision: bool = False

    def check(self) -> None:
        """Raise an :class:`InputError` naming the first bad setting."""
        positive = {"steps": self.steps, "batch_size": self.batch_size,
                    "checkpoint_every": self.checkpoint_every,
                    "log_every": self.log_every}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: must be an integer >= 1, got {value!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InputError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.cond_dropout <= 1:
            raise InputError(f"cond_dropout: must be in [0, 1], got "
                             f"{self.cond_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule: {self.lr_schedule!r} is not one of "
                             f"{', '.join(LR_SCHEDULES)}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise InputError(f"final_lr_fraction: must be in [0, 1], got "
                             f"{self.final_lr_fraction}")
        if self.warmup < 0 or self.seed < 0:
            raise InputError("warmup and seed: must be >= 0, got "
                             f"{self.warmup} and {self.seed}")


def step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for one random stream of one step."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The numpy generator of a batch function at ``step``."""
    return np.random.default_rng(step_seed(seed, step, stream))


class Trainer:
    """The machinery every trainer shares; subclasses define :meth:`train_step`.

    Parameters
    ----------
    model : torch.nn.Module
        The trained module; its EMA copy is what gets exported.
    settings : TrainSettings
    run_dir : path
        Checkpoints and loss logs go here.
    device : torch.device
    state_extra : dict
        JSON-able facts stored with every checkpoint (model config, data...).

    Attributes
    ----------
    parts : dict
        Further modules trained alongside (e.g. a discriminator), name ->
        ``(module, optimizer)``; they are checkpointed and restored too.
    metrics : dict
        Set by :meth:`train_step`: named loss terms of the step, averaged into
        extra columns of ``loss.csv``.
    """

    #: The y-axis label of ``loss.png``.
    loss_label = "loss"
    #: Names of the loss terms :meth:`train_step` puts in ``metrics``.
    metric_names: tuple[str, ...] = ()

    def __init__(self, model, settings: TrainSettings, run_dir: str | Path, device,
                 state_extra: dict[str, Any] | None = None):
        settings.check()
        self.model = model.to(device)
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.state_extra = state_extra or {}
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=settings.learning_rate,
            weight_decay=settings.weight_decay)
        self.parts: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
        self.metrics: dict[str, float] = {}
        self.step = 0
        self.last_loss = float("nan")

    # -- the maths ---------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        """The learning rate of the ``step``-th step (counted from 0)."""
        s = self.settings
        if s.warmup and step < s.warmup:
            return s.learning_rate * (step + 1) / s.warmup
        if s.lr_schedule == "constant":
            return s.learning_rate
        span = max(s.steps - 1 - s.warmup, 1)
        done = min(max(step - s.warmup, 0) / span, 1.0)
        fraction = s.final_lr_fraction + (1 - s.final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * done))
        return s.learning_rate * fraction

    def set_learning_rate(self, step: int, *optimizers) -> None:
        """Give every group of ``optimizers`` (default: the model's) the rate
        of ``step``."""
        for optimizer in optimizers or (self.optimizer,):
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate(step)

    def train_step(self, step: int) -> float:
        """One optimiser step (the ``step``-th, counted from 0); the loss."""
        raise NotImplementedError

    def optimise(self, loss: torch.Tensor, model: torch.nn.Module | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        """Backward ``loss``, clip the gradient norm, step ``optimizer``."""
        model = self.model if model is None else model
        optimizer = self.optimizer if optimizer is None else optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(),
                                           self.settings.grad_clip)
        optimizer.step()

    def autocast(self):
        """bfloat16 autocast on a CUDA GPU with ``mixed_precision``, else off."""
        use_amp = self.settings.mixed_precision and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=use_amp)

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        d = self.settings.ema_decay
        d = min(d, (1 + step) / (10 + step))  # short memory early on
        for pe, p in zip(self.ema.parameters(), self.model.parameters(),
                         strict=True):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)
        for be, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            be.copy_(b)

    # -- checkpoints ---------------------------------------------------------------
    def save(self) -> Path:
        extra = {"settings": asdict(self.settings), **self.state_extra,
                 "last_loss": self.last_loss}
        path = save_checkpoint(self.run_dir, self.step, self.model, self.ema,
                               self.optimizer, extra, parts=self.parts)
        self.loss_log.plot(ylabel=self.loss_label)
        return path

    def resume(self) -> Path | None:
        """Load the newest checkpoint of ``run_dir``; None if there is none."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return None
        state = load_checkpoint(ckpt, self.model, self.ema, self.optimizer,
                                parts=self.parts)
        old = state.get("settings", {})
        if old.get("seed", self.settings.seed) != self.settings.seed:
            raise InputError(
                f"seed: the run in {self.run_dir} was started with seed "
                f"{old['seed']}, not {self.settings.seed}; resume with the same seed"
            )
        self._check_same_schedule(old)
        self.step = int(state["step"])
        self.last_loss = float(state.get("last_loss", float("nan")))
        return ckpt

    def _check_same_schedule(self, old: dict[str, Any]) -> None:
        """A resumed run must follow the learning-rate curve it started on."""
        s = self.settings
        started = old.get("lr_schedule", "constant")  # older runs: constant
        if started != s.lr_schedule:
            raise InputError(
                f"lr_schedule: the run in {self.run_dir} was started with "
                f"{started!r}, not {s.lr_schedule!r}; resume with the same schedule")
        if s.lr_schedule != "cosine":
            return
        for name in ("steps", "final_lr_fraction", "learning_rate", "warmup"):
            if name in old and old[name] != getattr(s, name):
                raise InputError(
                    f"{name.replace('_', '-')}: the cosine schedule of the run in "
                    f"{self.run_dir} was planned with {name}={old[name]}, not "
                    f"{getattr(s, name)}; resume with the same value, or train "
                    "further as a new run with --init-model")

    # -- the loop --------------------------------------------------------------------
    def fit(self, resume: bool = False, quiet: bool = False,
            stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``settings.steps``; checkpoint, log and show progress.

        Parameters
        ----------
        resume : bool
            Continue from the newest checkpoint in ``run_dir`` (if any).
        quiet : bool
            No progress bar.
        stop_after : int, optional
            Stop after this many steps of this call (tests, time slices).

        Returns
        -------
        dict
            ``step``, ``resumed_from``, ``seconds`` (of this call),
            ``steps_per_second`` and ``last_loss``.
        """
        from tqdm.auto import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.resume() if resume else None
        if not resume and latest_checkpoint(self.run_dir) is not None:
            raise InputError(
                f"run-dir: {self.run_dir} already holds checkpoints; pass --resume "
                "to continue that run, or choose another --run-dir"
            )
        self.loss_log = LossLog(self.run_dir, truncate_after=self.step,
                                columns=self.metric_names)
        total = self.settings.steps
        first = self.step
        end = total if stop_after is None else min(total, self.step + stop_after)
        start = time.perf_counter()
        window: list[float] = []
        terms: dict[str, list[float]] = {}
        with tqdm(total=total, initial=self.step, disable=quiet, unit="step",
                  desc="training", dynamic_ncols=True) as bar:
            while self.step < end:
                self.metrics = {}
                loss = self.train_step(self.step)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss} at step {self.step}; lower the "
                        "learning rate and resume from the last checkpoint")
                window.append(loss)
                for name, value in self.metrics.items():
                    terms.setdefault(name, []).append(value)
                self.last_loss = loss
                bar.update(1)
                if self.step % self.settings.log_every == 0 or self.step == end:
                    mean = float(np.mean(window))
                    self.loss_log.add(self.step, mean,
                                      self.learning_rate(self.step - 1),
                                      {k: float(np.mean(v)) for k, v in
                                       terms.items()})
                    bar.set_postfix(loss=f"{mean:.4f}")
                    window, terms = [], {}
                if self.step % self.settings.checkpoint_every == 0:
                    self.save()
        if self.step == end and (self.step % self.settings.checkpoint_every):
            self.save()
        seconds = time.perf_counter() - start
        return {"step": self.step, "resumed_from": str(resumed) if resumed else None,
                "seconds": seconds,
                "steps_per_second": (self.step - first) / seconds if seconds else 0.0,
                "last_loss": self.last_loss}


class DiffusionTrainer(Trainer):
    """Trains an epsilon-predicting, condition-concatenating UNet.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        ``in_channels`` = sample channels + condition channels.
    batch_fn : callable
        ``batch_fn(step) -> (x0, cond)`` tensors; must be deterministic
        in ``step`` (use :func:`step_rng`). ``cond`` may have 0 channels
        (an unconditional model). A third item, a dict of tensors, is passed
        to the model as keyword arguments (caption tokens of text models).
    noise_scheduler : diffusers.DDPMScheduler
        The training schedule (``add_noise``, ``num_train_timesteps``).
    settings : TrainSettings
    run_dir : path
        Checkpoints and loss logs go here.
    device : torch.device
    state_extra : dict
        JSON-able facts stored with every checkpoint (model config, data...).
    """

    loss_label = "epsilon MSE"

    def __init__(self, unet, batch_fn: BatchFn, noise_scheduler,
                 settings: TrainSettings, run_dir: str | Path, device,
                 state_extra: dict[str, Any] | None = None):
        super().__init__(unet, settings, run_dir, device, state_extra)
        self.unet = self.model
        self.batch_fn = batch_fn
        self.noise_scheduler = noise_scheduler
        alphas = noise_scheduler.alphas_cumprod.to(torch.float32)
        self._alphas = alphas.to(self.device)
        self._num_timesteps = int(noise_scheduler.config.num_train_timesteps)

    def loss_on(self, model, x0: torch.Tensor, cond: torch.Tensor,
                seed: int, model_kwargs: dict[str, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Epsilon MSE of ``model`` on one batch, timesteps/noise from ``seed``.

        ``model_kwargs``: further tensors for the model call (a text model's
        caption tokens), moved to the device.
        """
        g = torch.Generator().manual_seed(seed)
        b = x0.shape[0]
        t = torch.randint(0, self._num_timesteps, (b,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x0, cond = x0.to(self.device), cond.to(self.device)
        t, noise = t.to(self.device), noise.to(self.device)
        a = self._alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        kwargs = {k: v.to(self.device) for k, v in (model_kwargs or {}).items()}
        with self.autocast():
            pred = model(torch.cat([noisy, cond], dim=1), t, **kwargs).sample
        return torch.nn.functional.mse_loss(pred.float(), noise)

    def train_step(self, step: int) -> float:
        """One optimiser step (the ``step``-th, counted from 0)."""
        self.unet.train()
        batch = self.batch_fn(step)
        x0, cond = batch[0], batch[1]
        self.set_learning_rate(step)
        loss = self.loss_on(self.unet, x0, cond,
                            step_seed(self.settings.seed, step, 99),
                            batch[2] if len(batch) > 2 else None)
        self.optimise(loss)
        self._update_ema(step)
        self.step = step + 1
        return float(loss.detach())


class LossLog:
    """``loss.csv`` (step, loss, learning rate, time) and its plot ``loss.png``.

    ``columns`` names further loss terms logged after ``time`` (blank where a
    step range had none). On resume, rows after the checkpoint's step are
    dropped so the curve has no duplicates.
    """

    BASE = ("step", "loss", "learning_rate", "time")

    def __init__(self, run_dir: Path, truncate_after: int = 0,
                 columns: tuple[str, ...] = ()):
        self.path = Path(run_dir) / LOSS_CSV
        self.columns = tuple(columns)
        rows = self.read(self.path) if self.path.is_file() else []
        rows = [r for r in rows if r["step"] <= truncate_after]
        with self.path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*self.BASE, *self.columns])
            for r in rows:
                w.writerow([r["step"], r["loss"], r["learning_rate"], r["time"],
                            *(r.get(c, "") for c in self.columns)])

    @staticmethod
    def read(path: str | Path) -> list[dict[str, float]]:
        """The rows of a loss CSV; extra columns as floats where given."""
        rows = []
        with Path(path).open(newline="") as fh:
            for r in csv.DictReader(fh):
                row = {"step": int(r["step"]), "loss": float(r["loss"]),
                       "learning_rate": float(r["learning_rate"]),
                       "time": float(r["time"])}
                row.update({k: float(v) for k, v in r.items()
                            if k not in row and v not in ("", None)})
                rows.append(row)
        return rows

    def add(self, step: int, loss: float, lr: float,
            terms: dict[str, float] | None = None) -> None:
        terms = terms or {}
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([
                step, f"{loss:.6f}", f"{lr:.3g}", f"{time.time():.0f}",
                *(f"{terms[c]:.6f}" if c in terms else "" for c in self.columns)])

    def plot(self, out: str | Path | None = None, title: str = "training loss",
             ylabel: str = "epsilon MSE") -> Path | None:
        return plot_loss(self.path, out or self.path.with_suffix(".png"), title,
                         ylabel=ylabel, columns=self.columns)


def plot_loss(csv_path: str | Path, out: str | Path, title: str = "training loss",
              smooth: int = 20, ylabel: str = "epsilon MSE",
              columns: tuple[str, ...] = ()) -> Path | None:
    """Plot a loss CSV (raw and moving average, log scale) to PNG.

    ``columns``: further positive loss terms of the CSV, drawn as moving
    averages beside the total.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = LossLog.read(csv_path)
    if not rows:
        return None
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.6, alpha=0.4, color="C0", label="loss")
    if len(loss) >= smooth:
        k = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1:], np.convolve(loss, k, mode="valid"), color="C0",
                label=f"moving average ({smooth} points)")
    for i, name in enumerate(columns, start=1):
        pts = [(r["step"], r[name]) for r in rows if r.get(name, 0) > 0]
        if len(pts) >= smooth:
            xs, ys = np.array(pts).T
            k = np.ones(smooth) / smooth
            ax.plot(xs[smooth - 1:], np.convolve(ys, k, mode="valid"), lw=0.8,
                    color=f"C{i}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
