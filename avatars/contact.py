"""Feet on the ground: contact detection, root motion driven by the stance foot, foot-locking leg IK.

A motion authored as joint-angle curves (the library, a keyframed clip) moves its root at whatever
speed it was given, so the stance foot slides ("foot skate"). The tools here make the legs carry the
body instead:

- :func:`foot_contacts` says which foot is on the ground in each frame (heel or toe near its flat-foot
  height over the floor, :func:`flat_foot_heights`);
- :func:`stance_root_motion` moves the root horizontally by exactly what keeps the stance foot still;
- :func:`lock_feet` pins each stance foot where it landed and bends hip and knee to reach it
  (:func:`two_bone_ik`), for motions on the spot whose pelvis sways or turns;
- :func:`ground` puts the lowest foot point on ``y = 0`` (over the clip, or in every frame);
- :func:`foot_slide` measures what is left: horizontal travel of stance feet per frame, metres.

``make_skate_free(motion)`` chains them the way the motion library does. Everything works on the
project's world (Y-up, metres) and SMPL joint order (ankles 7/8, knees 4/5, hips 1/2).
"""

from __future__ import annotations

import numpy as np
import torch

from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from .body import PART_NAMES, Body, default_body
from .lbs import batch_rigid_transform, skin_vertices
from .motion import Motion

__all__ = ["ANKLES", "TOES", "flat_foot_heights", "foot_contacts", "foot_slide", "ground", "stance_root_motion",
           "two_bone_ik", "lock_feet", "make_skate_free", "rest_ankle_height", "knee_angles", "true_runs"]

ANKLES = (7, 8)  # left, right
TOES = (10, 11)
_POINTS = ANKLES + TOES  # contact points: left/right heel (ankle joint), left/right toe
_LEGS = ((1, 4, 7), (2, 5, 8))  # hip, knee, ankle per side
_FOOT_PARTS = (PART_NAMES.index("left_foot"), PART_NAMES.index("right_foot"))


def _pose(motion: Motion, body):
    with torch.no_grad():
        return body(betas=motion.betas[None], global_orient=motion.global_orient, body_pose=motion.body_pose,
                    transl=motion.transl)


def _kinematics(motion: Motion, body) -> tuple[torch.Tensor, torch.Tensor]:
    """Joints ``(F, 24, 3)`` and world rotations ``(F, 24, 3, 3)`` without skinning the surface (the
    contact steps need only the skeleton, and long clips would pay for every vertex)."""
    with torch.no_grad():
        J = body.rest(motion.betas[None])[1].expand(len(motion), -1, -1)
        R = axis_angle_to_matrix(motion.full_pose)
        joints, world, _ = batch_rigid_transform(R, J, body.parents)
    return joints + motion.transl[:, None], world[..., :3, :3]


def _foot_vertex_mask(body) -> torch.Tensor:
    labels = body.part_labels
    mask = (labels == _FOOT_PARTS[0]) | (labels == _FOOT_PARTS[1])
    return mask if bool(mask.any()) else torch.ones_like(labels, dtype=torch.bool)


def flat_foot_heights(body: Body | None = None, betas=None) -> torch.Tensor:
    """``(4,)`` metres over the floor of the contact points (left/right ankle, left/right toe joint)
    when the rest body stands flat-footed (its lowest foot vertex on the floor)."""
    body = body if body is not None else default_body()
    v, j = body.rest(None if betas is None else torch.as_tensor(betas, dtype=torch.float32)[None])
    return (j[0, list(_POINTS), 1] - v[0, _foot_vertex_mask(body), 1].min()).detach()


def rest_ankle_height(body: Body | None = None, betas=None) -> float:
    """Metres from the floor (the rest body's lowest foot vertex) up to its ankle joints."""
    return float(flat_foot_heights(body, betas)[:2].mean())


def _points_down(joints: torch.Tensor, heights: torch.Tensor, tol: float, min_frames: int = 1) -> torch.Tensor:
    """``(F, 4)``: which contact point is within ``tol`` of its flat-foot height for a run of at least
    ``min_frames`` frames (a swing foot skims the floor for a frame or two; a stance lasts longer)."""
    down = joints[:, list(_POINTS), 1] < torch.as_tensor(heights, dtype=joints.dtype) + tol
    if min_frames > 1:
        for k in range(down.shape[1]):
            for s, e in true_runs(down[:, k]):
                if e - s < min_frames:
                    down[s:e, k] = False
    return down


