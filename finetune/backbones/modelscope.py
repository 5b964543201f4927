"""ModelScope text-to-video (``UNet3DConditionModel``, ``AutoencoderKL``, CLIP text, DDIM): AMG's base.

The folder is diffusers' text-to-video-ms-1.7b layout; loading goes through
:func:`finetune.model.load_base`, which AMG's adapters are fingerprinted against.
"""

from __future__ import annotations

import os

import torch

from ..model import VideoModel, load_base
from .base import Backbone

__all__ = ["load_modelscope", "from_video_model"]


def from_video_model(model: VideoModel) -> Backbone:
    """The :class:`Backbone` view of a loaded :class:`finetune.model.VideoModel` (same module objects)."""
    return Backbone(family="modelscope", folder=model.folder, unet=model.unet, vae=model.vae,
                    scheduler=model.scheduler, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                    fingerprint=model.fingerprint)


def load_modelscope(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> Backbone:
    """Load a diffusers text-to-video folder (frozen, eval mode) as a :class:`Backbone`."""
    return from_video_model(load_base(folder, dtype=dtype, device=device))
