"""Guidance formulas for the denoising loop, as pure functions of noise predictions.

All inputs are noise predictions of the same shape (e.g. ``(B, 4, F, h, w)``); the outputs have that
shape too.
"""

from __future__ import annotations

import torch

__all__ = ["classifier_free", "camera_free"]


def classifier_free(eps_uncond: torch.Tensor, eps_text: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``eps_uncond + scale * (eps_text - eps_uncond)``.

    In AMG both predictions see the avatar latents; only the text differs (empty prompt for
    ``eps_uncond``). ``scale`` 1 gives ``eps_text``, 0 gives ``eps_uncond``; AMG samples with 3.0.
    """
    return eps_uncond + scale * (eps_text - eps_uncond)


def camera_free(eps0_uncond: torch.Tensor, eps0_text: torch.Tensor, eps_lora_text: torch.Tensor,
                cfg_scale: float, lora_guidance_scale: float) -> torch.Tensor:
    """Image Conductor's camera-free guidance with the AMG LoRA as the guided adapter.

    ``eps = eps0(x, 0) + l_cfg (eps0(x, c) - eps0(x, 0)) + l_lora (eps_lora(x, c) - eps0(x, c))`` where
    ``eps0`` is the UNet with LoRA disabled and ``eps_lora`` with it enabled. ``lora_guidance_scale`` 0 is
    plain classifier-free guidance of the base; ``cfg_scale`` 1 with ``lora_guidance_scale`` 1 is ``eps_lora_text``.
    """
    return (eps0_uncond + cfg_scale * (eps0_text - eps0_uncond)
            + lora_guidance_scale * (eps_lora_text - eps0_text))
