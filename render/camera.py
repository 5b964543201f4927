"""Cameras and camera paths: the project's one camera convention.

Convention (OpenCV): camera x right, y down, z forward. ``K`` is 3x3 in pixels; extrinsics are the
world-to-camera rotation ``R (3,3)`` and translation ``t (3,)``, so ``x_cam = R @ x_world + t``. A pixel
``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``; a centred
camera has ``cx = W/2, cy = H/2``. With this half-pixel convention resizing scales ``K`` exactly and
cropping shifts the principal point.

World is Y-up in metres (SMPL canonical frame; a body in rest pose faces +Z).

Conversions to other conventions live here and nowhere else: OpenGL / pyrender / nerfstudio camera-to-world
matrices (x right, y up, z backward) and TUM trajectories (camera-to-world pose of the OpenCV optical frame).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .errors import AmgError
from .rotations import matrix_to_quaternion, quaternion_to_matrix, slerp, standardize_quaternion

__all__ = ["Camera", "CameraPath", "intrinsics_from_fov", "look_at_rotation", "OPENCV_TO_OPENGL", "follow_framing"]

#: Flips y and z: converts between OpenCV (y down, z forward) and OpenGL (y up, z backward) camera axes.
OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))

_DTYPE = torch.float64  # cameras are small; double precision keeps round trips at 1e-9


def _t(x, dtype=_DTYPE) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> torch.Tensor:
    """Centred pinhole ``K (3,3)`` with vertical field of view ``fov_deg`` and square pixels."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
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
                width: int = 256, height: int = 256) -> "Camera":
        """A centred camera at ``eye`` (metres) looking at ``target`` with ``up`` towards image top.

        ``fov_deg`` is the vertical field of view in degrees.
        """
        eye_t, target_t, up_t = _t(eye), _t(target), _t(up)
        R = look_at_rotation(eye_t, target_t, up_t)
        return cls(intrinsics_from_fov(fov_deg, width, height), R, -R @ eye_t, width, height)

    @classmethod
    def from_opengl(cls, c2w: torch.Tensor, K: torch.Tensor | None = None, fov_deg: float | None = None,
                    width: int = 256, height: int = 256) -> "Camera":
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
        """Points ``(..., 3)`` in world metres -> camera coordinates ``(..., 3)``."""
        R, t = self.R.to(points.dtype), self.t.to(points.dtype)
        return points @ R.T + t

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points ``(N,3)`` -> pixels ``(N,2)`` (x right, y down) and depth ``(N,)``.

        Depth is the camera-space z in metres; points behind the camera get depth <= 0 and meaningless
        pixels, which the caller masks.
        """
        pc = self.world_to_camera(points)
        z = pc[..., 2]
        K = self.K.to(points.dtype)
        zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        uv = (pc[..., :2] / zs[..., None]) @ K[:2, :2].T + K[:2, 2]
        return uv, z

    def unproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixels ``(N,2)`` with camera-space depth ``(N,)`` -> world points ``(N,3)``."""
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


# ------------------------------------------------------------------------------------------------
# Camera paths
# ------------------------------------------------------------------------------------------------


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


