"""Denoising objectives: what the network sees, what it should output, and how each sample is weighted.

Four parameterisations share one shape contract: clean latents ``x0`` and noise of the same shape
(any layout, batch first), a per-sample noise level, and a target of ``x0``'s shape.

- epsilon (DDPM, ModelScope, AnimateDiff): ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise``, target ``noise``.
- v (Salimans & Ho): same ``x_t``, target ``sqrt(a_t) noise - sqrt(1 - a_t) x0``.
- flow matching (rectified flow, Wan, CogVideoX-style schedules): ``x_s = (1 - s) x0 + s noise``,
  target ``noise - x0``.
- EDM (Karras et al., SVD): ``x = x0 + sigma noise`` with ``log sigma ~ N(P_mean, P_std^2)``; the network
  ``F`` sees ``c_in x`` at time ``c_noise``; the denoised estimate is ``c_skip x + c_out F``; the loss
  weight is ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2``. SVD's ``EulerDiscreteScheduler`` with
  v-prediction is the special case ``sigma_data = 1`` (``c_out = -sigma / sqrt(sigma^2 + 1)``) and
  ``c_noise = log(sigma) / 4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["epsilon_target", "v_target", "flow_matching", "EdmSample", "edm_sample", "edm_denoised",
           "edm_loss", "weighted_mse", "EDM_P_MEAN", "EDM_P_STD"]

# the lognormal noise-level distribution used to fine-tune SVD (the public SVD training scripts)
EDM_P_MEAN = 0.7
EDM_P_STD = 1.6


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` (B,) viewed as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1))).to(like.device, like.dtype)


def epsilon_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The epsilon-prediction target: the noise itself (``x0`` is unused; kept for a uniform signature)."""
    return noise


def v_target(alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The v-prediction target ``sqrt(a_t) noise - sqrt(1 - a_t) x0`` for integer timesteps ``t`` (B,)."""
    a = _bcast(alphas_cumprod.to(t.device)[t], x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def flow_matching(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified-flow interpolation at ``s`` (B,) in [0, 1]: ``(x_s, target)`` with target ``noise - x0``."""
    sb = _bcast(s, x0)
    return (1 - sb) * x0 + sb * noise, noise - x0


@dataclass
class EdmSample:
    """One EDM training draw: ``sigma`` (B,), the noisy input ``x`` and the scalings for the network."""

    sigma: torch.Tensor
    x: torch.Tensor
    c_in: torch.Tensor
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_noise: torch.Tensor
    weight: torch.Tensor


def edm_sample(x0: torch.Tensor, noise: torch.Tensor, u: torch.Tensor, sigma_data: float = 1.0,
               p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD) -> EdmSample:
    """Noise ``x0`` at ``sigma = exp(p_mean + p_std u)`` for standard normal draws ``u`` (B,).

    ``c_in``, ``c_skip``, ``c_out`` and ``weight`` broadcast against ``x0``; ``c_noise`` is (B,)
    (``log(sigma) / 4``, the timestep SVD's UNet is called with).
    """
    sigma = torch.exp(p_mean + p_std * u.float()).to(x0.device)
    s = _bcast(sigma, x0)
    sd2 = sigma_data ** 2
    return EdmSample(
        sigma=sigma, x=x0 + s * noise,
        c_in=1 / (s ** 2 + sd2).sqrt(),
        c_skip=sd2 / (s ** 2 + sd2),
        c_out=-s * sigma_data / (s ** 2 + sd2).sqrt(),
        c_noise=sigma.log() / 4,
        weight=(s ** 2 + sd2) / (s * sigma_data) ** 2,
    )


def edm_denoised(sample: EdmSample, model_output: torch.Tensor) -> torch.Tensor:
    """The EDM estimate of ``x0``: ``c_skip x + c_out F``."""
    return sample.c_skip * sample.x + sample.c_out * model_output


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``mean(weight * (pred - target)^2)`` in float32 (weights broadcast)."""
    return (torch.as_tensor(weight, dtype=torch.float32, device=pred.device)
            * (pred.float() - target.float()) ** 2).mean()


def edm_loss(sample: EdmSample, model_output: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """EDM's weighted denoising loss ``mean(weight * (D(x) - x0)^2)``."""
    return weighted_mse(edm_denoised(sample, model_output), x0, sample.weight.float())
