"""The video model: AMG-conditioned UNet, LoRA, data, training loop, sampling pipeline, guidance, metrics."""