def foot_contacts(joints: torch.Tensor, heights, tol: float = 0.03, min_frames: int = 1) -> torch.Tensor:
    """Which foot is on the ground: ``(F, 2)`` bool, left then right.

    Args:
        joints: ``(F, 24, 3)`` posed SMPL joints, metres, floor at ``y = 0``.
        heights: :func:`flat_foot_heights` ``(4,)`` (or one ankle height for every point).
        tol: metres a point may rise above its flat-foot height and still count as standing.
        min_frames: shortest run of low frames that counts (a swing foot passing low is not a stance).
    A foot is down when its heel (ankle) or its toe is. Height alone decides, so a sliding foot still
    counts as a stance foot (what :func:`foot_slide` needs).
    """
    heights = torch.as_tensor(heights, dtype=joints.dtype).expand(4)
    down = _points_down(joints, heights, tol, min_frames)
    return down[:, :2] | down[:, 2:]


def foot_slide(joints: torch.Tensor, heights, tol: float = 0.03, min_frames: int = 1) -> torch.Tensor:
    """Horizontal travel of each stance foot per frame: ``(F-1, 2)`` metres, NaN where the foot is not
    down in both frames. A foot rolling from heel to toe pivots about the point that stays down, so the
    slide of a foot is the smaller travel of its points (heel, toe) that are down in both frames.
    ``joints (F, 24, 3)``, ``heights``, ``tol`` and ``min_frames`` as :func:`foot_contacts`."""
    heights = torch.as_tensor(heights, dtype=joints.dtype).expand(4)
    down = _points_down(joints, heights, tol, min_frames)
    p = joints[:, list(_POINTS)][..., [0, 2]]
    d = (p[1:] - p[:-1]).norm(dim=-1)
    both = down[1:] & down[:-1]
    d = torch.where(both, d, torch.full_like(d, float("inf")))
    per_foot = torch.minimum(d[:, :2], d[:, 2:])
    return torch.where(torch.isinf(per_foot), torch.full_like(per_foot, float("nan")), per_foot)


def _lowest(motion: Motion, body, per_frame: bool) -> torch.Tensor:
    """``(F,)`` height of the lowest body vertex (``per_frame``) or foot vertex per frame.

    Foot vertices of a body without pose correctives are skinned alone (a several-minute capture would
    otherwise skin every vertex of every frame); the full forward pass is the reference for that shortcut.
    """
    feet = _foot_vertex_mask(body)
    lows = []
    fast = not per_frame and not getattr(body, "has_posedirs", True) and hasattr(body, "rest")
    if fast:
        rest_v, rest_j = body.rest(motion.betas[None])
        rest_v, weights = rest_v[:, feet], body.skin_weights[feet]
    with torch.no_grad():
        for s in range(0, len(motion), 256):  # long captures: bounded memory
            m = motion[s: s + 256]
            if fast:
                R = axis_angle_to_matrix(m.full_pose)
                skin = batch_rigid_transform(R, rest_j.expand(len(m), -1, -1), body.parents)[2]
                v = skin_vertices(rest_v.expand(len(m), -1, -1), weights, skin) + m.transl[:, None]
                lows.append(v[..., 1].min(dim=1).values)
            else:
                v = _pose(m, body).vertices
                lows.append(v[..., 1].min(dim=1).values if per_frame else v[:, feet, 1].min(dim=1).values)
    return torch.cat(lows)


def ground(motion: Motion, body: Body | None = None, per_frame: bool = False, airborne: torch.Tensor | None = None,
           lift_only: bool = False) -> Motion:
    """Shift ``transl.y`` so the lowest foot point is on ``y = 0``.

    ``per_frame=False`` (captured motion) moves the whole clip by one amount, from the lowest foot vertex
    over all frames; ``per_frame=True`` (authored motion) puts the lowest body vertex on the floor in
    every frame, then adds ``airborne (F,)`` metres back (a jump's flight); with ``lift_only`` it only
    raises frames that reach below the floor (a clip whose flight is already in it).
    """
    body = body if body is not None else default_body()
    low = _lowest(motion, body, per_frame)
    if lift_only:
        low = low.clamp(max=0.0)
    tr = motion.transl.clone()
    tr[:, 1] -= low if per_frame else low.min()
    if airborne is not None:
        tr[:, 1] += torch.as_tensor(airborne, dtype=tr.dtype)
    return motion.copy(transl=tr)


