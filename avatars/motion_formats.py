"""SMPL parameter arrays in other people's files: AMASS npz (Z-up, SMPL-H/SMPL-X poses), SMPL-style pkl/npz
(72-d poses, AIST++ keys) and our own npz, read into a :class:`~avatars.motion.Motion`."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError

from .motion import NPZ_FORMAT, Motion, _pelvis

__all__ = ["read_arrays", "from_arrays", "ZUP_TO_YUP"]

# rotation taking a Z-up world (AMASS) to our Y-up world: (x, y, z) -> (x, z, -y)
ZUP_TO_YUP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def read_arrays(path: Path) -> dict:
    """The arrays of an ``.npz`` or ``.pkl`` motion file as a dict (no pickled objects from npz)."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as e:
            raise AmgError(f"{path}: not a readable npz ({type(e).__name__})") from None
    if path.suffix == ".pkl":
        try:
            with open(path, "rb") as fh:
                data = pickle.load(fh, encoding="latin1")
        except Exception as e:
            raise AmgError(f"{path}: not a readable pickle ({type(e).__name__})") from None
        if not isinstance(data, dict):
            raise AmgError(f"{path}: pickle holds a {type(data).__name__}; expected a dict of SMPL arrays")
        return data
    raise AmgError(f"{path}: unknown motion format {path.suffix!r}; expected .npz, .pkl or .bvh")


def _scalar(data, keys, default=None):
    for k in keys:
        if k in data:
            return float(np.asarray(data[k]).reshape(-1)[0])
    return default


def from_arrays(path: Path, data: dict, fps: float | None, body) -> Motion:
    """A :class:`Motion` from the arrays of an AMASS, SMPL-style or our own file (``path`` names it)."""
    name = path.stem
    if str(np.asarray(data.get("format", ""))) == NPZ_FORMAT:
        return Motion(float(data["fps"]), data["betas"], data["global_orient"], data["body_pose"], data["transl"],
                      name=str(data.get("name", name)))
    if "pose_body" in data and "root_orient" in data and not any(k in data for k in ("poses", "smpl_poses")):
        # AMASS SMPL-X "G" layout: root, 21 body joints and hands in separate arrays
        F0 = np.asarray(data["pose_body"]).shape[0]
        data = {**data, "poses": np.concatenate([np.asarray(data["root_orient"], np.float32).reshape(F0, 3),
                                                 np.asarray(data["pose_body"], np.float32).reshape(F0, 63),
                                                 np.zeros((F0, 99), np.float32)], 1)}
    pkey = next((k for k in ("poses", "smpl_poses", "pose", "fullpose") if k in data), None)
    tkey = next((k for k in ("trans", "smpl_trans", "transl") if k in data), None)
    if pkey is None:
        raise AmgError(f"{path}: no poses found; expected our motion npz, AMASS (poses, trans) or SMPL "
                       "(poses/smpl_poses 72-d)")
    poses = np.asarray(data[pkey], dtype=np.float32)
    if poses.ndim == 3:
        poses = poses.reshape(poses.shape[0], -1)
    if poses.ndim != 2 or poses.shape[1] not in (72, 156, 165):
        raise AmgError(f"{path}: {pkey} has shape {poses.shape}; expected (F, 72) SMPL, (F, 156) SMPL-H or "
                       "(F, 165) SMPL-X axis-angle")
    F = poses.shape[0]
    trans = np.zeros((F, 3), np.float32) if tkey is None else np.asarray(data[tkey], np.float32).reshape(-1, 3)
    if "smpl_scaling" in data:  # AIST++ stores translation in the scaled skeleton's units
        trans = trans / float(np.asarray(data["smpl_scaling"]).reshape(-1)[0])
    if trans.shape[0] != F:
        raise AmgError(f"{path}: {tkey} has {trans.shape[0]} frames but {pkey} has {F}")
    betas = np.asarray(data.get("betas", np.zeros(10)), np.float32).reshape(-1)[:16]
    if poses.shape[1] == 72:
        body_pose = poses[:, 3:72].reshape(F, 23, 3).copy()
    else:
        # SMPL-H (156) and SMPL-X (165): joints 1..21 are SMPL's; what follows are fingers (SMPL-H from
        # 66 on, SMPL-X after jaw and eyes), which SMPL's single hand joints 22/23 cannot take: they stay
        # at rest, the hand following the wrist
        body_pose = np.concatenate([poses[:, 3:66].reshape(F, 21, 3), np.zeros((F, 2, 3), np.float32)], 1)
    is_amass = "mocap_framerate" in data or "mocap_frame_rate" in data or poses.shape[1] in (156, 165)
    rate = _scalar(data, ("mocap_framerate", "mocap_frame_rate", "fps", "framerate", "frame_rate"), fps or 30.0)
    m = Motion(rate, betas, poses[:, :3], body_pose, trans, name=name)
    if is_amass:
        m = m.transformed(ZUP_TO_YUP, pelvis=_pelvis(m.betas, body))
    return m
