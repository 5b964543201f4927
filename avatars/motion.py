"""SMPL motion clips: the ``Motion`` container, resampling, and readers/writers for common formats.

A :class:`Motion` is one person's SMPL parameters over ``F`` frames in the project's world (Y-up, metres,
rest body facing +Z). ``Motion.load`` reads our npz, AMASS npz (Z-up, SMPL-H/SMPL-X poses), SMPL-style
pkl/npz with 72-d poses (AIST++ keys included) and BVH (retargeted onto the SMPL T-pose);
``Motion.save`` writes our npz or BVH.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.io import atomic_path
from render.rotations import (
    axis_angle_to_matrix, axis_angle_to_quaternion, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler,
    quaternion_to_axis_angle, slerp,
)

from .body import SMPL_JOINT_NAMES, SMPL_PARENTS

__all__ = ["Motion", "load_bvh", "save_bvh", "BVH_NAME_MAP"]

_NPZ_FORMAT = "amg-motion-v1"
# rotation taking a Z-up world (AMASS) to our Y-up world: (x, y, z) -> (x, z, -y)
_ZUP_TO_YUP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


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
            return save_bvh(self, path)
        if path.suffix != ".npz":
            raise AmgError(f"{path}: unknown motion format {path.suffix!r}; expected .npz or .bvh")
        with atomic_path(path) as tmp:
            np.savez(tmp, format=np.array(_NPZ_FORMAT), fps=np.float64(self.fps), betas=self.betas.numpy(),
                     global_orient=self.global_orient.numpy(), body_pose=self.body_pose.numpy(),
                     transl=self.transl.numpy(), name=np.array(self.name))
        return path

    @staticmethod
    def load(path: str | os.PathLike, fps: float | None = None, body=None) -> "Motion":
        """Read a motion file, dispatching on its format.

        Args:
            path: our ``.npz``; AMASS ``.npz`` (``poses`` 156/165-d, ``trans``, ``mocap_framerate``);
                SMPL-style ``.npz``/``.pkl`` (72-d ``poses`` or ``smpl_poses``, ``trans``/``smpl_trans``);
                ``.bvh``.
            fps: frame rate for files that do not record one (default 30).
            body: :class:`avatars.body.BodyModel` the motion will drive; its rest pelvis is used for the
                AMASS Z-up conversion and its skeleton for BVH retargeting (default: the default body).
        """
        path = Path(path)
        if not path.exists():
            raise AmgError(f"{path}: no such motion file")
        if path.suffix == ".bvh":
            return load_bvh(path, body=body)
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as f:
                    data = {k: f[k] for k in f.files}
            except Exception as e:
                raise AmgError(f"{path}: not a readable npz ({type(e).__name__})") from None
        elif path.suffix == ".pkl":
            try:
                with open(path, "rb") as fh:
                    data = pickle.load(fh, encoding="latin1")
            except Exception as e:
                raise AmgError(f"{path}: not a readable pickle ({type(e).__name__})") from None
            if not isinstance(data, dict):
                raise AmgError(f"{path}: pickle holds a {type(data).__name__}; expected a dict of SMPL arrays")
        else:
            raise AmgError(f"{path}: unknown motion format {path.suffix!r}; expected .npz, .pkl or .bvh")
        return _from_arrays(path, data, fps, body)


def _pelvis(betas: torch.Tensor, body=None) -> torch.Tensor:
    if body is None:
        body = _default_body()
    return body.rest(betas[None])[1][0, 0].detach()


_DEFAULT_BODY = []


def _default_body():
    if not _DEFAULT_BODY:
        from .body import BodyModel

        _DEFAULT_BODY.append(BodyModel.load("default"))
    return _DEFAULT_BODY[0]


def _scalar(data, keys, default=None):
    for k in keys:
        if k in data:
            return float(np.asarray(data[k]).reshape(-1)[0])
    return default


def _from_arrays(path: Path, data: dict, fps: float | None, body) -> Motion:
    name = path.stem
    if str(np.asarray(data.get("format", ""))) == _NPZ_FORMAT:
        return Motion(float(data["fps"]), data["betas"], data["global_orient"], data["body_pose"], data["transl"],
                      name=str(data.get("name", name)))
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
    body_pose = poses[:, 3:72].reshape(F, 23, 3).copy()
    if poses.shape[1] == 165:
        # SMPL-X: joints 1..21 are SMPL's; SMPL's hand joints 22/23 have no SMPL-X counterpart (fingers)
        body_pose = np.concatenate([poses[:, 3:66].reshape(F, 21, 3), np.zeros((F, 2, 3), np.float32)], 1)
    is_amass = "mocap_framerate" in data or "mocap_frame_rate" in data or poses.shape[1] in (156, 165)
    rate = _scalar(data, ("mocap_framerate", "mocap_frame_rate", "fps", "framerate", "frame_rate"), fps or 30.0)
    m = Motion(rate, betas, poses[:, :3], body_pose, trans, name=name)
    if is_amass:
        m = m.transformed(_ZUP_TO_YUP, pelvis=_pelvis(m.betas, body))
    return m


# ---- BVH ------------------------------------------------------------------------------------------

# normalised BVH joint names (lower case, letters and digits only, namespace dropped) -> SMPL joint
BVH_NAME_MAP: dict[str, int] = {}
for _base, (_l, _r) in {
    "upleg": (1, 2), "thigh": (1, 2), "hip": (1, 2), "upperleg": (1, 2), "femur": (1, 2),
    "leg": (4, 5), "shin": (4, 5), "knee": (4, 5), "lowerleg": (4, 5), "tibia": (4, 5), "calf": (4, 5),
    "foot": (7, 8), "ankle": (7, 8),
    "toebase": (10, 11), "toe": (10, 11), "toes": (10, 11), "ball": (10, 11),
    "shoulder": (13, 14), "collar": (13, 14), "clavicle": (13, 14),
    "arm": (16, 17), "uparm": (16, 17), "upperarm": (16, 17), "humerus": (16, 17),
    "forearm": (18, 19), "lowerarm": (18, 19), "elbow": (18, 19), "radius": (18, 19),
    "hand": (20, 21), "wrist": (20, 21),
}.items():
    for _side, _j in (("left", _l), ("right", _r)):
        for _name in (_side + _base, _side[0] + _base, _base + _side, _base + _side[0]):
            BVH_NAME_MAP.setdefault(_name, _j)
BVH_NAME_MAP.update({"hips": 0, "pelvis": 0, "root": 0, "neck": 12, "neck1": 12, "head": 15,
                     # SMPL's hand joints sit at the finger bases, as Mixamo's index finger does
                     "lefthandindex1": 22, "righthandindex1": 23})
_SPINE_WORDS = ("spine", "chest", "back", "torso", "abdomen")
# the child that defines each SMPL joint's bone direction
_MAIN_CHILD = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
               16: 18, 17: 19, 18: 20, 19: 21}


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.split(":")[-1].lower())


@dataclass
class _Bvh:
    names: list
    parents: list
    offsets: np.ndarray  # (J, 3)
    channels: list  # per joint, list of channel names
    frames: np.ndarray  # (F, C)
    frame_time: float


def _parse_bvh(path: Path) -> _Bvh:
    try:
        tokens = path.read_text(errors="replace").split()
    except OSError as e:
        raise AmgError(f"{path}: cannot read ({e.strerror})") from None
    names, parents, offsets, channels = [], [], [], []
    stack, i = [], 0

    def bad(msg):
        raise AmgError(f"{path}: not a valid BVH file ({msg})")

    if not tokens or tokens[0].upper() != "HIERARCHY":
        bad("missing HIERARCHY")
    i = 1
    pending = None
    try:
        while i < len(tokens) and tokens[i].upper() != "MOTION":
            t = tokens[i]
            if t.upper() in ("ROOT", "JOINT"):
                pending = (tokens[i + 1], stack[-1] if stack else -1)
                i += 2
            elif t.upper() == "END":
                pending = ("__end__", stack[-1])
                i += 2
            elif t == "{":
                n, p = pending
                names.append(n)
                parents.append(p)
                offsets.append([0.0, 0.0, 0.0])
                channels.append([])
                stack.append(len(names) - 1)
                i += 1
            elif t == "}":
                stack.pop()
                i += 1
            elif t.upper() == "OFFSET":
                offsets[stack[-1]] = [float(x) for x in tokens[i + 1: i + 4]]
                i += 4
            elif t.upper() == "CHANNELS":
                n = int(tokens[i + 1])
                channels[stack[-1]] = tokens[i + 2: i + 2 + n]
                i += 2 + n
            else:
                bad(f"unexpected token {t!r}")
        if i >= len(tokens):
            bad("missing MOTION section")
        nf = int(tokens[i + 2])
        ft = float(tokens[i + 5])
        values = np.array([float(x) for x in tokens[i + 6:]], dtype=np.float64)
    except (IndexError, ValueError):
        bad("truncated or malformed hierarchy/motion header")
    nc = sum(len(c) for c in channels)
    if nf < 1 or nc == 0 or values.size < nf * nc:
        bad(f"expected {nf} frames of {nc} channels, found {values.size} numbers")
    if not np.isfinite(values).all():
        raise AmgError(f"{path}: BVH motion contains NaN or infinite values")
    if ft <= 0:
        bad(f"frame time {ft} must be positive")
    return _Bvh(names, parents, np.array(offsets), channels, values[: nf * nc].reshape(nf, nc), ft)


def _bvh_to_smpl(bvh: _Bvh) -> dict[int, int]:
    """SMPL joint -> BVH joint index, by name."""
    mapping: dict[int, int] = {}
    spine = []
    for b, n in enumerate(bvh.names):
        key = _norm_name(n)
        if n == "__end__":
            continue
        if any(w in key for w in _SPINE_WORDS) and not any(s in key for s in ("left", "right")):
            spine.append(b)
            continue
        j = BVH_NAME_MAP.get(key)
        if j is not None and j not in mapping:
            mapping[j] = b
    # spine chain from hips upwards: first -> spine1, last -> spine3, a middle one -> spine2
    if spine:
        mapping.setdefault(3, spine[0])
        if len(spine) >= 2:
            mapping.setdefault(9, spine[-1])
        if len(spine) >= 3:
            mapping.setdefault(6, spine[len(spine) // 2])
    return mapping


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` to direction ``b`` (3x3)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis, s = perp / np.linalg.norm(perp), 0.0
        return axis_angle_to_matrix(torch.as_tensor(axis * math.pi)).numpy()
    return axis_angle_to_matrix(torch.as_tensor(axis / s * math.atan2(s, c))).numpy()


def load_bvh(path: str | os.PathLike, body=None, betas=None) -> Motion:
    """Read a BVH file and retarget it onto an SMPL body.

    BVH joints are matched to SMPL joints by name (:data:`BVH_NAME_MAP`, spine chains by order). Each
    mapped joint's world rotation is corrected by the smallest rotation taking the SMPL T-pose bone
    direction to the BVH rest bone direction, so a BVH whose rest pose is an A-pose or arms-down pose
    still lands on SMPL's T-pose frame. Unmapped SMPL joints follow their parent. Translation is scaled
    by the ratio of hip heights above the lowest rest joint. The BVH world is taken as Y-up with the
    character facing +Z; lengths in centimetres are detected (rest skeleton taller than 5 units).
    """
    path = Path(path)
    bvh = _parse_bvh(path)
    body = body if body is not None else _default_body()
    betas = torch.zeros(body.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
    J = body.rest(betas[None])[1][0].double().numpy()
    mapping = _bvh_to_smpl(bvh)
    if 0 not in mapping:
        raise AmgError(f"{path}: BVH has no hips/pelvis joint that maps to the SMPL root")
    nb = len(bvh.names)
    rest = np.zeros((nb, 3))
    for b in range(nb):
        rest[b] = bvh.offsets[b] + (rest[bvh.parents[b]] if bvh.parents[b] >= 0 else 0)
    height = rest[:, 1].max() - rest[:, 1].min()
    unit = 0.01 if height > 5 else 1.0
    rest = rest * unit
    F = bvh.frames.shape[0]
    # per-joint local rotations and root translation from the channels
    local = np.tile(np.eye(3), (F, nb, 1, 1))
    root_pos = np.tile(rest[mapping[0]], (F, 1))
    col = 0
    for b, ch in enumerate(bvh.channels):
        rot_axes, rot_cols, pos = "", [], {}
        for c in ch:
            cu = c.lower()
            if cu.endswith("rotation"):
                rot_axes += cu[0].upper()
                rot_cols.append(col)
            elif cu.endswith("position"):
                pos["xyz".index(cu[0])] = col
            col += 1
        if rot_axes:
            ang = torch.as_tensor(np.deg2rad(bvh.frames[:, rot_cols]))
            local[:, b] = euler_to_matrix(ang, rot_axes).numpy()
        if pos and b == mapping[0]:
            for axis, c in pos.items():
                root_pos[:, axis] = bvh.frames[:, c] * unit
    glob = np.zeros_like(local)
    for b in range(nb):
        p = bvh.parents[b]
        glob[:, b] = local[:, b] if p < 0 else glob[:, p] @ local[:, b]
    # rest correction per SMPL joint (bone direction alignment), inherited where no bone is defined
    Q = {}
    for j in range(24):
        Q[j] = Q.get(SMPL_PARENTS[j], np.eye(3)) if j else np.eye(3)
        if j in mapping and j in _MAIN_CHILD and j != 0:
            c = _MAIN_CHILD[j]
            while c not in mapping and c in _MAIN_CHILD:
                c = _MAIN_CHILD[c]
            if c in mapping:
                Q[j] = _min_rotation(J[c] - J[j], rest[mapping[c]] - rest[mapping[j]])
    G = np.zeros((F, 24, 3, 3))
    for j in range(24):
        if j in mapping:
            G[:, j] = glob[:, mapping[j]] @ Q[j]
        else:
            G[:, j] = G[:, SMPL_PARENTS[j]]
    loc = np.zeros_like(G)
    loc[:, 0] = G[:, 0]
    for j in range(1, 24):
        loc[:, j] = np.swapaxes(G[:, SMPL_PARENTS[j]], -1, -2) @ G[:, j]
    aa = matrix_to_axis_angle(torch.as_tensor(loc)).float()
    smpl_floor, bvh_floor = J[:, 1].min(), rest[:, 1].min()
    s = (J[0, 1] - smpl_floor) / max(rest[mapping[0], 1] - bvh_floor, 1e-6)
    pelvis = s * (root_pos - [0.0, bvh_floor, 0.0]) + [0.0, smpl_floor, 0.0]
    transl = torch.as_tensor(pelvis - J[0], dtype=torch.float32)
    return Motion(1.0 / bvh.frame_time, betas, aa[:, 0], aa[:, 1:], transl, name=path.stem)


def save_bvh(motion: Motion, path: str | os.PathLike, body=None) -> Path:
    """Write a BVH of the SMPL skeleton (rest offsets from ``body`` with the motion's betas, centimetres).

    Rotation channels are ``Zrotation Yrotation Xrotation`` (intrinsic ZYX, degrees); the root carries
    its world position, so ``load_bvh`` on the result returns the same poses and translation.
    """
    path = Path(path)
    body = body if body is not None else _default_body()
    J = body.rest(motion.betas[None])[1][0].double().numpy()
    children = {j: [c for c in range(24) if SMPL_PARENTS[c] == j] for j in range(24)}
    lines = ["HIERARCHY"]

    def write(j, depth):
        ind = "  " * depth
        off = J[j] - (J[SMPL_PARENTS[j]] if j else 0)
        lines.append(f"{ind}{'ROOT' if j == 0 else 'JOINT'} {_BVH_EXPORT_NAMES[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET {off[0] * 100:.6f} {off[1] * 100:.6f} {off[2] * 100:.6f}")
        chans = "6 Xposition Yposition Zposition " if j == 0 else "3 "
        lines.append(f"{ind}  CHANNELS {chans}Zrotation Yrotation Xrotation")
        for c in children[j]:
            write(c, depth + 1)
        if not children[j]:
            lines.append(f"{ind}  End Site")
            lines.append(f"{ind}  {{")
            lines.append(f"{ind}    OFFSET 0.000000 {5.0 if j == 15 else 0.0:.6f} 0.000000")
            lines.append(f"{ind}  }}")
        lines.append(f"{ind}}}")

    write(0, 0)
    order = []

    def walk(j):
        order.append(j)
        for c in children[j]:
            walk(c)

    walk(0)
    R = axis_angle_to_matrix(motion.full_pose.double())
    eul = np.rad2deg(matrix_to_euler(R, "ZYX").numpy())  # (F, 24, 3)
    root = (motion.transl.double().numpy() + J[0]) * 100
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {1.0 / motion.fps:.9f}"]
    for f in range(len(motion)):
        vals = list(root[f]) + [v for j in order for v in eul[f, j]]
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


_BVH_EXPORT_NAMES = (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot",
    "Spine2", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm",
    "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand", "LeftHandIndex1", "RightHandIndex1",
)
assert len(_BVH_EXPORT_NAMES) == len(SMPL_JOINT_NAMES)
