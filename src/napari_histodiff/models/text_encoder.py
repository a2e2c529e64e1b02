"""Text encoders for prompts: a builtin one trained with the UNet, or a frozen
pretrained one read from a local folder.

Two kinds sit behind one interface, :class:`PromptEncoder`:

``builtin``
    A WordPiece tokenizer fitted on the caption corpus (:func:`fit_tokenizer`)
    and a small transformer encoder (:class:`BuiltinTextEncoder`) trained
    jointly with the UNet. Made by :func:`build_builtin_encoder`.
``transformers``
    Any local folder with a CLIP text model, a full CLIP model (its text part
    is used), or a BERT/RoBERTa-like encoder, plus its tokenizer; frozen, as
    PathLDM uses PLIP or CLIP. Read by :func:`load_transformers_encoder`.
    Only a local folder is ever read; nothing is downloaded.

Every prompt is padded or truncated to the encoder's fixed sequence length
``max_length`` (special tokens included), and the encoder returns one vector
per position, ``(B, max_length, hidden_size)``; the UNet cross-attends to all
positions, padding included, as Stable Diffusion does with CLIP's 77 tokens.
Truncation is never silent: :meth:`PromptEncoder.tokenize` and
:meth:`PromptEncoder.encode` return how many tokens were cut from each
prompt, and the caller warns.

The empty prompt ``""`` is legal and is the null condition of
classifier-free guidance: builtin, it is ``[CLS] [SEP]`` followed by padding;
a transformers tokenizer gives its own encoding of the empty text (for CLIP,
start and end tokens followed by padding).

In a model directory the encoder is stored as (:meth:`PromptEncoder.save`,
:func:`load_prompt_encoder`)::

    text_encoder/   builtin: config.json (_class_name BuiltinTextEncoder) +
                    diffusion_pytorch_model.safetensors; transformers: the
                    model's config.json (model_type) + model.safetensors
    tokenizer/      builtin: tokenizer.json + tokenizer_config.json;
                    transformers: the tokenizer's save_pretrained files

``transformers`` is an optional dependency (``pip install
napari-histodiff[text]``), imported only when a transformers encoder is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..errors import InputError, ModelFormatError, UnsafeCheckpointError
from .weights import PICKLE_SUFFIXES, _read_config, check_safetensors, load_part

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
#: Special tokens of the builtin tokenizer, in id order ([PAD] is 0).
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)
KINDS = ("builtin", "transformers")
BUILTIN_CLASS = "BuiltinTextEncoder"
TEXT_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"
#: Model types whose position ids start after the padding id (two positions
#: of ``max_position_embeddings`` are not usable by tokens).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer")
_INSTALL_HINT = "pip install napari-histodiff[text]"


# --------------------------------------------------------------------- tokenizer

def _check_texts(texts: Any, argname: str, what: str) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InputError(
            f"{argname}: got a single string ({texts[:40]!r}); give a list of "
            f"{what}")
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(
            f"{argname}: got {type(texts).__name__}; give a list of {what}"
        ) from None
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputError(
            f"{argname}: item {bad[0]} is a {type(texts[bad[0]]).__name__} "
            f"({texts[bad[0]]!r}), not a string; every one of the {what} must be "
            "text")
    return texts


def _positive_int(value: Any, argname: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise InputError(f"{argname}: {value!r} must be a whole number >= {minimum}")
    return int(value)


def fit_tokenizer(captions: Sequence[str], vocab_size: int = 2000,
                  min_frequency: int = 1):
    """Fit a WordPiece tokenizer on a caption corpus.

    The text is normalised (Unicode NFD, lower case, accents stripped) and
    split at white space and at every punctuation character, so
    ``"high dab; low nuclei"`` gives ``high``, ``dab``, ``;``, ``low``,
    ``nuclei``. Words are then split into the fitted WordPiece units
    (greedy longest match, continuation pieces start with ``##``); a word
    with a character never seen in the corpus becomes ``[UNK]``. The special
    tokens are ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]`` and ``[SEP]``, and the
    post-processor wraps every text as ``[CLS] ... [SEP]``.

    The vocabulary is learnt by :func:`learn_wordpiece_vocab` (our own code;
    the ``tokenizers`` trainer breaks ties between equally frequent merges
    differently from run to run), so the same captions, in any order, always
    give the same vocabulary and ids.

    Parameters
    ----------
    captions : sequence of str
        The corpus.
    vocab_size : int
        Largest vocabulary, special tokens included.
    min_frequency : int
        Fewest occurrences of a pair of pieces for them to be merged.

    Returns
    -------
    tokenizers.Tokenizer
        Without padding or truncation: :class:`PromptEncoder` does both.

    Raises
    ------
    InputError
        Empty corpus, a caption that is not a string, or bad sizes.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, processors

    captions = _check_texts(captions, "captions", "captions")
    if not captions:
        raise InputError("captions: the caption corpus is empty; the tokenizer is "
                         "fitted on the training captions, give at least one")
    if not any(c.strip() for c in captions):
        raise InputError(f"captions: all {len(captions)} captions are empty; give "
                         "captions with text to fit the tokenizer on")
    vocab_size = _positive_int(vocab_size, "vocab_size", len(SPECIAL_TOKENS) + 1)
    min_frequency = _positive_int(min_frequency, "min_frequency")

    normalizer, pre_tokenizer = _text_splitting()
    words: Counter[str] = Counter()
    for caption in captions:
        text = normalizer.normalize_str(caption)
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(text))
    vocab = learn_wordpiece_vocab(words, vocab_size - len(SPECIAL_TOKENS),
                                  min_frequency)
    ids = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *vocab])}
    tok = Tokenizer(models.WordPiece(ids, unk_token=UNK,
                                     continuing_subword_prefix="##"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, ids[CLS]), (SEP, ids[SEP])])
    tok.no_padding()
    tok.no_truncation()
    return tok


