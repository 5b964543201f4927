"""Camera path generators: static, orbit, zoom, dolly, pan, follow, keyframed splines.

:class:`PathGenerators` holds them as classmethods of :class:`~render.camera.CameraPath` (``CameraPath.orbit``
...), the names the ``camera`` config group targets.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..defaults import AMG_FPS, AMG_SIZE
from ..errors import AmgError
from ..rotations import matrix_to_quaternion, quaternion_to_matrix, slerp, standardize_quaternion
from .core import DEFAULT_EYE, DEFAULT_FOV_DEG, DEFAULT_TARGET, Camera, _t, default_camera

__all__ = ["PathGenerators", "static_camera", "follow_framing"]


def _ease(u: np.ndarray, easing: str) -> np.ndarray:
    if easing == "linear":
        return u
    if easing in ("ease", "ease_in_out", "smooth"):
        return u * u * (3 - 2 * u)
    if easing == "ease_in":
        return u * u
    if easing == "ease_out":
        return 1 - (1 - u) ** 2
    raise AmgError(f"easing {easing!r}: expected one of linear, ease_in_out, ease_in, ease_out")


class PathGenerators:
    """Classmethods that build a :class:`~render.camera.CameraPath` (mixed into it)."""

    @classmethod
    def static(cls, camera: Camera, num_frames: int = 16, fps: float = AMG_FPS) -> "CameraPath":
        """``num_frames`` copies of one camera."""
        _check_frames(num_frames)
        return cls.from_cameras([camera] * num_frames, fps)

    @classmethod
    def orbit(cls, num_frames: int = 16, degrees: float = 360.0, radius: float = 3.0,
              elevation_deg: float = 10.0, target: Sequence[float] = (0.0, 0.9, 0.0),
              start_deg: float = 0.0, fov_deg: float = 50.0, width: int = AMG_SIZE, height: int = AMG_SIZE,
              fps: float = AMG_FPS) -> "CameraPath":
        """Circle ``degrees`` around ``target`` at ``radius`` metres and ``elevation_deg`` above it.

        Azimuth 0 puts the camera on the +Z side of the target, in front of a body in rest pose;
        positive degrees turn counter-clockwise seen from above. The last frame is at ``start + degrees``
        (a full 360-degree orbit therefore repeats its first view; pass 360*(F-1)/F to avoid that).
        """
        _check_frames(num_frames)
        az = np.radians(start_deg + degrees * np.linspace(0, 1, num_frames))
        el = math.radians(elevation_deg)
        tgt = np.asarray(target, dtype=np.float64)
        cams = []
        for a in az:
            eye = tgt + radius * np.array([math.sin(a) * math.cos(el), math.sin(el), math.cos(a) * math.cos(el)])
            cams.append(Camera.look_at(eye, tgt, fov_deg=fov_deg, width=width, height=height))
        return cls.from_cameras(cams, fps)

    @classmethod
    def zoom(cls, num_frames: int = 16, factor: float = 2.0, camera: Camera | None = None,
             easing: str = "linear", fps: float = AMG_FPS, **look_at) -> "CameraPath":
        """Change the focal length from ``f`` to ``factor * f`` (factor > 1 zooms in, < 1 out).

        ``camera`` defaults to :func:`~render.camera.default_camera` ``(**look_at)``.
        """
        _check_frames(num_frames)
        cam = camera or default_camera(**look_at)
        s = 1 + (factor - 1) * _ease(np.linspace(0, 1, num_frames), easing)
        K = cam.K.repeat(num_frames, 1, 1)
        K[:, 0, 0] *= torch.as_tensor(s)
        K[:, 1, 1] *= torch.as_tensor(s)
        return cls(K, cam.R.repeat(num_frames, 1, 1), cam.t.repeat(num_frames, 1), cam.width, cam.height, fps)

    @classmethod
    def dolly(cls, num_frames: int = 16, distance: float = 1.5, camera: Camera | None = None,
              target: Sequence[float] = DEFAULT_TARGET, easing: str = "linear", fps: float = AMG_FPS,
              **look_at) -> "CameraPath":
        """Move the camera ``distance`` metres toward ``target`` along its line of sight (negative: away)."""
        _check_frames(num_frames)
        cam = camera or default_camera(target=target, **look_at)
        c0 = cam.center
        d = _t(target) - c0
        d = d / d.norm()
        s = torch.as_tensor(distance * _ease(np.linspace(0, 1, num_frames), easing))
        centers = c0 + s[:, None] * d
        R = cam.R.repeat(num_frames, 1, 1)
        t = -(R @ centers[..., None])[..., 0]
        return cls(cam.K.repeat(num_frames, 1, 1), R, t, cam.width, cam.height, fps)

    @classmethod
    def pan(cls, num_frames: int = 16, degrees: float = 30.0, camera: Camera | None = None,
            up: Sequence[float] = (0.0, 1.0, 0.0), easing: str = "linear", fps: float = AMG_FPS,
            **look_at) -> "CameraPath":
        """Turn the camera in place by ``degrees`` about the world ``up`` axis (positive: to the left)."""
        _check_frames(num_frames)
        cam = camera or default_camera(**look_at)
        from ..rotations import axis_angle_to_matrix

        ang = torch.as_tensor(np.radians(degrees) * _ease(np.linspace(0, 1, num_frames), easing))
        axis = _t(up) / _t(up).norm()
        turn = axis_angle_to_matrix(ang[:, None] * axis)  # world rotation of the camera body
        R = cam.R @ turn.transpose(-1, -2)
        t = -(R @ cam.center[:, None])[..., 0]
        return cls(cam.K.repeat(num_frames, 1, 1), R, t, cam.width, cam.height, fps)

    @classmethod
    def follow(cls, targets, offset: Sequence[float] = (0.0, 0.6, 3.5), smoothing: float = 0.0,
               fov_deg: float = 50.0, width: int = AMG_SIZE, height: int = AMG_SIZE, fps: float = AMG_FPS) -> "CameraPath":
        """Keep a moving target in frame: the camera sits at ``target + offset`` and looks at the target.

        Args:
            targets: ``(F,3)`` world points (e.g. a body's pelvis per frame).
            offset: camera position relative to the target, metres.
            smoothing: 0 follows exactly; towards 1 the camera lags (exponential smoothing of its position).
        """
        tg = _t(targets).reshape(-1, 3)
        _check_frames(len(tg))
        if not torch.isfinite(tg).all():
            raise AmgError("follow: expected finite target points, got NaN or inf")
        eyes = tg + _t(offset)
        if smoothing > 0:
            for i in range(1, len(eyes)):
                eyes[i] = smoothing * eyes[i - 1] + (1 - smoothing) * eyes[i]
        cams = [Camera.look_at(e, g, fov_deg=fov_deg, width=width, height=height) for e, g in zip(eyes, tg)]
        return cls.from_cameras(cams, fps)

    @classmethod
    def from_keyframes(cls, keyframes: Sequence[Camera], num_frames: int, times: Sequence[float] | None = None,
                       rotation: str = "spline", easing: str = "linear", fps: float = AMG_FPS) -> "CameraPath":
        """A smooth path through keyframe cameras.

        Positions and focal lengths follow a cubic spline through the keyframes (C2); rotations follow a
        cubic spline of sign-aligned unit quaternions, renormalised (C2, ``rotation="spline"``) or
        piecewise slerp (``rotation="slerp"``, C0; with ``easing="ease_in_out"`` C1 with stops at keys).

        Args:
            keyframes: >= 1 cameras sharing an image size.
            num_frames: frames of the output path.
            times: keyframe times in [0, 1], increasing; evenly spaced when omitted.
            easing: a time remapping applied to the whole path (``linear``, ``ease_in_out``...).
        """
        from scipy.interpolate import CubicSpline

        keys = list(keyframes)
        _check_frames(num_frames)
        if not keys:
            raise AmgError("keyframes: expected at least one keyframe, got none")
        if len(keys) == 1:
            return cls.static(keys[0], num_frames, fps)
        tk = np.linspace(0, 1, len(keys)) if times is None else np.asarray(times, dtype=np.float64)
        if tk.shape != (len(keys),) or np.any(np.diff(tk) <= 0):
            raise AmgError(f"keyframes: expected {len(keys)} strictly increasing times, got {list(tk)}")
        u = tk[0] + (tk[-1] - tk[0]) * _ease(np.linspace(0, 1, num_frames), easing)
        bc = "natural" if len(keys) > 2 else "not-a-knot"
        centers = np.stack([k.center.numpy() for k in keys])
        Ks = np.stack([k.K.numpy() for k in keys]).reshape(len(keys), 9)
        pos = torch.as_tensor(CubicSpline(tk, centers, bc_type=bc)(u))
        K = torch.as_tensor(CubicSpline(tk, Ks, bc_type=bc)(u)).reshape(num_frames, 3, 3)
        q = matrix_to_quaternion(torch.stack([k.R.T for k in keys]))  # camera-to-world rotations
        for i in range(1, len(q)):  # keep consecutive keys on the same hemisphere
            if (q[i] * q[i - 1]).sum() < 0:
                q[i] = -q[i]
        if rotation == "spline":
            qs = torch.as_tensor(CubicSpline(tk, q.numpy(), bc_type=bc)(u))
            qs = standardize_quaternion(qs / qs.norm(dim=-1, keepdim=True))
        elif rotation == "slerp":
            seg = np.clip(np.searchsorted(tk, u, side="right") - 1, 0, len(keys) - 2)
            w = torch.as_tensor((u - tk[seg]) / (tk[seg + 1] - tk[seg]))
            qs = slerp(q[seg], q[seg + 1], w)
        else:
            raise AmgError(f"keyframes: rotation {rotation!r}: expected 'spline' or 'slerp'")
        R = quaternion_to_matrix(qs).transpose(-1, -2)
        t = -(R @ pos[..., None])[..., 0]
        return cls(K, R, t, keys[0].width, keys[0].height, fps)



_default_camera = default_camera  # its former private name


def _check_frames(n: int) -> None:
    if int(n) < 1:
        raise AmgError(f"num_frames: expected >= 1, got {n}")


def static_camera(num_frames: int = 16, eye: Sequence[float] = DEFAULT_EYE, target: Sequence[float] = DEFAULT_TARGET,
                  fov_deg: float = DEFAULT_FOV_DEG, width: int = AMG_SIZE, height: int = AMG_SIZE, fps: float = AMG_FPS):
    """A camera at ``eye`` (metres) looking at ``target`` that does not move: a
    :class:`~render.camera.CameraPath` of ``num_frames`` copies (the ``camera=static`` config).

    ``fov_deg`` is the vertical field of view; ``width x height`` the image size in pixels.
    """
    from .path import CameraPath

    cam = Camera.look_at(eye, target, fov_deg=fov_deg, width=width, height=height)
    return CameraPath.static(cam, num_frames, fps)


def follow_framing(points, offset: Sequence[float], fov_deg: float, width: int, height: int,
                   margin: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and camera offset for :meth:`CameraPath.follow` that keep a whole body in frame.

    Args:
        points: ``(F, N, 3)`` world points of the people per frame (body vertices or joints), metres.
        offset: the wanted camera offset from the target; its direction is kept.
        fov_deg, width, height: the camera's vertical field of view and image size.
        margin: how much taller than the people the view is.
    Returns:
        ``targets (F, 3)``: the people's horizontal centre per frame at their mid-height over the clip
        (floor to top of head, not an assumed pelvis height); ``offset (3,)``: ``offset`` pushed back
        where needed so that the clip's tallest extent, times ``margin``, fits the view.
    """
    P = _t(points)
    if P.dim() != 3 or P.shape[-1] != 3 or P.shape[1] == 0:
        raise AmgError(f"follow: expected (F, N, 3) points of the people, got shape {tuple(P.shape)}")
    if not torch.isfinite(P).all():
        raise AmgError("follow: expected finite points of the people, got NaN or inf")
    lo, hi = P.amin(1), P.amax(1)
    centre = (lo + hi) / 2
    mid_y = float((lo[:, 1].min() + hi[:, 1].max()) / 2)
    targets = torch.stack([centre[:, 0], torch.full_like(centre[:, 0], mid_y), centre[:, 2]], -1)
    tall = float((hi[:, 1].max() - lo[:, 1].min()) * margin)
    wide = float(((hi - lo)[:, [0, 2]].norm(dim=-1)).max() * margin) * height / width
    need = max(tall, wide) / 2 / math.tan(math.radians(fov_deg) / 2)
    off = _t(offset).reshape(3)
    dist = float(off.norm())
    if dist < 1e-9:
        raise AmgError("follow: offset must not be zero (the camera would sit on its target)")
    return targets, off * max(1.0, need / dist)
