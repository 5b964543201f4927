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
from ..backbones.dit import EncodedClipDataset, fingerprints_match
from ..data import ClipDataset
from ..losses import v_target, weighted_mse
from .base import ClipSettings, Method

__all__ = ["prepare_cogvideox", "v_prediction_loss", "save_cogvideox_adapter", "load_cogvideox_adapter",
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


def v_prediction_loss(transformer, scheduler, z0: torch.Tensor, z_avatar: torch.Tensor, text: torch.Tensor,
                      gen: torch.Generator) -> torch.Tensor:
    """v-prediction loss on latents ``(B, f, C, h, w)`` and text ``(B, L, D)``; draws from ``gen`` on the CPU."""
    noise = torch.randn(z0.shape, generator=gen).to(z0.device, z0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (z0.shape[0],), generator=gen).to(z0.device)
    zt = scheduler.add_noise(z0, noise, t)
    pred = transformer(hidden_states=torch.cat([zt, z_avatar], dim=2), encoder_hidden_states=text, timestep=t,
                       return_dict=False)[0]
    return weighted_mse(pred, v_target(scheduler.alphas_cumprod, z0, noise, t))


@torch.no_grad()
def encode_prompt_cogvideox(text_encoder, tokenizer, prompts: list[str], max_sequence_length: int = 226) -> torch.Tensor:
    """T5 embeddings ``(B, L, D)`` exactly as ``CogVideoXPipeline`` computes them."""
    import types

    from diffusers import CogVideoXPipeline

    device = next(text_encoder.parameters()).device
    holder = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, _execution_device=device)
    return CogVideoXPipeline._get_t5_prompt_embeds(holder, prompt=prompts, max_sequence_length=max_sequence_length,
                                                   device=device, dtype=text_encoder.dtype)


class AmgCogVideoXMethod(Method):
    """AMG's avatar-conditioned LoRA fine-tuning of a CogVideoX backbone (``method=amg_cogvideox``)."""

    name = "amg_cogvideox"
    families = ("cogvideox",)

    def __init__(self, rank: int = 4, max_sequence_length: int = 226, gradient_checkpointing: bool = False):
        self.rank, self.max_sequence_length = rank, max_sequence_length
        self.gradient_checkpointing = gradient_checkpointing

    def options(self) -> dict:
        return {"rank": self.rank, "max_sequence_length": self.max_sequence_length,
                "gradient_checkpointing": self.gradient_checkpointing}

    def setup(self, folder, device, dtype, seed):
        self.backbone = b = self.load_backbone(folder)
        self.trained = prepare_cogvideox(b.transformer, rank=self.rank, seed=seed)
        if self.gradient_checkpointing:  # recompute each block in backward (benchmarks/dit_memory.py)
            self.trained.enable_gradient_checkpointing()
        b.to(device, dtype)

    def trainable_parameters(self):
        m = self.trained
        m.requires_grad_(False)
        params = [p for n, p in m.named_parameters() if "lora_" in n or n.startswith(f"{COGVIDEOX_INPUT}.")]
        for p in params:
            p.requires_grad_(True)
        return params

    def dataset(self, manifest, clips: ClipSettings):
        b = self.backbone
        data = ClipDataset(manifest, num_frames=clips.num_frames, height=clips.height, width=clips.width,
                           fps=clips.fps)
        return EncodedClipDataset(
            data, lambda v: encode_video_cogvideox(b.vae, v),
            lambda t: encode_prompt_cogvideox(b.text_encoder, b.tokenizer, t, self.max_sequence_length),
            temporal_factor=int(b.vae.config.temporal_compression_ratio))

    def collate(self, samples):
        return EncodedClipDataset.collate(samples)

    def loss(self, batch, gen, device, dtype):
        return v_prediction_loss(self.trained, self.backbone.scheduler, batch.video.to(device, dtype),
                                 batch.avatar.to(device, dtype), batch.text.to(device, dtype), gen)

    def save(self, directory, extra=None):
        return save_cogvideox_adapter(self.unwrapped(), directory, self.backbone.fingerprint, extra=extra)

    def restore(self, directory):
        load_cogvideox_adapter(self.unwrapped(), directory, self.backbone.fingerprint)
