"""Camera path files: ours (JSON/YAML frames or keyframes), nerfstudio ``camera_path.json``, TUM
trajectories; and the validators that turn a bad file into a one-line :class:`~render.errors.AmgError`.

:class:`PathFormats` holds the readers and writers as methods of :class:`~render.camera.CameraPath`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..defaults import AMG_FPS, AMG_SIZE
from ..errors import AmgError
from ..rotations import matrix_to_quaternion, quaternion_to_matrix
from .core import _DTYPE, Camera, intrinsics_from_fov

__all__ = ["PathFormats"]


class PathFormats:
    """Readers and writers of camera path files (mixed into :class:`~render.camera.CameraPath`)."""

    def save(self, path: str | Path, format: str | None = None, world_up: str = "y",
             lossy: str = "error") -> Path:
        """Write the path atomically as ``ours`` (.json/.yaml), ``nerfstudio`` (``camera_path.json``) or
        ``tum`` (.txt); ``world_up`` and ``lossy`` apply to nerfstudio files (:meth:`to_nerfstudio`)."""
        from ..io import atomic_path

        path = Path(path)
        fmt = format or _guess_format(path, for_write=True)
        with atomic_path(path) as tmp:
            if fmt == "tum":
                tmp.write_text(self.to_tum())
            elif fmt == "nerfstudio":
                tmp.write_text(json.dumps(self.to_nerfstudio(world_up=world_up, lossy=lossy), indent=2))
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
    def load(cls, path: str | Path, format: str | None = None, fov_deg: float = 50.0, width: int = AMG_SIZE,
             height: int = AMG_SIZE, fps: float = AMG_FPS, world_up: str = "y") -> "CameraPath":
        """Read a camera path file: ours (.json/.yaml: per-frame cameras or keyframes), nerfstudio
        ``camera_path.json`` (``world_up="z"`` for nerfstudio's Z-up worlds) or a TUM trajectory (.txt;
        intrinsics from ``fov_deg``/``width``/``height``).

        Raises :class:`AmgError` naming the file and the field for unknown keys, zero frames,
        non-finite values or non-rotation matrices.
        """
        path = Path(path)
        if not path.is_file():
            raise AmgError(f"{path}: no such camera path file")
        fmt = format or _guess_format(path, for_write=False)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise AmgError(f"{path}: not text (undecodable bytes); expected a camera path file") from None
        try:
            if fmt == "tum":
                return cls.from_tum(text, K=intrinsics_from_fov(fov_deg, width, height), width=width,
                                    height=height, fps=fps)
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
            if fmt == "nerfstudio" or (isinstance(data, dict) and _NERFSTUDIO_KEYS & set(data)):
                return cls.from_nerfstudio(data, world_up=world_up)
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
        width, height, fps = int(data.get("width", AMG_SIZE)), int(data.get("height", AMG_SIZE)), float(data.get("fps", AMG_FPS))
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
    def to_nerfstudio(self, world_up: str = "y", lossy: str = "error") -> dict:
        """nerfstudio's ``camera_path.json`` in its viewer's layout (``ns-render camera-path`` reads it).

        Each frame is an OpenGL camera-to-world matrix (row-major, 16 numbers) and a vertical ``fov`` in
        degrees; nerfstudio builds ``fx = fy = (H/2) / tan(fov/2)`` and a centred principal point, so a
        camera with an off-centre principal point (a crop), ``fx != fy`` or skew cannot be held.

        Args:
            world_up: ``"y"`` writes our Y-up world as is; ``"z"`` turns it into a Z-up world (nerfstudio's
                default orientation): our +Y becomes +Z and our +Z (where a body in rest pose faces) -Y.
            lossy: what to do with a camera the format cannot hold: ``"error"`` raises :class:`AmgError`,
                ``"warn"`` warns once and writes the centred camera with the same vertical field of view.
        """
        if lossy not in ("error", "warn"):
            raise AmgError(f"lossy {lossy!r}: expected 'error' or 'warn'")
        bad = _unrepresentable(self)
        if bad:
            msg = (f"nerfstudio's camera_path.json holds only centred, square-pixel pinhole cameras: {bad}; "
                   "save as our .json/.yaml to keep it")
            if lossy == "error":
                raise AmgError(msg + " (or pass lossy='warn' to write the centred camera)")
            warnings.warn(msg + "; writing the centred camera with the same vertical fov", stacklevel=2)
        M = _world_to_up(world_up)
        frames = [{"camera_to_world": (M @ cam.to_opengl()).reshape(-1).tolist(), "fov": cam.fov_deg,
                   "aspect": cam.width / cam.height} for cam in self]
        return {"default_fov": frames[0]["fov"], "default_transition_sec": 1.0 / self.fps, "keyframes": [],
                "camera_type": "perspective", "render_height": self.height, "render_width": self.width,
                "fps": self.fps, "seconds": len(self) / self.fps, "is_cycle": False, "smoothness_value": 0.0,
                "camera_path": frames}

    @classmethod
    def from_nerfstudio(cls, data: dict, world_up: str = "y") -> "CameraPath":
        """From nerfstudio's ``camera_path.json`` (see :meth:`to_nerfstudio`; ``world_up="z"`` reads a
        Z-up nerfstudio world into our Y-up one). Only ``camera_type: perspective`` is a pinhole camera;
        fisheye, equirectangular and the other panoramic types raise :class:`AmgError`."""
        if not isinstance(data, dict):
            raise AmgError("expected a mapping at the top level")
        kind = str(data.get("camera_type", data.get("camera_model", "perspective"))).lower()
        if kind not in ("perspective", "pinhole"):
            raise AmgError(f"field 'camera_type': {kind!r} is not a pinhole camera; expected 'perspective' "
                           "(fisheye and panoramic paths cannot be rendered here)")
        if "camera_path" not in data:
            raise AmgError("field 'camera_path': missing; expected nerfstudio's list of cameras")
        frames = data.get("camera_path")
        if not frames:
            raise AmgError("field 'camera_path': expected at least one camera, got zero")
        if not isinstance(frames, list):
            raise AmgError(f"field 'camera_path': expected a list of cameras, got {type(frames).__name__}")
        for i, f in enumerate(frames):
            if not isinstance(f, dict) or "camera_to_world" not in f:
                raise AmgError(f"field camera_path[{i}].camera_to_world: missing; expected 16 numbers (a 4x4 matrix)")
        try:
            height = int(data.get("render_height", AMG_SIZE))
            width = int(data.get("render_width", round(height * float(frames[0].get("aspect", 1.0)))))
            fps = float(data.get("fps", AMG_FPS))
        except (TypeError, ValueError, OverflowError):
            raise AmgError("fields 'render_height', 'render_width', 'aspect', 'fps': expected numbers") from None
        M = _world_to_up(world_up)
        cams = []
        for i, f in enumerate(frames):
            c2w = _finite(f.get("camera_to_world"), f"camera_path[{i}].camera_to_world", 16).reshape(4, 4)
            _check_rotation(c2w[:3, :3], f"camera_path[{i}].camera_to_world")
            fov = float(_finite(f.get("fov", 50.0), f"camera_path[{i}].fov", 1)[0])
            cams.append(Camera.from_opengl(M.T @ c2w, fov_deg=fov, width=width, height=height))
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
            fps = float(1 / np.median(dt)) if len(dt) and np.median(dt) > 0 else AMG_FPS
        return cls(K.expand(len(a), 3, 3).clone(), R, t, width, height, fps)


# keys only a nerfstudio camera_path.json has at its top level (ours has width/height/fps)
_NERFSTUDIO_KEYS = {"camera_path", "render_height", "render_width", "camera_type", "seconds"}


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


def _world_to_up(world_up: str) -> torch.Tensor:
    """4x4 rotation from our Y-up world to a ``world_up`` one: identity for ``"y"``; for ``"z"`` the
    +90 degree turn about x taking +Y to +Z and +Z to -Y (Y-up to Z-up, as Blender imports glTF)."""
    up = str(world_up).lower().lstrip("+")
    M = torch.eye(4, dtype=_DTYPE)
    if up == "z":
        M[1:3, 1:3] = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=_DTYPE)
    elif up != "y":
        raise AmgError(f"world_up {world_up!r}: expected 'y' (ours) or 'z' (nerfstudio's default)")
    return M


def _unrepresentable(path) -> str:
    """What in ``path`` a centred, square-pixel pinhole (nerfstudio's camera) cannot hold, '' if nothing."""
    K = path.K
    cx, cy = path.width / 2, path.height / 2
    fx, fy, skew, px, py = K[:, 0, 0], K[:, 1, 1], K[:, 0, 1], K[:, 0, 2], K[:, 1, 2]
    checks = [
        (((px - cx).abs() > 1e-6) | ((py - cy).abs() > 1e-6),
         lambda i: f"principal point ({float(px[i]):.6g}, {float(py[i]):.6g}), not the centre ({cx:g}, {cy:g})"),
        ((fx - fy).abs() > 1e-9 * fy.abs(), lambda i: f"fx {float(fx[i]):.6g} != fy {float(fy[i]):.6g}"),
        (skew.abs() > 1e-9 * fy.abs(), lambda i: f"skew {float(skew[i]):.6g}"),
    ]
    for mask, describe in checks:
        if mask.any():
            i = int(torch.nonzero(mask)[0, 0])
            return f"frame {i} (and {int(mask.sum()) - 1} more) has a {describe(i)}"
    return ""
