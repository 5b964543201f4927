"""Sampling AMG on CogVideoX: a ``CogVideoXPipeline`` whose loop feeds ``[z_t, z_avatar]`` on the channel axis.

:class:`AMGCogVideoXPipeline` keeps diffusers' ``CogVideoXPipeline`` (components, ``encode_prompt``,
``prepare_latents``, rotary embeddings, ``decode_latents``, offload and VAE tiling) and its loop, with
the avatar video's latents concatenated after the noisy latents in both CFG branches (one batched
call, as the stock loop), exactly where CogVideoX-Fun puts its control latents. With LoRA off and zero
avatar channels it reproduces the stock ``CogVideoXPipeline``; on a Fun control folder it reproduces
``CogVideoXFunControlPipeline`` with the avatar video as the control video.
"""

from __future__ import annotations


import numpy as np
import torch
from diffusers import CogVideoXPipeline

from render.errors import AmgError

from ..adapters import scaled_lora
from ..backbones.cogvideox import encode_video_cogvideox, load_cogvideox
from ..data import to_model_range
from ..methods.amg_cogvideox import (load_cogvideox_adapter, pad_latent_frames, prepare_cogvideox,
                                     save_cogvideox_adapter)
from .dit import AdapterFolders

__all__ = ["AMGCogVideoXPipeline"]


class AMGCogVideoXPipeline(AdapterFolders, CogVideoXPipeline):
    """CogVideoX text-to-video with AMG's avatar conditioning (patch embedding channels doubled, LoRA)."""

    family = (load_cogvideox, prepare_cogvideox, load_cogvideox_adapter, save_cogvideox_adapter)

    @torch.no_grad()
    def __call__(self, prompt: str, avatar_video, negative_prompt: str = "", height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 50, guidance_scale: float = 6.0,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None, eta: float = 0.0,
                 lora_scale: float = 1.0, max_sequence_length: int = 226, output_type: str = "np",
                 progress: bool = True):
        """Generate a video following ``prompt`` with the motion of ``avatar_video``.

        ``avatar_video``: uint8 ``(F, H, W, 3)`` or a path, ``F = 4n + 1`` (CogVideoX: 49 at 480x720).
        ``lora_scale``: LoRA strength (0: the base transformer). ``output_type``: ``"np"`` float32
        ``(F, H, W, 3)`` in [0, 1], ``"uint8"`` or ``"latent"`` (``(1, f, C, h, w)``; for CogVideoX 1.5,
        whose ``patch_size_t`` groups latent frames, ``f`` includes the padding frames at the start, as
        the stock pipeline returns them).
        """
        if output_type not in ("np", "uint8", "latent"):
            raise AmgError(f"output_type={output_type!r}: expected 'np', 'uint8' or 'latent'")
        frames = self.avatar_frames(avatar_video, "CogVideoX", 49)
        num_frames = frames.shape[0]
        height, width = height or frames.shape[1], width or frames.shape[2]
        self._guidance_scale, self._attention_kwargs, self._current_timestep, self._interrupt = \
            guidance_scale, None, None, False
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 1. Condition: [negative; positive] text and the avatar latents (both branches see them).
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, do_cfg, max_sequence_length=max_sequence_length, device=device)
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        z_avatar = encode_video_cogvideox(self.vae, to_model_range(frames, height, width)[None])
        # CogVideoX 1.5 patches pairs of latent frames: as the stock pipeline, pad the clip at its start
        # (the padding is dropped before decoding); the avatar's first latent frame stands in there.
        z_avatar, pad = pad_latent_frames(z_avatar, self.transformer.config.patch_size_t)
        z_avatar = z_avatar.to(device, prompt_embeds.dtype)
        z_avatar = torch.cat([z_avatar] * 2) if do_cfg else z_avatar

        # 2. Timesteps, initial noise (the VAE's latent channels), rotary embeddings.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(1, self.vae.config.latent_channels,
                                       num_frames + pad * self.vae_scale_factor_temporal, height, width,
                                       prompt_embeds.dtype, device, generator, latents)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        image_rotary_emb = (self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
                            if self.transformer.config.use_rotary_positional_embeddings else None)

        # 3. Denoise (v-prediction; the scheduler turns v into the DDIM update).
        self.set_progress_bar_config(disable=not progress)
        with self.progress_bar(total=len(timesteps)) as bar, scaled_lora(self.transformer, lora_scale):
            for t in timesteps:
                self._current_timestep = t
                x = torch.cat([latents] * 2) if do_cfg else latents
                x = self.scheduler.scale_model_input(x, t)
                x = torch.cat([x, z_avatar], dim=2)
                noise_pred = self.transformer(hidden_states=x, encoder_hidden_states=prompt_embeds,
                                              timestep=t.expand(x.shape[0]), image_rotary_emb=image_rotary_emb,
                                              return_dict=False)[0].float()
                if do_cfg:
                    uncond, text = noise_pred.chunk(2)
                    noise_pred = uncond + guidance_scale * (text - uncond)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                latents = latents.to(prompt_embeds.dtype)
                bar.update()
        self._current_timestep = None
        if output_type == "latent":  # as the stock pipeline: with CogVideoX 1.5's padding frames
            return latents

        # 4. Decode without the padding; [-1, 1] -> [0, 1] -> (F, H, W, 3).
        video = self.decode_latents(latents[:, pad:]).float()
        out = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()
        self.maybe_free_model_hooks()
        return (out * 255).round().astype(np.uint8) if output_type == "uint8" else out
