"""Trajectory images of the 3D-aware trajectory thesis / PoseTraj, and its region-aware track sampler.

Reference: PoseTraj's public inference script (``scripts/run_inference_vipseg_json_repro.py``): for each
step ``i`` a black image gets, per track in order, ``cv2.line(p_i, p_{i+1}, red, 3)`` then a filled
``cv2.circle(p_{i+1}, 3, green)``, points truncated to int; the ``F-1`` step images are followed by one
black frame (``padding_black``, also in ``utils/dataset.py``), so the sequence has the clip's length.
The thesis (section 3, "Trajectory Encoding") describes the same red directional segments and green end
circles. The region-aware sampler is described in the thesis only (1-5 points drawn inside the mapped
box, each drawing the object's trajectory trend); its code is not public.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import AmgError

__all__ = ["RED", "GREEN", "LINE_THICKNESS", "END_RADIUS", "trajectory_frames", "region_tracks"]

RED = (255, 0, 0)    # RGB; the reference draws (0, 0, 255) in BGR and converts to RGB
GREEN = (0, 255, 0)
LINE_THICKNESS = 3
END_RADIUS = 3


def trajectory_frames(tracks, height: int, width: int) -> np.ndarray:
    """Trajectory images: ``uint8 (F,H,W,3)`` RGB.

    Frame ``i < F-1`` shows each track's step ``i -> i+1`` as a red segment (thickness 3, 8-connected)
    and a filled green disc of radius 3 at ``p_{i+1}``, tracks drawn in order (a later track's segment
    covers an earlier disc); the last frame is black. Coordinates are truncated toward zero as the
    reference's ``int(...)``; points outside the image are clipped by OpenCV.

    Args:
        tracks: ``(T,F,2)`` per-frame ``(x, y)`` pixels (``(F,2)`` for one track).
    """
    t = np.asarray(tracks, dtype=np.float64)
    if t.ndim == 2 and t.shape[-1] == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[-1] != 2 or t.shape[1] < 1:
        raise AmgError(f"trajectory_frames: expected tracks (T,F,2) with F >= 1, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.abs(t).max(initial=0) > 2 ** 30:
        raise AmgError("trajectory_frames: track coordinates must be finite and within +-2^30 pixels")
    H, W = int(height), int(width)
    if H < 1 or W < 1:
        raise AmgError(f"trajectory_frames: image size must be positive, got {height}x{width}")
    T, F, _ = t.shape
    p = np.trunc(t).astype(np.int64)
    out = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F - 1):
        img = out[i]
        for k in range(T):
            a, b = tuple(int(v) for v in p[k, i]), tuple(int(v) for v in p[k, i + 1])
            cv2.line(img, a, b, RED, LINE_THICKNESS)
            cv2.circle(img, b, END_RADIUS, GREEN, -1)
    return out


def region_tracks(corners2d, trajectory=None, num_points: int | None = None, seed: int = 0,
                  max_points: int = 5) -> np.ndarray:
    """Region-aware sampler: ``(n,F,2)`` tracks of points inside the object's projected box.

    ``n`` is drawn uniformly from ``1..max_points`` (thesis: 1-5) unless given; each start point is
    uniform inside the axis-aligned rectangle spanned by the first frame's projected corners, and
    follows the object's trajectory trend: ``track[f] = start + trajectory[f] - trajectory[0]``.

    Args:
        corners2d: ``(F,8,2)`` projected box corners of one object (or ``(8,2)`` for the first frame).
        trajectory: ``(F,2)`` the object's driving trajectory in pixels; None uses the mean of the
            projected corners per frame (needs ``(F,8,2)`` corners).
        seed: numpy ``default_rng`` seed.
    """
    c = np.asarray(corners2d, dtype=np.float64)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[1:] != (8, 2):
        raise AmgError(f"region_tracks: expected corners (F,8,2), got shape {c.shape}")
    if not np.all(np.isfinite(c[0])):
        raise AmgError("region_tracks: the first frame's corners must be finite (box in front of the camera)")
    if trajectory is None:
        traj = c.mean(axis=1)
    else:
        traj = np.asarray(trajectory, dtype=np.float64)
        if traj.ndim != 2 or traj.shape[1] != 2 or len(traj) < 1:
            raise AmgError(f"region_tracks: expected trajectory (F,2), got shape {traj.shape}")
    if not np.all(np.isfinite(traj)):
        raise AmgError("region_tracks: trajectory must be finite")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, max_points + 1)) if num_points is None else int(num_points)
    if n < 1:
        raise AmgError(f"region_tracks: num_points must be >= 1, got {num_points}")
    lo, hi = c[0].min(axis=0), c[0].max(axis=0)
    starts = lo + rng.random((n, 2)) * (hi - lo)
    return starts[:, None, :] + (traj - traj[0])[None]
