"""BVH motion capture: parsing, retargeting onto an SMPL body, and export of SMPL motions as BVH.

``python -m avatars.bvh FILE.bvh`` lists a file's length, frame rate, up axis, T-pose frames and the
joints it maps onto SMPL.
"""

from __future__ import annotations

import logging
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

from .body import SMPL_JOINT_NAMES, SMPL_PARENTS, Body, default_body
from .motion import Motion

log = logging.getLogger(__name__)

__all__ = ["load_bvh", "save_bvh", "bvh_info", "BvhInfo", "BVH_NAME_MAP", "RIGIFY_NAME_MAP", "map_joints",
           "bvh_channels", "bvh_forward", "detect_up", "tpose_error", "tpose_frames", "rest_rotations",
           "body_scale", "frame_rate", "parse_bvh"]

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
               16: 18, 17: 19, 18: 20, 19: 21, 20: 22, 21: 23}


def _norm_name(name: str) -> str:
    """Lower case, letters and digits only, without a namespace (``mixamorig:``) or a Rigify layer
    prefix (``DEF-``, ``ORG-``, ``MCH-``)."""
    base = re.sub(r"^(def|org|mch)[-_.]", "", name.split(":")[-1].lower())
    return re.sub(r"[^a-z0-9]", "", base)


@dataclass
class Bvh:
    """A parsed BVH: joint names (End Sites as ``__end__``), parents, OFFSETs ``(J, 3)``, channel names per
    joint, the frames ``(F, C)`` and the frame time in seconds."""

    names: list
    parents: list
    offsets: np.ndarray  # (J, 3)
    channels: list  # per joint, list of channel names
    frames: np.ndarray  # (F, C)
    frame_time: float


def parse_bvh(path: str | os.PathLike) -> Bvh:
    """The hierarchy (names, parents, OFFSETs, channels; End Sites as ``__end__``) and frames of a BVH."""
    path = Path(path)
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
    return Bvh(names, parents, np.array(offsets), channels, values[: nf * nc].reshape(nf, nc), ft)


# exact (normalised) names of rigs whose words the generic table reads differently: Rigify calls the
# hips "spine" and numbers the chain above it
RIGIFY_NAME_MAP: dict[str, int] = {
    "spine": 0, "spine001": 3, "spine002": 6, "spine003": 9, "spine004": 12, "spine006": 15, "head": 15,
    **{f"{base}{s}": j for base, (l, r) in {
        "thigh": (1, 2), "shin": (4, 5), "foot": (7, 8), "toe": (10, 11), "shoulder": (13, 14),
        "upperarm": (16, 17), "forearm": (18, 19), "hand": (20, 21)}.items() for s, j in (("l", l), ("r", r))},
}
# frame-rate a file's frame time is rounded to when it is within 0.1 percent of one
_RATES = (10.0, 12.0, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 72.0, 90.0, 100.0,
          120.0, 144.0, 180.0, 240.0, 250.0, 360.0, 480.0)


def _is_rigify(names: list[str]) -> bool:
    return any(re.fullmatch(r"spine00\d", _norm_name(n)) for n in names)


def map_joints(names: list[str], joint_map: dict | None = None) -> dict[int, int]:
    """SMPL joint -> BVH joint index, from the joint names.

    ``joint_map`` (BVH name -> SMPL joint name or index) comes first; then Rigify's names when the file
    uses them, else :data:`BVH_NAME_MAP` (LAFAN/Ubisoft, CMU, Mixamo, generic ``Left*``/``*_l``) with
    spine chains (spine, chest, back...) spread by order over SMPL's three spine joints. The root joint
    stands for the pelvis when no joint is named so.
    """
    mapping: dict[int, int] = {}
    norm = [_norm_name(n) for n in names]
    for key, target in (joint_map or {}).items():
        k = _norm_name(str(key))
        if k not in norm:
            raise AmgError(f"motion.joint_map: no joint {key!r} in the BVH (it has {', '.join(names[:8])}...)")
        if isinstance(target, str) and not target.isdigit():
            if target not in SMPL_JOINT_NAMES:
                raise AmgError(f"motion.joint_map[{key!r}]: {target!r} is no SMPL joint; expected one of "
                               f"{', '.join(SMPL_JOINT_NAMES)}")
            target = SMPL_JOINT_NAMES.index(target)
        mapping[int(target)] = norm.index(k)
    taken = set(mapping.values())
    if _is_rigify(names):
        for b, key in enumerate(norm):
            j = RIGIFY_NAME_MAP.get(key)
            if j is not None and j not in mapping and b not in taken:
                mapping[j] = b
    else:
        spine = []
        for b, (n, key) in enumerate(zip(names, norm)):
            if n == "__end__" or b in taken:
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
    mapping.setdefault(0, 0)
    return mapping


