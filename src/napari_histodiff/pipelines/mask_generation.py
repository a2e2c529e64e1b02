"""The mask generator: a label mask with a chosen set of classes.

>>> from napari_histodiff.pipelines.mask_generation import HistoDiffMaskPipeline
>>> pipe = HistoDiffMaskPipeline.from_pretrained("demo")
>>> out = pipe(["nuclei", "dab"], height=512, width=512, seed=0)
>>> out.mask.shape  # (512, 512) uint8 class ids

The ``mask_unet/`` of a model directory denoises K channels (one per class,
the class area fraction scaled to [-1, 1]) at ``1/mask_resolution_factor``
of the image resolution. The wanted class set is a multi-hot vector given as
K constant channels (:class:`~..conditioning.ClassSetCondition`; null =
all zeros), so
classifier-free guidance and the large-canvas :class:`SynthesisEngine` work
unchanged: masks larger than one window are denoised window by window. The
soft class maps are then upsampled bilinearly, smoothed, restricted to the
chosen classes and arg-maxed, which gives smooth class boundaries instead of
blocky ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline

from .._version import __version__
from ..checks import check_int, check_number
from ..defaults import DEFAULT_MASK_GUIDANCE, DEFAULT_MASK_STEPS
from ..errors import InputError, ModelFormatError
from ..models.card import ModelCard
from ..sampling.schedulers import DEFAULT_SCHEDULER, make_scheduler
from ..sampling.store import MemoryStore


class _ClassMapStore(MemoryStore):
    """A memory store whose ``preview``/``image`` hold K class maps, not RGB.

    The synthesis engine writes the model-range canvas as uint8 into these
    arrays; for a mask model the canvas has one channel per class.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def create(self, name, shape, dtype, fill=0):
        if name in ("preview", "image") and len(shape) == 3:
            shape = (self.channels, *shape[1:])
        return super().create(name, shape, dtype, fill)


@dataclass
class MaskOutput:
    """A generated mask.

    Attributes
    ----------
    mask : np.ndarray
        (H, W) uint8 class ids, only among the chosen classes.
    probabilities : np.ndarray
        (K, h, w) float32 class maps in [0, 1] at the model's resolution.
    settings : dict
        Everything needed to reproduce the mask.
    """

    mask: np.ndarray
    probabilities: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)


