"""The slow, obvious Gaussian rasterizer that ``render.gaussian``'s fast paths are checked against.

Projection, covariances and spherical harmonics come from gsplat's own plain-PyTorch twins
(``gsplat/cuda/_torch_impl.py``); compositing visits every pixel for every Gaussian, one Gaussian at a
time in camera-z order, exactly as gsplat's CUDA kernel does per pixel. Differentiable.
"""

from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from render.camera import Camera
from render.gaussian import Gaussians, RenderOutput


def rasterize_dense(g: Gaussians, camera: Camera, background=(0.0, 0.0, 0.0)) -> RenderOutput:
    W, H = camera.width, camera.height
    dt = g.means.dtype
    covars, _ = _quat_scale_to_covar_preci(g.quats, g.scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        g.means, covars, camera.viewmat.to(dt)[None], camera.K.to(dt)[None], W, H, eps2d=0.3, near_plane=0.01)
    radii, means2d, depths, conics = radii[0], means2d[0], depths[0], conics[0]
    if g.colors.dim() == 2:
        colors = g.colors
    else:
        deg = int(g.colors.shape[1] ** 0.5) - 1
        dirs = g.means - camera.center.to(dt)
        colors = torch.clamp_min(_spherical_harmonics(deg, dirs, g.colors) + 0.5, 0.0)
    inst = g.instance_ids()
    id_values = torch.unique(inst)

    valid = (radii > 0).all(dim=-1)
    order = torch.nonzero(valid).squeeze(1)
    order = order[torch.argsort(depths.detach()[order], stable=True)]

    jj, ii = torch.meshgrid(torch.arange(W, dtype=dt) + 0.5, torch.arange(H, dtype=dt) + 0.5, indexing="xy")
    T = torch.ones(H, W, dtype=dt)
    rgb = torch.zeros(H, W, 3, dtype=dt)
    zsum = torch.zeros(H, W, dtype=dt)
    votes = torch.zeros(len(id_values), H, W, dtype=dt)
    done = torch.zeros(H, W, dtype=torch.bool)
    for k in order.tolist():
        dx = means2d[k, 0] - jj
        dy = means2d[k, 1] - ii
        a, b, c = conics[k]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(g.opacities[k] * torch.exp(-sigma), 0.999)
        ok = (sigma >= 0) & (alpha >= 1.0 / 255) & ~done
        next_T = T * (1 - alpha)
        stop = ok & (next_T <= 1e-4)
        done = done | stop
        ok = ok & ~stop
        w = torch.where(ok, alpha * T, torch.zeros_like(alpha))
        rgb = rgb + w[..., None] * colors[k]
        zsum = zsum + w * depths[k]
        slot = int(torch.searchsorted(id_values, inst[k]))
        votes = votes.index_add(0, torch.tensor([slot]), w.detach()[None])
        T = torch.where(ok, next_T, T)
    alpha_img = 1 - T
    bg = torch.as_tensor(background, dtype=dt)
    rgb = (rgb + T[..., None] * bg).clamp(0, 1)
    depth = zsum / alpha_img.clamp_min(1e-10)
    ids = torch.where(alpha_img > 0.5, id_values[votes.argmax(dim=0)], torch.zeros(H, W, dtype=torch.long))
    return RenderOutput(rgb, depth, alpha_img, ids)