def bvh_channels(bvh: Bvh, root_offset: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Channels -> per-joint local rotations ``(F, J, 3, 3)`` and root position ``(F, 3)`` (file units).

    Rotation channels compose in the order listed (``Zrotation Xrotation Yrotation`` is
    ``Rz @ Rx @ Ry``, degrees). Root position channels are absolute as most tools write them
    (``root_offset="ignore"``); ``"add"`` adds the root OFFSET to them; ``"auto"`` adds it only when
    the channels hover near zero height while the OFFSET holds the standing hip height. A root without
    position channels stands at its OFFSET.
    """
    F, nb = bvh.frames.shape[0], len(bvh.names)
    local = np.tile(np.eye(3), (F, nb, 1, 1))
    root_pos = np.tile(bvh.offsets[0], (F, 1))
    col, has_pos = 0, False
    for b, ch in enumerate(bvh.channels):
        rot_axes, rot_cols = "", []
        for c in ch:
            cu = c.lower()
            if cu.endswith("rotation"):
                rot_axes += cu[0].upper()
                rot_cols.append(col)
            elif cu.endswith("position") and b == 0:
                root_pos[:, "xyz".index(cu[0])] = bvh.frames[:, col]
                has_pos = True
            col += 1
        if len(rot_axes) == 3:
            local[:, b] = euler_to_matrix(torch.as_tensor(np.deg2rad(bvh.frames[:, rot_cols])), rot_axes).numpy()
        elif rot_axes:
            for a, c in zip(rot_axes, rot_cols):
                ang = torch.as_tensor(np.deg2rad(bvh.frames[:, c]))
                z = torch.zeros_like(ang)
                e = torch.stack([ang if k == a else z for k in "XYZ"], -1)
                local[:, b] = local[:, b] @ euler_to_matrix(e, "XYZ").numpy()
    if has_pos and root_offset != "ignore":
        off = bvh.offsets[0]
        if root_offset == "add" or (root_offset == "auto" and _channels_are_relative(bvh, root_pos, off)):
            root_pos = root_pos + off
    return local, root_pos


def _channels_are_relative(bvh: Bvh, root_pos: np.ndarray, off: np.ndarray) -> bool:
    """Whether root position channels look like offsets from the root's OFFSET rather than positions."""
    rest = _zero_pose(bvh)
    size = float(np.ptp(rest, axis=0).max())
    if size <= 0 or np.linalg.norm(off) < 0.2 * size:
        return False
    up = int(np.argmax(np.abs(off)))
    return abs(float(np.median(root_pos[:, up]))) < 0.1 * size < 0.3 * abs(float(off[up]))


def _zero_pose(bvh: Bvh) -> np.ndarray:
    """``(J, 3)`` joint positions with every rotation zero (the OFFSETs added up)."""
    rest = np.zeros((len(bvh.names), 3))
    for b in range(len(bvh.names)):
        rest[b] = bvh.offsets[b] + (rest[bvh.parents[b]] if bvh.parents[b] >= 0 else 0)
    return rest


def bvh_forward(parents: list[int], offsets: np.ndarray, local: np.ndarray,
                root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics: world rotations ``(F, J, 3, 3)`` and positions ``(F, J, 3)`` of every joint.

    A child sits at its parent's position plus the parent's world rotation applied to its OFFSET
    ``(J, 3)``; ``local (F, J, 3, 3)`` from :func:`bvh_channels`; the root stands at ``root_pos (F, 3)``.
    """
    F, nb = local.shape[:2]
    glob = np.zeros_like(local)
    pos = np.zeros((F, nb, 3))
    for b in range(nb):
        p = parents[b]
        if p < 0:
            glob[:, b], pos[:, b] = local[:, b], root_pos
        else:
            glob[:, b] = glob[:, p] @ local[:, b]
            pos[:, b] = pos[:, p] + glob[:, p] @ offsets[b]
    return glob, pos


def detect_up(pos: np.ndarray, mapping: dict[int, int]) -> str:
    """``"y"`` or ``"z"``: the file axis along which the head sits above the feet, on average over the
    frames ``pos (F, J, 3)``."""
    top = next((mapping[j] for j in (15, 12, 9, 6, 3) if j in mapping), None)
    feet = [mapping[j] for j in (7, 8, 10, 11, 4, 5) if j in mapping]
    if top is None or not feet:
        return "y"
    v = (pos[:, top] - pos[:, feet].mean(1)).mean(0)
    return "z" if abs(v[2]) > abs(v[1]) else "y"


def _world(up: str) -> np.ndarray:
    if up == "y":
        return np.eye(3)
    if up == "z":
        return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    raise AmgError(f"motion.up {up!r}: expected auto, y or z")


def tpose_error(pos: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """``(F,)`` degrees: how far each frame of world positions ``pos (F, J, 3)`` (Y-up) is from a T-pose.

    The largest angle of upper arms and forearms from the horizontal line out of the shoulders, and of
    thighs and shins from straight down; ``inf`` when the file lacks those joints.
    """
    need = (1, 2, 4, 5, 7, 8, 16, 17, 18, 19, 20, 21)
    if any(j not in mapping for j in need):
        return np.full(pos.shape[0], np.inf)
    P = {j: pos[:, mapping[j]] for j in need}
    side = P[16] - P[17]
    side[:, 1] = 0.0
    side /= np.linalg.norm(side, axis=-1, keepdims=True).clip(1e-9)
    down = np.array([0.0, -1.0, 0.0])

    def angle(d, ref):
        d = d / np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-9)
        return np.degrees(np.arccos(np.clip((d * ref).sum(-1), -1.0, 1.0)))

    errs = [angle(P[18] - P[16], side), angle(P[20] - P[18], side), angle(P[19] - P[17], -side),
            angle(P[21] - P[19], -side)]
    errs += [angle(P[c] - P[p], down) for p, c in ((1, 4), (4, 7), (2, 5), (5, 8))]
    return np.max(errs, axis=0)


def tpose_frames(pos: np.ndarray, mapping: dict[int, int], max_deg: float = 20.0) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges in which the skeleton stands in a T-pose (within ``max_deg``)."""
    from .contact import true_runs

    return true_runs(tpose_error(pos, mapping) < max_deg)


def _frame_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) with its first axis along ``a`` and ``b`` in the first two's plane."""
    x = a / np.linalg.norm(a)
    y = b - (b @ x) * x
    y = y / np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], -1)