def _text_splitting():
    """The normaliser and pre-tokenizer of the builtin tokenizer."""
    from tokenizers import normalizers, pre_tokenizers

    return (
        normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(),
                              normalizers.StripAccents()]),
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                 pre_tokenizers.Punctuation()]))


def learn_wordpiece_vocab(words: Mapping[str, int], size: int,
                          min_frequency: int = 1) -> list[str]:
    """WordPiece units of a word-frequency table, deterministically.

    Every word starts as its characters (``h ##i ##g ##h``); the most
    frequent adjacent pair is merged, again and again (ties: the pair that
    sorts first), and each new piece enters the vocabulary, until ``size``
    pieces or no pair occurs ``min_frequency`` times. The alphabet (each
    character seen, as a first and as a ``##`` continuation piece) comes
    first; if it alone is too large, its most frequent pieces are kept.

    Parameters
    ----------
    words : mapping of str to int
        Pre-tokenized words and how often they occur.
    size : int
        Most pieces (special tokens not counted).
    min_frequency : int
        Fewest occurrences of a pair for it to be merged.

    Returns
    -------
    list of str
        The pieces, in id order.
    """
    import heapq
    from collections import Counter, defaultdict

    keys = sorted(w for w in words if w)
    counts = [int(words[w]) for w in keys]
    symbols = [[w[0], *("##" + c for c in w[1:])] for w in keys]
    freq: Counter[str] = Counter()
    for syms, n in zip(symbols, counts, strict=True):
        for s in syms:
            freq[s.removeprefix("##")] += n
    alphabet = sorted(freq, key=lambda c: (-freq[c], c))
    pieces = [p for c in alphabet for p in (c, "##" + c)][:size]
    pieces.sort(key=lambda p: (p.startswith("##"), p))
    known = set(pieces)

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in zip(syms, syms[1:], strict=False):
            pair_counts[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    while len(pieces) < size and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -neg:
            continue  # a stale entry; the current count was pushed again
        if -neg < min_frequency:
            break
        merged = a + b.removeprefix("##")
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop((a, b))):
            syms, n = symbols[i], counts[i]
            for pair in zip(syms, syms[1:], strict=False):
                pair_counts[pair] -= n
                changed.add(pair)
            out, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            symbols[i] = out
            for pair in zip(out, out[1:], strict=False):
                pair_counts[pair] += n
                where[pair].add(i)
                changed.add(pair)
        for pair in sorted(changed):
            n = pair_counts[pair]
            if n > 0:
                heapq.heappush(heap, (-n, *pair))
            else:
                del pair_counts[pair]
        if merged not in known:
            pieces.append(merged)
            known.add(merged)
    return pieces


