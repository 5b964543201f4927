"""CogVideoX text-to-video (``CogVideoXTransformer3DModel``, ``AutoencoderKLCogVideoX``, T5, v-prediction DDIM).

The folder is diffusers' CogVideoX layout. Latents are ``(B, f, C, h, w)`` (frames before channels,
as the transformer takes them), ``f = (F - 1) / 4 + 1`` for ``F = 4n + 1`` frames, scaled by the VAE's
``scaling_factor`` as ``CogVideoXPipeline`` un-scales them before decoding. CogVideoX-Fun control
models (``CogVideoXFunControlPipeline`` layout) are the same classes with the control video's latents
concatenated on the channel axis: their transformer already takes twice the latent channels.
"""

from __future__ import annotations

import os

import torch

from .base import Backbone, freeze, require_folders
from .dit import dit_fingerprint, widen_submodule

__all__ = ["load_cogvideox", "widen_patch_embed", "cogvideox_fingerprint", "encode_video_cogvideox",
           "COGVIDEOX_LORA_TARGETS", "COGVIDEOX_INPUT"]

COGVIDEOX_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
COGVIDEOX_INPUT = "patch_embed.proj"
_FOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_PROBE = ("time_embedding.linear_1.weight", "proj_out.weight", "norm_final.weight")
_CONFIG = ("num_attention_heads", "attention_head_dim", "out_channels", "num_layers", "patch_size", "text_embed_dim")


def cogvideox_fingerprint(transformer: torch.nn.Module) -> dict:
    """The base transformer's fingerprint (the same before and after widening and LoRA)."""
    return dit_fingerprint(transformer, _PROBE, _CONFIG)


def load_cogvideox(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
                   device: str | torch.device = "cpu") -> Backbone:
    """Load a diffusers CogVideoX (or CogVideoX-Fun control) folder, frozen, as a :class:`Backbone`."""
    import diffusers
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    from render.io import read_json

    folder = require_folders(folder, _FOLDERS, "CogVideoX")
    transformer = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
    vae = AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=dtype)
    text_encoder = T5EncoderModel.from_pretrained(folder / "text_encoder", dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    name = read_json(folder / "scheduler" / "scheduler_config.json")["_class_name"]
    scheduler = getattr(diffusers, name).from_pretrained(folder / "scheduler")
    freeze(transformer, vae, text_encoder, device=device)
    return Backbone(family="cogvideox", folder=folder, unet=None, transformer=transformer, vae=vae,
                    scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                    fingerprint=cogvideox_fingerprint(transformer))


def widen_patch_embed(transformer: torch.nn.Module, extra_channels: int) -> torch.nn.Module:
    """Give the patch embedding ``extra_channels`` more latent channels (zero weights), in place.

    CogVideoX 1.0 embeds patches with a ``Conv2d``; 1.5 flattens patches channel-major ``(C, p_t, p, p)``
    into a ``Linear``, so there the new channels' columns follow the old ones as well.
    """
    return widen_submodule(transformer, COGVIDEOX_INPUT, extra_channels)


@torch.no_grad()
def encode_video_cogvideox(vae: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(B, f, C, h, w)`` (posterior mode) of ``video`` ``(B, 3, F, H, W)`` in [-1, 1].

    The same as ``CogVideoXFunControlPipeline`` encodes its control video.
    """
    p = next(vae.parameters())
    lat = vae.encode(video.to(p.device, p.dtype)).latent_dist.mode() * vae.config.scaling_factor
    return lat.permute(0, 2, 1, 3, 4)
