"""Image-to-video sampling with an SVD ControlNet: LeviTor's and the 3D-box model's pipelines.

:class:`SVDControlPipeline` is diffusers' ``StableVideoDiffusionPipeline`` with a ``controlnet``
component (:class:`~finetune.backbones.svd_controlnet.SVDControlNet`). Its ``__call__`` is the stock
loop top to bottom (CLIP image embedding, noise-augmented first-frame latents, added time ids, Karras
EDM sigmas, per-frame guidance ``linspace(min, max, F)``), with the ControlNet's residuals added to the
UNet at every step, in both guidance branches. With ``control=None`` (or no ControlNet) every step is
the stock UNet call, so the latents equal the stock pipeline's for the same generator.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    StableVideoDiffusionPipelineOutput, retrieve_timesteps)
from diffusers.utils.torch_utils import randn_tensor

from render.errors import AmgError

from ..backbones.svd_controlnet import SVDControlNet, svd_unet_forward

__all__ = ["SVDControlPipeline", "control_batch"]


def control_batch(control, num_frames: int, batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """``control`` ``(F, C, H, W)`` or ``(B, F, C, H, W)`` (array or tensor, values as the method's
    ControlNet was trained on) as a ``(batch, F, C, H, W)`` tensor; AmgError on a shape mismatch."""
    c = torch.as_tensor(np.asarray(control) if not torch.is_tensor(control) else control)
    if c.ndim == 4:
        c = c[None]
    if c.ndim != 5 or c.shape[1] != num_frames or tuple(c.shape[-2:]) != (height, width):
        raise AmgError(f"control {tuple(c.shape)}: expected (F={num_frames}, C, {height}, {width})")
    if c.shape[0] == 1 and batch > 1:
        c = c.expand(batch, *c.shape[1:])
    if c.shape[0] != batch:
        raise AmgError(f"control batch {c.shape[0]}: expected 1 or {batch}")
    return c.to(device, dtype)


class SVDControlPipeline(StableVideoDiffusionPipeline):
    """SVD img2vid plus a ControlNet over per-frame control images (``controlnet`` may be None)."""

    def __init__(self, vae, image_encoder, unet, scheduler, feature_extractor, controlnet: SVDControlNet | None = None):
        super().__init__(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                         feature_extractor=feature_extractor)
        self.register_modules(controlnet=controlnet)

    def predict(self, latent_model_input, t, image_embeddings, added_time_ids, control, scale: float):
        """One UNet evaluation, with the ControlNet's residuals when ``control`` is given."""
        if control is None or self.controlnet is None:
            return self.unet(latent_model_input, t, encoder_hidden_states=image_embeddings,
                             added_time_ids=added_time_ids, return_dict=False)[0]
        down, mid = self.controlnet(latent_model_input, t, image_embeddings, added_time_ids, control,
                                    conditioning_scale=scale)
        return svd_unet_forward(self.unet, latent_model_input, t, image_embeddings, added_time_ids, down, mid)

    @torch.no_grad()
    def __call__(self, image, control=None, height: int = 576, width: int = 1024, num_frames: int | None = None,
                 num_inference_steps: int = 25, min_guidance_scale: float = 1.0, max_guidance_scale: float = 3.0,
                 fps: int = 7, motion_bucket_id: int = 127, noise_aug_strength: float = 0.02,
                 controlnet_conditioning_scale: float = 1.0, decode_chunk_size: int | None = None,
                 num_videos_per_prompt: int = 1, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True):
        """Generate ``num_frames`` frames from ``image`` (PIL, list of PIL, or ``(B, 3, H, W)`` in [0, 1]).

        ``control``: ``(F, C, H, W)`` per-frame control at the output resolution (LeviTor:
        ``[heat, instance id, depth]`` unnormalised, as ``render.conditions.levitor.control_tensor``
        writes it), or None for plain SVD. Other arguments as the stock pipeline; ``output_type``
        ``"latent"`` returns the final latents ``(B, F, 4, h, w)``.
        """
        num_frames = num_frames if num_frames is not None else self.unet.config.num_frames
        decode_chunk_size = decode_chunk_size if decode_chunk_size is not None else num_frames
        self.check_inputs(image, height, width)
        batch_size = 1 if not isinstance(image, (list, torch.Tensor)) else len(image)
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 1. the first frame: CLIP embedding and noise-augmented VAE latents (zeros in the unconditional branch)
        image_embeddings = self._encode_image(image, device, num_videos_per_prompt, self.do_classifier_free_guidance)
        fps = fps - 1  # SVD was conditioned on fps - 1
        image = self.video_processor.preprocess(image, height=height, width=width).to(device)
        noise = randn_tensor(image.shape, generator=generator, device=device, dtype=image.dtype)
        image = image + noise_aug_strength * noise
        image_latents = self._encode_vae_image(image, device=device, num_videos_per_prompt=num_videos_per_prompt,
                                               do_classifier_free_guidance=self.do_classifier_free_guidance)
        image_latents = image_latents.to(image_embeddings.dtype).unsqueeze(1).repeat(1, num_frames, 1, 1, 1)

        # 2. added time ids and the EDM sigmas
        added_time_ids = self._get_add_time_ids(fps, motion_bucket_id, noise_aug_strength, image_embeddings.dtype,
                                                batch_size, num_videos_per_prompt,
                                                self.do_classifier_free_guidance).to(device)
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, None, None)

        # 3. initial noise, per-frame guidance scale, the control for both branches
        latents = self.prepare_latents(batch_size * num_videos_per_prompt, num_frames, self.unet.config.in_channels,
                                       height, width, image_embeddings.dtype, device, generator, latents)
        guidance = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames).unsqueeze(0)
        guidance = guidance.to(device, latents.dtype).repeat(batch_size * num_videos_per_prompt, 1)
        self._guidance_scale = guidance[..., None, None, None]
        if control is not None:
            control = control_batch(control, num_frames, batch_size * num_videos_per_prompt, height, width,
                                    device, latents.dtype)
            if self.do_classifier_free_guidance:
                control = torch.cat([control] * 2)

        # 4. denoising loop
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for t in timesteps:
                latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                latent_model_input = torch.cat([latent_model_input, image_latents], dim=2)
                noise_pred = self.predict(latent_model_input, t, image_embeddings, added_time_ids, control,
                                          controlnet_conditioning_scale)
                if self.do_classifier_free_guidance:
                    uncond, cond = noise_pred.chunk(2)
                    noise_pred = uncond + self.guidance_scale * (cond - uncond)
                latents = self.scheduler.step(noise_pred, t, latents).prev_sample
                progress_bar.update()

        # 5. decode
        if output_type == "latent":
            frames = latents
        else:
            frames = self.decode_latents(latents, num_frames, decode_chunk_size)
            frames = self.video_processor.postprocess_video(video=frames, output_type=output_type)
        self.maybe_free_model_hooks()
        return StableVideoDiffusionPipelineOutput(frames=frames) if return_dict else frames
