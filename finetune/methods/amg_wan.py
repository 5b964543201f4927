"""AMG on Wan: ``[z_t, z_avatar]`` into the patch embedding (16 -> 32 channels), LoRA, flow-matching loss.

The transformer sees the noisy video latents and the avatar video's latents (Wan's VAE, normalised)
on the channel axis, and the caption's UMT5 embedding, and learns the flow ``noise - z0`` at
``z_s = (1 - s) z0 + s noise`` (timestep ``1000 s``), as Wan was trained. Only the LoRA on the
attention projections and the widened patch embedding train; the adapter is written in peft's
layout with ``patch_embedding`` as a module to save (:mod:`finetune.adapters`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

from .. import adapters
from ..backbones.dit import fingerprints_match
from ..backbones.wan import WAN_INPUT, WAN_LORA_TARGETS, encode_video_wan, widen_patch_embedding
from ..losses import flow_matching, weighted_mse
from .amg_dit import AmgDitMethod

__all__ = ["prepare_wan", "flow_matching_loss", "shift_sigmas", "load_wan_adapter", "save_wan_adapter",
           "AmgWanMethod", "WAN_NUM_FRAMES", "WAN_HEIGHT", "WAN_WIDTH", "WAN_FPS"]

# Wan 2.1's native clip: 81 frames (4n + 1) at 480x832, 16 fps
WAN_NUM_FRAMES, WAN_HEIGHT, WAN_WIDTH, WAN_FPS = 81, 480, 832, 16.0


def prepare_wan(transformer: torch.nn.Module, rank: int = 4, alpha: float | None = None,
                targets: tuple[str, ...] = WAN_LORA_TARGETS, seed: int = 0) -> torch.nn.Module:
    """Widen the patch embedding for the avatar latents (unless it already takes them) and add fresh LoRA.

    The result's output equals the base transformer's for any avatar latents (zero new weights, LoRA B
    zero). ``rank`` 4 is AMG's; DiT LoRA is usually 16-64.
    """
    if int(transformer.config.in_channels) == int(transformer.config.out_channels):
        widen_patch_embedding(transformer, int(transformer.config.out_channels))
    return adapters.add_lora(transformer, targets, rank=rank, alpha=alpha, seed=seed, modules_to_save=(WAN_INPUT,))


def save_wan_adapter(transformer: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict,
                     extra: dict | None = None) -> Path:
    """Write the Wan adapter (LoRA + patch embedding) in peft's layout with the base's fingerprint."""
    info = {"base": fingerprint, "backbone": "wan", "in_channels": int(transformer.config.in_channels), **(extra or {})}
    return adapters.save_adapter(transformer, directory, info=info)


def load_wan_adapter(transformer: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict) -> torch.nn.Module:
    """Load a Wan adapter onto the base (widening it to the saved patch embedding) or a prepared transformer."""
    config, tensors, info = adapters.read_adapter(directory)
    if info.get("base") is not None and not fingerprints_match(info["base"], fingerprint):
        raise AmgError(f"{directory}: adapter was trained on a different base model than the one loaded")
    saved = tensors.get(f"{WAN_INPUT}.weight")
    have = transformer.patch_embedding.in_channels
    if saved is not None and saved.shape[1] > have and not adapters.has_lora(transformer):
        widen_patch_embedding(transformer, saved.shape[1] - have)
    return adapters.apply_adapter(transformer, config, tensors, source=str(directory))


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow-matching time shift ``shift s / (1 + (shift - 1) s)`` (Wan/SD3 sample more noisy levels)."""
    return shift * s / (1 + (shift - 1) * s)


def flow_matching_loss(transformer: torch.nn.Module, z0: torch.Tensor, z_avatar: torch.Tensor, text: torch.Tensor,
                       gen: torch.Generator, shift: float = 1.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Flow-matching loss on latents ``z0``/``z_avatar`` ``(B, 16, f, h, w)`` and text ``(B, L, D)``.

    Draws the noise and ``s ~ U(0, 1)`` (shifted by ``shift``) from ``gen`` on the CPU; the transformer
    predicts ``noise - z0`` from ``[z_s, z_avatar]`` at timestep ``num_train_timesteps * s``.
    """
    noise = torch.randn(z0.shape, generator=gen).to(z0.device, z0.dtype)
    s = shift_sigmas(torch.rand(z0.shape[0], generator=gen), shift).to(z0.device)
    zs, target = flow_matching(z0, noise, s)
    pred = transformer(hidden_states=torch.cat([zs, z_avatar], dim=1), timestep=s * num_train_timesteps,
                       encoder_hidden_states=text, return_dict=False)[0]
    return weighted_mse(pred, target)


class AmgWanMethod(AmgDitMethod):
    """AMG's avatar-conditioned LoRA fine-tuning of a Wan text-to-video backbone (``method=amg_wan``).

    ``shift`` is the flow-matching time shift of the training noise levels (1: uniform).
    """

    name = "amg_wan"
    families = ("wan",)
    input_module = WAN_INPUT

    def __init__(self, rank: int = 4, shift: float = 1.0, max_sequence_length: int = 512,
                 gradient_checkpointing: bool = False):
        super().__init__(rank, max_sequence_length, gradient_checkpointing)
        self.shift = shift

    def options(self) -> dict:
        return {**super().options(), "shift": self.shift}

    def prepare(self, transformer, seed):
        return prepare_wan(transformer, rank=self.rank, seed=seed)

    def encode_video(self, video):
        return encode_video_wan(self.backbone.vae, video)

    def temporal_factor(self):
        return int(self.backbone.vae.config.scale_factor_temporal)

    def encode_text(self, prompts):
        from ..pipelines.amg_wan import encode_prompt_wan

        return encode_prompt_wan(self.backbone.text_encoder, self.backbone.tokenizer, prompts, self.max_sequence_length)

    def loss(self, batch, gen, device, dtype):
        return flow_matching_loss(self.trained, batch.video.to(device, dtype), batch.avatar.to(device, dtype),
                                  batch.text.to(device, dtype), gen, shift=self.shift)

    def save(self, directory, extra=None):
        return save_wan_adapter(self.unwrapped(), directory, self.backbone.fingerprint, extra=extra)

    def restore(self, directory):
        load_wan_adapter(self.unwrapped(), directory, self.backbone.fingerprint)
