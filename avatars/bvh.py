"""BVH motion capture: parsing, retargeting onto an SMPL body, and export of SMPL motions as BVH."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.io import atomic_path
from render.rotations import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler

from .body import SMPL_JOINT_NAMES, SMPL_PARENTS, default_body
from .motion import Motion

__all__ = ["load_bvh", "save_bvh", "BVH_NAME_MAP"]

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
    body = body if body is not None else default_body()
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
    body = body if body is not None else default_body()
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