@dataclass
class CameraPath:
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
        """Project per-frame world points ``(F,N,3)`` -> pixels ``(F,N,2)`` and depth ``(F,N)``."""
        R, t, K = self.R.to(points.dtype), self.t.to(points.dtype), self.K.to(points.dtype)
        pc = points @ R.transpose(-1, -2) + t[:, None]
        z = pc[..., 2]
        zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        uv = (pc[..., :2] / zs[..., None]) @ K[:, :2, :2].transpose(-1, -2) + K[:, None, :2, 2]
        return uv, z

    def resize(self, width: int, height: int) -> "CameraPath":
        S = torch.diag(torch.tensor([width / self.width, height / self.height, 1.0], dtype=_DTYPE))
        return CameraPath(S @ self.K, self.R, self.t, width, height, self.fps)

    def crop(self, x0: int, y0: int, width: int, height: int) -> "CameraPath":
        K = self.K.clone()
        K[:, 0, 2] -= x0
        K[:, 1, 2] -= y0
        return CameraPath(K, self.R, self.t, width, height, self.fps)

    # ---- generators ---------------------------------------------------------------------------
    @classmethod
    def static(cls, camera: Camera, num_frames: int = 16, fps: float = 8.0) -> "CameraPath":
        """``num_frames`` copies of one camera."""
        _check_frames(num_frames)
        return cls.from_cameras([camera] * num_frames, fps)

    @classmethod
    def orbit(cls, num_frames: int = 16, degrees: float = 360.0, radius: float = 3.0,
              elevation_deg: float = 10.0, target: Sequence[float] = (0.0, 0.9, 0.0),
              start_deg: float = 0.0, fov_deg: float = 50.0, width: int = 256, height: int = 256,
              fps: float = 8.0) -> "CameraPath":
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
             easing: str = "linear", fps: float = 8.0, **look_at) -> "CameraPath":
        """Change the focal length from ``f`` to ``factor * f`` (factor > 1 zooms in, < 1 out).

        ``camera`` defaults to ``Camera.look_at(**look_at)`` with ``eye=(0, 1, 3.5)``, target ``(0, 0.9, 0)``.
        """
        _check_frames(num_frames)
        cam = camera or _default_camera(**look_at)
        s = 1 + (factor - 1) * _ease(np.linspace(0, 1, num_frames), easing)
        K = cam.K.repeat(num_frames, 1, 1)
        K[:, 0, 0] *= torch.as_tensor(s)
        K[:, 1, 1] *= torch.as_tensor(s)
        return cls(K, cam.R.repeat(num_frames, 1, 1), cam.t.repeat(num_frames, 1), cam.width, cam.height, fps)

    @classmethod
    def dolly(cls, num_frames: int = 16, distance: float = 1.5, camera: Camera | None = None,
              target: Sequence[float] = (0.0, 0.9, 0.0), easing: str = "linear", fps: float = 8.0,
              **look_at) -> "CameraPath":
        """Move the camera ``distance`` metres toward ``target`` along its line of sight (negative: away)."""
        _check_frames(num_frames)
        cam = camera or _default_camera(target=target, **look_at)
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
            up: Sequence[float] = (0.0, 1.0, 0.0), easing: str = "linear", fps: float = 8.0,
            **look_at) -> "CameraPath":
        """Turn the camera in place by ``degrees`` about the world ``up`` axis (positive: to the left)."""
        _check_frames(num_frames)
        cam = camera or _default_camera(**look_at)
        from .rotations import axis_angle_to_matrix

        ang = torch.as_tensor(np.radians(degrees) * _ease(np.linspace(0, 1, num_frames), easing))
        axis = _t(up) / _t(up).norm()
        turn = axis_angle_to_matrix(ang[:, None] * axis)  # world rotation of the camera body
        R = cam.R @ turn.transpose(-1, -2)
        t = -(R @ cam.center[:, None])[..., 0]
        return cls(cam.K.repeat(num_frames, 1, 1), R, t, cam.width, cam.height, fps)

    @classmethod
    def follow(cls, targets, offset: Sequence[float] = (0.0, 0.6, 3.5), smoothing: float = 0.0,
               fov_deg: float = 50.0, width: int = 256, height: int = 256, fps: float = 8.0) -> "CameraPath":
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
                       rotation: str = "spline", easing: str = "linear", fps: float = 8.0) -> "CameraPath":
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

    # ---- files --------------------------------------------------------------------------------
    def save(self, path: str | Path, format: str | None = None) -> Path:
        """Write the path atomically as ``ours`` (.json/.yaml), ``nerfstudio`` or ``tum`` (.txt)."""
        from .io import atomic_path

        path = Path(path)
        fmt = format or _guess_format(path, for_write=True)
        with atomic_path(path) as tmp:
            if fmt == "tum":
                tmp.write_text(self.to_tum())
            elif fmt == "nerfstudio":
                tmp.write_text(json.dumps(self.to_nerfstudio(), indent=2))
            elif fmt == "ours":
                data = self.to_dict()
                if path.suffix in (".yaml", ".yml"):
                    import yaml

                    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
                else:
                    tmp.write_text(json.dumps(data, indent=2))
            else:
                raise AmgError(f"{path}: unknown camera path format {fmt!r}; expected ours, nerfstudio or tum")
        return path

    @classmethod
    def load(cls, path: str | Path, format: str | None = None, fov_deg: float = 50.0, width: int = 256,
             height: int = 256, fps: float = 8.0) -> "CameraPath":
        """Read a camera path file: ours (.json/.yaml: per-frame cameras or keyframes), nerfstudio
        ``camera_path.json`` or a TUM trajectory (.txt; intrinsics from ``fov_deg``/``width``/``height``).

        Raises :class:`AmgError` naming the file and the field for unknown keys, zero frames,
        non-finite values or non-rotation matrices.
        """
        path = Path(path)
        if not path.is_file():
            raise AmgError(f"{path}: no such camera path file")
        fmt = format or _guess_format(path, for_write=False)
        text = path.read_text()
        try:
            if fmt == "tum":
                return cls.from_tum(text, K=intrinsics_from_fov(fov_deg, width, height), width=width,
                                    height=height, fps=fps)
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
            if fmt == "nerfstudio" or (isinstance(data, dict) and "camera_path" in data):
                return cls.from_nerfstudio(data)
            return cls.from_dict(data)
        except AmgError as e:
            raise AmgError(f"{path}: {e}") from None
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as e:
            raise AmgError(f"{path}: not a readable camera path ({type(e).__name__}: {e})") from None

    # ours -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "width": self.width, "height": self.height, "fps": self.fps,
            "frames": [{"K": k.tolist(), "R": r.tolist(), "t": t.tolist()} for k, r, t in zip(self.K, self.R, self.t)],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CameraPath":
        """From our layout: per-frame ``frames`` [{K, R, t}] or ``keyframes`` [{eye, target, fov_deg} or
        {K, R, t}, optional ``time``] with ``num_frames``."""
        if not isinstance(data, dict):
            raise AmgError("expected a mapping at the top level")
        allowed = {"width", "height", "fps", "frames", "keyframes", "num_frames", "rotation", "easing"}
        _check_keys(data, allowed, "top level")
        width, height, fps = int(data.get("width", 256)), int(data.get("height", 256)), float(data.get("fps", 8.0))
        if "frames" in data:
            frames = data["frames"]
            if not frames:
                raise AmgError("field 'frames': expected at least one frame, got zero")
            cams = [_camera_from_entry(f, f"frames[{i}]", width, height) for i, f in enumerate(frames)]
            return cls.from_cameras(cams, fps)
        if "keyframes" in data:
            keys = data["keyframes"]
            if not keys:
                raise AmgError("field 'keyframes': expected at least one keyframe, got zero")
            num = int(data.get("num_frames", 16))
            if num < 1:
                raise AmgError(f"field 'num_frames': expected >= 1, got {num}")
            cams = [_camera_from_entry(k, f"keyframes[{i}]", width, height) for i, k in enumerate(keys)]
            times = [k.get("time") for k in keys]
            times = None if all(t is None for t in times) else [float(t) for t in times]
            return cls.from_keyframes(cams, num, times=times, rotation=data.get("rotation", "spline"),
                                      easing=data.get("easing", "linear"), fps=fps)
        raise AmgError("expected a 'frames' or 'keyframes' field")

    # nerfstudio -----------------------------------------------------------------------------------
    def to_nerfstudio(self) -> dict:
        """nerfstudio's ``camera_path.json`` (OpenGL camera-to-world, vertical ``fov`` in degrees)."""
        frames = []
        for cam in self:
            frames.append({"camera_to_world": cam.to_opengl().reshape(-1).tolist(), "fov": cam.fov_deg,
                           "aspect": cam.width / cam.height})
        return {"camera_type": "perspective", "render_height": self.height, "render_width": self.width,
                "fps": self.fps, "seconds": len(self) / self.fps, "camera_path": frames}

    @classmethod
    def from_nerfstudio(cls, data: dict) -> "CameraPath":
        frames = data.get("camera_path")
        if not frames:
            raise AmgError("field 'camera_path': expected at least one camera, got zero")
        height = int(data.get("render_height", 256))
        width = int(data.get("render_width", round(height * float(frames[0].get("aspect", 1.0)))))
        fps = float(data.get("fps", 8.0))
        cams = []
        for i, f in enumerate(frames):
            c2w = _finite(f.get("camera_to_world"), f"camera_path[{i}].camera_to_world", 16).reshape(4, 4)
            _check_rotation(c2w[:3, :3], f"camera_path[{i}].camera_to_world")
            fov = float(_finite(f.get("fov", 50.0), f"camera_path[{i}].fov", 1)[0])
            cams.append(Camera.from_opengl(c2w, fov_deg=fov, width=width, height=height))
        return cls.from_cameras(cams, fps)

    # TUM ------------------------------------------------------------------------------------------
    def to_tum(self) -> str:
        """TUM trajectory text: ``timestamp tx ty tz qx qy qz qw``, camera-to-world of the optical frame."""
        q = matrix_to_quaternion(self.R.transpose(-1, -2))
        c = self.centers
        lines = ["# timestamp tx ty tz qx qy qz qw"]
        for i in range(len(self)):
            w, x, y, z = q[i].tolist()
            lines.append(" ".join(f"{v:.12g}" for v in (i / self.fps, *c[i].tolist(), x, y, z, w)))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_tum(cls, text: str, K: torch.Tensor, width: int, height: int, fps: float | None = None) -> "CameraPath":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            vals = line.split()
            if len(vals) != 8:
                raise AmgError(f"line {n}: expected 8 numbers 't tx ty tz qx qy qz qw', got {len(vals)}")
            rows.append(_finite([float(v) for v in vals], f"line {n}", 8))
        if not rows:
            raise AmgError("expected at least one pose line, got zero")
        a = torch.stack(rows)
        qn = a[:, [7, 4, 5, 6]]
        norms = qn.norm(dim=-1)
        if (norms < 1e-6).any():
            n = int(torch.nonzero(norms < 1e-6)[0, 0])
            raise AmgError(f"pose {n}: quaternion has zero norm (singular rotation)")
        R = quaternion_to_matrix(qn).transpose(-1, -2)
        t = -(R @ a[:, 1:4, None])[..., 0]
        if fps is None:
            dt = np.diff(a[:, 0].numpy())
            fps = float(1 / np.median(dt)) if len(dt) and np.median(dt) > 0 else 8.0
        return cls(K.expand(len(a), 3, 3).clone(), R, t, width, height, fps)


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


