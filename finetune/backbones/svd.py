"""Stable Video Diffusion img2vid in diffusers' layout: the base of LeviTor and the 3D-box model.

``unet/`` ``UNetSpatioTemporalConditionModel`` (8 input channels: noisy latents and the first frame's
latents), ``vae/`` ``AutoencoderKLTemporalDecoder``, ``image_encoder/`` ``CLIPVisionModelWithProjection``,
``feature_extractor/`` ``CLIPImageProcessor`` and ``scheduler/`` ``EulerDiscreteScheduler`` (EDM sigmas,
v-prediction): the folder of stabilityai/stable-video-diffusion-img2vid(-xt), which diffusers'
``StableVideoDiffusionPipeline`` loads too.
"""

from __future__ import annotations

import os

import torch

from ..model import base_fingerprint
from .base import Backbone, freeze, require_folders

__all__ = ["load_svd", "SVD_COMPONENTS"]

SVD_COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")


def load_svd(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu") -> Backbone:
    """Load an SVD img2vid folder as a frozen :class:`Backbone` (``family="svd"``).

    Raises :class:`AmgError` naming the folder when a component is missing.
    """
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder = require_folders(folder, SVD_COMPONENTS, "Stable Video Diffusion img2vid")
    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
    vae = AutoencoderKLTemporalDecoder.from_pretrained(folder / "vae", torch_dtype=dtype)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", dtype=dtype)
    feature_extractor = CLIPImageProcessor.from_pretrained(folder / "feature_extractor")
    scheduler = EulerDiscreteScheduler.from_pretrained(folder / "scheduler")
    freeze(unet, vae, image_encoder, device=device)
    return Backbone(family="svd", folder=folder, unet=unet, vae=vae, scheduler=scheduler,
                    image_encoder=image_encoder, feature_extractor=feature_extractor,
                    fingerprint=base_fingerprint(unet))
