"""The camera: a pinhole in the OpenCV convention, its projections, and conversions to other conventions.

See :mod:`render.camera` for the convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..defaults import AMG_SIZE
from ..errors import AmgError

__all__ = ["Camera", "intrinsics_from_fov", "look_at_rotation", "default_camera", "OPENCV_TO_OPENGL",
           "DEFAULT_EYE", "DEFAULT_TARGET", "DEFAULT_FOV_DEG"]

#: The studio camera the path generators and the ``camera`` configs start from: 4 m in front of a body in
#: rest pose (which faces +Z), 1 m up, looking at its middle, 50 degrees vertical field of view.
DEFAULT_EYE = (0.0, 1.0, 4.0)
DEFAULT_TARGET = (0.0, 0.9, 0.0)
DEFAULT_FOV_DEG = 50.0

#: Flips y and z: converts between OpenCV (y down, z forward) and OpenGL (y up, z backward) camera axes.
OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))

_DTYPE = torch.float64  # cameras are small; double precision keeps round trips at 1e-9


def _t(x, dtype=_DTYPE) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)


def _as_tensor(x, what: str, size: int | None = None) -> torch.Tensor:
    """``x`` (a tensor, numpy array or nested list) as a floating tensor, its last axis of ``size``
    entries when given; float tensors keep their dtype (and autograd), anything else becomes float64."""
    if isinstance(x, torch.Tensor):
        t = x if x.is_floating_point() else x.to(_DTYPE)
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise AmgError(f"{what}: expected an array of numbers, got {type(x).__name__}") from None
    if size is not None and (t.dim() == 0 or t.shape[-1] != size):
        raise AmgError(f"{what}: expected an array of shape (..., {size}), got shape {tuple(t.shape)}")
    return t


def _perspective(pc: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels ``(..., N, 2)`` of camera-space points ``pc (..., N, 3)`` through ``K (..., 3, 3)``; points at
    z = 0 are pushed to 1e-12 m so the division stays finite (callers mask depth <= 0)."""
    z = pc[..., 2]
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    return (pc[..., :2] / zs[..., None]) @ K[..., :2, :2].transpose(-1, -2) + K[..., None, :2, 2]


def intrinsics_from_fov(fov_deg: float, width: int, height: int, side: str = "vertical") -> torch.Tensor:
    """Centred pinhole ``K (3,3)`` with square pixels and field of view ``fov_deg`` (degrees) across
    ``side``: ``"vertical"`` (the height; three.js, nerfstudio and our look-at cameras), ``"horizontal"``
    (the width) or ``"long"`` (the longer side; the convention for uncalibrated video)."""
    sides = {"vertical": height, "horizontal": width, "long": max(width, height)}
    if side not in sides:
        raise AmgError(f"intrinsics_from_fov: side {side!r}: expected vertical, horizontal or long")
    f = 0.5 * sides[side] / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=_DTYPE)


def look_at_rotation(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """World-to-camera rotations ``(..., 3, 3)`` for cameras at ``eye (...,3)`` looking at ``target``.

    Rows of the result are the camera's x (right), y (down) and z (forward) axes in world coordinates.
    """
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x = torch.cross(z, up.expand_as(z), dim=-1)
    bad = x.norm(dim=-1, keepdim=True) < 1e-9
    if bad.any():  # looking straight along `up`: pick any perpendicular right vector
        alt = torch.cross(z, torch.tensor([0.0, 0.0, 1.0], dtype=z.dtype).expand_as(z), dim=-1)
        x = torch.where(bad, alt, x)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-2)


