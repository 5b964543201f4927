"""A camera path: ``F`` cameras sharing one image size, batched as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..errors import AmgError
from .core import _DTYPE, Camera, _as_tensor, _perspective, _t
from .formats import PathFormats
from .generators import PathGenerators

__all__ = ["CameraPath"]


@dataclass
class CameraPath(PathGenerators, PathFormats):
    """A sequence of ``F`` cameras sharing one image size, batched as tensors.

    Attributes:
        K: ``(F,3,3)`` intrinsics; R: ``(F,3,3)`` world-to-camera rotations; t: ``(F,3)`` translations.
        width, height: image size in pixels; fps: frames per second of the path.
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    width: int
    height: int
    fps: float = 8.0

    def __post_init__(self) -> None:
        self.K, self.R, self.t = _t(self.K), _t(self.R), _t(self.t)
        F = self.K.shape[0] if self.K.dim() == 3 else 0
        if F == 0 or self.K.shape != (F, 3, 3) or self.R.shape != (F, 3, 3) or self.t.shape != (F, 3):
            raise AmgError(f"camera path: expected K (F,3,3), R (F,3,3), t (F,3) with F >= 1, got "
                           f"{tuple(self.K.shape)}, {tuple(self.R.shape)}, {tuple(self.t.shape)}")
        self.width, self.height, self.fps = int(self.width), int(self.height), float(self.fps)

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CameraPath(self.K[i], self.R[i], self.t[i], self.width, self.height, self.fps)
        return Camera(self.K[i], self.R[i], self.t[i], self.width, self.height)

    def __iter__(self) -> Iterator[Camera]:
        return (self[i] for i in range(len(self)))

    @property
    def centers(self) -> torch.Tensor:
        """Camera positions ``(F,3)`` in world metres."""
        return -(self.R.transpose(-1, -2) @ self.t[..., None])[..., 0]

    @property
    def viewmats(self) -> torch.Tensor:
        """``(F,4,4)`` world-to-camera matrices."""
        m = torch.eye(4, dtype=_DTYPE).repeat(len(self), 1, 1)
        m[:, :3, :3], m[:, :3, 3] = self.R, self.t
        return m

    @classmethod
    def from_cameras(cls, cameras: Sequence[Camera], fps: float = 8.0) -> "CameraPath":
        cameras = list(cameras)
        if not cameras:
            raise AmgError("camera path: expected at least one camera, got none")
        w, h = cameras[0].width, cameras[0].height
        if any((c.width, c.height) != (w, h) for c in cameras):
            raise AmgError("camera path: expected every camera to share one image size")
        return cls(torch.stack([c.K for c in cameras]), torch.stack([c.R for c in cameras]),
                   torch.stack([c.t for c in cameras]), w, h, fps)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project per-frame world points ``(F,N,3)`` (or ``(N,3)`` seen by every frame; a tensor, numpy
        array or list) -> pixels ``(F,N,2)`` and depth ``(F,N)`` in metres, tensors."""
        points = _as_tensor(points, "project: points", 3)
        if points.dim() > 3 or (points.dim() == 3 and points.shape[0] not in (1, len(self))):
            raise AmgError(f"project: expected points of shape ({len(self)}, N, 3), got {tuple(points.shape)}")
        R, t, K = self.R.to(points.dtype), self.t.to(points.dtype), self.K.to(points.dtype)
        pc = points @ R.transpose(-1, -2) + t[:, None]
        z = pc[..., 2]
        uv = _perspective(pc, K)
        return uv, z

    def resize(self, width: int, height: int) -> "CameraPath":
        S = torch.diag(torch.tensor([width / self.width, height / self.height, 1.0], dtype=_DTYPE))
        return CameraPath(S @ self.K, self.R, self.t, width, height, self.fps)

    def crop(self, x0: int, y0: int, width: int, height: int) -> "CameraPath":
        K = self.K.clone()
        K[:, 0, 2] -= x0
        K[:, 1, 2] -= y0
        return CameraPath(K, self.R, self.t, width, height, self.fps)
