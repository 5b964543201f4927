"""Similarity alignment of point sets and the joint errors measured after it (PA-MPJPE)."""

from __future__ import annotations

import torch

__all__ = ["procrustes", "mpjpe"]


def procrustes(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None,
               scale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted similarity alignment of point sets (no reflection).

    Args:
        src, dst: ``(B,N,3)``; weights: ``(B,N)`` non-negative (default ones).
    Returns:
        ``s (B,)``, ``R (B,3,3)``, ``t (B,3)`` minimising ``sum w |s R src + t - dst|^2``.
    """
    if weights is None:
        weights = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    w = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    mu_s = (w[..., None] * src).sum(1)
    mu_d = (w[..., None] * dst).sum(1)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, xd, xs)
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.ones_like(S)
    D[:, -1] = d
    R = U @ torch.diag_embed(D) @ Vh
    if scale:
        var = (w * (xs ** 2).sum(-1)).sum(-1).clamp_min(1e-12)
        s = (S * D).sum(-1) / var
    else:
        s = torch.ones(src.shape[0], dtype=src.dtype, device=src.device)
    t = mu_d - s[:, None] * (mu_s[:, None] @ R.transpose(-1, -2))[:, 0]
    return s, R, t


def mpjpe(pred: torch.Tensor, target: torch.Tensor, align: bool = True) -> torch.Tensor:
    """Mean per-joint position error ``(B,)`` in the units of the inputs ``(B,J,3)``.

    With ``align`` the prediction is first similarity-aligned to the target per frame (PA-MPJPE).
    """
    pred, target = pred.double(), target.double()
    if align:
        s, R, t = procrustes(pred, target)
        pred = s[:, None, None] * pred @ R.transpose(-1, -2) + t[:, None]
    return (pred - target).norm(dim=-1).mean(-1)
