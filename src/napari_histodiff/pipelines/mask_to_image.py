"""The mask-conditioned diffusion pipeline.

>>> from napari_histodiff.pipelines.mask_to_image import HistoDiffPipeline
>>> pipe = HistoDiffPipeline.from_pretrained("my-model", device="auto")
>>> out = pipe(mask, guidance_scale=2.0, num_inference_steps=25, seed=0)
>>> out.image.shape  # (H, W, 3) uint8, the same size as the mask

The pipeline is a diffusers ``DiffusionPipeline``: its modules are registered
with ``register_modules``; ``save_pretrained``/``from_pretrained`` round-trip a
model directory (see :mod:`.model_io`); schedulers are swapped by name with
``from_config``. Any mask size works: the canvas is denoised window by window
with a sampling strategy (:mod:`.sampling`), by default ``random-shift``,
which leaves no tile seams.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline

from .._version import __version__
from ..checks import check_int, check_number
from ..conditioning import (
    ClassifierFreeGuidance,
    Condition,
    Denoiser,
    GuidanceTerm,
    MaskCondition,
)
from ..defaults import (
    DEFAULT_CLASSIFIER_SCALE,
    DEFAULT_GUIDANCE,
    DEFAULT_TEXT_GUIDANCE,
    NOISE_MEANS,
)
from ..errors import InputError, ModelFormatError
from ..hashing import array_sha256
from ..models.card import ModelCard, latent_preview_arrays
from ..sampling.engine import (
    DEFAULT_CHUNK,
    DEFAULT_WINDOW_BATCH,
    MIN_CHUNK,
    SynthesisEngine,
)
from ..sampling.events import CancelledEvent, FinishedEvent
from ..sampling.schedulers import DEFAULT_SCHEDULER, DEFAULT_STEPS, make_scheduler
from ..sampling.store import CanvasStore, open_store
from ..sampling.strategies import (
    DEFAULT_STRATEGY,
    DiffInfinite,
    Strategy,
    get_strategy,
)

#: Latent region regeneration: the band inside the region's edge (in latent
#: pixels) over which the kept image blends into the decoded one.
FEATHER_LATENTS = 2


@dataclass
class HistoDiffOutput:
    """Result of a synthesis.

    Attributes
    ----------
    image : np.ndarray or None
        (H, W, 3) uint8; None when the run was cancelled.
    mask : np.ndarray
        The conditioning mask, (H, W).
    settings : dict
        Everything needed to reproduce the image (see ``settings_for``).
    store : CanvasStore
        The canvas store (previews, image as (3, H, W)).
    cancelled_at : int or None
        Step reached when cancelled.
    """

    image: np.ndarray | None
    mask: np.ndarray
    settings: dict[str, Any]
    store: CanvasStore
    cancelled_at: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class SynthesisRun:
    """A prepared synthesis: iterate :meth:`events`, :meth:`cancel` at any time.

    ``store`` is readable throughout (``store['preview']``, ``store['image']``,
    both (3, H, W) uint8).
    """

    def __init__(self, engine: SynthesisEngine, mask: np.ndarray,
                 settings: dict[str, Any]):
        self.engine = engine
        self.mask = mask
        self.settings = settings
        self.store = engine.store
        self.finished: FinishedEvent | None = None
        self.cancelled_at: int | None = None

    def events(self):
        """Run the synthesis, yielding :mod:`events <.sampling.events>`."""
        for event in self.engine.run():
            if isinstance(event, FinishedEvent):
                self.finished = event
            elif isinstance(event, CancelledEvent):
                self.cancelled_at = event.step
            yield event

    def cancel(self) -> None:
        self.engine.cancel()

    def output(self) -> HistoDiffOutput:
        image = None
        if self.finished is not None:
            image = np.moveaxis(np.asarray(self.store["image"]), 0, -1)
        stats = {}
        if self.finished is not None:
            e = self.engine
            stats = {
                "seconds": self.finished.seconds,
                "unet_seconds": self.finished.unet_seconds,
                "windows": e.windows_evaluated,
                "windows_per_step": e.windows_per_step,
            }
        return HistoDiffOutput(image, self.mask, self.settings, self.store,
                               self.cancelled_at, stats)


class HistoDiffPipeline(DiffusionPipeline):
    """Mask-guided synthesis of histology images with classifier-free guidance.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        Takes the noisy image (or latent) concatenated with one channel per
        class of the mask.
    scheduler : diffusers scheduler
        The training noise schedule; sampling uses any scheduler built from
        its config (``scheduler=`` in ``__call__``).
    vae : diffusers.AutoencoderKL, optional
        For latent models.
    mask_unet : diffusers.UNet2DModel, optional
        The mask generator (see :mod:`.mask_pipeline`).
    card : ModelCard
        Classes, window size, space and provenance.
    text : PromptEncoder, optional
        Text models (``UNet2DConditionModel``): the tokenizer and text encoder
        (:mod:`..models.text_encoder`); ``pipe(mask, prompt="high dab")``.

    A model directory with a ``classifier/`` (a noise-aware classifier,
    :mod:`..models.classifier`) also serves class guidance:
    ``pipe(mask, class_name="tumour", classifier_scale=3)``; the classifier is
    loaded on first use.
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["vae", "mask_unet"]

    def __init__(self, unet, scheduler, vae=None, mask_unet=None,
                 card: ModelCard | None = None, text=None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae,
                              mask_unet=mask_unet)
        if card is None:
            raise InputError("card: a HistoDiffPipeline needs its ModelCard")
        self.card = card
        self.source = None  # where the weights were loaded from
        self._classifier = None  # loaded on first use of class guidance
        # not a registered module: diffusers does not know our tokenizer; it
        # is saved and loaded with the model directory (save_components)
        self.text = text

    # -- persistence ----------------------------------------------------------------
    def save_pretrained(self, save_directory, overwrite: bool = False,
                        **kwargs) -> None:
        """Write a model directory: diffusers components + ``histodiff.json``.

        Written beside ``save_directory`` and renamed into place when complete
        (:func:`..models.directory.save_components`); an existing folder is
        replaced only with ``overwrite`` and only if it is a model directory.
        """
        from ..models.directory import save_components

        if not kwargs.pop("safe_serialization", True):
            raise InputError("safe_serialization: weights are saved as safetensors "
                             "only")
        if kwargs:
            raise InputError(f"save_pretrained: {', '.join(sorted(kwargs))} not "
                             "supported (weights are written as safetensors)")
        save_components(save_directory, self.card, overwrite=overwrite,
                        argname="save_directory", unet=self.unet,
                        scheduler=self.scheduler, vae=self.vae,
                        mask_unet=self.mask_unet, text=self.text)

    @classmethod
    def from_pretrained(cls, path, device: str = "cpu", fp16: bool = False,
                        **_ignored) -> HistoDiffPipeline:
        """Load a model directory (or ``demo``) from safetensors weights.

        Parameters
        ----------
        path : str or Path
            A model directory, or ``demo`` for the model shipped in the package.
        device : str
            ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        fp16 : bool
            Half precision (GPU only).
        """
        from ..devices import resolve_device, resolve_dtype
        from ..models import resolve_model_path
        from ..models.directory import load_components

        path = resolve_model_path(path)
        dev = resolve_device(device)
        dtype = resolve_dtype(dev, fp16)
        parts = load_components(path, dtype=dtype)
        pipe = cls(**parts)
        pipe.to(dev)
        if pipe.text is not None:
            pipe.text.to(dev)
        pipe.source = str(path)
        return pipe

    # -- inputs -----------------------------------------------------------------------
    def check_inputs(self, mask, guidance_scale, num_inference_steps, seed,
                     window_batch, strategy, scheduler,
                     chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """Validate arguments; return the mask as a 2-D integer array.

        Every error names the argument and its value.
        """
        if not isinstance(mask, np.ndarray):
            if hasattr(mask, "__array__"):
                mask = np.asarray(mask)
            else:
                raise InputError(f"mask: expected a 2-D integer array, got "
                                 f"{type(mask).__name__}")
        if mask.ndim != 2:
            raise InputError(f"mask: expected a 2-D label image, got shape "
                             f"{mask.shape}")
        if mask.dtype == bool or not np.issubdtype(mask.dtype, np.integer):
            raise InputError(
                f"mask: expected integer labels, got dtype {mask.dtype}; convert "
                "it to integers yourself so that no label is changed silently"
            )
        f = self.card.vae_scale_factor
        if min(mask.shape) < max(f, 2):
            raise InputError(f"mask: shape {mask.shape} is too small; each side "
                             f"needs at least {max(f, 2)} pixels")
        self.card.classes.validate_mask(mask)
        check_number(guidance_scale, "guidance_scale", minimum=0)
        check_int(num_inference_steps, "num_inference_steps", minimum=1)
        check_int(seed, "seed", minimum=0)
        check_int(window_batch, "window_batch", minimum=1)
        check_int(chunk, "chunk", minimum=MIN_CHUNK)
        if isinstance(strategy, DiffInfinite) and \
                float(scheduler.init_noise_sigma) != 1.0:
            raise InputError(
                f"strategy: diffinfinite takes DDIM steps on a variance-preserving "
                f"schedule; scheduler {type(scheduler).__name__} is not one. Use "
                "dpm++, ddim, ddpm or unipc"
            )
        max_steps = scheduler.config.num_train_timesteps
        if num_inference_steps > max_steps:
            raise InputError(f"num_inference_steps: at most {max_steps} (the "
                             f"training steps), got {num_inference_steps}")
        return mask

    def _check_context(self, mask, context_image, regenerate, strategy, scheduler):
        """Validate region-regeneration inputs; return canvas context and keep."""
        if context_image is None and regenerate is None:
            return None, None
        if context_image is None or regenerate is None:
            raise InputError("context_image and regenerate: give both to "
                             "regenerate a region, or neither")
        context_image = np.asarray(context_image)
        regenerate = np.asarray(regenerate)
        if context_image.shape != (*mask.shape, 3) or context_image.dtype != np.uint8:
            raise InputError(
                f"context_image: expected uint8 of shape {(*mask.shape, 3)} (the "
                f"mask's size, RGB), got {context_image.dtype} {context_image.shape}")
        if regenerate.shape != mask.shape or regenerate.dtype != bool:
            raise InputError(f"regenerate: expected a bool array of shape "
                             f"{mask.shape}, got {regenerate.dtype} "
                             f"{regenerate.shape}")
        if not regenerate.any():
            raise InputError("regenerate: no pixel is marked for regeneration")
        if isinstance(strategy, DiffInfinite):
            raise InputError("strategy: region regeneration works with "
                             "random-shift, tiled or multidiffusion, not "
                             "diffinfinite")
        if float(scheduler.init_noise_sigma) != 1.0:
            raise InputError(f"scheduler: region regeneration needs a "
                             f"variance-preserving scheduler (dpm++, ddim, ddpm, "
                             f"unipc), not {type(scheduler).__name__}")
        context = np.moveaxis(context_image.astype(np.float32) / 127.5 - 1.0, -1, 0)
        return np.ascontiguousarray(context), ~regenerate

    def _latent_context(self, context: np.ndarray, keep: np.ndarray):
        """Region regeneration of a latent model: the context as latents, the
        latent pixels to hold, and the pixels to paste back at the end.

        A latent pixel is held only when every image pixel it spans is kept
        (a regenerated pixel frees its whole latent pixel). After the decode,
        every kept pixel gets its exact value back (the decode of held
        latents is only the autoencoder's reconstruction of them), and the
        regenerated pixels within ``FEATHER_LATENTS`` latent pixels of the
        region's edge blend from the kept image to the decoded one, so no
        hard border shows.
        """
        from scipy.ndimage import distance_transform_edt

        from ..sampling.encode import encode_tiled, pad_to_factor

        f = self.card.vae_scale_factor
        p = next(self.vae.parameters())
        latents = encode_tiled(self.vae, context, f, self.card.latent_scaling,
                               p.device, p.dtype, tile=4 * self.card.latent_patch_size)
        padded = pad_to_factor(keep[None], f)[0]
        h, w = padded.shape[0] // f, padded.shape[1] // f
        keep_latent = padded.reshape(h, f, w, f).all(axis=(1, 3))
        inside = distance_transform_edt(~keep)  # 0 on kept pixels
        alpha = np.clip(1.0 - inside / (FEATHER_LATENTS * f + 1), 0.0, 1.0)
        alpha = alpha.astype(np.float32)
        pixels = np.rint((context + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        return latents, keep_latent, (pixels, alpha)

    def _choose_store(self, store: str, canvas_shape, image_shape, store_path
                      ) -> str:
        """The store kind to open, after checking the canvas fits there.

        ``auto`` moves the canvas to disk when it would take more than half
        the available memory (and ``store_path`` is given); ``memory`` is
        refused with the estimate when it cannot fit; a disk store is refused
        when its folder's disk is too small.
        """
        from ..sampling.budget import (
            canvas_bytes,
            fits_in_memory,
            require_disk,
            require_memory,
        )

        need = canvas_bytes(canvas_shape, image_shape, latent=self.vae is not None)
        if store == "auto" and store_path is not None and not fits_in_memory(need):
            store = "zarr"
        if store == "memory" or (store == "auto" and store_path is None):
            require_memory(need, "store", f"a {image_shape[0]} x {image_shape[1]} "
                           "canvas in memory",
                           "give store='zarr' with a store_path on a disk with room "
                           "(the CLI does this with --store zarr), or a smaller mask")
        if store in ("zarr", "auto") and store_path is not None:
            require_disk(need, Path(store_path).parent, "store_path")
        return store

    @staticmethod
    def _check_sequence(items, kind: type, argname: str) -> list:
        """``items`` as a list of ``kind``; refuse anything else by name."""
        if isinstance(items, kind) or isinstance(items, str | bytes) or \
                not isinstance(items, Sequence):
            raise InputError(f"{argname}: expected a list of {kind.__name__}, got "
                             f"{type(items).__name__}")
        for item in items:
            if not isinstance(item, kind):
                raise InputError(f"{argname}: expected {kind.__name__} objects, "
                                 f"got {type(item).__name__}")
        return list(items)

    @property
    def classifier(self):
        """The model's noise-aware classifier (loaded on first use), checked
        against this model's canvas channels, factor, window and VAE."""
        if self._classifier is None:
            from ..models.classifier import load_classifier

            if self.source is None:
                raise InputError("class_name: this pipeline was not loaded from a "
                                 "model directory, so it has no classifier/")
            module = load_classifier(
                self.source, canvas_channels=self.unet.config.out_channels,
                factor=self.card.vae_scale_factor,
                window=self.card.latent_patch_size)
            self._classifier = module.to(self.unet.device)
        return self._classifier

    def _class_guidance(self, class_name, classifier_scale) -> list:
        """The classifier-gradient term that ``class_name`` asks for."""
        from ..conditioning import ClassifierGuidance

        if class_name is None:
            if classifier_scale is not None:
                raise InputError(
                    f"classifier_scale: {classifier_scale!r} given without "
                    "class_name; name the class to guide toward")
            return []
        if not isinstance(class_name, str):
            raise InputError(f"class_name: expected a class name, got "
                             f"{class_name!r}")
        scale = DEFAULT_CLASSIFIER_SCALE if classifier_scale is None \
            else classifier_scale
        check_number(scale, "classifier_scale", minimum=0)
        classifier = self.classifier
        target = classifier.config.index(class_name)
        return [ClassifierGuidance(classifier, target, float(scale),
                                   name=class_name)]

    @property
    def has_text(self) -> bool:
        """Whether the model takes a prompt (it has a text encoder)."""
        return self.text is not None

    def _text_condition(self, prompt, negative_prompt, text_guidance):
        """The prompt as a token condition and its guidance term.

        A text model always gets its token condition (its UNet needs
        cross-attention tokens): without a prompt, the empty prompt, and then
        no guidance term (conditional and null would be the same).
        """
        import warnings

        from ..conditioning import TokenCondition

        given = {"prompt": prompt, "negative_prompt": negative_prompt,
                 "text_guidance": text_guidance}
        if self.text is None:
            named = [k for k, v in given.items() if v is not None]
            if named:
                raise InputError(
                    f"{named[0]}: {self.source or 'this model'} has no text "
                    "encoder, so it takes no prompt; use a model trained with "
                    "`histodiff train image --text ...`")
            return [], []
        for name in ("prompt", "negative_prompt"):
            if given[name] is not None and not isinstance(given[name], str):
                raise InputError(f"{name}: expected a string, got "
                                 f"{type(given[name]).__name__}")
        prompt = prompt or ""
        negative = negative_prompt or ""
        scale = DEFAULT_TEXT_GUIDANCE if text_guidance is None else text_guidance
        check_number(scale, "text_guidance")
        tokens, dropped = self.text.encode([prompt, negative])
        for name, text, n in (("prompt", prompt, dropped[0]),
                              ("negative_prompt", negative, dropped[1])):
            if n:
                warnings.warn(
                    f"{name}: {n} tokens beyond the text encoder's limit of "
                    f"{self.text.max_length} (with its special tokens) were "
                    f"dropped from {text[:60]!r}{'...' if len(text) > 60 else ''}",
                    UserWarning, stacklevel=4)
        cond = TokenCondition(tokens[0], tokens[1], name="text", description={
            "prompt": prompt, "negative_prompt": negative,
            "tokens_dropped": [int(v) for v in dropped],
            "encoder": self.text.facts()})
        terms = ([] if prompt == negative else
                 [ClassifierFreeGuidance("text", float(scale))])
        return [cond], terms

    def _check_noise_mean(self, noise_mean: str) -> str:
        """The effective ``noise_mean``: ``classes`` or ``zero``."""
        if noise_mean not in NOISE_MEANS:
            raise InputError(f"noise_mean: {noise_mean!r} is not one of "
                             f"{', '.join(NOISE_MEANS)}")
        has_means = self.card.class_means is not None
        if noise_mean == "classes" and not has_means:
            raise InputError(
                "noise_mean: 'classes' needs the class means in the model card "
                f"({self.source}); this model has none (models trained before "
                "they were recorded). Use 'zero' or 'auto'.")
        effective = ("classes" if has_means else "zero") if noise_mean == "auto" \
            else noise_mean
        channels = self.unet.config.out_channels
        if effective == "classes" and len(self.card.class_means[0]) != channels:
            raise ModelFormatError(
                f"{self.source}: class_means in the model card have "
                f"{len(self.card.class_means[0])} values per class, but the UNet "
                f"makes {channels} channels; fix or remove class_means")
        return effective

    # -- synthesis ---------------------------------------------------------------------
    def prepare(
        self,
        mask,
        guidance_scale: float = DEFAULT_GUIDANCE,
        num_inference_steps: int = DEFAULT_STEPS,
        scheduler: str = DEFAULT_SCHEDULER,
        strategy: str | Strategy = DEFAULT_STRATEGY,
        seed: int = 0,
        window_batch: int = DEFAULT_WINDOW_BATCH,
        stride: int | None = None,
        store: str | CanvasStore = "auto",
        store_path: str | Path | None = None,
        chunk: int = DEFAULT_CHUNK,
        preview_every: int = 5,
        context_image=None,
        regenerate=None,
        noise_mean: str = "auto",
        conditions: Sequence[Condition] = (),
        guidance_terms: Sequence[GuidanceTerm] = (),
        store_overwrite: bool = False,
        class_name: str | None = None,
        classifier_scale: float | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        text_guidance: float | None = None,
    ) -> SynthesisRun:
        """Check inputs and set up a :class:`SynthesisRun` without running it.

        See :meth:`__call__` for the parameters.
        """
        # 1. Check inputs (and build the scheduler and strategy they name)
        sampler = make_scheduler(scheduler, self.scheduler.config)
        strat = get_strategy(strategy, stride=stride)
        mask = self.check_inputs(mask, guidance_scale, num_inference_steps, seed,
                                 window_batch, strat, sampler, chunk)
        check_int(preview_every, "preview_every", minimum=1)
        if self.card.conditioning == "none" and mask.any():
            raise InputError(
                f"mask: {self.source} is an unconditional model (conditioning "
                "'none' in its card): it does not follow a mask. Give an all-0 "
                "(unknown) mask of the output size, or use a mask-conditioned "
                "model")
        guidance_scale = float(guidance_scale)
        context, keep = self._check_context(mask, context_image, regenerate, strat,
                                            sampler)
        noise_mean = self._check_noise_mean(noise_mean)
        class_terms = self._class_guidance(class_name, classifier_scale)
        text_conditions, text_terms = self._text_condition(prompt, negative_prompt,
                                                           text_guidance)
        card = self.card
        f = card.vae_scale_factor

        # 2. Conditions and guidance: the mask as class channels (null = all
        #    unknown) guided by guidance_scale, then any further ones; an
        #    unconditional model takes the mask's size only
        mask_condition = MaskCondition(mask, card.num_classes, factor=f)
        mask_terms = ([] if card.conditioning == "none" else
                      [mask_condition])
        denoiser = Denoiser(
            self.unet,
            conditions=[*mask_terms, *text_conditions, *self._check_sequence(
                conditions, Condition, "conditions")],
            guidance=[*(ClassifierFreeGuidance("mask", guidance_scale)
                        for _ in mask_terms), *text_terms,
                      *self._check_sequence(guidance_terms, GuidanceTerm,
                                            "guidance_terms"), *class_terms],
            device=self.unet.device, dtype=self.unet.dtype,
            alphas_cumprod=self.scheduler.alphas_cumprod.numpy(),
        )
        denoiser.check_window(card.latent_patch_size)

        # 3. The canvas: pixels, or latents at 1/f of the mask size
        H, W = mask.shape
        channels = self.unet.config.out_channels
        canvas_shape = (channels, math.ceil(H / f), math.ceil(W / f))
        if not isinstance(store, CanvasStore):
            store = open_store(self._choose_store(store, canvas_shape, (H, W),
                                                  store_path),
                               (H, W), store_path, chunk=chunk,
                               overwrite=store_overwrite)
        store.set_attrs(settings={**self.settings_for(
            mask, guidance_scale, num_inference_steps, scheduler, strat.settings(),
            seed, window_batch, chunk, noise_mean), **denoiser.settings()})

        # 4. The engine that will denoise it (latent regeneration: the
        #    context encoded, its latents held, its pixels pasted back)
        paste = None
        if context is not None and self.vae is not None:
            context, keep, paste = self._latent_context(context, keep)
        preview_map = None
        if self.vae is not None and card.latent_preview is not None:
            preview_map = latent_preview_arrays(card.latent_preview)
        engine = SynthesisEngine(
            denoiser=denoiser, scheduler=sampler,
            store=store, strategy=strat, canvas_shape=canvas_shape,
            image_shape=(H, W), window=card.latent_patch_size,
            num_inference_steps=int(num_inference_steps), seed=int(seed),
            window_batch=int(window_batch), chunk=chunk, vae=self.vae,
            latent_scaling=card.latent_scaling, factor=f,
            preview_every=preview_every, context=context, keep=keep,
            preview_map=preview_map, paste=paste,
            noise_mean=None if noise_mean == "zero" else functools.partial(
                mask_condition.mean_canvas, means=card.class_means),
        )
        return SynthesisRun(engine, mask, store.attrs["settings"])

    @torch.no_grad()
    def __call__(
        self,
        mask,
        guidance_scale: float = DEFAULT_GUIDANCE,
        num_inference_steps: int = DEFAULT_STEPS,
        scheduler: str = DEFAULT_SCHEDULER,
        strategy: str | Strategy = DEFAULT_STRATEGY,
        seed: int = 0,
        window_batch: int = DEFAULT_WINDOW_BATCH,
        stride: int | None = None,
        store: str | CanvasStore = "auto",
        store_path: str | Path | None = None,
        chunk: int = DEFAULT_CHUNK,
        context_image=None,
        regenerate=None,
        noise_mean: str = "auto",
        conditions: Sequence[Condition] = (),
        guidance_terms: Sequence[GuidanceTerm] = (),
        store_overwrite: bool = False,
        class_name: str | None = None,
        classifier_scale: float | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        text_guidance: float | None = None,
        callback=None,
    ) -> HistoDiffOutput:
        """Synthesise an image that follows ``mask``.

        Parameters
        ----------
        mask : np.ndarray
            (H, W) integer labels, ids among the model's classes (0 = unknown).
            Any size: the canvas is denoised window by window.
        guidance_scale : float
            Classifier-free guidance ``w >= 0``: ``null + w * (cond - null)``;
            1 is plain conditional, 0 ignores the mask.
        num_inference_steps : int
            Denoising steps.
        scheduler : str
            ``dpm++`` (default), ``ddim``, ``ddpm``, ``euler``, ``unipc`` or a
            diffusers scheduler class name.
        strategy : str or Strategy
            ``random-shift`` (default), ``tiled``, ``multidiffusion``,
            ``diffinfinite``, or a configured strategy such as
            ``RandomShift(blend_steps=0)`` (see :mod:`.sampling.strategies`).
        seed : int
            The same seed and settings give the same pixels.
        window_batch : int
            Windows per UNet call.
        stride : int, optional
            Window stride of ``multidiffusion`` (default half a window).
        store : {"auto", "memory", "zarr"} or CanvasStore
            Where the canvas lives; ``auto`` puts large canvases on disk.
        store_path : path, optional
            Folder of a zarr store: a new or empty folder.
        store_overwrite : bool
            Reuse an existing canvas store at ``store_path`` (only one this
            project wrote); otherwise an existing folder is refused.
        chunk : int
            Side of the chunks the scheduler steps.
        context_image : np.ndarray, optional
            (H, W, 3) uint8. With ``regenerate``: pixels not to regenerate are
            held to this image throughout, so the regenerated ones fit their
            surroundings; the output equals it outside ``regenerate``.
        regenerate : np.ndarray, optional
            (H, W) bool, True where new pixels are synthesised.
        noise_mean : {"auto", "classes", "zero"}
            Where the initial noise is centred. ``classes``: on the training
            mean of each pixel's class (the model card's ``class_means``), as
            the forward process would centre it for an image with those
            colours, so the model does not have to guess overall brightness
            and colour from pure noise (it guesses grey). ``zero``: plain
            noise. ``auto`` (default): ``classes`` when the card has them.
        conditions : sequence of Condition, optional
            Conditions besides the mask (which is always there, named
            ``mask``): a class label (:class:`~..conditioning.ClassLabelCondition`)
            for a UNet with a class embedding, cross-attention tokens
            (:class:`~..conditioning.TokenCondition`) for a
            ``UNet2DConditionModel``.
        guidance_terms : sequence of GuidanceTerm, optional
            Guidance besides ``guidance_scale`` on the mask: classifier-free
            terms over other conditions, each with its own scale
            (:class:`~..conditioning.ClassifierFreeGuidance`), or a
            classifier's gradient (:class:`~..conditioning.ClassifierGuidance`).
            Every condition and term is recorded in the settings.
        class_name : str, optional
            Steer toward this class of the model's noise-aware classifier
            (``classifier/``): each step's noise prediction is moved along
            ``-classifier_scale * sqrt(1 - alpha_bar_t) * grad log p(class |
            x_t, t)`` (HistoDiffusion's guidance), per window batch, with any
            scheduler and strategy, and together with the mask guidance of
            mask-conditioned models.
        classifier_scale : float, optional
            Strength of the class guidance (default
            :data:`DEFAULT_CLASSIFIER_SCALE`; 0 turns it off).
        prompt : str, optional
            Text models only: what the image should show, e.g. ``"high dab;
            low nuclei"`` (the card's ``text.meaning`` says what the model's
            captions were). Every window of a large canvas gets the prompt.
            ``None`` or ``""`` is the null condition (no text guidance). A
            prompt longer than the encoder's limit is truncated with a
            warning that says how many tokens were dropped.
        negative_prompt : str, optional
            What the text guidance pushes away from (default the empty
            prompt).
        text_guidance : float, optional
            Classifier-free guidance on the prompt (default
            :data:`DEFAULT_TEXT_GUIDANCE`; 1 plain conditional, 0 ignores the
            prompt); with a mask, both terms add up (see
            :mod:`..conditioning.guidance`).
        callback : callable, optional
            Called with every event; return ``False`` to cancel.

        Returns
        -------
        HistoDiffOutput
        """
        # 1.-4. Check inputs, prepare conditioning, canvas and engine
        run = self.prepare(mask, guidance_scale, num_inference_steps, scheduler,
                           strategy, seed, window_batch, stride, store, store_path,
                           chunk, context_image=context_image,
                           regenerate=regenerate, noise_mean=noise_mean,
                           conditions=conditions, guidance_terms=guidance_terms,
                           store_overwrite=store_overwrite, class_name=class_name,
                           classifier_scale=classifier_scale, prompt=prompt,
                           negative_prompt=negative_prompt,
                           text_guidance=text_guidance)
        # 5. Denoise, reporting events
        for event in run.events():
            if callback is not None and callback(event) is False:
                run.cancel()
        # 6. Collect the image
        return run.output()

    def stream(self, mask, **kwargs) -> SynthesisRun:
        """Like ``__call__`` but returns the run to iterate (for GUIs)."""
        return self.prepare(mask, **kwargs)

    def settings_for(self, mask, guidance_scale, steps, scheduler, strategy: dict,
                     seed, window_batch, chunk, noise_mean: str = "zero"
                     ) -> dict[str, Any]:
        """The settings recorded with every output, enough to reproduce it."""
        return {
            "software": f"napari-histodiff {__version__}",
            "model": self.source,
            "model_provenance": self.card.provenance,
            "seed": int(seed),
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance_scale),
            "scheduler": scheduler,
            **strategy,
            "window_batch": int(window_batch),
            "chunk": int(chunk),
            "noise_mean": noise_mean,
            "size": [int(v) for v in mask.shape],
            "mask_sha256": array_sha256(mask),
            "device": str(self.unet.device),
            "dtype": str(self.unet.dtype).replace("torch.", ""),
        }


