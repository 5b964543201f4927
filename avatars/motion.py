"""SMPL motion clips: the ``Motion`` container and its operations (slicing, resampling, rigid moves).

A :class:`Motion` is one person's SMPL parameters over ``F`` frames in the project's world (Y-up, metres,
rest body facing +Z). ``Motion.load`` reads our npz, AMASS npz (Z-up, SMPL-H/SMPL-X poses), SMPL-style
pkl/npz with 72-d poses (AIST++ keys included) (:mod:`avatars.motion_formats`) and BVH, retargeted onto
the SMPL T-pose (:mod:`avatars.bvh`); ``Motion.save`` writes our npz or BVH.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.io import write_npz
from render.rotations import (
    axis_angle_to_matrix, axis_angle_to_quaternion, matrix_to_axis_angle, quaternion_to_axis_angle, slerp,
)

from .body import default_body

__all__ = ["Motion", "load_bvh", "save_bvh", "BVH_NAME_MAP"]

NPZ_FORMAT = "amg-motion-v1"


@dataclass
class Motion:
    """One person's SMPL motion.

    Attributes:
        fps: frames per second (> 0).
        betas: ``(NB,)`` shape coefficients of the body the motion belongs to.
        global_orient: ``(F, 3)`` axis-angle of the root.
        body_pose: ``(F, 23, 3)`` axis-angle of SMPL joints 1..23.
        transl: ``(F, 3)`` metres.
        name: free text (the library's motion name, a file stem).
    """

    fps: float
    betas: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    transl: torch.Tensor
    name: str = field(default="motion")

    def __post_init__(self):
        def as_t(x, what):
            try:
                return torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x,
                                       dtype=torch.float32).detach()
            except (TypeError, ValueError):
                raise AmgError(f"motion {self.name!r}: {what} is not numeric") from None

        self.betas = as_t(self.betas, "betas").reshape(-1)
        self.global_orient = as_t(self.global_orient, "global_orient")
        self.body_pose = as_t(self.body_pose, "body_pose")
        self.transl = as_t(self.transl, "transl")
        try:
            self.fps = float(self.fps)
        except (TypeError, ValueError):
            raise AmgError(f"motion {self.name!r}: fps {self.fps!r} is not a number") from None
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise AmgError(f"motion {self.name!r}: fps {self.fps} must be a positive number")
        if self.body_pose.dim() == 2 and self.body_pose.shape[-1] % 3 == 0:
            self.body_pose = self.body_pose.reshape(self.body_pose.shape[0], -1, 3)
        F = self.global_orient.shape[0] if self.global_orient.dim() else -1
        if self.global_orient.shape != (F, 3) or F < 1:
            raise AmgError(f"motion {self.name!r}: global_orient has shape {tuple(self.global_orient.shape)}; "
                           "expected (F, 3) with F >= 1")
        if self.body_pose.dim() != 3 or self.body_pose.shape[0] != F or self.body_pose.shape[2] != 3:
            raise AmgError(f"motion {self.name!r}: body_pose has shape {tuple(self.body_pose.shape)}; "
                           f"expected ({F}, 23, 3)")
        if self.body_pose.shape[1] != 23:
            raise AmgError(f"motion {self.name!r}: body_pose has {self.body_pose.shape[1]} joints; expected 23 "
                           "(SMPL joints 1..23)")
        if self.transl.shape != (F, 3):
            raise AmgError(f"motion {self.name!r}: transl has shape {tuple(self.transl.shape)}; expected ({F}, 3)")
        for what in ("betas", "global_orient", "body_pose", "transl"):
            if not torch.isfinite(getattr(self, what)).all():
                raise AmgError(f"motion {self.name!r}: {what} contains NaN or infinite values")

    # ---- basics -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def duration(self) -> float:
        """Seconds covered, ``F / fps``."""
        return len(self) / self.fps

    @property
    def full_pose(self) -> torch.Tensor:
        """``(F, 24, 3)`` axis-angle, root first."""
        return torch.cat([self.global_orient[:, None], self.body_pose], dim=1)

    def __getitem__(self, index) -> "Motion":
        """Frames by slice (``m[10:20]``, ``m[::2]`` halves the fps), int, or index array."""
        fps = self.fps
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if isinstance(index, slice):
            step = index.step or 1
            if step < 1:
                raise AmgError(f"motion {self.name!r}: slice step {step} must be positive")
            fps = self.fps / step
        out = Motion(fps, self.betas, self.global_orient[index], self.body_pose[index], self.transl[index],
                     name=self.name)
        return out

    def copy(self, **changes) -> "Motion":
        kw = dict(fps=self.fps, betas=self.betas.clone(), global_orient=self.global_orient.clone(),
                  body_pose=self.body_pose.clone(), transl=self.transl.clone(), name=self.name)
        kw.update(changes)
        return Motion(**kw)

    @staticmethod
    def concatenate(motions: list["Motion"]) -> "Motion":
        """Join clips of the same fps in time."""
        fps = motions[0].fps
        if any(abs(m.fps - fps) > 1e-6 for m in motions):
            raise AmgError("motion concatenate: every clip must have the same fps; resample first")
        return Motion(fps, motions[0].betas, torch.cat([m.global_orient for m in motions]),
                      torch.cat([m.body_pose for m in motions]), torch.cat([m.transl for m in motions]),
                      name=motions[0].name)

    def resample(self, fps: float) -> "Motion":
        """Resample in time: rotations by quaternion slerp, translation linearly.

        Frame ``k`` of the result is at time ``k / fps``; the result covers ``[0, (F-1)/self.fps]``.
        """
        fps = float(fps)
        if not math.isfinite(fps) or fps <= 0:
            raise AmgError(f"motion resample: fps {fps} must be a positive number")
        F = len(self)
        last = (F - 1) / self.fps
        n = int(math.floor(last * fps + 1e-6)) + 1
        u = torch.arange(n, dtype=torch.float64) * (self.fps / fps)
        i0 = u.floor().long().clamp(0, F - 1)
        i1 = (i0 + 1).clamp(max=F - 1)
        w = (u - i0.double()).float()
        q = axis_angle_to_quaternion(self.full_pose)
        qi = slerp(q[i0], q[i1], w[:, None])
        pose = quaternion_to_axis_angle(qi)
        tr = self.transl[i0] + (self.transl[i1] - self.transl[i0]) * w[:, None]
        return Motion(fps, self.betas, pose[:, 0], pose[:, 1:], tr, name=self.name)

    def transformed(self, rotation: torch.Tensor, offset=(0.0, 0.0, 0.0), pelvis=None) -> "Motion":
        """Move the whole clip rigidly in the world: ``p -> rotation @ p + offset``.

        SMPL rotates the body about the rest pelvis ``J0``, not the origin, so the translation becomes
        ``R (J0 + t) + offset - J0``. ``pelvis (3,)`` is ``J0`` of the body the motion drives (the default
        body's when omitted).
        """
        R = torch.as_tensor(rotation, dtype=torch.float32)
        J0 = _pelvis(self.betas) if pelvis is None else torch.as_tensor(pelvis, dtype=torch.float32)
        go = matrix_to_axis_angle(R @ axis_angle_to_matrix(self.global_orient))
        tr = (J0 + self.transl) @ R.T + torch.as_tensor(offset, dtype=torch.float32) - J0
        return self.copy(global_orient=go, transl=tr)

    # ---- files ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` (ours) or ``.bvh`` (SMPL skeleton of the default body with these betas)."""
        path = Path(path)
        if path.suffix == ".bvh":
            from .bvh import save_bvh

            return save_bvh(self, path)
        if path.suffix != ".npz":
            raise AmgError(f"{path}: unknown motion format {path.suffix!r}; expected .npz or .bvh")
        return write_npz(path, format=np.array(NPZ_FORMAT), fps=np.float64(self.fps), betas=self.betas.numpy(),
                         global_orient=self.global_orient.numpy(), body_pose=self.body_pose.numpy(),
                         transl=self.transl.numpy(), name=np.array(self.name))

    @staticmethod
    def load(path: str | os.PathLike, fps: float | None = None, body=None, **bvh_options) -> "Motion":
        """Read a motion file, dispatching on its format.

        Args:
            path: our ``.npz``; AMASS ``.npz`` (``poses`` 156/165-d, ``trans``, ``mocap_framerate``);
                SMPL-style ``.npz``/``.pkl`` (72-d ``poses`` or ``smpl_poses``, ``trans``/``smpl_trans``);
                ``.bvh``.
            fps: frame rate for files that do not record one (default 30).
            body: :class:`avatars.body.BodyModel` the motion will drive; its rest pelvis is used for the
                AMASS Z-up conversion and its skeleton for BVH retargeting (default: the default body).
            bvh_options: keyword arguments of :func:`avatars.bvh.load_bvh` (``rest_frame``, ``up``,
                ``joint_map``...), for BVH files only.
        """
        path = Path(path)
        if not path.exists():
            raise AmgError(f"{path}: no such motion file")
        if path.suffix == ".bvh":
            from .bvh import load_bvh

            return load_bvh(path, body=body, **bvh_options)
        from .motion_formats import from_arrays, read_arrays

        return from_arrays(path, read_arrays(path), fps, body)


def _pelvis(betas: torch.Tensor, body=None) -> torch.Tensor:
    """``(3,)`` rest pelvis ``J0`` of ``body`` (default body when omitted) with ``betas``."""
    if body is None:
        body = default_body()
    return body.rest(betas[None])[1][0, 0].detach()


# the one default-body cache lives in avatars.body; this name stays for the modules that import it
_default_body = default_body


def __getattr__(name):
    # BVH and array formats moved to their own modules; these names stay importable from here
    if name in ("load_bvh", "save_bvh", "BVH_NAME_MAP"):
        from . import bvh

        return getattr(bvh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