def _default_camera(eye=(0.0, 1.0, 3.5), target=(0.0, 0.9, 0.0), fov_deg=50.0, width=256, height=256) -> Camera:
    return Camera.look_at(eye, target, fov_deg=fov_deg, width=width, height=height)


def _check_frames(n: int) -> None:
    if int(n) < 1:
        raise AmgError(f"num_frames: expected >= 1, got {n}")


def _guess_format(path: Path, for_write: bool) -> str:
    suf = path.suffix.lower()
    if suf in (".txt", ".tum"):
        return "tum"
    if suf in (".yaml", ".yml"):
        return "ours"
    if suf == ".json":
        if for_write:
            return "nerfstudio" if path.name == "camera_path.json" else "ours"
        return "auto"
    raise AmgError(f"{path}: unknown camera path extension {suf!r}; expected .json, .yaml, .yml or .txt")


def _check_keys(d: dict, allowed: set, where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise AmgError(f"{where}: unknown key {extra[0]!r}; expected some of {sorted(allowed)}")


def _finite(x, field: str, size: int) -> torch.Tensor:
    try:
        a = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=_DTYPE).reshape(-1)
    except (TypeError, ValueError):
        raise AmgError(f"field {field}: expected {size} numbers, got {x!r}") from None
    if a.numel() != size:
        raise AmgError(f"field {field}: expected {size} numbers, got {a.numel()}")
    if not torch.isfinite(a).all():
        raise AmgError(f"field {field}: expected finite numbers, got NaN or inf")
    return a