# ------------------------------------------------------------- builtin encoder

class BuiltinTextEncoder(ModelMixin, ConfigMixin):
    """A small transformer text encoder, trained jointly with the UNet.

    Token embedding + learned position embedding, ``layers`` pre-norm
    transformer encoder layers (GELU, no dropout) and a final LayerNorm.

    Why hand-written: diffusers ships no text encoder, and the transformers
    models either need a pretrained checkpoint (which cannot be downloaded
    here) or a heavyweight configuration. This one is a few hundred thousand
    parameters, is saved and loaded by diffusers' ``save_pretrained`` /
    ``from_pretrained`` (safetensors) like the UNet, and needs no optional
    dependency.

    Parameters
    ----------
    vocab_size : int
        Rows of the token embedding (the tokenizer's vocabulary size).
    max_length : int
        Longest token sequence, special tokens included (position embeddings).
    width : int
        Hidden size; the UNet's ``cross_attention_dim`` must equal it.
    layers, heads : int
        Transformer layers and attention heads (``width % heads == 0``).
    """

    @register_to_config
    def __init__(self, vocab_size: int, max_length: int = 80, width: int = 128,
                 layers: int = 2, heads: int = 4):
        super().__init__()
        if width % heads:
            raise InputError(f"heads: {heads} does not divide the width {width}; "
                             "choose a width that is a multiple of heads")
        self.token_embedding = torch.nn.Embedding(vocab_size, width)
        self.position_embedding = torch.nn.Embedding(max_length, width)
        # not self.layers: diffusers would answer that with config.layers
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(
                width, heads, dim_feedforward=4 * width, dropout=0.0,
                activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.final_norm = torch.nn.LayerNorm(width)
        torch.nn.init.normal_(self.token_embedding.weight, std=0.02)
        torch.nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode token ids.

        Parameters
        ----------
        input_ids : LongTensor (B, L)
            ``L <= max_length``.
        attention_mask : Tensor (B, L) or None
            1 for tokens, 0 for padding; padding is masked out of attention
            (it changes no output at a token position). The first position
            is always attended so that no row attends to nothing.

        Returns
        -------
        FloatTensor (B, L, width)
            One vector per position, padded positions included.
        """
        length = input_ids.shape[1]
        if length > self.config.max_length:
            raise InputError(
                f"input_ids: {length} tokens per prompt, but this text encoder "
                f"takes at most {self.config.max_length}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        pad = None
        if attention_mask is not None:
            pad = attention_mask.to(input_ids.device) == 0
            pad[:, 0] = False
        for layer in self.blocks:
            x = layer(x, src_key_padding_mask=pad)
        return self.final_norm(x)


# ----------------------------------------------------------------- the wrapper

@dataclass
class TokenBatch:
    """Token ids of a batch of prompts, all of the encoder's ``max_length``.

    Attributes
    ----------
    input_ids : ndarray (B, L) int64
    attention_mask : ndarray (B, L) int64
        1 for tokens (special ones included), 0 for padding.
    dropped : list of int
        Tokens cut from each prompt by truncation (0 when none).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    dropped: list[int]


class PromptEncoder:
    """A tokenizer and a text encoder, builtin or transformers, as one thing.

    Parameters
    ----------
    kind : {"builtin", "transformers"}
    tokenizer
        ``tokenizers.Tokenizer`` (builtin) or a transformers tokenizer.
    encoder : torch.nn.Module
        :class:`BuiltinTextEncoder` or a transformers model whose output has
        ``last_hidden_state``.
    max_length : int
        Sequence length L, special tokens included; every prompt is padded
        or truncated to it.
    source : str
        ``"builtin"`` or the local folder the encoder was read from.

    Attributes
    ----------
    kind, tokenizer, encoder, max_length, source
        As given.
    hidden_size : int
        D, the width of each token vector.
    """

    def __init__(self, kind: str, tokenizer, encoder: torch.nn.Module,
                 max_length: int, source: str = "builtin"):
        if kind not in KINDS:
            raise InputError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_length = int(max_length)
        self.source = str(source)
        if kind == "builtin":
            self.hidden_size = int(encoder.config.width)
            if self.max_length > encoder.config.max_length:
                raise InputError(
                    f"max_length: {self.max_length} is longer than the encoder's "
                    f"{encoder.config.max_length} positions")
        else:
            self.hidden_size = int(encoder.config.hidden_size)
        if self.max_length < 2:
            raise InputError(f"max_length: {self.max_length} leaves no room for "
                             "the special tokens; give at least 2")

    # -- tokens

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can give."""
        if self.kind == "builtin":
            return int(self.tokenizer.get_vocab_size())
        return len(self.tokenizer)

    def tokenize(self, prompts: Sequence[str]) -> TokenBatch:
        """Token ids of ``prompts``, padded or truncated to ``max_length``.

        A prompt longer than ``max_length`` keeps its first tokens and its
        special tokens; ``dropped`` counts the content tokens cut off,
        exactly. ``""`` is the null condition (see the module docstring).
        """
        prompts = _check_texts(prompts, "prompt", "prompts")
        if self.kind == "builtin":
            return self._tokenize_builtin(prompts)
        return self._tokenize_transformers(prompts)

    def _tokenize_builtin(self, prompts: list[str]) -> TokenBatch:
        tok = self.tokenizer
        cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
        pad_id = tok.token_to_id(PAD)
        room = self.max_length - 2
        n = len(prompts)
        ids = np.full((n, self.max_length), pad_id, np.int64)
        mask = np.zeros((n, self.max_length), np.int64)
        dropped = []
        encodings = tok.encode_batch(prompts, add_special_tokens=False) if n else []
        for row, enc in enumerate(encodings):
            content = enc.ids[:room]
            seq = [cls_id, *content, sep_id]
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
            dropped.append(max(0, len(enc.ids) - room))
        return TokenBatch(ids, mask, dropped)

    def _tokenize_transformers(self, prompts: list[str]) -> TokenBatch:
        tok = self.tokenizer
        n = len(prompts)
        if not n:
            empty = np.zeros((0, self.max_length), np.int64)
            return TokenBatch(empty, empty.copy(), [])
        specials = tok.num_special_tokens_to_add()
        content = tok(prompts, add_special_tokens=False, truncation=False,
                      verbose=False)["input_ids"]
        dropped = [max(0, len(c) + specials - self.max_length) for c in content]
        batch = tok(prompts, padding="max_length", truncation=True,
                    max_length=self.max_length, return_attention_mask=True,
                    verbose=False)
        ids = np.asarray(batch["input_ids"], np.int64)
        mask = np.asarray(batch["attention_mask"], np.int64)
        return TokenBatch(ids, mask, dropped)

    # -- vectors

    @property
    def device(self) -> torch.device:
        """Device of the encoder's weights."""
        return next(self.encoder.parameters()).device

    def encode_ids(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
        """Differentiable forward: token ids (B, L) -> vectors (B, L, D).

        Gradients flow into a builtin encoder (trained with the UNet); a
        transformers encoder is frozen and gives its ``last_hidden_state``.
        """
        if self.kind == "builtin":
            return self.encoder(input_ids, attention_mask)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def encode(self, prompts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors of ``prompts`` without gradients.

        Returns
        -------
        ndarray (B, L, D) float32
            Computed on the encoder's device, returned on the CPU.
        list of int
            Tokens dropped from each prompt by truncation. Nothing is warned
            here; the caller warns when a count is not 0.
        """
        batch = self.tokenize(prompts)
        device = self.device
        if not len(batch.dropped):
            return (np.zeros((0, self.max_length, self.hidden_size), np.float32),
                    [])
        with torch.no_grad():
            out = self.encode_ids(torch.from_numpy(batch.input_ids).to(device),
                                  torch.from_numpy(batch.attention_mask).to(device))
        return out.float().cpu().numpy(), batch.dropped

    def to(self, device) -> PromptEncoder:
        """Move the encoder to ``device``; returns self."""
        self.encoder.to(device)
        return self

    def facts(self) -> dict[str, Any]:
        """JSON-able description, for the model card and output settings."""
        facts: dict[str, Any] = {
            "kind": self.kind, "source": self.source,
            "max_length": self.max_length, "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size}
        config = self.encoder.config
        if self.kind == "builtin":
            facts.update(width=int(config.width), layers=int(config.layers),
                         heads=int(config.heads))
        else:
            facts.update(model_type=str(config.model_type),
                         class_name=type(self.encoder).__name__)
        return facts

    # -- storage

    def save(self, model_dir: Path) -> None:
        """Write ``text_encoder/`` and ``tokenizer/`` into ``model_dir``.

        Weights are safetensors. ``model_dir`` must exist (a temporary folder
        the caller renames when the model is complete).
        """
        model_dir = Path(model_dir)
        text_dir, tok_dir = model_dir / TEXT_DIR, model_dir / TOKENIZER_DIR
        tok_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "builtin":
            self.encoder.save_pretrained(text_dir, safe_serialization=True)
            self.tokenizer.save(str(tok_dir / "tokenizer.json"))
            config = {"tokenizer_class": "PreTrainedTokenizerFast",
                      "histodiff_kind": "builtin", "max_length": self.max_length,
                      "model_max_length": self.max_length, "pad_token": PAD,
                      "unk_token": UNK, "cls_token": CLS, "sep_token": SEP}
            (tok_dir / "tokenizer_config.json").write_text(
                json.dumps(config, indent=2, sort_keys=True) + "\n")
            return
        with _quiet_transformers():
            self.encoder.save_pretrained(text_dir, safe_serialization=True)
            self.tokenizer.model_max_length = self.max_length
            self.tokenizer.save_pretrained(tok_dir)


def build_builtin_encoder(captions: Sequence[str], max_tokens: int,
                          width: int = 128, layers: int = 2, heads: int = 4,
                          vocab_size: int = 2000, seed: int = 0) -> PromptEncoder:
    """A builtin prompt encoder: fitted tokenizer + seeded random encoder.

    Parameters
    ----------
    captions : sequence of str
        The training captions the tokenizer is fitted on.
    max_tokens : int
        Content tokens per prompt; ``max_length`` is ``max_tokens + 2``
        (``[CLS]`` and ``[SEP]``).
    width, layers, heads : int
        See :class:`BuiltinTextEncoder`.
    vocab_size : int
        Largest vocabulary of the tokenizer.
    seed : int
        Seed of the initial weights (the global torch RNG is left as it was).
    """
    max_tokens = _positive_int(max_tokens, "max_tokens")
    width = _positive_int(width, "width")
    layers = _positive_int(layers, "layers")
    heads = _positive_int(heads, "heads")
    tokenizer = fit_tokenizer(captions, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = BuiltinTextEncoder(
            vocab_size=tokenizer.get_vocab_size(), max_length=max_tokens + 2,
            width=width, layers=layers, heads=heads)
    return PromptEncoder("builtin", tokenizer, encoder, max_tokens + 2, "builtin")


# ----------------------------------------------------------- transformers ones

class _quiet_transformers:
    """Silence transformers' logging and progress bars inside the block."""

    def __enter__(self):
        from transformers.utils import logging as tlog

        self._tlog = tlog
        self._verbosity = tlog.get_verbosity()
        self._bars = tlog.is_progress_bar_enabled()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        self._tlog.set_verbosity(self._verbosity)
        if self._bars:
            self._tlog.enable_progress_bar()
        return False


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def _import_transformers(argname: str, value: Any):
    try:
        import transformers
    except ImportError:
        raise InputError(
            f"{argname}: {value!s} is a transformers text encoder, which needs "
            f"the optional dependency transformers; install it with "
            f"`{_INSTALL_HINT}`") from None
    return transformers


def _save_hint() -> str:
    return ("Save one where it can be downloaded, e.g. "
            "`CLIPTextModel.from_pretrained(name).save_pretrained(folder)` and "
            "`CLIPTokenizer.from_pretrained(name).save_pretrained(folder)` "
            "(same folder), copy the folder here and give its path")


def _describe_folder(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return shown or "nothing"


def _read_json(path: Path, error, argname: str) -> dict[str, Any]:
    return _read_config(path, error, argname)


def _check_transformers_weights(folder: Path, argname: str) -> None:
    safes = sorted(folder.glob("*.safetensors"))
    if safes:
        for path in safes:
            try:
                check_safetensors(path)
            except ModelFormatError as exc:
                message = str(exc).removeprefix("model: ")
                raise ModelFormatError(f"{argname}: {message}") from None
        return
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeCheckpointError(
            f"{argname}: {pickles[0]} is a pickle checkpoint: loading it can run "
            "arbitrary code, so napari-histodiff refuses it. If you trust its "
            "origin, convert it once in a separate environment: load it with "
            "transformers (`AutoModel.from_pretrained(folder)`) and call "
            "`model.save_pretrained(folder, safe_serialization=True)`, which "
            "writes model.safetensors")
    raise ModelFormatError(
        f"{argname}: {folder} has no weights (expected model.safetensors)")


def _text_model_class(transformers, folder: Path, config: dict[str, Any],
                      argname: str):
    """The transformers class that loads the text model of ``folder``."""
    model_type = config["model_type"]
    if model_type in ("clip_text_model", "clip"):
        return transformers.CLIPTextModel
    try:
        auto = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # unknown model_type, bad values, ...
        raise InputError(
            f"{argname}: {folder}/config.json (model_type {model_type!r}) is not "
            f"a configuration this transformers ({transformers.__version__}) "
            f"can read: {_first_line(exc)}") from exc
    if getattr(auto, "text_config", None) is not None or \
            getattr(auto, "vision_config", None) is not None:
        raise InputError(
            f"{argname}: {folder} holds a {model_type!r} model with several "
            "parts; only CLIP's text part is taken from a combined model. Save "
            "its text model alone with save_pretrained and give that folder")
    if getattr(auto, "is_encoder_decoder", False):
        raise InputError(
            f"{argname}: {folder} holds an encoder-decoder model ({model_type!r}); "
            "give a text encoder folder (CLIP text, PLIP, BERT, RoBERTa, ...)")
    if getattr(auto, "vocab_size", None) is None:
        raise InputError(
            f"{argname}: {folder} holds a {model_type!r} model without a "
            "vocabulary: not a text model (a vision model?). Give a text encoder "
            "folder (CLIP text, PLIP, BERT, RoBERTa, ...)")
    return transformers.AutoModel


def _load_transformers(model_folder: Path, tok_folder: Path, argname: str,
                       max_tokens: int | None, source: str) -> PromptEncoder:
    transformers = _import_transformers(argname, model_folder)
    config_path = model_folder / "config.json"
    config = _read_json(config_path, InputError, argname)
    if "model_type" not in config:
        found = (f"a diffusers {config['_class_name']} config"
                 if "_class_name" in config else "no model_type")
        raise InputError(
            f"{argname}: {config_path} has {found}; not a transformers text "
            "encoder. Give a folder with a CLIP text, PLIP or BERT model")
    model_class = _text_model_class(transformers, model_folder, config, argname)
    _check_transformers_weights(model_folder, argname)
    try:
        with _quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                tok_folder, local_files_only=True)
    except Exception as exc:
        raise InputError(
            f"{argname}: no usable tokenizer in {tok_folder} (it holds "
            f"{_describe_folder(tok_folder)}; {type(exc).__name__}: "
            f"{_first_line(exc)}). Save the model's tokenizer into it with "
            "`tokenizer.save_pretrained(folder)`") from exc
    try:
        with _quiet_transformers():
            encoder = model_class.from_pretrained(
                model_folder, local_files_only=True, use_safetensors=True)
    except Exception as exc:
        raise ModelFormatError(
            f"{argname}: {model_folder} cannot be loaded as a "
            f"{model_class.__name__} ({type(exc).__name__}: "
            f"{_first_line(exc)}); its config.json and weights do not fit "
            "each other or are damaged") from exc
    encoder.eval()
    encoder.requires_grad_(False)
    if getattr(encoder.config, "hidden_size", None) is None:
        raise InputError(f"{argname}: {config_path} gives no hidden_size; cannot "
                         "tell the width of the token vectors")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(
                f"{argname}: the tokenizer in {tok_folder} has no padding or end "
                "token; prompts cannot be padded to one length")
        tokenizer.pad_token = tokenizer.eos_token
    vocab = getattr(encoder.config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise InputError(
            f"{argname}: the tokenizer in {tok_folder} has {len(tokenizer)} tokens "
            f"but the model in {model_folder} embeds only {vocab}; they do not "
            "belong together")
    lengths = [int(tokenizer.model_max_length)]
    specials = tokenizer.num_special_tokens_to_add()
    if max_tokens is not None:
        lengths.append(_positive_int(max_tokens, "max_tokens") + specials)
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if positions:
        offset = 2 if encoder.config.model_type in _OFFSET_POSITIONS else 0
        lengths.append(int(positions) - offset)
    max_length = min(lengths)
    if max_length <= specials:
        raise InputError(f"{argname}: {source} takes {max_length} tokens, no room "
                         "for any text after its special tokens")
    tokenizer.model_max_length = max_length
    return PromptEncoder("transformers", tokenizer, encoder, max_length, source)


def load_transformers_encoder(path: str | Path, argname: str = "text",
                              max_tokens: int | None = None) -> PromptEncoder:
    """A frozen pretrained text encoder from a local folder.

    Parameters
    ----------
    path : str or Path
        A folder holding ``config.json``, ``model.safetensors`` and the
        tokenizer's files: a CLIP text model (``clip_text_model``), a full CLIP
        model (``clip``; its text part is used), or an encoder AutoModel reads
        (BERT, RoBERTa, PLIP's text part, ...). Nothing is downloaded; a hub
        name is refused.
    argname : str
        The argument named in errors.
    max_tokens : int or None
        Content tokens per prompt. ``max_length`` is the smallest of the
        tokenizer's ``model_max_length``, ``max_tokens`` + the special tokens,
        and the model's position embeddings.

    Returns
    -------
    PromptEncoder
        ``kind`` ``"transformers"``, in eval mode without gradients.

    Raises
    ------
    InputError
        Not an existing folder, not a text encoder, no tokenizer, or
        transformers is not installed.
    UnsafeCheckpointError
        Only pickle weights (``pytorch_model.bin``).
    ModelFormatError
        Damaged weights.
    """
    folder = Path(path)
    if not folder.exists():
        looks_hub = (isinstance(path, str) and path.count("/") == 1
                     and not path.startswith((".", "/", "~")))
        what = "a name on a model hub, not" if looks_hub else "not"
        raise InputError(
            f"{argname}: {str(path)!r} is {what} an existing folder; "
            "napari-histodiff reads text encoders only from local folders and "
            f"downloads nothing. {_save_hint()}")
    if not folder.is_dir():
        raise InputError(f"{argname}: {folder} is a file; give the folder that "
                         "holds the text encoder's config.json, weights and "
                         "tokenizer")
    if not (folder / "config.json").is_file():
        if (folder / "model_index.json").is_file():
            found = "a diffusers pipeline (model_index.json)"
        elif (folder / "unet").is_dir() or (folder / "histodiff.json").is_file():
            found = "a model directory"
        else:
            found = _describe_folder(folder)
        raise InputError(
            f"{argname}: {folder} has no config.json, so it is not a text encoder "
            f"folder (found {found}). {_save_hint()}")
    return _load_transformers(folder, folder, argname, max_tokens,
                              str(folder.resolve()))


# ------------------------------------------------------------ model directories

def load_prompt_encoder(model_dir: Path, argname: str = "model"
                        ) -> PromptEncoder | None:
    """Read the prompt encoder :meth:`PromptEncoder.save` wrote.

    Returns None when ``model_dir`` has no ``text_encoder/``.

    Raises
    ------
    ModelFormatError
        A missing or damaged ``text_encoder/`` or ``tokenizer/`` file, named.
    UnsafeCheckpointError
        Pickle weights only.
    """
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    text_dir, tok_dir = model_dir / TEXT_DIR, model_dir / TOKENIZER_DIR
    if not text_dir.is_dir():
        return None
    config_path = text_dir / "config.json"
    if not config_path.is_file():
        raise ModelFormatError(f"{argname}: {text_dir} lacks config.json")
    if not tok_dir.is_dir():
        raise ModelFormatError(
            f"{argname}: {model_dir} has {TEXT_DIR}/ but no {TOKENIZER_DIR}/; "
            "copy the model again or re-export it")
    config = _read_json(config_path, ModelFormatError, argname)
    if config.get("_class_name") == BUILTIN_CLASS:
        from .weights import check_safe_weights

        check_safe_weights(text_dir)
        tok_path = tok_dir / "tokenizer.json"
        tok_config = _read_json(tok_dir / "tokenizer_config.json",
                                ModelFormatError, argname)
        try:
            tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as exc:
            raise ModelFormatError(
                f"{argname}: {tok_path} cannot be read as a tokenizer "
                f"({type(exc).__name__}: {_first_line(exc)}); copy the model again"
            ) from exc
        tokenizer.no_padding()
        tokenizer.no_truncation()
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ModelFormatError(f"{argname}: {tok_path} lacks the special "
                                   f"tokens {', '.join(missing)}")
        encoder, _ = load_part(BuiltinTextEncoder, model_dir, TEXT_DIR,
                               "config.json", use_safetensors=True,
                               low_cpu_mem_usage=False)
        max_length = tok_config.get("max_length")
        if not isinstance(max_length, int) or not \
                2 <= max_length <= encoder.config.max_length:
            raise ModelFormatError(
                f"{argname}: {tok_dir / 'tokenizer_config.json'} gives max_length "
                f"{max_length!r}; expected a whole number from 2 to "
                f"{encoder.config.max_length} (the encoder's positions)")
        if tokenizer.get_vocab_size() > encoder.config.vocab_size:
            raise ModelFormatError(
                f"{argname}: {tok_path} has {tokenizer.get_vocab_size()} tokens "
                f"but {config_path} embeds {encoder.config.vocab_size}")
        return PromptEncoder("builtin", tokenizer, encoder, max_length, "builtin")
    if "model_type" in config:
        try:
            return _load_transformers(text_dir, tok_dir, argname, None,
                                      str(text_dir.resolve()))
        except UnsafeCheckpointError:
            raise
        except (InputError, ModelFormatError) as exc:
            reason = str(exc).removeprefix(f"{argname}: ")
            raise ModelFormatError(
                f"{argname}: {text_dir} cannot be loaded: {reason}") from exc
    raise ModelFormatError(
        f"{argname}: {config_path} names neither _class_name {BUILTIN_CLASS!r} nor "
        "a transformers model_type; copy the model again or re-export it")


def check_cross_attention(encoder: PromptEncoder, cross_attention_dim,
                          argname: str = "text") -> None:
    """Refuse a text encoder whose width differs from the UNet's.

    Parameters
    ----------
    encoder : PromptEncoder
    cross_attention_dim : int or sequence of int
        The UNet's ``cross_attention_dim`` (diffusers allows one per block).
    argname : str
        The argument named in the error.

    Raises
    ------
    InputError
        Names the encoder's hidden size and source and the UNet's dimension.
    """
    dims = (list(cross_attention_dim)
            if isinstance(cross_attention_dim, (list, tuple))
            else [cross_attention_dim])
    if all(int(d) == encoder.hidden_size for d in dims):
        return
    shown = dims[0] if len(set(dims)) == 1 else dims
    raise InputError(
        f"{argname}: the text encoder ({encoder.source}) gives token vectors of "
        f"hidden size {encoder.hidden_size}, but the UNet's cross_attention_dim "
        f"is {shown}; they must be equal. Use a text encoder with hidden size "
        f"{shown}, or a UNet with cross_attention_dim {encoder.hidden_size}")
