"""AMG on CogVideoX: ``[z_t, z_avatar]`` into the patch embedding (channels doubled), LoRA, v-prediction loss.

CogVideoX is trained with v-prediction on a DDPM schedule (its ``CogVideoXDDIMScheduler``): the
transformer predicts ``v = sqrt(a_t) noise - sqrt(1 - a_t) z0`` from ``z_t = sqrt(a_t) z0 + sqrt(1 - a_t) noise``.
The avatar latents sit where CogVideoX-Fun's control latents do, so a Fun control checkpoint is a
ready-widened base. Only LoRA and the patch embedding train; adapters are in peft's layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

from .. import adapters
from ..backbones.cogvideox import COGVIDEOX_INPUT, COGVIDEOX_LORA_TARGETS, encode_video_cogvideox, widen_patch_embed
from ..backbones.dit import fingerprints_match, t5_prompt_embeds
from ..losses import v_target, weighted_mse
from .amg_dit import AmgDitMethod

__all__ = ["prepare_cogvideox", "v_prediction_loss", "pad_latent_frames", "rotary_embeddings", "save_cogvideox_adapter", "load_cogvideox_adapter",
           "encode_prompt_cogvideox", "AmgCogVideoXMethod",
           "COGVIDEOX_NUM_FRAMES", "COGVIDEOX_HEIGHT", "COGVIDEOX_WIDTH", "COGVIDEOX_FPS"]

# CogVideoX's native clip: 49 frames (4n + 1) at 480x720, 8 fps
COGVIDEOX_NUM_FRAMES, COGVIDEOX_HEIGHT, COGVIDEOX_WIDTH, COGVIDEOX_FPS = 49, 480, 720, 8.0


def prepare_cogvideox(transformer: torch.nn.Module, rank: int = 4, alpha: float | None = None,
                      targets: tuple[str, ...] = COGVIDEOX_LORA_TARGETS, seed: int = 0) -> torch.nn.Module:
    """Widen the patch embedding for the avatar latents (unless it already takes them, as a Fun control
    model) and add fresh LoRA; the output equals the base transformer's."""
    if int(transformer.config.in_channels) == int(transformer.config.out_channels):
        widen_patch_embed(transformer, int(transformer.config.out_channels))
    return adapters.add_lora(transformer, targets, rank=rank, alpha=alpha, seed=seed,
                             modules_to_save=(COGVIDEOX_INPUT,))


def save_cogvideox_adapter(transformer, directory: str | os.PathLike, fingerprint: dict,
                           extra: dict | None = None) -> Path:
    """Write the CogVideoX adapter (LoRA + patch embedding) in peft's layout with the base's fingerprint."""
    info = {"base": fingerprint, "backbone": "cogvideox", "in_channels": int(transformer.config.in_channels),
            **(extra or {})}
    return adapters.save_adapter(transformer, directory, info=info)


def load_cogvideox_adapter(transformer, directory: str | os.PathLike, fingerprint: dict):
    """Load a CogVideoX adapter onto the base (widened to the saved patch embedding) or a prepared transformer."""
    config, tensors, info = adapters.read_adapter(directory)
    if info.get("base") is not None and not fingerprints_match(info["base"], fingerprint):
        raise AmgError(f"{directory}: adapter was trained on a different base model than the one loaded")
    saved = info.get("in_channels")
    have = int(transformer.config.in_channels)
    if saved is not None and int(saved) > have and not adapters.has_lora(transformer):
        widen_patch_embed(transformer, int(saved) - have)
    return adapters.apply_adapter(transformer, config, tensors, source=str(directory))


def pad_latent_frames(z: torch.Tensor, patch_size_t: int | None) -> tuple[torch.Tensor, int]:
    """``z`` ``(B, f, C, h, w)`` with copies of its first frame prepended until ``f`` is a multiple of
    ``patch_size_t`` (CogVideoX 1.5 patches latent frames in groups), and how many were added.

    The stock ``CogVideoXPipeline`` pads its noise the same way (at the start, dropped before decoding);
    ``patch_size_t=None`` (CogVideoX 1.0) adds nothing.
    """
    if not patch_size_t or z.shape[1] % int(patch_size_t) == 0:
        return z, 0
    pad = int(patch_size_t) - z.shape[1] % int(patch_size_t)
    return torch.cat([z[:, :1].expand(-1, pad, -1, -1, -1), z], dim=1), pad


