"""Training the image model, the mask generator and the autoencoder
(``histodiff train``).

Modules, one job each: :mod:`.data` (reading and cropping training images),
:mod:`.augment` (flips, rotations, stain jitter), :mod:`.checkpoint`
(safetensors + JSON checkpoints), :mod:`.loop` (the shared trainer: EMA,
learning-rate schedule, checkpoints, loss log; and the diffusion loop),
:mod:`.models` (building UNets and VAEs), :mod:`.image_trainer` and
:mod:`.mask_trainer` (the two diffusion models, pixel or latent),
:mod:`.vae_trainer` (the autoencoder), :mod:`.latents` (latent scaling,
preview map, latent class means, reconstruction figures), :mod:`.export`
(model directories from checkpoints) and :mod:`.presets` (the demo recipes).
"""
