"""Wan 2.1 / 2.2 text-to-video (``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5, flow matching).

The folder is diffusers' Wan-T2V layout (``model_index.json``, ``transformer/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``). Latents are ``(B, 16, (F - 1) / 4 + 1, H / 8, W / 8)``
for ``F = 4n + 1`` frames (the causal VAE keeps the first frame alone), normalised with the VAE's
``latents_mean`` / ``latents_std`` exactly as ``WanPipeline`` un-normalises them before decoding.
"""

from __future__ import annotations

import os

import torch

from .base import Backbone, freeze, require_folders
from .dit import dit_fingerprint, widen_submodule

__all__ = ["load_wan", "widen_patch_embedding", "wan_fingerprint", "encode_video_wan", "decode_latents_wan",
           "WAN_LORA_TARGETS", "WAN_INPUT"]

# q/k/v/out of every self- and cross-attention of every block
WAN_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# the layer that sees the latent channels (trains whole with the adapter)
WAN_INPUT = "patch_embedding"
_FOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_PROBE = ("condition_embedder.time_embedder.linear_1.weight", "proj_out.weight", "scale_shift_table")
_CONFIG = ("patch_size", "num_attention_heads", "attention_head_dim", "out_channels", "text_dim", "num_layers")


def wan_fingerprint(transformer: torch.nn.Module) -> dict:
    """The base transformer's fingerprint (the same before and after widening and LoRA)."""
    return dit_fingerprint(transformer, _PROBE, _CONFIG)


def load_wan(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu", vace: bool = False) -> Backbone:
    """Load a diffusers Wan folder (frozen, eval mode) as a :class:`Backbone` with ``transformer`` set.

    ``vace`` loads the transformer as ``WanVACETransformer3DModel``. The scheduler is the folder's
    (``UniPCMultistepScheduler`` with flow prediction in the released models, flow-matching Euler in tiny ones).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel, WanVACETransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    folder = require_folders(folder, _FOLDERS, "Wan text-to-video")
    cls = WanVACETransformer3DModel if vace else WanTransformer3DModel
    transformer = cls.from_pretrained(folder / "transformer", torch_dtype=dtype)
    # the VAE stays float32 as in diffusers' Wan examples (its decoder is sensitive to low precision)
    vae = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    text_encoder = UMT5EncoderModel.from_pretrained(folder / "text_encoder", dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = _load_scheduler(folder / "scheduler")
    freeze(transformer, vae, text_encoder, device=device)
    return Backbone(family="wan_vace" if vace else "wan", folder=folder, unet=None, transformer=transformer,
                    vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                    fingerprint=wan_fingerprint(transformer))


def _load_scheduler(folder):
    """The scheduler class named in its own ``scheduler_config.json``."""
    import diffusers

    from render.io import read_json

    name = read_json(folder / "scheduler_config.json")["_class_name"]
    return getattr(diffusers, name).from_pretrained(folder)


def widen_patch_embedding(transformer: torch.nn.Module, extra_channels: int = 16) -> torch.nn.Module:
    """Give the ``Conv3d`` patch embedding ``extra_channels`` more input channels (zero), in place; 16 -> 32."""
    return widen_submodule(transformer, WAN_INPUT, extra_channels)


def _latent_stats(vae, like: torch.Tensor):
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(like.device, like.dtype)
    return mean, std


@torch.no_grad()
def encode_video_wan(vae: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Normalised latents ``(B, 16, (F - 1) / 4 + 1, H / 8, W / 8)`` (posterior mode) of ``video``
    ``(B, 3, F, H, W)`` in [-1, 1] with ``F = 4n + 1``."""
    p = next(vae.parameters())
    lat = vae.encode(video.to(p.device, p.dtype)).latent_dist.mode()
    mean, std = _latent_stats(vae, lat)
    return (lat - mean) / std


@torch.no_grad()
def decode_latents_wan(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Video ``(B, 3, F, H, W)`` in [-1, 1] (float32) from normalised latents, as ``WanPipeline`` decodes."""
    p = next(vae.parameters())
    latents = latents.to(p.device, p.dtype)
    mean, std = _latent_stats(vae, latents)
    return vae.decode(latents * std + mean, return_dict=False)[0].float()