def rotary_embeddings(transformer, vae_scale_factor_spatial: int, latent_shape: tuple[int, ...],
                      device: torch.device | str = "cpu"):
    """The 3D rotary position embeddings ``(cos, sin)`` the stock ``CogVideoXPipeline`` gives ``transformer``
    for latents of ``latent_shape`` ``(B, f, C, h, w)`` (computed by the pipeline's own method), or None
    when the transformer has none (CogVideoX 2B)."""
    import types

    from diffusers import CogVideoXPipeline

    if not transformer.config.use_rotary_positional_embeddings:
        return None
    holder = types.SimpleNamespace(transformer=transformer, vae_scale_factor_spatial=vae_scale_factor_spatial)
    f, h, w = int(latent_shape[1]), int(latent_shape[3]), int(latent_shape[4])
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(
        holder, h * vae_scale_factor_spatial, w * vae_scale_factor_spatial, f, torch.device(device))


def v_prediction_loss(transformer, scheduler, z0: torch.Tensor, z_avatar: torch.Tensor, text: torch.Tensor,
                      gen: torch.Generator, vae_scale_factor_spatial: int = 8) -> torch.Tensor:
    """v-prediction loss on latents ``(B, f, C, h, w)`` and text ``(B, L, D)``; draws from ``gen`` on the CPU.

    The transformer sees what sampling gives it: rotary embeddings when it uses them and, for CogVideoX
    1.5, the clip padded at its start to whole temporal patches (the padding frames carry no loss).
    """
    base = getattr(transformer, "module", transformer)  # the model itself under DistributedDataParallel
    p_t = getattr(base.config, "patch_size_t", None)
    z0, pad = pad_latent_frames(z0, p_t)
    z_avatar, _ = pad_latent_frames(z_avatar, p_t)
    noise = torch.randn(z0.shape, generator=gen).to(z0.device, z0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (z0.shape[0],), generator=gen).to(z0.device)
    zt = scheduler.add_noise(z0, noise, t)
    rotary = rotary_embeddings(base, vae_scale_factor_spatial, z0.shape, z0.device)
    pred = transformer(hidden_states=torch.cat([zt, z_avatar], dim=2), encoder_hidden_states=text, timestep=t,
                       image_rotary_emb=rotary, return_dict=False)[0]
    return weighted_mse(pred[:, pad:], v_target(scheduler.alphas_cumprod, z0, noise, t)[:, pad:])


def encode_prompt_cogvideox(text_encoder, tokenizer, prompts: list[str],
                            max_sequence_length: int = 226) -> torch.Tensor:
    """T5 embeddings ``(B, L, D)`` exactly as ``CogVideoXPipeline`` computes them."""
    from diffusers import CogVideoXPipeline

    return t5_prompt_embeds(CogVideoXPipeline, text_encoder, tokenizer, prompts, max_sequence_length)


class AmgCogVideoXMethod(AmgDitMethod):
    """AMG's avatar-conditioned LoRA fine-tuning of a CogVideoX backbone (``method=amg_cogvideox``)."""

    name = "amg_cogvideox"
    families = ("cogvideox",)
    input_module = COGVIDEOX_INPUT

    def __init__(self, rank: int = 4, max_sequence_length: int = 226, gradient_checkpointing: bool = False):
        super().__init__(rank, max_sequence_length, gradient_checkpointing)

    def prepare(self, transformer, seed):
        return prepare_cogvideox(transformer, rank=self.rank, seed=seed)

    def encode_video(self, video):
        return encode_video_cogvideox(self.backbone.vae, video)

    def temporal_factor(self):
        return int(self.backbone.vae.config.temporal_compression_ratio)

    def encode_text(self, prompts):
        return encode_prompt_cogvideox(self.backbone.text_encoder, self.backbone.tokenizer, prompts,
                                       self.max_sequence_length)

    def loss(self, batch, gen, device, dtype):
        vae = self.backbone.vae
        return v_prediction_loss(self.trained, self.backbone.scheduler, batch.video.to(device, dtype),
                                 batch.avatar.to(device, dtype), batch.text.to(device, dtype), gen,
                                 vae_scale_factor_spatial=2 ** (len(vae.config.block_out_channels) - 1))

    def save(self, directory, extra=None):
        return save_cogvideox_adapter(self.unwrapped(), directory, self.backbone.fingerprint, extra=extra)

    def restore(self, directory):
        load_cogvideox_adapter(self.unwrapped(), directory, self.backbone.fingerprint)
