"""What the diffusion-transformer tests share: one prompt through diffusers' stock pipeline and through ours."""

import torch


def stock_and_ours(stock_cls, ours_cls, folder, randomise, avatar, seed, **kw):
    """Run ``stock_cls`` (a diffusers pipeline) and ``ours_cls`` (its AMG subclass, fresh LoRA with random
    ``lora_B`` from ``randomise``, zero avatar channels) on ``folder`` at 9 frames of 16x16 with generator
    ``seed``; returns (stock latents, ours with LoRA off, ours with LoRA on, ours decoded to uint8 frames)."""
    stock = stock_cls.from_pretrained(folder)
    stock.set_progress_bar_config(disable=True)
    want = stock("a man walks", height=16, width=16, num_frames=9, generator=torch.Generator().manual_seed(seed),
                 output_type="latent", **kw).frames
    pipe = ours_cls.from_base(folder, device="cpu")
    randomise(pipe.transformer, avatar=False)

    def ours(output_type, **extra):
        return pipe("a man walks", avatar, generator=torch.Generator().manual_seed(seed), output_type=output_type,
                    progress=False, **extra, **kw)

    return want, ours("latent", lora_scale=0.0), ours("latent"), ours("uint8")


def randomise(transformer, input_weight, old_channels, seed=2, avatar=True):
    """Give every ``lora_B`` random values (fresh LoRA is a no-op) and, with ``avatar``, the avatar columns
    (``[:, old_channels:]``) of ``input_weight(transformer)``, the widened input layer's weight."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3, generator=g)
        if avatar:
            input_weight(transformer)[:, old_channels:].normal_(0, 0.3, generator=g)
