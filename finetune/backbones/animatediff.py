"""AnimateDiff: a Stable Diffusion 1.5 folder plus a ``MotionAdapter`` -> ``UNetMotionModel``, DDIM.

The SD folder has diffusers' layout (``unet/`` ``UNet2DConditionModel``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``); the motion adapter is a diffusers ``MotionAdapter`` folder
(guoyww/animatediff-motion-adapter-v1-5-*), by default ``<folder>/motion_adapter``. The UNet is built
with diffusers' own ``UNetMotionModel.from_unet2d``, as ``AnimateDiffPipeline`` does, so stock
AnimateDiff and the methods on it run the same network. The scheduler is DDIM from the folder's config
with AnimateDiff's linear betas.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

from ..model import base_fingerprint, move
from .base import Backbone, freeze, require_folders

__all__ = ["load_animatediff", "SD_COMPONENTS"]

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def load_animatediff(folder: str | os.PathLike, motion_adapter: str | os.PathLike | None = None,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Backbone:
    """Load SD1.5 + motion adapter as a frozen :class:`Backbone` (``family="animatediff"``).

    ``motion_adapter`` defaults to ``folder/motion_adapter``. The fingerprint is the motion UNet's.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = require_folders(folder, SD_COMPONENTS, "Stable Diffusion 1.5")
    adapter_dir = Path(motion_adapter) if motion_adapter is not None else folder / "motion_adapter"
    if not (adapter_dir / "config.json").is_file():
        raise AmgError(f"{adapter_dir}: no motion adapter; expected a diffusers MotionAdapter folder")
    unet2d = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
    adapter = MotionAdapter.from_pretrained(adapter_dir, torch_dtype=dtype)
    unet = move(UNetMotionModel.from_unet2d(unet2d, adapter), "cpu", dtype)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    freeze(unet, vae, text_encoder, device=device)
    return Backbone(family="animatediff", folder=folder, unet=unet, vae=vae, scheduler=scheduler,
                    text_encoder=text_encoder, tokenizer=tokenizer, fingerprint=base_fingerprint(unet))
