"""Cross-attention tokens (``encoder_hidden_states``), e.g. an encoded prompt."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..hashing import array_sha256
from .base import Condition, ConditionInputs, WindowIndices


class TokenCondition(Condition):
    """The same token sequence for every window of a synthesis.

    Parameters
    ----------
    tokens : array-like, (L, D)
        Encoded tokens (the text encoder's last hidden state for a prompt).
    null_tokens : array-like, (L, D)
        The null form: the encoded empty prompt, or a negative prompt (then
        classifier-free guidance pushes away from it). Same shape as
        ``tokens`` (the branches are stacked into one UNet call).
    name : str
        How guidance terms refer to it (default ``text``).
    description : dict, optional
        What the tokens encode (prompt, encoder), for the settings.
    """

    kind = "tokens"

    def __init__(self, tokens, null_tokens, name: str = "text",
                 description: dict[str, Any] | None = None):
        self.tokens = np.asarray(tokens, np.float32)
        self.null_tokens = np.asarray(null_tokens, np.float32)
        for arg, value in (("tokens", self.tokens), ("null_tokens", self.null_tokens)):
            if value.ndim != 2 or 0 in value.shape:
                raise InputError(f"{arg}: expected an (L, D) array of tokens, got "
                                 f"shape {value.shape}")
            if not np.isfinite(value).all():
                raise InputError(f"{arg}: holds NaN or infinite values")
        if self.tokens.shape != self.null_tokens.shape:
            raise InputError(f"null_tokens: shape {self.null_tokens.shape} differs "
                             f"from tokens {self.tokens.shape}; encode both to "
                             "the same length")
        self.name = name
        self.description = dict(description or {})

    def inputs(self, windows: WindowIndices, size: int, null: bool
               ) -> ConditionInputs:
        one = self.null_tokens if null else self.tokens
        return ConditionInputs(encoder_hidden_states=np.broadcast_to(
            one, (len(windows), *one.shape)))

    def check_unet(self, config: Any, window: int) -> None:
        dim = getattr(config, "cross_attention_dim", None)
        if dim is None:
            raise InputError(f"condition {self.name!r}: the UNet has no "
                             "cross-attention; use a UNet2DConditionModel")
        if self.tokens.shape[1] != dim:
            raise InputError(f"condition {self.name!r}: tokens of width "
                             f"{self.tokens.shape[1]}, but the UNet's "
                             f"cross_attention_dim is {dim}")

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind,
                "shape": list(self.tokens.shape),
                "tokens_sha256": array_sha256(self.tokens),
                "null_tokens_sha256": array_sha256(self.null_tokens),
                **self.description}