def rest_rotations(J: np.ndarray, ref: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """``(24, 3, 3)`` world rotation of each SMPL segment in the file's reference pose.

    ``J (24, 3)`` are the SMPL rest joints, ``ref (J_bvh, 3)`` the file's joints in the reference pose
    (our world, any unit). The pelvis turns the SMPL hip line and spine onto the file's; every other
    segment takes its parent's rotation and then the smallest turn that lays its bone along the file's
    (so twist is inherited along the chain, not invented); segments without a bone keep the parent's.
    """
    R = np.tile(np.eye(3), (24, 1, 1))
    top = next((j for j in (12, 9, 6, 3, 15) if j in mapping), None)
    if 1 in mapping and 2 in mapping and top is not None:
        a = _frame_of(J[1] - J[2], J[top] - J[0])
        b = _frame_of(ref[mapping[1]] - ref[mapping[2]], ref[mapping[top]] - ref[mapping[0]])
        R[0] = b @ a.T
    for j in range(1, 24):
        R[j] = R[SMPL_PARENTS[j]]
        if j not in mapping or j not in _MAIN_CHILD:
            continue
        c = _MAIN_CHILD[j]
        while c not in mapping and c in _MAIN_CHILD:
            c = _MAIN_CHILD[c]
        if c in mapping:
            R[j] = _min_rotation(R[j] @ (J[c] - J[j]), ref[mapping[c]] - ref[mapping[j]]) @ R[j]
    return R


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
        return axis_angle_to_matrix(torch.as_tensor(perp / np.linalg.norm(perp) * math.pi)).numpy()
    return axis_angle_to_matrix(torch.as_tensor(axis / s * math.atan2(s, c))).numpy()


def _chain_length(P: np.ndarray, chain: list[int], mapping: dict[int, int]) -> float | None:
    if any(j not in mapping for j in chain):
        return None
    return float(sum(np.linalg.norm(P[mapping[b]] - P[mapping[a]]) for a, b in zip(chain, chain[1:])))


def body_scale(J: np.ndarray, ref: np.ndarray, mapping: dict[int, int]) -> float:
    """Metres of the SMPL body per file unit, from bone lengths: legs (hip-knee-ankle), else the spine
    from pelvis to head, else the whole extent."""
    for chains in (([1, 4, 7], [2, 5, 8]), ([0, 3, 6, 9, 12, 15], ), ([0, 3, 9, 12, 15], ), ([0, 12, 15], )):
        ours = [_chain_length(J, c, {j: j for j in range(24)}) for c in chains]
        theirs = [_chain_length(ref, c, mapping) for c in chains]
        if all(t is not None and t > 0 for t in theirs):
            return float(np.mean(ours) / np.mean(theirs))
    extent = float(np.ptp(ref, axis=0).max())
    return float(np.ptp(J, axis=0).max()) / max(extent, 1e-9)


def frame_rate(frame_time: float) -> float:
    """Frames per second of a BVH frame time, rounded to a common rate when within 0.1 percent."""
    fps = 1.0 / frame_time
    best = min(_RATES, key=lambda r: abs(r - fps))
    return best if abs(best - fps) <= 1e-3 * best else fps


@dataclass
class BvhInfo:
    """What a BVH holds: frames, rate, seconds, the up axis, the T-pose frame ranges, mapped joints."""

    frames: int
    fps: float
    seconds: float
    up: str
    tpose: list
    joints: dict

    def __str__(self) -> str:
        tp = ", ".join(f"{s}-{e - 1} ({s / self.fps:.2f}-{(e - 1) / self.fps:.2f} s)" for s, e in self.tpose)
        return (f"{self.frames} frames at {self.fps:g} fps ({self.seconds:.2f} s), {self.up.upper()}-up; "
                f"T-pose frames: {tp or 'none'}; joints mapped: {len(self.joints)} of 24")


def _prepare(path: Path, up: str, joint_map, root_offset: str):
    bvh = parse_bvh(path)
    mapping = map_joints(bvh.names, joint_map)
    local, root_pos = bvh_channels(bvh, root_offset)
    glob, pos = bvh_forward(bvh.parents, bvh.offsets, local, root_pos)
    up = detect_up(pos, mapping) if up in (None, "auto") else str(up).lower()
    W = _world(up)
    return bvh, mapping, W @ glob, pos @ W.T, up


def bvh_info(path: str | os.PathLike, up: str = "auto", joint_map: dict | None = None) -> BvhInfo:
    """Length, rate, up axis and T-pose frames of a BVH file (what ``python -m avatars.bvh FILE`` prints)."""
    path = Path(path)
    bvh, mapping, _, pos, up = _prepare(path, up, joint_map, "auto")
    fps = frame_rate(bvh.frame_time)
    return BvhInfo(len(bvh.frames), fps, len(bvh.frames) / fps, up, tpose_frames(pos, mapping),
                   {SMPL_JOINT_NAMES[j]: bvh.names[b] for j, b in sorted(mapping.items())})


def load_bvh(path: str | os.PathLike, body: Body | None = None, betas=None, rest_frame: int | str | None = "auto",
             up: str = "auto", joint_map: dict | None = None, root_offset: str = "auto", start: float = 0.0,
             seconds: float | None = None, ground: bool = True) -> Motion:
    """Read a BVH file and retarget it onto an SMPL body.

    Steps: parse; match joints by name (:func:`map_joints`; ``joint_map`` adds the user's); channels to
    local rotations (:func:`bvh_channels`) and forward kinematics (:func:`bvh_forward`); the file's up
    axis (:func:`detect_up`, or ``up="y"``/``"z"``) turned onto our Y-up world; a reference pose in which
    the file's character stands like SMPL's rest body: the T-pose frame with the smallest
    :func:`tpose_error` (``rest_frame="auto"``), frame ``rest_frame=N``, or the all-zero pose
    (``"zero"``, also the fallback when no frame is a T-pose). Each SMPL segment's world rotation is
    then the file segment's whole rotation since the reference (twist included), applied to the
    segment's reference rotation (:func:`rest_rotations`), so joint frames rotated against the bones
    (LAFAN) and rest poses other than a T-pose both come out right. Lengths scale by the ratio of bone
    lengths (:func:`body_scale`); the root path scales with them. ``start``/``seconds`` keep a segment;
    ``ground`` puts the lowest foot point over the clip on ``y = 0``.

    Args:
        path: the ``.bvh`` file.
        body: the :class:`~avatars.body.BodyModel` to drive (default body).
        betas: ``(NB,)`` its shape (zeros).
    Returns:
        A :class:`Motion` at the file's frame rate (rounded to a common rate, :func:`frame_rate`).
    """
    path = Path(path)
    bvh, mapping, glob, pos, up = _prepare(path, up, joint_map, root_offset)
    body = body if body is not None else default_body()
    betas = torch.zeros(body.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
    J = body.rest(betas[None])[1][0].double().numpy()
    F = len(bvh.frames)
    fps = frame_rate(bvh.frame_time)
    # reference pose: world rotations and positions of every file joint
    if rest_frame in (None, "auto"):
        err = tpose_error(pos, mapping)
        rest_frame = int(np.argmin(err)) if np.isfinite(err).any() and err.min() < 20.0 else "zero"
    if rest_frame == "zero":
        W = _world(up)
        ref_glob = np.tile(W, (len(bvh.names), 1, 1))
        ref_pos = _zero_pose(bvh) @ W.T
        bent = float(tpose_error(ref_pos[None], mapping)[0])
        if np.isfinite(bent) and bent > 45.0:
            # limbs still follow the file; only the twist of each segment needs a true rest pose
            log.warning("%s: no T-pose frame and the all-zero pose is %.0f degrees from one; segment twist "
                        "may be off (give motion.rest_frame=N, a frame where the character stands in a "
                        "T-pose)", path, bent)
    else:
        try:
            r = int(rest_frame)
        except (TypeError, ValueError):
            raise AmgError(f"motion.rest_frame {rest_frame!r}: expected auto, zero or a frame number") from None
        if not 0 <= r < F:
            raise AmgError(f"motion.rest_frame {r}: {path} has frames 0..{F - 1}")
        ref_glob, ref_pos = glob[r], pos[r]
    scale = body_scale(J, ref_pos, mapping)
    R_ref = rest_rotations(J, ref_pos, mapping)
    # the segment, before the heavier work
    a = int(round(max(float(start), 0.0) * fps))
    n = F - a if seconds is None else max(1, int(round(float(seconds) * fps)))
    if a >= F:
        raise AmgError(f"motion.start {start}: {path} is only {F / fps:.2f} s long")
    glob, pos = glob[a: a + n], pos[a: a + n]
    G = np.zeros((len(glob), 24, 3, 3))
    for j in range(24):
        if j in mapping:
            b = mapping[j]
            G[:, j] = glob[:, b] @ ref_glob[b].T @ R_ref[j]
        else:
            G[:, j] = G[:, SMPL_PARENTS[j]]
    loc = np.zeros_like(G)
    loc[:, 0] = G[:, 0]
    for j in range(1, 24):
        loc[:, j] = np.swapaxes(G[:, SMPL_PARENTS[j]], -1, -2) @ G[:, j]
    aa = matrix_to_axis_angle(torch.as_tensor(loc)).float()
    transl = torch.as_tensor(scale * pos[:, mapping[0]] - J[0], dtype=torch.float32)
    m = Motion(fps, betas, aa[:, 0], aa[:, 1:], transl, name=path.stem)
    if ground:
        from .contact import ground as put_on_floor

        m = put_on_floor(m, body)
    return m

def save_bvh(motion: Motion, path: str | os.PathLike, body: Body | None = None) -> Path:
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


def main(argv=None) -> int:
    """``python -m avatars.bvh FILE.bvh [...]``: print :func:`bvh_info` of each file."""
    import sys

    files = sys.argv[1:] if argv is None else argv
    if not files:
        print("usage: python -m avatars.bvh FILE.bvh [FILE.bvh ...]", file=sys.stderr)
        return 2
    for f in files:
        try:
            info = bvh_info(f)
        except AmgError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{f}: {info}")
        print("  " + ", ".join(f"{k}={v}" for k, v in info.joints.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
