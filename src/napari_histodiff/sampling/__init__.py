"""The large-canvas sampling engine.

:mod:`.engine` runs a synthesis over a :mod:`.store` (memory or zarr), asking
a :mod:`.strategies` object which windows to evaluate at each step
(:mod:`.windows`, :mod:`.rows`), stepping the scheduler chunk by chunk
(:mod:`.stepper`), decoding latent canvases in blended tiles (:mod:`.decode`)
and reporting :mod:`.events` as it goes. :mod:`.diffinfinite` is the
reference DiffInfinite sampler and :mod:`.seams` the seam score. Nothing here
imports torch at import time.
"""