def _check_rotation(R: torch.Tensor, field: str) -> None:
    err = (R.T @ R - torch.eye(3, dtype=R.dtype)).abs().max()
    if err > 1e-4 or torch.det(R) < 0:
        raise AmgError(f"field {field}: expected a rotation (orthonormal, det +1), got a singular or skewed matrix")


def _camera_from_entry(e: dict, field: str, width: int, height: int) -> Camera:
    if not isinstance(e, dict):
        raise AmgError(f"field {field}: expected a mapping")
    if "K" in e or "R" in e:
        _check_keys(e, {"K", "R", "t", "time"}, f"field {field}")
        K = _finite(e.get("K"), f"{field}.K", 9).reshape(3, 3)
        R = _finite(e.get("R"), f"{field}.R", 9).reshape(3, 3)
        _check_rotation(R, f"{field}.R")
        return Camera(K, R, _finite(e.get("t"), f"{field}.t", 3), width, height)
    _check_keys(e, {"eye", "target", "up", "fov_deg", "time"}, f"field {field}")
    if "eye" not in e:
        raise AmgError(f"field {field}: expected 'eye' (and 'target') or 'K', 'R', 't'")
    eye = _finite(e["eye"], f"{field}.eye", 3)
    target = _finite(e.get("target", [0.0, 0.9, 0.0]), f"{field}.target", 3)
    if (eye - target).norm() < 1e-9:
        raise AmgError(f"field {field}: eye and target coincide (singular rotation)")
    fov = float(_finite(e.get("fov_deg", 50.0), f"{field}.fov_deg", 1)[0])
    up = _finite(e.get("up", [0.0, 1.0, 0.0]), f"{field}.up", 3)
    return Camera.look_at(eye, target, up=up, fov_deg=fov, width=width, height=height)
