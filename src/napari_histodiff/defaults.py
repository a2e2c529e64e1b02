"""Default synthesis settings shared by the pipelines, the CLI and the widgets.

They live in this light module (no torch, no diffusers) so that the
``histodiff`` command can show them in ``--help`` without importing the
pipelines, which takes seconds.
"""

from __future__ import annotations

#: Sampler of every pipeline (see :mod:`.sampling.schedulers`) and its steps.
DEFAULT_SCHEDULER = "dpm++"
DEFAULT_STEPS = 25
#: Classifier-free guidance of the image pipeline (1 = plain conditional).
DEFAULT_GUIDANCE = 2.0
#: Classifier-free guidance of the mask generator over the chosen classes.
DEFAULT_MASK_GUIDANCE = 2.0
#: Denoising steps of the mask generator.
DEFAULT_MASK_STEPS = 25
#: Where the image pipeline centres its initial noise (see ``noise_mean``).
NOISE_MEANS = ("auto", "classes", "zero")

#: Class guidance strength (``--classifier-scale``) when a class is named
#: without a scale.
DEFAULT_CLASSIFIER_SCALE = 3.0

#: Class-guided tile batches (``histodiff augment``): steps and tiles per call.
DEFAULT_TILE_STEPS = 25
DEFAULT_TILE_BATCH = 16

#: Classifier-free guidance on the prompt of text models (``--text-guidance``;
#: 1 = plain conditional, 0 ignores the prompt).
DEFAULT_TEXT_GUIDANCE = 3.0
