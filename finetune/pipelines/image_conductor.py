"""Image Conductor sampling on AnimateDiff: flow and image ControlNets with camera-free guidance.

:class:`ImageConductorPipeline` is diffusers' ``AnimateDiffPipeline`` with two ControlNets. Its
``__call__`` is the stock loop (DDIM, per-frame prompt embeddings, classifier-free guidance in one
batched UNet call) plus, when a flow or a first frame is given, the ControlNets' residuals. With
``trajectory_guidance_scale`` set it runs the paper's camera-free guidance with a third UNet pass:

    eps = eps0(x, 0) + l_cfg (eps0(x, c) - eps0(x, 0)) + l_traj (eps_obj(x, c) - eps0(x, c))

where ``eps0`` runs the flow ControlNet with the object LoRA off and ``eps_obj`` with it on
(:func:`finetune.guidance.camera_free`). Without flow and image every step is the stock UNet call,
so the latents equal ``AnimateDiffPipeline``'s for the same generator.
"""

from __future__ import annotations

import torch
from diffusers import AnimateDiffPipeline
from diffusers.pipelines.animatediff.pipeline_output import AnimateDiffPipelineOutput

from render.errors import AmgError

from ..guidance import camera_free
from ..methods.image_conductor import first_frame_condition, flow_condition, lora_scales

__all__ = ["ImageConductorPipeline"]