def stance_root_motion(motion: Motion, body: Body | None = None, tol: float = 0.03,
                       contacts: torch.Tensor | None = None) -> Motion:
    """Replace the root's horizontal travel by what the stance feet push: ``(x, z)`` of ``transl`` is
    integrated so that the planted point of a foot on the ground does not move between frames.

    Of the contact points down in both frames (heels, toes), the one closest to its flat-foot height
    carries the body; with none down (flight) the body keeps its last velocity. The first frame keeps
    its position; ``transl.y`` is untouched. ``contacts (F, 2)`` (left, right), when the author knows
    them, names the feet on the ground instead of the height test.
    """
    body = body if body is not None else default_body()
    flat = motion.transl.clone()
    flat[:, [0, 2]] = motion.transl[:1, [0, 2]]
    J = _kinematics(motion.copy(transl=flat), body)[0]
    h = flat_foot_heights(body, motion.betas)
    if contacts is None:
        down = _points_down(J, h, tol)
    else:  # heel and toe of a foot the author put down are both candidates
        down = torch.as_tensor(contacts, dtype=torch.bool).repeat(1, 2)
    p = J[:, list(_POINTS)][..., [0, 2]]  # (F, 4, 2) with the root held still
    excess = J[:, list(_POINTS), 1] - h
    steps = torch.zeros(len(motion), 2)
    carried = torch.zeros(len(motion), dtype=torch.bool)
    for t in range(1, len(motion)):
        on = down[t] & down[t - 1]
        if bool(on.any()):
            k = int(torch.argmin(torch.where(on, excess[t], torch.full_like(excess[t], float("inf")))))
            steps[t], carried[t] = p[t - 1, k] - p[t, k], True
        else:
            steps[t] = steps[t - 1]
    if carried.any():  # before the first carrying foot, move as it then does
        first = int(torch.nonzero(carried)[0])
        steps[1:first] = steps[first]
    out = flat.clone()
    out[:, [0, 2]] = flat[:1, [0, 2]] + torch.cumsum(steps, 0)
    return motion.copy(transl=out)


