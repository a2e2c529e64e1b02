"""How conditions reach the UNet, and how guidance combines its outputs."""
