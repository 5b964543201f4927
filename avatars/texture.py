"""Colour an avatar's Gaussians from footage of the person: each Gaussian takes the colour of the pixels it
lands on in the frames where it is visible and unoccluded.

The avatar is posed with the person's fitted motion and projected with the clip's cameras. A Gaussian of
person ``instance_id`` is *seen* in frame ``f`` when its centre projects inside the image, in front of the
camera, onto a pixel where

- the render of the fitted scene shows this person (``ids == instance_id``: nobody else and no other part of
  the same body is in front there),
- the rendered depth is within ``depth_tolerance`` of the centre's depth (the centre is on the visible
  surface, not on the far side of a limb whose front covers the pixel), and
- when the footage's own person mask is given, the real person covers it (a fitted body that spills over the
  real silhouette would otherwise paint the background onto the avatar).

Each sighting is weighted by how squarely the surface faces the camera (the cosine between the Gaussian's
normal and the ray back to the camera; grazing views smear neighbouring colours and are dropped below
``min_cosine``). A seen Gaussian's colour is the weighted mean of its sightings; Gaussians never seen (the
back of a person filmed from the front) keep the colour they had. This goes beyond AMG (whose avatars are
coloured from the caption) so that studio users can re-render the filmed person.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from render.camera import CameraPath
from render.errors import AmgError
from render.gaussian import sh_to_rgb
from render.rotations import quaternion_to_matrix

__all__ = ["FrameColours", "colours_from_frames", "colour_from_frames"]


@dataclass
class FrameColours:
    """What :func:`colours_from_frames` found.

    Attributes:
        colors: ``(N,3)`` RGB in [0,1]: the footage's colour where seen, the avatar's own elsewhere.
        seen: ``(N,)`` bool, whether each Gaussian was seen in at least one frame.
        views: ``(N,)`` int, in how many frames each Gaussian was seen.
    """

    colors: torch.Tensor
    seen: torch.Tensor
    views: torch.Tensor

    @property
    def coverage(self) -> float:
        """Share of the Gaussians that were seen."""
        return float(self.seen.float().mean()) if len(self.seen) else 0.0


def _rgb(colors: torch.Tensor) -> torch.Tensor:
    """``(N,3)`` RGB of an avatar's colours (RGB, or SH whose DC term gives the view-independent colour)."""
    return sh_to_rgb(colors[:, 0]) if colors.dim() == 3 else colors


def colours_from_frames(avatar, motion, cameras: CameraPath, frames: np.ndarray, depth: np.ndarray, ids: np.ndarray,
                        instance_id: int = 1, person_mask: np.ndarray | None = None, depth_tolerance: float = 0.03,
                        min_cosine: float = 0.2) -> FrameColours:
    """Colours of ``avatar``'s Gaussians read from ``frames`` where each is visible and unoccluded.

    Args:
        avatar: a :class:`avatars.gaussians.GaussianAvatar` of ``N`` Gaussians.
        motion: its :class:`avatars.motion.Motion`, ``F`` frames.
        cameras: ``F`` cameras (OpenCV convention), the footage's.
        frames: uint8 ``(F,H,W,3)`` footage (or float in [0,1]).
        depth: ``(F,H,W)`` metric camera z of the fitted scene's render (0 where empty).
        ids: ``(F,H,W)`` int instance ids of that render (person ``i`` is ``i + 1``, 0 background).
        instance_id: this person's id in ``ids``.
        person_mask: optional ``(F,H,W)`` bool, the real person's pixels in the footage.
        depth_tolerance: metres a centre may lie behind the rendered surface and still count as on it.
        min_cosine: sightings at a steeper angle than ``arccos(min_cosine)`` are ignored.
    Returns:
        :class:`FrameColours` with ``(N,3)`` colours, which Gaussians were seen and how often.
    """
    frames = np.asarray(frames)
    F = len(cameras)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] != F:
        raise AmgError(f"colours_from_frames: frames {frames.shape}: expected ({F}, H, W, 3), one per camera")
    H, W = frames.shape[1:3]
    for name, arr in (("depth", depth), ("ids", ids), ("person_mask", person_mask)):
        if arr is not None and np.shape(arr) != (F, H, W):
            raise AmgError(f"colours_from_frames: {name} {np.shape(arr)}: expected ({F}, {H}, {W})")
    if len(motion) != F:
        raise AmgError(f"colours_from_frames: motion has {len(motion)} frames, the cameras {F}")
    pixels = torch.from_numpy(frames.astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0))
    depth_t, ids_t = torch.as_tensor(np.asarray(depth), dtype=torch.float32), torch.as_tensor(np.asarray(ids))
    real = None if person_mask is None else torch.as_tensor(np.asarray(person_mask, dtype=bool))

    N = len(avatar)
    total, weight = torch.zeros(N, 3, dtype=torch.float64), torch.zeros(N, dtype=torch.float64)
    views = torch.zeros(N, dtype=torch.long)
    with torch.no_grad():
        posed = avatar.pose_motion(motion).frames
        for f, cam in enumerate(cameras):
            g = posed[f]
            uv, z = cam.project(g.means)
            col, row = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()  # pixel centres at +0.5
            ok = (z > 1e-6) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
            c, r = col.clamp(0, W - 1), row.clamp(0, H - 1)
            ok &= ids_t[f, r, c] == int(instance_id)
            ok &= (z - depth_t[f, r, c]).abs() <= depth_tolerance
            if real is not None:
                ok &= real[f, r, c]
            # the splat's normal (its local z axis) against the ray back to the camera
            normal = quaternion_to_matrix(g.quats)[:, :, 2]
            to_cam = torch.nn.functional.normalize(cam.center.to(g.means.dtype) - g.means, dim=-1)
            cosine = (normal * to_cam).sum(-1).abs()
            ok &= cosine >= min_cosine
            w = torch.where(ok, cosine, torch.zeros_like(cosine)).double()
            total += w[:, None] * pixels[f, r, c].double()
            weight += w
            views += ok.long()
    seen = weight > 0
    colors = _rgb(avatar.colors).clone().float()
    colors[seen] = (total[seen] / weight[seen, None]).float()
    return FrameColours(colors, seen, views)


def colour_from_frames(avatar, motion, cameras: CameraPath, frames: np.ndarray, depth: np.ndarray, ids: np.ndarray,
                       **kwargs):
    """``avatar`` with its Gaussians coloured from ``frames`` (:func:`colours_from_frames`; same arguments),
    and the :class:`FrameColours` report. The avatar's geometry and binding are unchanged; SH colours become
    plain RGB."""
    found = colours_from_frames(avatar, motion, cameras, frames, depth, ids, **kwargs)
    return replace(avatar, colors=found.colors), found