def two_bone_ik(hip: torch.Tensor, knee: torch.Tensor, ankle: torch.Tensor, target: torch.Tensor,
                bend_axis: torch.Tensor, min_bend: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations that bring a leg's ankle onto ``target``: bend the knee, then swing the leg at the hip.

    Args:
        hip, knee, ankle, target: ``(F, 3)`` world positions, metres.
        bend_axis: ``(F, 3)`` unit axis the knee bends about (the thigh's local X in the world).
        min_bend: radians of knee flexion the leg keeps at full reach (a knee does not lock straight).
    Returns:
        ``(knee_rot, hip_rot)``, each ``(F, 3, 3)`` world-frame rotations: the shank turns by
        ``knee_rot`` about the knee, then the whole leg by ``hip_rot`` about the hip. A target out of
        reach leaves the leg straight towards it (the knee bend is the smallest that gets closest).
    """
    u, v = knee - hip, ankle - knee
    n = bend_axis / bend_axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    lu, lv = u.norm(dim=-1), v.norm(dim=-1)
    reach = torch.sqrt(lu * lu + lv * lv + 2 * lu * lv * torch.cos(torch.as_tensor(min_bend)))
    d = (target - hip).norm(dim=-1).clamp(min=(lu - lv).abs() + 1e-4)
    d = torch.minimum(d, reach - 1e-4)
    # |u + R(delta) v|^2 = |u|^2 + |v|^2 + 2 u.R(delta)v and u.R(delta)v = a + b cos(delta) + c sin(delta)
    v_par = (v * n).sum(-1, keepdim=True) * n
    v_perp = v - v_par
    a = (u * v_par).sum(-1)
    b = (u * v_perp).sum(-1)
    c = (u * torch.cross(n, v_perp, dim=-1)).sum(-1)
    r = torch.sqrt(b * b + c * c).clamp_min(1e-9)
    phi = torch.atan2(c, b)
    q = (d * d - lu * lu - lv * lv) / 2
    alpha = torch.acos(((q - a) / r).clamp(-1.0, 1.0))
    cand = torch.stack([phi + alpha, phi - alpha], -1)
    cand = torch.remainder(cand + torch.pi, 2 * torch.pi) - torch.pi
    delta = torch.gather(cand, -1, cand.abs().argmin(-1, keepdim=True))[..., 0]
    knee_rot = axis_angle_to_matrix(n * delta[:, None])
    reached = u + (knee_rot @ v[..., None])[..., 0]
    hip_rot = _min_rotation(reached, target - hip)
    return knee_rot, hip_rot


def _min_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(F, 3, 3)`` smallest rotations taking directions ``a (F, 3)`` to ``b (F, 3)``."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = torch.cross(a, b, dim=-1)
    s = axis.norm(dim=-1, keepdim=True)
    ang = torch.atan2(s, (a * b).sum(-1, keepdim=True))
    return axis_angle_to_matrix(axis / s.clamp_min(1e-12) * ang)


def true_runs(mask) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` runs of True in a 1-D bool mask (tensor, array or list), in order."""
    out, start = [], None
    for t, on in enumerate([bool(x) for x in np.asarray(mask, dtype=bool).reshape(-1)] + [False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            out.append((start, t))
            start = None
    return out



def lock_feet(motion: Motion, body: Body | None = None, blend: int = 3, tol: float = 0.03, min_knee_deg: float = 6.0,
              contacts: torch.Tensor | None = None) -> Motion:
    """Pin each stance foot where it landed and solve the legs to reach it (:func:`two_bone_ik`).

    A contact span pins the foot's lower point (heel or toe, whichever is nearer its flat-foot height;
    the toe takes over when the heel lifts): its ``(x, z)`` stays put while the ankle keeps its authored
    height; ``blend`` frames after lift-off ease back to the authored path. Only hip and knee rotations
    change (the foot keeps its angle to the shank, inside the ankle's range); the knee keeps at least
    ``min_knee_deg`` of flexion. ``contacts (F, 2)`` (left, right) adds the author's stance to the feet
    found down by height (two frames or more).
    """
    body = body if body is not None else default_body()
    J, T = _kinematics(motion, body)
    F = len(motion)
    h = flat_foot_heights(body, motion.betas)
    down = _points_down(J, h, tol, min_frames=2)
    excess = J[:, list(_POINTS), 1] - h
    pose = axis_angle_to_matrix(motion.body_pose).clone()  # (F, 23, 3, 3) locals of joints 1..23
    for side, (hip, knee, ankle) in enumerate(_LEGS):
        toe = TOES[side]
        shift = torch.zeros(F, 2)  # how far the ankle must move in (x, z)
        weight = torch.zeros(F)
        on = down[:, side] | down[:, 2 + side]
        if contacts is not None:  # the author's stance, and any later frames the foot still rests
            on = torch.as_tensor(contacts, dtype=torch.bool)[:, side] | on
        for s, e in true_runs(on):
            # pin the lower point; when the heel lifts and the toe is lower, the toe takes over where it is
            pin = toe if excess[s, 2 + side] < excess[s, side] else ankle
            anchor = J[s, pin, [0, 2]].clone()
            for t in range(s, e):
                other = ankle if pin == toe else toe
                lo_other, lo_pin = (excess[t, 2 + side], excess[t, side]) if pin == ankle else \
                    (excess[t, side], excess[t, 2 + side])
                if lo_other < lo_pin - 0.005:
                    anchor = J[t, other, [0, 2]] + (shift[t - 1] if t > s else 0.0)
                    pin = other
                shift[t] = anchor - J[t, pin, [0, 2]]
                weight[t] = 1.0
            for i in range(1, blend + 1):  # ease out after lift-off
                t = e - 1 + i
                if t < F and weight[t] < 1.0 - i / (blend + 1):
                    weight[t] = 1.0 - i / (blend + 1)
                    shift[t] = shift[e - 1]
        target = J[:, ankle].clone()
        target[:, [0, 2]] += weight[:, None] * shift
        knee_rot, hip_rot = two_bone_ik(J[:, hip], J[:, knee], J[:, ankle], target, T[:, hip, :, 0],
                                        min_bend=float(torch.deg2rad(torch.tensor(min_knee_deg))))
        G_hip = hip_rot @ T[:, hip]
        G_knee = hip_rot @ knee_rot @ T[:, knee]
        pose[:, hip - 1] = T[:, 0].transpose(-1, -2) @ G_hip
        pose[:, knee - 1] = G_hip.transpose(-1, -2) @ G_knee
    return motion.copy(body_pose=matrix_to_axis_angle(pose))


def make_skate_free(motion: Motion, body: Body | None = None, travel: bool = True, airborne: torch.Tensor | None = None,
                    tol: float = 0.03, contacts: torch.Tensor | None = None) -> Motion:
    """An authored motion with planted feet: grounded per frame, root travel from the stance foot
    (``travel=True``; keep the authored root with ``False``), stance feet locked by leg IK, grounded again.
    ``airborne (F,)`` metres of flight are added back at the end (a jump, a run); ``contacts (F, 2)``
    are the feet on the ground when the author knows them (else detected from heights)."""
    body = body if body is not None else default_body()
    m = ground(motion, body, per_frame=True)
    if travel:
        m = stance_root_motion(m, body, tol=tol, contacts=contacts)
    m = lock_feet(m, body, tol=tol, contacts=contacts)
    return ground(m, body, per_frame=True, airborne=airborne)


def knee_angles(joints: torch.Tensor) -> torch.Tensor:
    """``(F, 2)`` knee flexion in degrees (0 = straight leg): the angle between thigh and shank."""
    out = []
    for h, k, a in _LEGS:
        u, v = joints[:, k] - joints[:, h], joints[:, a] - joints[:, k]
        c = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-12)
        out.append(torch.rad2deg(torch.acos(c.clamp(-1.0, 1.0))))
    return torch.stack(out, -1)
