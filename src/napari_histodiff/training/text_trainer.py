"""Text-conditioned image models: captions -> tokens -> cross-attention.

A text model's UNet is a diffusers ``UNet2DConditionModel``: the noisy
canvas (with the mask's class channels when the model also follows a mask)
goes in as in every other model, and the caption reaches the cross-attention
layers as the hidden states of a text encoder (:mod:`..models.text_encoder`).

Two kinds of encoder (PathLDM freezes a pretrained one; no pretrained one
can be downloaded here):

``builtin``
    A small transformer and a WordPiece tokenizer fitted on the training
    captions, trained **jointly** with the UNet (it sits inside the trained
    module, so the EMA, the checkpoints and ``--resume`` cover it). Frozen
    at its random initialisation with ``train_encoder=False`` (the UNet then
    learns to read fixed random embeddings); the measurement that chose the
    default is in docs/text.md.
``transformers:PATH``
    Any local CLIP-text, PLIP or BERT folder, frozen: captions are encoded
    under ``no_grad`` in the batch function and only the UNet trains.

Captions come per crop: the composition caption is made from the crop's own
mask (a random crop of a large image is described by what it shows, as
PathLDM describes a tile), the report from the CSV row of the image the crop
came from (:mod:`.captions`). With probability ``caption_dropout`` a
caption is replaced by the empty prompt, the null condition of
classifier-free guidance (PathLDM: 0.1); the mask is dropped independently
with ``cond_dropout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .loop import step_rng

CAPTION_MODES = ("composition", "report", "both")
DEFAULT_MAX_TOKENS = 35
DEFAULT_CAPTION_DROPOUT = 0.1


@dataclass
class TextSpec:
    """How a text-conditioned model reads its captions.

    Parameters
    ----------
    encoder : str
        ``builtin`` or ``transformers:PATH`` (a local folder, frozen).
    captions : {"composition", "report", "both"}
        Automatic captions from each crop's mask composition, the report
        text of its image (``reports``), or both ("composition; report").
    reports : path, optional
        CSV with columns ``image`` and ``text`` (see
        :func:`.captions.read_report_csv`).
    max_tokens : int
        Caption length limit in content tokens (extractive: the composition
        part first, then whole report sentences in order).
    caption_dropout : float
        Probability of the empty (null) prompt, for classifier-free guidance.
    train_encoder : bool
        ``builtin``: train the encoder jointly with the UNet (default) or keep
        it frozen at its seeded random initialisation.
    width, layers, heads : int
        Size of the builtin encoder; ``width`` is the UNet's
        cross-attention dimension.
    vocab_size : int
        Upper bound of the builtin tokenizer's vocabulary.
    """

    encoder: str = "builtin"
    captions: str = "composition"
    reports: Path | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    caption_dropout: float = DEFAULT_CAPTION_DROPOUT
    train_encoder: bool = True
    width: int = 64
    layers: int = 2
    heads: int = 4
    vocab_size: int = 2000
    levels: tuple = field(default_factory=tuple)

    def check(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if self.captions not in CAPTION_MODES:
            raise InputError(f"captions: {self.captions!r} is not one of "
                             f"{', '.join(CAPTION_MODES)}")
        if self.captions in ("report", "both") and self.reports is None:
            raise InputError(f"captions: {self.captions!r} needs the reports CSV "
                             "(--reports FILE with columns image,text)")
        if not isinstance(self.max_tokens, int) or not 1 <= self.max_tokens <= 512:
            raise InputError(f"max-tokens: must be an integer in 1...512, got "
                             f"{self.max_tokens!r}")
        if not 0 <= self.caption_dropout <= 1:
            raise InputError(f"caption-dropout: must be in [0, 1], got "
                             f"{self.caption_dropout}")
        if not (self.encoder == "builtin" or (
                self.encoder.startswith("transformers:")
                and len(self.encoder) > len("transformers:"))):
            raise InputError(f"text: {self.encoder!r} is neither 'builtin' nor "
                             "'transformers:PATH' (a local text-encoder folder)")
        if self.encoder == "builtin":
            for name in ("width", "layers", "heads"):
                if getattr(self, name) < 1:
                    raise InputError(f"text-{name}: must be >= 1, got "
                                     f"{getattr(self, name)}")
            if self.width % self.heads or self.width % 8:
                raise InputError(f"text-width: {self.width} must be a multiple of "
                                 f"8 and of text-heads {self.heads}")

    def settings(self) -> dict[str, Any]:
        out = asdict(self)
        out["reports"] = str(self.reports) if self.reports else None
        out["levels"] = [list(v) for v in self.levels] if self.levels else None
        return out


class TextUNet(torch.nn.Module):
    """The trained module of a text model: the UNet and, when it is trained
    jointly, the text encoder (so EMA, checkpoints and resume cover both).

    ``forward(sample, timestep, input_ids=, attention_mask=)`` encodes the
    tokens with the inner encoder; ``encoder_hidden_states=`` passes encoded
    captions (a frozen encoder outside) straight to the UNet.
    """

    def __init__(self, unet, text_encoder=None):
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder

    @property
    def config(self):
        return self.unet.config

    def forward(self, sample, timestep, input_ids=None, attention_mask=None,
                encoder_hidden_states=None):
        if encoder_hidden_states is None:
            if self.text_encoder is None:
                raise InputError("text: no encoder_hidden_states and no "
                                 "trained text encoder")
            encoder_hidden_states = self.text_encoder(input_ids, attention_mask)
        return self.unet(sample, timestep,
                         encoder_hidden_states=encoder_hidden_states)


def build_text_unet(in_channels: int, out_channels: int, sample_size: int,
                    cross_attention_dim: int, size: str = "tiny",
                    channels: Sequence[int] | None = None,
                    layers: int | None = None, head_dim: int = 8, seed: int = 0):
    """A randomly initialised ``UNet2DConditionModel``.

    The first (full-resolution) level has no attention, every lower level
    and the middle block have self- and cross-attention on the caption
    (the cheap places on a CPU); the rest follows
    :func:`.models.build_train_unet`. The initial weights come from ``seed``
    (the global torch generator is left as it was), so a run and its resume
    start from the same weights whatever ran before in the process.
    """
    from diffusers import UNet2DConditionModel

    from .models import build_train_unet

    plain = build_train_unet(in_channels, out_channels, sample_size, size,
                             channels, layers)  # checks size/channels/layers
    chans = tuple(plain.config.block_out_channels)
    if any(c % head_dim for c in chans):
        raise InputError(f"channels: each of {chans} must divide by the "
                         f"attention head width {head_dim}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _text_unet(UNet2DConditionModel, in_channels, out_channels,
                          sample_size, cross_attention_dim, chans, plain.config,
                          head_dim)


def _text_unet(cls, in_channels, out_channels, sample_size, cross_attention_dim,
               chans, plain, head_dim):
    n = len(chans)
    return cls(
        sample_size=sample_size, in_channels=in_channels,
        out_channels=out_channels, block_out_channels=chans,
        layers_per_block=plain.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=int(cross_attention_dim),
        attention_head_dim=tuple(c // head_dim for c in chans),
        norm_num_groups=plain.norm_num_groups,
    )


class Captioner:
    """Captions of crops: composition from the crop's mask, report by image.

    Parameters
    ----------
    spec : TextSpec
    class_names : list of str
    reports : dict, optional
        Report text by image key (file name or stem).
    count_tokens : callable
        Content tokens of a text (the encoder's tokenizer).
    """

    def __init__(self, spec: TextSpec, class_names: Sequence[str],
                 reports: dict[str, str] | None, count_tokens):
        from . import captions as cap

        self.spec = spec
        self.names = list(class_names)
        self.reports = reports or {}
        self.count = count_tokens
        self.levels = tuple(spec.levels) or cap.DEFAULT_LEVELS
        self.truncated = 0
        self.captions = 0

    def report_for(self, source: str) -> str:
        p = Path(source)
        for key in (p.name, p.stem, str(source)):
            if key in self.reports:
                return self.reports[key]
        if self.spec.captions == "composition":
            return ""
        raise InputError(f"reports: no row for image {p.name} (looked up "
                         f"{p.name!r} and {p.stem!r} in the image column)")

    def __call__(self, masks: np.ndarray, labelled: np.ndarray,
                 sources: Sequence[str]) -> list[str]:
        from . import captions as cap

        out = []
        for mask, has_mask, source in zip(masks, labelled, sources, strict=True):
            comp = ""
            if self.spec.captions in ("composition", "both") and has_mask:
                comp = cap.composition_caption(cap.mask_fractions(mask, self.names),
                                               levels=self.levels)
            report = (self.report_for(source) if self.spec.captions != "composition"
                      else "")
            text, dropped = cap.truncate_caption(comp, report, self.spec.max_tokens,
                                                 self.count)
            self.captions += 1
            self.truncated += dropped > 0
            out.append(text)
        return out


def caption_corpus(spec: TextSpec, class_names: Sequence[str],
                   reports: dict[str, str] | None) -> list[str]:
    """Every text the builtin tokenizer must know: each class at every level
    (composition captions are combinations of these) and the reports."""
    from . import captions as cap

    levels = tuple(spec.levels) or cap.DEFAULT_LEVELS
    corpus = []
    names = [n for n in class_names if n != "unknown"]
    for _, word in levels:
        corpus.append(cap.composition_caption(
            {n: 1.0 / len(names) for n in names}, levels=((0.0, word),)))
    corpus.extend((reports or {}).values())
    return corpus


def make_prompt_encoder(spec: TextSpec, class_names: Sequence[str],
                        reports: dict[str, str] | None, seed: int):
    """The :class:`~..models.text_encoder.PromptEncoder` a job asks for."""
    from ..models import text_encoder as te

    if spec.encoder == "builtin":
        return te.build_builtin_encoder(
            caption_corpus(spec, class_names, reports), spec.max_tokens,
            width=spec.width, layers=spec.layers, heads=spec.heads,
            vocab_size=spec.vocab_size, seed=seed)
    path = spec.encoder.split(":", 1)[1]
    return te.load_transformers_encoder(path, argname="text",
                                        max_tokens=spec.max_tokens)


def content_token_counter(prompt_encoder):
    """``count(text)``: the content tokens of ``text`` (without padding and
    special tokens) under ``prompt_encoder``'s tokenizer."""
    def count(text: str) -> int:
        if not text:
            return 0
        batch = prompt_encoder.tokenize([text])
        kept = int(batch.attention_mask[0].sum()) - _specials(prompt_encoder)
        return kept + int(batch.dropped[0])
    return count


def _specials(prompt_encoder) -> int:
    """Special tokens the tokenizer adds to every prompt ([CLS], [SEP]...)."""
    return int(prompt_encoder.tokenize([""]).attention_mask[0].sum())


def text_batch_fn(inner, captioner: Captioner, prompt_encoder, trainable: bool,
                  seed: int, batch_size: int, caption_dropout: float):
    """Wrap a batch function so that it also gives the captions' tokens.

    ``inner(step)`` is the latent/pixel batch function with ``with_crops``
    (it also returns the crops' masks, labelled flags and sources; see
    :func:`.image_trainer.latent_batch_fn`). Its random draws are unchanged;
    the caption dropout has its own stream.
    """

    def batch(step: int):
        x0, cond, masks, labelled, sources = inner(step)
        texts = captioner(masks, labelled, sources)
        drop = step_rng(seed, step, 3).random(batch_size) < caption_dropout
        texts = ["" if d else t for d, t in zip(drop, texts, strict=True)]
        tokens = prompt_encoder.tokenize(texts)
        if trainable:
            kwargs = {"input_ids": torch.from_numpy(tokens.input_ids),
                      "attention_mask": torch.from_numpy(tokens.attention_mask)}
        else:
            hidden, _ = prompt_encoder.encode(texts)
            kwargs = {"encoder_hidden_states": torch.from_numpy(hidden)}
        return x0, cond, kwargs

    return batch


@dataclass
class PreparedText:
    """The pieces a text job trains with (:func:`prepare_text`)."""

    prompt_encoder: Any
    captioner: Captioner
    trainable: bool
    reports: dict[str, str] | None
    caption_stats: dict[str, Any] = field(default_factory=dict)


def prepare_text(spec: TextSpec, class_names: Sequence[str], seed: int
                 ) -> PreparedText:
    """Check ``spec``, read the reports, build the encoder and captioner."""
    from .captions import read_report_csv

    spec.check()
    reports = (read_report_csv(spec.reports, "reports")
               if spec.reports is not None else None)
    prompt = make_prompt_encoder(spec, class_names, reports, seed)
    trainable = spec.encoder == "builtin" and spec.train_encoder
    if not trainable:
        prompt.encoder.eval().requires_grad_(False)
    captioner = Captioner(spec, class_names, reports,
                          content_token_counter(prompt))
    return PreparedText(prompt, captioner, trainable, reports)


def exported_prompt_encoder(text: PreparedText, ema: TextUNet):
    """The prompt encoder to save: the EMA copy of a jointly trained builtin
    encoder (what the UNet's EMA weights were averaged with), else the
    frozen one. The caption statistics of the run go with it."""
    import copy

    prompt = copy.copy(text.prompt_encoder)
    if text.trainable:
        prompt.encoder = ema.text_encoder
    c = text.captioner
    text.caption_stats = {"captions": c.captions, "truncated": c.truncated}
    prompt.caption_stats = text.caption_stats
    return prompt


def card_text(spec: TextSpec, prompt_encoder) -> dict[str, Any]:
    """The model card's ``text``: the encoder and what a prompt means."""
    from . import captions as cap

    levels = tuple(spec.levels) or cap.DEFAULT_LEVELS
    return {
        "encoder": prompt_encoder.facts(),
        "trained_jointly": spec.encoder == "builtin" and spec.train_encoder,
        "captions": spec.captions,
        "max_tokens": spec.max_tokens,
        "caption_dropout": spec.caption_dropout,
        "levels": [[float(t), str(w)] for t, w in levels],
        "null_prompt": "",
        "meaning": (
            "Composition captions name each class of the crop's mask with the "
            "level of its area share, largest first, joined by '; ' (e.g. "
            "'high dab; low nuclei'); a level applies at or above its "
            "threshold. Reports: the CSV text of the crop's image, whole "
            "sentences in order up to max_tokens. The empty prompt is the "
            "null condition (what text guidance contrasts with)."),
    }
