"""The denoiser: the UNet, its conditions and guidance terms over window batches.

The sampling engine and every strategy call one :class:`Denoiser` with the
noisy windows, the timestep and where each window lies; they never change
when a new kind of condition or guidance term arrives. Per call, every UNet
branch the guidance needs (see :func:`.guidance.branch_coefficients`) is
stacked into one batch, so the conditional and null branches cost one UNet
call, and a branch of weight zero is never evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, ModelOutputError
from .base import Condition, ConditionInputs, WindowIndices, check_names
from .guidance import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    GuidanceTerm,
    branch_coefficients,
)


class Denoiser:
    """Guided model output for batches of windows.

    Parameters
    ----------
    unet : diffusers UNet (``UNet2DModel`` or ``UNet2DConditionModel``)
    conditions : sequence of Condition
        What the UNet is conditioned on; channel conditions are concatenated
        to the noisy input in this order.
    guidance : sequence of GuidanceTerm
        Classifier-free terms over named conditions, classifier terms.
    device, dtype : torch device and dtype of the UNet inputs.
    alphas_cumprod : array-like, optional
        The training schedule's ``alpha_bar`` per timestep; needed by
        classifier terms.

    Attributes
    ----------
    unet_seconds : float
        Wall time spent inside UNet calls (for the benchmark).
    evaluations : int
        Windows evaluated (a window counts once whatever its branches).
    unet_calls : int
    """

    def __init__(self, unet, conditions: Sequence[Condition] = (),
                 guidance: Sequence[GuidanceTerm] = (), device=None, dtype=None,
                 alphas_cumprod=None):
        self.unet = unet
        self.conditions = list(conditions)
        self.guidance = list(guidance)
        check_names(self.conditions)
        for term in self.guidance:
            if not isinstance(term, ClassifierFreeGuidance | ClassifierGuidance):
                raise InputError(f"guidance: {type(term).__name__} is not a "
                                 "guidance term this version knows")
        self.branches = branch_coefficients([c.name for c in self.conditions],
                                            self.guidance)
        self.classifier_terms = [g for g in self.guidance
                                 if isinstance(g, ClassifierGuidance)
                                 and g.scale != 0.0]
        if self.classifier_terms and alphas_cumprod is None:
            raise InputError("alphas_cumprod: classifier guidance needs the "
                             "schedule's alphas_cumprod")
        self.alphas_cumprod = (None if alphas_cumprod is None
                               else np.asarray(alphas_cumprod, np.float64))
        self.device = unet.device if device is None else device
        self.dtype = unet.dtype if dtype is None else dtype
        self._check_channels()
        self.unet_seconds = 0.0
        self.evaluations = 0
        self.unet_calls = 0

    # -- checks -------------------------------------------------------------------
    def _check_channels(self) -> None:
        config = self.unet.config
        extra = sum(c.channels for c in self.conditions if c.kind == "channels")
        image = config.out_channels
        if config.in_channels != image + extra:
            parts = ", ".join(f"{c.name!r} {c.channels}" for c in self.conditions
                              if c.kind == "channels") or "none"
            raise InputError(
                f"conditions: the UNet takes in_channels={config.in_channels} "
                f"({image} image channels + {config.in_channels - image} "
                f"condition channels), but the conditions add {extra} "
                f"(channels per condition: {parts})")

    def check_window(self, window: int) -> None:
        """Refuse a window side the UNet cannot take, naming both."""
        config = self.unet.config
        down = 2 ** (len(config.block_out_channels) - 1)
        if window < down or window % down:
            raise InputError(
                f"window: {window} canvas pixels do not fit the UNet, whose "
                f"{len(config.block_out_channels)} resolution levels need a "
                f"multiple of {down} (its sample_size is {config.sample_size})")
        for cond in self.conditions:
            cond.check_unet(config, window)

    def settings(self) -> dict[str, Any]:
        """Every condition and guidance term, as recorded with an output."""
        return {"conditions": [c.settings() for c in self.conditions],
                "guidance": [g.settings() for g in self.guidance]}

    # -- inputs -------------------------------------------------------------------
    def _branch_inputs(self, x: np.ndarray, windows: WindowIndices, size: int):
        """The stacked UNet input, tokens and labels of every branch."""
        cache: dict[tuple[str, bool], ConditionInputs] = {}
        batch = x.shape[0]
        inputs, tokens, labels = [], [], []
        for branch in self.branches:
            chans, tok, lab = [], None, None
            for cond in self.conditions:
                null = cond.name not in branch
                key = (cond.name, null)
                if key not in cache:
                    cache[key] = self._checked(cond, cond.inputs(windows, size, null),
                                               batch, x.shape[-2:])
                got = cache[key]
                if got.channels is not None:
                    chans.append(got.channels)
                if got.encoder_hidden_states is not None:
                    if tok is not None:
                        raise InputError("conditions: only one condition may give "
                                         "cross-attention tokens")
                    tok = got.encoder_hidden_states
                if got.class_labels is not None:
                    if lab is not None:
                        raise InputError("conditions: only one condition may give "
                                         "class labels")
                    lab = got.class_labels
            inputs.append((x, *chans))
            tokens.append(tok)
            labels.append(lab)
        if len({t is None for t in tokens}) > 1 or \
                len({lb is None for lb in labels}) > 1:
            raise InputError("conditions: a condition gives tokens or labels in "
                             "one form (conditional or null) but not the other")
        return inputs, tokens, labels

    def _checked(self, cond: Condition, got: ConditionInputs, batch: int,
                 hw: tuple[int, int]) -> ConditionInputs:
        config = self.unet.config
        if got.channels is not None and (got.channels.shape[0] != batch
                                         or got.channels.shape[-2:] != tuple(hw)):
            raise InputError(
                f"condition {cond.name!r}: gives channels of shape "
                f"{tuple(got.channels.shape)} for {batch} windows of "
                f"{hw[0]}x{hw[1]}; the window and the condition must be the same "
                "size")
        if got.encoder_hidden_states is not None:
            dim = getattr(config, "cross_attention_dim", None)
            if dim is None:
                raise InputError(
                    f"condition {cond.name!r}: gives cross-attention tokens, but "
                    f"the UNet ({type(self.unet).__name__}) has no cross-attention; "
                    "use a UNet2DConditionModel")
            width = got.encoder_hidden_states.shape[-1]
            if width != dim:
                raise InputError(
                    f"condition {cond.name!r}: tokens of width {width}, but the "
                    f"UNet's cross_attention_dim is {dim}")
        if got.class_labels is not None:
            n = getattr(config, "num_class_embeds", None)
            if n is None:
                raise InputError(
                    f"condition {cond.name!r}: gives class labels, but the UNet "
                    "has no class embedding (num_class_embeds is None)")
            bad = [int(v) for v in np.ravel(got.class_labels) if not 0 <= v < n]
            if bad:
                raise InputError(
                    f"condition {cond.name!r}: class label {bad[0]} is outside "
                    f"the UNet's {n} class embeddings (0...{n - 1})")
        return got

    # -- the call -----------------------------------------------------------------
    def __call__(self, x: np.ndarray, t, windows: WindowIndices) -> np.ndarray:
        """Guided model output (B, C, h, w) for windows ``x`` at timestep ``t``.

        ``windows`` gives the canvas rows and columns of each window (the
        conditions read their inputs there).
        """
        import torch

        batch, size = x.shape[0], x.shape[-1]
        inputs, tokens, labels = self._branch_inputs(x, windows, size)
        n_branches = len(inputs)
        if n_branches == 1:
            stacked = np.concatenate(inputs[0], axis=1)
        else:  # batch-major, as [x; x] next to [cond; null]
            stacked = np.concatenate(
                [np.concatenate([part[i] for part in inputs]) for i in
                 range(len(inputs[0]))], axis=1)
        inp = torch.from_numpy(stacked).to(self.device, self.dtype)
        tt = torch.full((inp.shape[0],), int(t), device=self.device, dtype=torch.long)
        kwargs = {}
        if tokens[0] is not None:
            kwargs["encoder_hidden_states"] = torch.from_numpy(
                np.concatenate(tokens).astype(np.float32)).to(self.device, self.dtype)
        if labels[0] is not None:
            kwargs["class_labels"] = torch.from_numpy(
                np.concatenate(labels).astype(np.int64)).to(self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = self.unet(inp, tt, **kwargs).sample
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.unet_seconds += time.perf_counter() - start
        self.unet_calls += 1
        self.evaluations += batch
        out = out.float()
        if not torch.isfinite(out).all():
            raise ModelOutputError(
                f"the UNet's output holds NaN or infinite values at timestep "
                f"{int(t)}: its weights may be damaged (NaN), or half precision "
                "overflowed (run without --fp16 / fp16=False). Nothing was "
                "written as a result.")
        eps = self._combine(out.chunk(n_branches))
        if self.classifier_terms:
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            abar = self.alpha_bar(t)
            for term in self.classifier_terms:
                eps = term.apply(eps, xt, float(t), abar)
            if not torch.isfinite(eps).all():
                raise ModelOutputError(
                    f"classifier guidance gave NaN or infinite values at timestep "
                    f"{int(t)}: check the classifier's weights and the scale")
        return eps.cpu().numpy()

    def _combine(self, outs):
        """``e_ref + sum_b c_b (e_b - e_ref)``, ``e_ref`` the least-conditioned
        branch; for one term this is exactly ``null + w (cond - null)``."""
        coefs = list(self.branches.values())
        if len(outs) == 1:
            return outs[0]
        ref = min(range(len(outs)),
                  key=lambda i: (len(list(self.branches)[i]), -i))
        eps = outs[ref]
        for i, (e, c) in enumerate(zip(outs, coefs, strict=True)):
            if i != ref:
                eps = eps + c * (e - outs[ref])
        return eps

    def alpha_bar(self, t) -> float:
        """``alpha_bar`` of the training schedule at ``t`` (interpolated
        between integer timesteps for schedulers with fractional ones)."""
        ac = self.alphas_cumprod
        return float(np.interp(float(t), np.arange(len(ac)), ac))
