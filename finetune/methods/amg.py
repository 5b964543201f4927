"""AMG: ModelScope's UNet on ``[z_t, z_avatar]`` (conv_in widened 4 -> 8) with rank-4 LoRA, epsilon loss.

The UNet sees the noisy video latents and the avatar video's latents on the channel axis and the
caption's text embedding, and learns to predict the noise. Only LoRA and the widened ``conv_in`` train
(AdamW, lr 1e-6 as AMG). Options: caption dropout (AMG uses none) and the thesis's spatial-enhancement
loss, ``loss = loss_temp + alpha * loss_spa`` where ``loss_spa`` is the same UNet's loss on one random
frame passed alone as a one-frame video. The adapter is written with :func:`finetune.model.save_adapter`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

from ..data import ClipDataset, LatentDataset, collate_latents
from ..losses import epsilon_target, v_target, weighted_mse
from ..model import encode_prompt, load_adapter, mark_trainable, prepare_unet, save_adapter
from .base import ClipSettings, Method

__all__ = ["AmgMethod", "diffusion_loss"]


def diffusion_loss(unet, scheduler, z0: torch.Tensor, z_avatar: torch.Tensor, text: torch.Tensor,
                   gen: torch.Generator, spatial_alpha: float = 0.0) -> torch.Tensor:
    """The AMG training loss on one batch of latents ``(B, 4, F, h, w)`` and text ``(B, L, D)``.

    Draws noise and timesteps from ``gen`` (on the CPU, so any device gives the same draws), noises
    ``z0``, predicts from ``[z_t, z_avatar]``; the target is the noise (or the velocity for
    v-prediction schedulers). With ``spatial_alpha > 0`` adds ``alpha`` times the loss of one random
    frame denoised on its own.
    """
    b, _, f = z0.shape[:3]
    noise = torch.randn(z0.shape, generator=gen).to(z0.device, z0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen).to(z0.device)
    frame = int(torch.randint(0, f, (1,), generator=gen))
    zt = scheduler.add_noise(z0, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = v_target(scheduler.alphas_cumprod, z0, noise, t)
    else:
        target = epsilon_target(z0, noise)
    pred = unet(torch.cat([zt, z_avatar], dim=1), t, encoder_hidden_states=text).sample
    loss = weighted_mse(pred, target)
    if spatial_alpha > 0:
        k = slice(frame, frame + 1)
        pred1 = unet(torch.cat([zt[:, :, k], z_avatar[:, :, k]], dim=1), t, encoder_hidden_states=text).sample
        loss = loss + spatial_alpha * weighted_mse(pred1, target[:, :, k])
    return loss


class AmgMethod(Method):
    """AMG's avatar-conditioned LoRA fine-tuning of a ModelScope text-to-video backbone.

    ``rank`` is the LoRA rank, ``caption_dropout`` the probability of training a sample on the empty
    prompt, ``spatial_loss_alpha`` the weight of the one-frame loss (0: off).
    """

    name = "amg"
    families = ("modelscope",)

    def __init__(self, rank: int = 4, caption_dropout: float = 0.0, spatial_loss_alpha: float = 0.0):
        if not 0.0 <= caption_dropout <= 1.0:
            raise AmgError(f"caption_dropout={caption_dropout}: expected a probability in [0, 1]")
        self.rank, self.caption_dropout, self.spatial_loss_alpha = rank, caption_dropout, spatial_loss_alpha

    def options(self) -> dict:
        return {"rank": self.rank, "caption_dropout": self.caption_dropout,
                "spatial_loss_alpha": self.spatial_loss_alpha}

    def setup(self, folder, device, dtype, seed):
        self.backbone = b = self.load_backbone(folder)
        self.trained = prepare_unet(b.unet, rank=self.rank, seed=seed)
        b.unet = self.trained
        b.to(device, dtype)
        self._empty_text = None

    def trainable_parameters(self):
        return mark_trainable(self.trained)

    def dataset(self, manifest, clips: ClipSettings):
        b = self.backbone
        data = ClipDataset(manifest, num_frames=clips.num_frames, height=clips.height, width=clips.width,
                           fps=clips.fps)
        return LatentDataset(data, b.vae, b.text_encoder, b.tokenizer, cache_dir=clips.latent_cache)

    def collate(self, samples):
        return collate_latents(samples)

    def loss(self, batch, gen, device, dtype):
        if self._empty_text is None:
            self._empty_text = encode_prompt(self.backbone.text_encoder, self.backbone.tokenizer, [""])[0]
        text = batch.text.to(device, dtype)
        drop = torch.rand(text.shape[0], generator=gen) < self.caption_dropout
        text = torch.where(drop.to(device)[:, None, None], self._empty_text.to(text.dtype)[None], text)
        return diffusion_loss(self.trained, self.backbone.scheduler, batch.video.to(device, dtype),
                              batch.avatar.to(device, dtype), text, gen, self.spatial_loss_alpha)

    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        return save_adapter(self.unwrapped(), directory, self.backbone.fingerprint, extra=extra)

    def restore(self, directory: str | os.PathLike) -> None:
        load_adapter(self.unwrapped(), directory, self.backbone.fingerprint)