class ImageConductorPipeline(AnimateDiffPipeline):
    """AnimateDiff (a ``UNetMotionModel``) plus Image Conductor's flow ControlNet (with its LoRA sets) and
    image ControlNet; either may be None."""

    _optional_components = ["feature_extractor", "image_encoder", "motion_adapter", "flow_controlnet",
                            "image_controlnet"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, motion_adapter=None, feature_extractor=None,
                 image_encoder=None, flow_controlnet=None, image_controlnet=None):
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         motion_adapter=motion_adapter, scheduler=scheduler, feature_extractor=feature_extractor,
                         image_encoder=image_encoder)
        self.register_modules(flow_controlnet=flow_controlnet, image_controlnet=image_controlnet)

    def residuals(self, x, t, text, flow_cond, image_cond, camera: float, obj: float, scale: float):
        """Summed ControlNet residuals for UNet input ``x`` ``(B, 4, F, h, w)`` (None when no control)."""
        down = mid = None
        if flow_cond is not None and self.flow_controlnet is not None:
            with lora_scales(self.flow_controlnet, camera, obj):
                down, mid = self.flow_controlnet(x, t, encoder_hidden_states=text, controlnet_cond=flow_cond,
                                                 conditioning_scale=scale, return_dict=False)
        if image_cond is not None and self.image_controlnet is not None:
            cond, mask = image_cond
            d, m = self.image_controlnet(x, t, encoder_hidden_states=text, controlnet_cond=cond,
                                         conditioning_mask=mask, conditioning_scale=scale, return_dict=False)
            down = d if down is None else [a + b for a, b in zip(down, d, strict=True)]
            mid = m if mid is None else mid + m
        return down, mid

    def eps(self, x, t, text, res):
        down, mid = res
        return self.unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample

    @torch.no_grad()
    def __call__(self, prompt: str, image=None, flow=None, num_frames: int = 16, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 25, guidance_scale: float = 7.5,
                 trajectory_guidance_scale: float | None = None, camera_lora_scale: float = 0.0,
                 object_lora_scale: float = 1.0, controlnet_conditioning_scale: float = 1.0,
                 negative_prompt: str | None = None, eta: float = 0.0, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "np", decode_chunk_size: int = 16,
                 return_dict: bool = True):
        """Generate ``num_frames`` frames for ``prompt``.

        Args:
            image: the first frame, float ``(3, H, W)`` in [-1, 1] (or ``(B, 3, H, W)``), or None.
            flow: ``(F, 2, H, W)`` (or ``(B, F, 2, H, W)``) trajectory flow in pixels
                (``render.conditions.flow.trajectory_flow`` moved frame-first), or None.
            guidance_scale: ``l_cfg``; trajectory_guidance_scale: ``l_traj`` of camera-free guidance
                (None: plain classifier-free guidance with the LoRA scales below).
            camera_lora_scale, object_lora_scale: the flow ControlNet's LoRA scales in the guided branch;
                ``eps0`` always has the object LoRA off.
        """
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self._guidance_scale, self._clip_skip, self._cross_attention_kwargs, self._interrupt = guidance_scale, None, None, False
        device = self._execution_device
        cfg = self.do_classifier_free_guidance
        if trajectory_guidance_scale is not None and (not cfg or flow is None):
            raise AmgError("trajectory_guidance_scale: camera-free guidance needs guidance_scale > 1 and a flow")

        # 1. prompt embeddings, one per frame (as the stock pipeline)
        pos, neg = self.encode_prompt(prompt, device, 1, cfg, negative_prompt)
        text = torch.cat([neg, pos]) if cfg else pos
        text = text.repeat_interleave(repeats=num_frames, dim=0)
        text_pos = pos.repeat_interleave(repeats=num_frames, dim=0)

        # 2. timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(1, self.unet.config.in_channels, num_frames, height, width, text.dtype,
                                       device, generator, latents)
        extra = self.prepare_extra_step_kwargs(generator, eta)

        # 3. the controls: unshuffled flow, first-frame latents with their mask
        flow_cond = image_cond = None
        if flow is not None:
            f = torch.as_tensor(flow, dtype=text.dtype, device=device)
            f = f[None] if f.ndim == 4 else f
            if f.shape[1] != num_frames or tuple(f.shape[-2:]) != (height, width):
                raise AmgError(f"flow {tuple(f.shape)}: expected (F={num_frames}, 2, {height}, {width})")
            flow_cond = flow_condition(f, self.vae_scale_factor)
        if image is not None:
            img = torch.as_tensor(image, dtype=self.vae.dtype, device=device)
            img = img[None] if img.ndim == 3 else img
            first = self.vae.encode(img).latent_dist.mode() * self.vae.config.scaling_factor
            image_cond = first_frame_condition(first.to(text.dtype), num_frames)
        controlled = flow_cond is not None or image_cond is not None

        def both(c):
            return None if c is None else (torch.cat([c] * 2) if not isinstance(c, tuple) else tuple(torch.cat([x] * 2) for x in c))

        # 4. denoising loop
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for t in timesteps:
                x = torch.cat([latents] * 2) if cfg else latents
                x = self.scheduler.scale_model_input(x, t)
                if not controlled:
                    noise_pred = self.unet(x, t, encoder_hidden_states=text).sample
                    if cfg:
                        uncond, cond = noise_pred.chunk(2)
                        noise_pred = uncond + guidance_scale * (cond - uncond)
                elif trajectory_guidance_scale is None:
                    fc, ic = (both(flow_cond), both(image_cond)) if cfg else (flow_cond, image_cond)
                    res = self.residuals(x, t, text, fc, ic, camera_lora_scale, object_lora_scale,
                                         controlnet_conditioning_scale)
                    noise_pred = self.eps(x, t, text, res)
                    if cfg:
                        uncond, cond = noise_pred.chunk(2)
                        noise_pred = uncond + guidance_scale * (cond - uncond)
                else:
                    # eps0: object LoRA off, both branches in one call; eps_obj: object LoRA on, conditional only
                    res0 = self.residuals(x, t, text, both(flow_cond), both(image_cond), camera_lora_scale, 0.0,
                                          controlnet_conditioning_scale)
                    eps0_uncond, eps0_cond = self.eps(x, t, text, res0).chunk(2)
                    x_c = x.chunk(2)[1]
                    res1 = self.residuals(x_c, t, text_pos, flow_cond, image_cond, camera_lora_scale,
                                          object_lora_scale, controlnet_conditioning_scale)
                    eps_obj = self.eps(x_c, t, text_pos, res1)
                    noise_pred = camera_free(eps0_uncond, eps0_cond, eps_obj, guidance_scale, trajectory_guidance_scale)
                latents = self.scheduler.step(noise_pred, t, latents, **extra).prev_sample
                progress_bar.update()

        # 5. decode
        if output_type == "latent":
            video = latents
        else:
            video = self.video_processor.postprocess_video(video=self.decode_latents(latents, decode_chunk_size),
                                                           output_type=output_type)
        self.maybe_free_model_hooks()
        return AnimateDiffPipelineOutput(frames=video) if return_dict else (video,)
