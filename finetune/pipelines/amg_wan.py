"""Sampling AMG on Wan: text + avatar video -> video, a ``WanPipeline`` whose loop feeds ``[z_t, z_avatar]``.

:class:`AMGWanPipeline` is diffusers' ``WanPipeline`` (same components, ``encode_prompt``,
``prepare_latents``, ``enable_model_cpu_offload``, VAE tiling) with its own ``__call__``: the loop of
``WanPipeline.__call__`` with the avatar video's latents concatenated to the noisy latents on the
channel axis in both classifier-free-guidance branches (only the text is dropped). With LoRA off and
zero avatar channels it reproduces the stock ``WanPipeline`` on the base transformer for the same seed.
"""

from __future__ import annotations


import numpy as np
import torch
from diffusers import WanPipeline

from render.errors import AmgError

from ..adapters import scaled_lora
from ..backbones.dit import t5_prompt_embeds
from ..backbones.wan import decode_latents_wan, encode_video_wan, load_wan
from ..data import to_model_range
from ..methods.amg_wan import load_wan_adapter, prepare_wan, save_wan_adapter
from .dit import AdapterFolders

__all__ = ["AMGWanPipeline", "encode_prompt_wan"]


def encode_prompt_wan(text_encoder, tokenizer, prompts: list[str], max_sequence_length: int = 512) -> torch.Tensor:
    """UMT5 embeddings ``(B, L, D)`` exactly as ``WanPipeline`` computes them (padding positions zeroed)."""
    return t5_prompt_embeds(WanPipeline, text_encoder, tokenizer, prompts, max_sequence_length)


class AMGWanPipeline(AdapterFolders, WanPipeline):
    """Wan text-to-video with AMG's avatar conditioning (patch embedding 16 -> 32 channels, LoRA).

    Build with :meth:`from_base`; ``base_fingerprint`` identifies the base transformer the adapter belongs to.
    """

    family = (load_wan, prepare_wan, load_wan_adapter, save_wan_adapter)

    @torch.no_grad()
    def __call__(self, prompt: str, avatar_video, negative_prompt: str = "", height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 lora_scale: float = 1.0, max_sequence_length: int = 512, output_type: str = "np",
                 progress: bool = True):
        """Generate a video following ``prompt`` with the motion of ``avatar_video``.

        Args:
            prompt: scene and appearance text.
            avatar_video: the rendered avatar, uint8 ``(F, H, W, 3)`` or a video path with ``F = 4n + 1``
                frames (Wan: 81 at 480x832); the output has its frame count and size unless ``height``/``width``.
            num_inference_steps, guidance_scale: as ``WanPipeline`` (guidance <= 1 disables the unconditional pass).
            generator: a CPU generator for the initial noise (the same seed gives the same video on every device).
            latents: initial noise ``(1, 16, (F - 1) / 4 + 1, H / 8, W / 8)`` instead of drawing it.
            lora_scale: strength of the LoRA (0: the base transformer plus avatar channels).
            output_type: ``"np"`` float32 ``(F, H, W, 3)`` in [0, 1], ``"uint8"``, or ``"latent"``.
        """
        if output_type not in ("np", "uint8", "latent"):
            raise AmgError(f"output_type={output_type!r}: expected 'np', 'uint8' or 'latent'")
        frames = self.avatar_frames(avatar_video, "Wan", 81)
        num_frames = frames.shape[0]
        height, width = height or frames.shape[1], width or frames.shape[2]
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        if height % multiple or width % multiple:
            raise AmgError(f"height={height}, width={width}: expected multiples of {multiple}")
        self._guidance_scale = guidance_scale
        self._attention_kwargs, self._current_timestep, self._interrupt = None, None, False
        device, dtype = self._execution_device, self.transformer.dtype

        # 1. Condition: text (and the negative text) and the avatar video's latents.
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            max_sequence_length=max_sequence_length, device=device)
        prompt_embeds = prompt_embeds.to(dtype)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.to(dtype)
        video = to_model_range(frames, height, width)[None]
        z_avatar = encode_video_wan(self.vae, video).to(device, dtype)

        # 2. Timesteps and the initial noise (the VAE's latent channels, not the widened input's).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(1, self.vae.config.z_dim, height, width, num_frames, torch.float32, device,
                                       generator, latents)
        self.scheduler.set_begin_index(0)

        # 3. Denoise: both branches see [z_t, z_avatar]; only the text differs.
        self.set_progress_bar_config(disable=not progress)
        with self.progress_bar(total=len(timesteps)) as bar, scaled_lora(self.transformer, lora_scale):
            for t in timesteps:
                self._current_timestep = t
                x = torch.cat([latents, z_avatar.to(latents.dtype)], dim=1).to(dtype)
                timestep = t.expand(latents.shape[0])
                noise_pred = self.transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=prompt_embeds,
                                              return_dict=False)[0]
                if self.do_classifier_free_guidance:
                    noise_uncond = self.transformer(hidden_states=x, timestep=timestep,
                                                    encoder_hidden_states=negative_prompt_embeds, return_dict=False)[0]
                    noise_pred = noise_uncond + guidance_scale * (noise_pred - noise_uncond)
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                bar.update()
        self._current_timestep = None
        if output_type == "latent":
            return latents

        # 4. Decode; [-1, 1] -> [0, 1] -> (F, H, W, 3).
        out = decode_latents_wan(self.vae, latents)
        out = (out[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()
        self.maybe_free_model_hooks()
        return (out * 255).round().astype(np.uint8) if output_type == "uint8" else out