class HistoDiffMaskPipeline(DiffusionPipeline):
    """Generate label masks holding a chosen set of classes.

    Parameters
    ----------
    mask_unet : diffusers.UNet2DModel
        Input: K noisy class channels + K class-set channels; output: K.
    scheduler : diffusers scheduler
        The training noise schedule.
    card : ModelCard
        Classes and ``mask_resolution_factor``.
    """

    def __init__(self, mask_unet, scheduler, card: ModelCard | None = None):
        super().__init__()
        self.register_modules(mask_unet=mask_unet, scheduler=scheduler)
        if card is None:
            raise InputError("card: a HistoDiffMaskPipeline needs its ModelCard")
        k = card.num_classes
        if mask_unet.config.in_channels != 2 * k or mask_unet.config.out_channels != k:
            raise ModelFormatError(
                f"mask_unet: takes {mask_unet.config.in_channels} and gives "
                f"{mask_unet.config.out_channels} channels, but {k} classes need "
                f"{2 * k} and {k}"
            )
        self.card = card
        self.source: str | None = None

    @classmethod
    def from_pretrained(cls, path, device: str = "cpu", **_ignored
                        ) -> HistoDiffMaskPipeline:
        """Load the ``mask_unet/`` of a model directory (or ``demo``).

        Parameters
        ----------
        path : str or Path
            Model directory with ``histodiff.json``, ``scheduler/`` and
            ``mask_unet/`` (safetensors), or ``demo``.
        device : str
            ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        """
        from diffusers import DDPMScheduler, UNet2DModel

        from ..devices import resolve_device
        from ..models import resolve_model_path
        from ..models.directory import check_safe_weights, load_part
        from ..models.factory import default_scheduler

        path = resolve_model_path(path)
        card = ModelCard.load(path)
        folder = path / "mask_unet"
        if not (folder / "config.json").is_file():
            raise ModelFormatError(
                f"model: {path} has no mask generator (mask_unet/); train one "
                f"with `histodiff train mask --out {path} ...`"
            )
        check_safe_weights(folder)
        unet, _ = load_part(UNet2DModel, path, "mask_unet", "config.json",
                            use_safetensors=True, low_cpu_mem_usage=False,
                            torch_dtype=torch.float32)
        if (path / "scheduler" / "scheduler_config.json").is_file():
            scheduler, _ = load_part(DDPMScheduler, path, "scheduler",
                                     "scheduler_config.json")
        else:
            scheduler = default_scheduler()
        pipe = cls(mask_unet=unet, scheduler=scheduler, card=card)
        pipe.to(resolve_device(device))
        pipe.source = str(path)
        return pipe

    # -- inputs ----------------------------------------------------------------------
    def check_inputs(self, classes, height, width, guidance_scale,
                     num_inference_steps, seed, window_batch) -> np.ndarray:
        """Validate the arguments; return the (K,) multi-hot class vector.

        Every error (a ``ValueError``) names the argument and its value.
        """
        names = self.card.classes.names
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",") if c.strip()]
        if not isinstance(classes, Sequence) or not classes:
            raise InputError(f"classes: give at least one of {names[1:]}, got "
                             f"{classes!r}")
        vector = np.zeros(len(names), np.float32)
        for c in classes:
            if isinstance(c, int | np.integer) and not isinstance(c, bool):
                if not 1 <= int(c) < len(names):
                    raise InputError(f"classes: id {c} is not a class id 1..."
                                     f"{len(names) - 1} of {names}")
                vector[int(c)] = 1
            elif c in names[1:]:
                vector[names.index(c)] = 1
            else:
                raise InputError(f"classes: {c!r} is not one of this model's "
                                 f"classes {names[1:]}")
        for name, v in (("height", height), ("width", width)):
            check_int(v, name, minimum=8)
        check_number(guidance_scale, "guidance_scale", minimum=0)
        check_int(num_inference_steps, "num_inference_steps", minimum=1,
                  maximum=self.scheduler.config.num_train_timesteps)
        check_int(seed, "seed", minimum=0)
        check_int(window_batch, "window_batch", minimum=1)
        return vector

    # -- generation ------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        classes: Sequence[str | int] | str,
        height: int = 512,
        width: int = 512,
        guidance_scale: float = DEFAULT_MASK_GUIDANCE,
        num_inference_steps: int = DEFAULT_MASK_STEPS,
        scheduler: str = DEFAULT_SCHEDULER,
        strategy: str = "random-shift",
        seed: int = 0,
        window_batch: int = 8,
        smoothing: float | None = None,
        noise_mean: str = "classes",
        callback=None,
    ) -> MaskOutput:
        """Generate an (height, width) mask holding ``classes``.

        Parameters
        ----------
        classes : list of str or int, or comma-separated str
            The classes the mask may hold (names or ids, not ``unknown``).
        height, width : int
            Mask size in image pixels; any size (large masks are denoised
            window by window).
        guidance_scale : float
            Classifier-free guidance on the class set; 0 ignores it.
        num_inference_steps : int
        scheduler : str
            Sampler name (see :mod:`.schedulers`).
        strategy : str
            Window strategy of the large-canvas engine.
        seed : int
        window_batch : int
            Windows per UNet call.
        smoothing : float, optional
            Gaussian sigma (image pixels) applied to the upsampled class maps
            before the argmax; default half the resolution factor.
        noise_mean : {"classes", "zero"}
            ``classes`` (default) centres the initial noise on the class maps
            expected without other knowledge, an equal share for each chosen
            class and none for the others (as the forward process scales a
            clean value at the first timestep); ``zero``: plain noise, from
            which the model must guess the class shares.
        callback : callable, optional
            Called with every engine event; return ``False`` to cancel.

        Returns
        -------
        MaskOutput
        """
        from ..conditioning import ClassifierFreeGuidance, ClassSetCondition, Denoiser
        from ..sampling.budget import canvas_bytes, require_memory
        from ..sampling.engine import SynthesisEngine
        from ..sampling.events import CancelledEvent
        from ..sampling.strategies import get_strategy

        # 1. Check inputs
        vector = self.check_inputs(classes, height, width, guidance_scale,
                                   num_inference_steps, seed, window_batch)
        f = int(self.card.mask_resolution_factor)
        k = self.card.num_classes
        window = int(self.mask_unet.config.sample_size)

        if noise_mean not in ("classes", "zero"):
            raise InputError(f"noise_mean: {noise_mean!r} is not one of classes, "
                             "zero")
        prior = np.where(vector > 0, 2.0 / max(vector.sum(), 1) - 1.0, -1.0)

        def expected_maps(rows: slice, cols: slice) -> np.ndarray:
            shape = (k, rows.stop - rows.start, cols.stop - cols.start)
            return np.broadcast_to(prior[:, None, None], shape).astype(np.float32)

        # 2. Conditioning and the guided mask UNet
        denoiser = Denoiser(
            self.mask_unet, conditions=[ClassSetCondition(vector)],
            guidance=[ClassifierFreeGuidance("classes", guidance_scale)],
            device=self.mask_unet.device, dtype=self.mask_unet.dtype)

        # 3. The canvas at 1/f resolution, one channel per class
        h, w = math.ceil(height / f), math.ceil(width / f)
        require_memory(
            canvas_bytes((k, h, w), (h, w), preview_channels=k)
            + int(vector.sum()) * height * width * 4 + height * width,
            "size", f"a {height} x {width} mask", "generate a smaller mask "
            "(masks of one size are denoised, upsampled and labelled in memory)")
        store = _ClassMapStore(k)
        engine = SynthesisEngine(
            denoiser=denoiser, scheduler=make_scheduler(scheduler,
                                                        self.scheduler.config),
            store=store,
            strategy=get_strategy(strategy), canvas_shape=(k, h, w),
            image_shape=(h, w), window=window,
            num_inference_steps=int(num_inference_steps), seed=int(seed),
            window_batch=int(window_batch),
            noise_mean=expected_maps if noise_mean == "classes" else None,
        )

        # 4. Denoise
        for event in engine.run():
            if callback is not None and callback(event) is False:
                engine.cancel()
            if isinstance(event, CancelledEvent):
                raise InterruptedError(f"mask generation cancelled at step "
                                       f"{event.step}")

        # 5. Soft class maps -> smooth full-resolution labels among the chosen
        probs = np.clip((np.asarray(store["latents"], np.float32) + 1) / 2, 0, 1)
        sigma = f / 2 if smoothing is None else float(smoothing)
        mask = upsample_labels(probs, (height, width), vector > 0, sigma)
        settings = {
            "software": f"napari-histodiff {__version__}",
            "model": self.source,
            "classes": [self.card.classes.names[i] for i in np.flatnonzero(vector)],
            "size": [int(height), int(width)],
            "guidance_scale": float(guidance_scale),
            "num_inference_steps": int(num_inference_steps),
            "scheduler": scheduler,
            "strategy": strategy,
            "seed": int(seed),
            "smoothing": sigma,
            "noise_mean": noise_mean,
            "mask_resolution_factor": f,
        }
        return MaskOutput(mask, probs, settings)


def upsample_labels(probs: np.ndarray, shape: tuple[int, int],
                    allowed: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Class maps (K, h, w) -> (H, W) labels with smooth boundaries.

    The maps are upsampled bilinearly to ``shape``, smoothed with a Gaussian
    of ``sigma`` pixels, classes not ``allowed`` are excluded, and each pixel
    takes the most likely remaining class. Done in row bands to bound memory.
    """
    from scipy.ndimage import gaussian_filter

    height, width = shape
    allowed = np.asarray(allowed, bool)
    if not allowed.any():
        raise InputError("classes: no class was chosen")
    ids = np.flatnonzero(allowed)
    t = torch.from_numpy(np.ascontiguousarray(probs[ids]))[None]
    up = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear",
                                         align_corners=False)[0].numpy()
    if sigma > 0:
        up = np.stack([gaussian_filter(c, sigma, mode="nearest") for c in up])
    dtype = np.uint8 if len(probs) < 256 else np.uint16
    return ids.astype(dtype)[np.argmax(up, axis=0)]