@dataclass
class Camera:
    """A pinhole camera in the OpenCV convention.

    Attributes:
        K: ``(3,3)`` intrinsics in pixels.
        R: ``(3,3)`` world-to-camera rotation.
        t: ``(3,)`` world-to-camera translation in metres.
        width, height: image size in pixels.
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K, self.R, self.t = _t(self.K), _t(self.R), _t(self.t).reshape(3)
        self.width, self.height = int(self.width), int(self.height)
        if self.K.shape != (3, 3) or self.R.shape != (3, 3):
            raise AmgError(f"camera: expected K and R of shape (3,3), got {tuple(self.K.shape)} and {tuple(self.R.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise AmgError(f"camera: expected a positive image size, got {self.width}x{self.height}")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def look_at(cls, eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0),
                up: Sequence[float] = (0.0, 1.0, 0.0), fov_deg: float = 50.0,
                width: int = AMG_SIZE, height: int = AMG_SIZE) -> "Camera":
        """A centred camera at ``eye`` (metres) looking at ``target`` with ``up`` towards image top.

        ``fov_deg`` is the vertical field of view in degrees.
        """
        eye_t, target_t, up_t = _t(eye), _t(target), _t(up)
        R = look_at_rotation(eye_t, target_t, up_t)
        return cls(intrinsics_from_fov(fov_deg, width, height), R, -R @ eye_t, width, height)

    @classmethod
    def from_opengl(cls, c2w: torch.Tensor, K: torch.Tensor | None = None, fov_deg: float | None = None,
                    width: int = AMG_SIZE, height: int = AMG_SIZE) -> "Camera":
        """From a 4x4 OpenGL camera-to-world matrix (x right, y up, z back) and ``K`` or ``fov_deg``."""
        c2w = _t(c2w)
        if K is None:
            K = intrinsics_from_fov(50.0 if fov_deg is None else fov_deg, width, height)
        rot_cv = c2w[:3, :3] @ OPENCV_TO_OPENGL  # camera-to-world rotation of the OpenCV axes
        R = rot_cv.T
        return cls(K, R, -R @ c2w[:3, 3], width, height)

    # ---- properties ---------------------------------------------------------------------------
    @property
    def center(self) -> torch.Tensor:
        """Camera position in world coordinates ``(3,)``."""
        return -self.R.T @ self.t

    @property
    def fov_deg(self) -> float:
        """Vertical field of view in degrees."""
        return math.degrees(2 * math.atan(0.5 * self.height / float(self.K[1, 1])))

    @property
    def viewmat(self) -> torch.Tensor:
        """4x4 world-to-camera matrix (OpenCV), the ``viewmats`` of gsplat."""
        m = torch.eye(4, dtype=self.R.dtype)
        m[:3, :3], m[:3, 3] = self.R, self.t
        return m

    def to_opengl(self) -> torch.Tensor:
        """4x4 camera-to-world matrix in the OpenGL convention (pyrender, nerfstudio, most viewers)."""
        m = torch.eye(4, dtype=self.R.dtype)
        m[:3, :3] = self.R.T @ OPENCV_TO_OPENGL
        m[:3, 3] = self.center
        return m

    # ---- geometry -----------------------------------------------------------------------------
    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """Points ``(..., 3)`` in world metres (a tensor, numpy array or list) -> camera coordinates
        ``(..., 3)``, a tensor of the points' float dtype (float64 for arrays and lists)."""
        points = _as_tensor(points, "world_to_camera: points", 3)
        R, t = self.R.to(points.dtype), self.t.to(points.dtype)
        return points @ R.T + t

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points ``(N,3)`` -> pixels ``(N,2)`` (x right, y down) and depth ``(N,)``.

        Depth is the camera-space z in metres; points behind the camera get depth <= 0 and meaningless
        pixels, which the caller masks. ``points`` may be a tensor, numpy array or list; results are tensors.
        """
        points = _as_tensor(points, "project: points", 3)
        pc = self.world_to_camera(points)
        z = pc[..., 2]
        K = self.K.to(points.dtype)
        uv = _perspective(pc, K)
        return uv, z

    def unproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixels ``(N,2)`` with camera-space depth ``(N,)`` in metres -> world points ``(N,3)``.

        Either may be a tensor, numpy array or list; the result is a tensor of ``uv``'s float dtype.
        """
        uv = _as_tensor(uv, "unproject: uv", 2)
        depth = _as_tensor(depth, "unproject: depth")
        if depth.shape != uv.shape[:-1]:
            raise AmgError(f"unproject: expected depth of shape {tuple(uv.shape[:-1])}, got {tuple(depth.shape)}")
        depth = depth.to(uv.dtype)
        K = self.K.to(uv.dtype)
        xy = (uv - K[:2, 2]) @ torch.linalg.inv(K[:2, :2]).T
        pc = torch.cat([xy * depth[..., None], depth[..., None]], dim=-1)
        return (pc - self.t.to(uv.dtype)) @ self.R.to(uv.dtype)

    def rays(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays through pixel centres: origins ``(H,W,3)`` and unit directions ``(H,W,3)`` in world."""
        j, i = torch.meshgrid(torch.arange(self.width, dtype=_DTYPE) + 0.5,
                              torch.arange(self.height, dtype=_DTYPE) + 0.5, indexing="xy")
        uv1 = torch.stack([j, i, torch.ones_like(j)], dim=-1)
        d_cam = uv1 @ torch.linalg.inv(self.K).T
        d = d_cam @ self.R  # R^T @ d for row vectors
        d = d / d.norm(dim=-1, keepdim=True)
        o = self.center.expand_as(d)
        return o.to(dtype), d.to(dtype)

    # ---- intrinsics edits ---------------------------------------------------------------------
    def resize(self, width: int, height: int) -> "Camera":
        """The same camera imaging into a ``width x height`` image (the whole frame rescaled)."""
        sx, sy = width / self.width, height / self.height
        S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=_DTYPE))
        return Camera(S @ self.K, self.R, self.t, width, height)

    def crop(self, x0: int, y0: int, width: int, height: int) -> "Camera":
        """The camera of the sub-image whose top-left pixel is ``(x0, y0)`` and size ``width x height``."""
        K = self.K.clone()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return Camera(K, self.R, self.t, width, height)

    def to_dict(self) -> dict:
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist(),
                "width": self.width, "height": self.height}


def default_camera(eye: Sequence[float] = DEFAULT_EYE, target: Sequence[float] = DEFAULT_TARGET,
                   fov_deg: float = DEFAULT_FOV_DEG, width: int = AMG_SIZE, height: int = AMG_SIZE) -> Camera:
    """The studio camera (:data:`DEFAULT_EYE` looking at :data:`DEFAULT_TARGET`), or one of its variants;
    ``width x height`` pixels, ``fov_deg`` vertical."""
    return Camera.look_at(eye, target, fov_deg=fov_deg, width=width, height=height)

