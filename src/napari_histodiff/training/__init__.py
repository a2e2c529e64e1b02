"""Training the image model and the mask generator (``histodiff train``).

Modules, one job each: :mod:`.data` (reading and cropping training images),
:mod:`.augment` (flips, rotations, stain jitter), :mod:`.checkpoint`
(safetensors + JSON checkpoints), :mod:`.loop` (the diffusion training loop,
EMA, loss log), :mod:`.models` (building UNets), :mod:`.image_trainer` and
:mod:`.mask_trainer` (the two models), :mod:`.export` (model directories
from checkpoints) and :mod:`.presets` (the demo recipe).
"""
