"""The keyframed motion vocabulary, with hand contacts solved by IK and planted feet that do not slide.

Every motion here is a few keyframed poses (per-joint Euler XYZ angles, SMPL joint conventions of
:mod:`avatars.motion_library`) eased into each other. Contacts are then enforced:

- feet: the feet the author plants are held where they landed by :mod:`avatars.contact` (leg IK, root
  travel from the stance foot for gaits, lowest vertex on y = 0), as for every library motion;
- hands: :func:`reach` solves shoulder and elbow angles so a hand joint meets a target (a partner's back in
  a hug, the other person's palm in a high five, the other hand in a clap), by gradient descent on the
  joint angles through the body's forward kinematics, staying close to the keyframed pose.

Every library motion (the procedural ones of :mod:`avatars.motion_library` too) gets its written
description here; :mod:`avatars.text_to_motion` matches actions against them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import torch

from render.rotations import euler_to_matrix

from .body import SMPL_PARENTS
from .body import default_body as _default_body
from .motion import Motion
from .motion_library import (_WALK, _facing_pair, _finish, _gait, _guard, _Pose, _smooth_step, _time, heading_matrix,
                             register)

__all__ = ["reach", "joint_positions", "keyframed", "DESCRIPTIONS"]

L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 1, 2, 4, 5, 7, 8
SPINE1, SPINE2, SPINE3, NECK, HEAD = 3, 6, 9, 12, 15
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HAND, R_HAND = 16, 17, 18, 19, 20, 21, 22, 23
L_FOOT, R_FOOT = 10, 11

# ---- kinematics ------------------------------------------------------------------------------------------


def _fk(euler: torch.Tensor, transl: torch.Tensor, body=None, heading: float = 0.0):
    """World rotations ``(F, 24, 3, 3)`` and positions ``(F, 24, 3)`` of the SMPL chain (differentiable)."""
    body = body if body is not None else _default_body()
    J = body.rest()[1][0].to(euler.dtype)
    R = euler_to_matrix(euler, "XYZ")  # (F, 24, 3, 3)
    rots = [heading_matrix(heading).to(euler.dtype) @ R[:, 0]]
    pos = [J[0] + transl.to(euler.dtype)]
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        rots.append(rots[p] @ R[:, j])
        pos.append(pos[p] + torch.einsum("fij,j->fi", rots[p], J[j] - J[p]))
    return torch.stack(rots, 1), torch.stack(pos, 1)


def joint_positions(euler: torch.Tensor, transl: torch.Tensor, body=None, heading: float = 0.0) -> torch.Tensor:
    """World joint positions ``(F, 24, 3)`` from Euler XYZ angles ``(F, 24, 3)`` (root first) and
    ``transl (F, 3)``, by the SMPL kinematic chain of ``body``'s rest joints (differentiable).

    ``heading`` (degrees about +Y) is applied on top of the root rotation, as the library's ``_finish`` does.
    """
    return _fk(euler, transl, body, heading)[1]


_ARMS = {L_HAND: (L_SHOULDER, L_ELBOW, L_WRIST), R_HAND: (R_SHOULDER, R_ELBOW, R_WRIST)}


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def reach(pose: _Pose, targets: dict[int, torch.Tensor], weights: torch.Tensor | None = None,
          transl: torch.Tensor | None = None, heading: float = 0.0, body=None, min_bend: float = 0.15) -> float:
    """Bend the arms of ``pose`` (in place) so hand joints meet world targets.

    Each arm is solved as a two-bone chain (:func:`avatars.contact.two_bone_ik`: the elbow bends about the
    upper arm's Y axis, the forearm's fold, then the arm swings at the shoulder); the wrist keeps its
    angle to the forearm. A target out of reach leaves the arm pointing at it.

    Args:
        pose: the keyframed pose; its shoulder and elbow angles change.
        targets: hand joint (22 left, 23 right) -> ``(F, 3)`` or ``(3,)`` world target, metres.
        weights: ``(F,)`` in [0, 1]: 1 where the hand is on its target, 0 where it is free; in between the
            correction is eased in (reach and release).
        transl: ``(F, 3)`` root translation the targets assume (zeros by default).
        heading: degrees about +Y the motion is finished with.
        min_bend: radians of elbow flexion kept at full reach.
    Returns:
        The largest distance in metres from a hand to its target over the frames of weight 1.
    """
    from render.rotations import matrix_to_euler

    from .contact import two_bone_ik

    F = pose.F
    transl = torch.zeros(F, 3, dtype=torch.float64) if transl is None else transl.double()
    w = torch.ones(F, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    body = body if body is not None else _default_body()
    tg = {h: torch.as_tensor(t, dtype=torch.float64).expand(F, 3) for h, t in targets.items()}
    base = pose.euler.clone()
    solved = pose.euler.clone()
    rots, pos = _fk(solved, transl, body, heading)
    for h, (sh, el, _wr) in ((h, _ARMS[h]) for h in tg):
        # the forearm and the hand move as one rigid link about the elbow, so the chain is
        # shoulder -> elbow -> hand and one solve is exact (within reach)
        knee_rot, hip_rot = two_bone_ik(pos[:, sh], pos[:, el], pos[:, h], tg[h], rots[:, sh, :, 1],
                                        min_bend=min_bend)
        G_sh = hip_rot @ rots[:, sh]
        G_el = hip_rot @ knee_rot @ rots[:, el]
        parent = rots[:, SMPL_PARENTS[sh]]
        solved[:, sh] = matrix_to_euler(parent.transpose(-1, -2) @ G_sh, "XYZ")
        solved[:, el] = matrix_to_euler(G_sh.transpose(-1, -2) @ G_el, "XYZ")
    joints = sorted({j for h in tg for j in _ARMS[h][:2]})
    pose.euler[:, joints] = base[:, joints] + _wrap(solved[:, joints] - base[:, joints]) * w[:, None, None]
    pos = _fk(pose.euler, transl, body, heading)[1]
    full = w >= 1.0 - 1e-9
    if not full.any():
        return 0.0
    return max(float((pos[:, h] - tg[h]).norm(dim=-1)[full].max()) for h in tg)


# ---- keyframes -------------------------------------------------------------------------------------------

_REST = {L_SHOULDER: (0.0, 0.0, -1.2), R_SHOULDER: (0.0, 0.0, 1.2), L_ELBOW: (0.0, -0.15, 0.0),
         R_ELBOW: (0.0, 0.15, 0.0)}


def keyframed(t: torch.Tensor, keys: list[tuple[float, dict[int, tuple[float, float, float]]]],
              speed: float = 1.0, loop: float | None = None, base: dict | None = None) -> _Pose:
    """Ease between keyframed poses.

    Args:
        t: ``(F,)`` seconds.
        keys: ``(time, {joint: (x, y, z) Euler radians})`` in time order; joints a key omits take ``base``
            (arms relaxed at the sides by default). Times are divided by ``speed``.
        loop: period in seconds (before ``speed``) to repeat the keys, or None to hold the last key.
    """
    base = dict(_REST if base is None else base)
    times = torch.tensor([k[0] for k in keys], dtype=torch.float64) / speed
    full = []
    for _, pose in keys:
        e = torch.zeros(24, 3, dtype=torch.float64)
        for j, v in {**base, **pose}.items():
            e[j] = torch.tensor(v, dtype=torch.float64)
        full.append(e)
    E = torch.stack(full)  # (K, 24, 3)
    u = t.double()
    if loop is not None:
        u = torch.remainder(u, loop / speed)
    k1 = torch.searchsorted(times, u, right=True).clamp(1, len(keys) - 1) if len(keys) > 1 else \
        torch.zeros_like(u, dtype=torch.long)
    p = _Pose(len(t))
    if len(keys) == 1:
        p.euler[:] = E[0]
        return p
    k0 = k1 - 1
    span = (times[k1] - times[k0]).clamp(min=1e-6)
    a = _smooth_step((u - times[k0]) / span)
    a = torch.where(u <= times[0], torch.zeros_like(a), a)
    p.euler[:] = E[k0] + (E[k1] - E[k0]) * a[:, None, None]
    return p


def _hold_feet(m: Motion, body, sides=(0, 1)) -> Motion:
    """For a motion on the spot whose feet ``sides`` (0 left, 1 right) are planted throughout: move the root
    sideways so those feet's mean position stays where it starts (what the legs cannot absorb, the body
    shifts over its feet)."""
    with torch.no_grad():
        J = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose,
                 transl=m.transl).joints
    points = [j for side in sides for j in ((L_ANKLE, L_FOOT), (R_ANKLE, R_FOOT))[side]]
    feet = J[:, points][..., [0, 2]].mean(1)  # (F, 2)
    tr = m.transl.clone()
    tr[:, [0, 2]] -= feet - feet[:1]
    return m.copy(transl=tr)


def _build(p: _Pose, fps: float, name: str, direction: float, body, planted=None, forward=None,
           airborne=None, travel: bool = False) -> Motion:
    """Finish a keyframed pose like every library motion: heading, grounding, the author's planted feet
    held by :func:`avatars.contact.make_skate_free`; a motion with both feet planted in every frame also
    keeps its feet's mean where it starts."""
    m = _finish(p, fps, name, forward=forward, heading=direction, airborne=airborne, body=body, travel=travel,
                contacts=planted)
    if planted is not None and forward is None and not travel:
        always = [side for side in (0, 1) if bool(torch.as_tensor(planted)[:, side].all())]
        if always:
            m = _hold_feet(m, body if body is not None else _default_body(), always)
    return m


def _both(F: int) -> torch.Tensor:
    return torch.ones(F, 2, dtype=torch.bool)


# ---- one-person motions -------------------------------------------------------------------------------


def kick(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Kicking a ball with the right leg: step in, swing the leg back, strike forward, recover."""
    F, t = _time(seconds, fps)
    keys = [(0.0, {}), (0.25, {}),
            (0.4, {R_HIP: (-0.35, 0, 0), R_KNEE: (0.9, 0, 0)}),  # the foot lifts before it swings back
            (0.55, {R_HIP: (0.5, 0, 0), R_KNEE: (1.3, 0, 0), L_KNEE: (0.15, 0, 0), L_SHOULDER: (0, 0, -0.9),
                   R_SHOULDER: (0, 0, 0.9)}),
            # the foot passes the floor with the knee still bent, strikes, and comes back down bent
            (0.67, {R_HIP: (-0.4, 0, 0), R_KNEE: (1.3, 0, 0), L_KNEE: (0.2, 0, 0), L_SHOULDER: (0, -0.2, -0.85)}),
            (0.8, {R_HIP: (-1.1, 0, 0), R_KNEE: (0.1, 0, 0), L_KNEE: (0.2, 0, 0), SPINE1: (-0.15, 0, 0),
                    L_SHOULDER: (0, -0.4, -0.8), R_SHOULDER: (0, 0.3, 0.9)}),
            (1.0, {R_HIP: (-0.6, 0, 0), R_KNEE: (1.1, 0, 0), L_KNEE: (0.15, 0, 0)}),
            (1.3, {}), (1.6, {})]
    p = keyframed(t, keys, speed, loop=1.6)
    planted = torch.stack([torch.ones(F, dtype=torch.bool), torch.zeros(F, dtype=torch.bool)], 1)
    return _build(p, fps, "kick", direction, body, planted=planted)


def bow(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Bowing: bending forward at the hips with the back straight, head down, then rising again."""
    F, t = _time(seconds, fps)
    down = {L_HIP: (-0.75, 0, 0), R_HIP: (-0.75, 0, 0), SPINE1: (0.2, 0, 0), SPINE2: (0.1, 0, 0),
            NECK: (0.2, 0, 0), L_SHOULDER: (0, 0, -1.25), R_SHOULDER: (0, 0, 1.25), L_ANKLE: (0.1, 0, 0),
            R_ANKLE: (0.1, 0, 0)}
    keys = [(0.0, {}), (0.8, down), (1.5, down), (2.3, {})]
    p = keyframed(t, keys, speed)
    # the bend is at the hips: the pelvis pitches forward (positive X) by the hips' flexion, so the thighs,
    # flexed by as much relative to the pelvis, stay upright under the body
    p.euler[:, 0, 0] -= p.euler[:, L_HIP, 0]
    return _build(p, fps, "bow", direction, body, planted=_both(F))


def clap(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Clapping: both hands meet in front of the chest about twice a second (applause)."""
    F, t = _time(seconds, fps)
    beat = 0.5 * (1 - torch.cos(2 * math.pi * 2.0 * speed * t))  # 0 apart .. 1 together
    p = keyframed(t, [(0.0, {L_SHOULDER: (0, -0.9, -0.6), R_SHOULDER: (0, 0.9, 0.6), L_ELBOW: (0, -1.4, 0),
                             R_ELBOW: (0, 1.4, 0)})])
    with torch.no_grad():
        P = joint_positions(p.euler, torch.zeros(F, 3, dtype=torch.float64), body)
    mid = 0.5 * (P[:, L_HAND] + P[:, R_HAND])
    centre = mid.mean(0)
    gap = 0.2 * (1 - beat)[:, None] + 0.025
    side = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    w = torch.ones(F, dtype=torch.float64)
    reach(p, {L_HAND: centre + side * gap / 2, R_HAND: centre - side * gap / 2}, w, body=body)
    return _build(p, fps, "clap", direction, body, planted=_both(F))


def point(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Pointing with the right arm straight ahead at something, looking at it, then lowering the arm."""
    F, t = _time(seconds, fps)
    up = {R_SHOULDER: (0, 1.35, 0.15), R_ELBOW: (0, 0.05, 0), HEAD: (0, -0.1, 0), SPINE3: (0, -0.1, 0)}
    p = keyframed(t, [(0.0, {}), (0.5 / 1, up), (2.2, up), (2.8, {})], speed)
    return _build(p, fps, "point", direction, body, planted=_both(F))


_CROUCH = {L_HIP: (-1.6, 0, 0.15), R_HIP: (-1.6, 0, -0.15), L_KNEE: (2.3, 0, 0), R_KNEE: (2.3, 0, 0),
           L_ANKLE: (-0.5, 0, 0), R_ANKLE: (-0.5, 0, 0), SPINE1: (0.35, 0, 0), SPINE2: (0.15, 0, 0),
           L_SHOULDER: (0, -0.7, -1.0), R_SHOULDER: (0, 0.7, 1.0), L_ELBOW: (0, -0.6, 0), R_ELBOW: (0, 0.6, 0)}


def crouch(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Crouching down into a deep squat (knees bent, heels down, arms forward for balance) and holding."""
    F, t = _time(seconds, fps)
    p = keyframed(t, [(0.0, {}), (1.0, _CROUCH)], speed)
    return _build(p, fps, "crouch", direction, body, planted=_both(F))


def stand_up(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Standing up: rising from a crouch (or the floor) to standing upright, getting up."""
    F, t = _time(seconds, fps)
    p = keyframed(t, [(0.0, _CROUCH), (0.3, _CROUCH), (1.5, {})], speed)
    return _build(p, fps, "stand_up", direction, body, planted=_both(F))


def stretch(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Stretching: both arms reaching overhead, leaning to one side then the other (warm-up, yoga)."""
    F, t = _time(seconds, fps)
    up = {L_SHOULDER: (0, 0, 1.45), R_SHOULDER: (0, 0, -1.45), L_ELBOW: (0, -0.1, 0), R_ELBOW: (0, 0.1, 0)}
    left = {**up, SPINE1: (0, 0, 0.2), SPINE2: (0, 0, 0.15), SPINE3: (0, 0, 0.1)}
    right = {**up, SPINE1: (0, 0, -0.2), SPINE2: (0, 0, -0.15), SPINE3: (0, 0, -0.1)}
    p = keyframed(t, [(0.0, {}), (0.7, up), (1.4, left), (2.1, up), (2.8, right), (3.5, up), (4.2, {})], speed,
                  loop=4.2)
    return _build(p, fps, "stretch", direction, body, planted=_both(F))


def spin(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Spinning on the spot: a full turn per 1.5 s with the arms out, twirling, a pirouette."""
    F, t = _time(seconds, fps)
    p = keyframed(t, [(0.0, {L_SHOULDER: (0, 0, -0.4), R_SHOULDER: (0, 0, 0.4)})])
    yaw = 2 * math.pi * t * speed / 1.5
    return _finish(p, fps, "spin", heading=direction, yaw=yaw, body=body)


def throw(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Throwing a ball overhand with the right arm: wind up behind the head, release forward (toss, pitch)."""
    F, t = _time(seconds, fps)
    wind = {R_SHOULDER: (-1.4, 0, -0.3), R_ELBOW: (0, 1.8, 0), SPINE3: (0, 0.3, 0), SPINE2: (0, 0.2, 0),
            L_SHOULDER: (0, -0.8, -0.6), L_HIP: (-0.3, 0, 0), L_KNEE: (0.3, 0, 0)}
    release = {R_SHOULDER: (0, 1.3, 0.3), R_ELBOW: (0, 0.2, 0), SPINE3: (0, -0.3, 0), SPINE1: (0.2, 0, 0),
               L_SHOULDER: (0, 0, -1.2)}
    p = keyframed(t, [(0.0, {}), (0.6, wind), (0.85, release), (1.4, {}), (1.8, {})], speed, loop=1.8)
    return _build(p, fps, "throw", direction, body, planted=_both(F))


def catch(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Catching a ball: both hands reach forward together at chest height and pull it in."""
    F, t = _time(seconds, fps)
    ready = {L_SHOULDER: (0, -1.2, -0.5), R_SHOULDER: (0, 1.2, 0.5), L_ELBOW: (0, -0.3, 0), R_ELBOW: (0, 0.3, 0)}
    pulled = {L_SHOULDER: (0, -0.8, -0.8), R_SHOULDER: (0, 0.8, 0.8), L_ELBOW: (0, -1.5, 0), R_ELBOW: (0, 1.5, 0),
              L_KNEE: (0.2, 0, 0), R_KNEE: (0.2, 0, 0), L_HIP: (-0.15, 0, 0), R_HIP: (-0.15, 0, 0)}
    p = keyframed(t, [(0.0, {}), (0.5, ready), (1.0, ready), (1.3, pulled), (2.0, pulled)], speed)
    return _build(p, fps, "catch", direction, body, planted=_both(F))


def push(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Pushing something heavy (a cart, a door, a car): leaning forward, arms straight ahead, short steps."""
    F, t = _time(seconds, fps)
    p, contacts, _ = _gait(t, speed, replace(_WALK, cadence=0.7, hip_amp=14.0, arm_amp=0.0, elbow=0.0, lean=0.3))
    p.euler[:, [L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, SPINE1, SPINE3]] = 0.0
    p.set(L_SHOULDER, y=-1.35, z=-0.2).set(R_SHOULDER, y=1.35, z=0.2).set(L_ELBOW, y=-0.25).set(R_ELBOW, y=0.25)
    p.set(SPINE1, x=0.3).set(SPINE2, x=0.15)  # the upper body leans into the push
    return _build(p, fps, "push", direction, body, planted=contacts, travel=True)


def pull(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Pulling a rope or dragging something: leaning back, hands in front, heaving in rhythm (tug)."""
    F, t = _time(seconds, fps)
    hold = {L_SHOULDER: (0, -1.2, -0.3), R_SHOULDER: (0, 1.2, 0.3), L_ELBOW: (0, -0.9, 0), R_ELBOW: (0, 0.9, 0),
            L_KNEE: (0.4, 0, 0), R_KNEE: (0.4, 0, 0), L_HIP: (-0.3, 0, 0), R_HIP: (-0.3, 0, 0)}
    tug = {**hold, L_ELBOW: (0, -1.6, 0), R_ELBOW: (0, 1.6, 0), SPINE1: (-0.2, 0, 0)}
    p = keyframed(t, [(0.0, hold), (0.6, tug), (1.2, hold)], speed, loop=1.2)
    p.euler[:, 0, 0] -= 0.15
    return _build(p, fps, "pull", direction, body, planted=_both(F))


def carry(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Carrying a box in both arms in front of the chest while walking slowly forward (lifting, holding)."""
    F, t = _time(seconds, fps)
    p, contacts, _ = _gait(t, speed, replace(_WALK, cadence=0.8, hip_amp=17.0, arm_amp=0.0, elbow=0.0, lean=-0.02))
    p.euler[:, [L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW]] = 0.0
    p.euler[:, [SPINE1, SPINE3], 1] = 0.0  # no torso twist: the load is held square
    p.set(L_SHOULDER, y=-0.8, z=-0.9).set(R_SHOULDER, y=0.8, z=0.9).set(L_ELBOW, y=-1.4).set(R_ELBOW, y=1.4)
    return _build(p, fps, "carry", direction, body, planted=contacts, travel=True)


def crawl(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Crawling forward on hands and knees (all fours), like a baby, alternating arm and leg."""
    F, t = _time(seconds, fps)
    ph = 2 * math.pi * 0.8 * speed * t
    s = torch.sin(ph)
    p = _Pose(F)
    p.set(0, x=math.pi / 2 - 0.05)  # torso horizontal
    p.set(L_HIP, x=-1.45 - 0.25 * s).set(R_HIP, x=-1.45 + 0.25 * s)
    p.set(L_KNEE, x=1.55).set(R_KNEE, x=1.55)
    p.set(L_SHOULDER, x=0.0, y=-1.3 + 0.2 * s, z=-0.05).set(R_SHOULDER, y=1.3 + 0.2 * s, z=0.05)
    p.set(NECK, x=-0.6).set(HEAD, x=-0.3)
    p.set(L_ANKLE, x=0.4).set(R_ANKLE, x=0.4)
    return _finish(p, fps, "crawl", forward=0.35 * speed * t, heading=direction, body=body)


def lie_down(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Lying down on the floor: kneeling, then lying flat on the back (resting, sleeping)."""
    F, t = _time(seconds, fps)
    kneel = {L_HIP: (-0.2, 0, 0), R_HIP: (-0.2, 0, 0), L_KNEE: (2.2, 0, 0), R_KNEE: (2.2, 0, 0),
             L_ANKLE: (0.6, 0, 0), R_ANKLE: (0.6, 0, 0)}
    flat = {L_SHOULDER: (0, 0, -1.3), R_SHOULDER: (0, 0, 1.3), L_ANKLE: (0.3, 0, 0), R_ANKLE: (0.3, 0, 0)}
    p = keyframed(t, [(0.0, {}), (0.8, kneel), (1.6, flat)], speed)
    u = _smooth_step((t * speed - 0.8) / 0.8)
    p.euler[:, 0, 0] += -(math.pi / 2) * u  # the body rotates back onto the floor
    return _finish(p, fps, "lie_down", forward=-0.6 * u, heading=direction, body=body)


def climb_steps(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Climbing steps (stairs): high knee steps up a staircase of 17 cm risers, rising 17 cm per step."""
    F, t = _time(seconds, fps)
    shape = replace(_WALK, cadence=0.7, hip_mean=28.0, hip_amp=26.0, knee_stance=(40.0, 0.1, 0.1),
                    knee_swing=(95.0, 0.72, 0.14), lean=0.15, arm_amp=0.25)
    p, contacts, cycle = _gait(t, speed, shape)
    rise = 0.17 * 2 * cycle  # two steps per cycle, one riser each
    return _build(p, fps, "climb_steps", direction, body, planted=contacts, travel=True, airborne=rise)


def dribble(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Dribbling a basketball: knees bent, the right hand bouncing the ball at hip height, jogging in place."""
    F, t = _time(seconds, fps)
    b = torch.sin(2 * math.pi * 2.0 * speed * t)
    p = _Pose(F).arms_down(1.1)
    p.set(L_HIP, x=-0.35).set(R_HIP, x=-0.35).set(L_KNEE, x=0.6).set(R_KNEE, x=0.6)
    p.set(L_ANKLE, x=-0.25).set(R_ANKLE, x=-0.25).set(SPINE1, x=0.25)
    p.set(R_SHOULDER, y=0.6, z=-0.4).set(R_ELBOW, y=0.9 + 0.4 * b).set(R_WRIST, x=0.4 * b)
    p.set(L_SHOULDER, y=-0.3).set(L_ELBOW, y=-0.6)
    return _build(p, fps, "dribble", direction, body, planted=_both(F))


def salsa(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Salsa dance (latin: merengue, bachata, cha-cha, samba): quick forward-back basic steps with hip motion,
    arms bent at the elbows."""
    F, t = _time(seconds, fps)
    beat = 2 * math.pi * 0.75 * speed * t
    s, c = torch.sin(beat), torch.cos(beat)
    p = _Pose(F).arms_down(1.0)
    p.set(L_HIP, x=-0.45 * s.clamp(min=0)).set(R_HIP, x=-0.45 * (-s).clamp(min=0))
    # the stepping foot is lifted clear (knee bend) on its way out and back
    p.set(L_KNEE, x=0.25 + 0.7 * s.clamp(min=0)).set(R_KNEE, x=0.25 + 0.7 * (-s).clamp(min=0))
    p.set(0, z=0.1 * s, y=0.15 * s).set(SPINE1, z=-0.12 * s).set(SPINE3, y=-0.15 * s)
    p.set(L_ELBOW, y=-1.4).set(R_ELBOW, y=1.4).set(L_SHOULDER, y=-0.3 * c).set(R_SHOULDER, y=-0.3 * c)
    # a foot is planted while the other one steps (the left steps while s > 0, the right while s < 0)
    planted = torch.stack([s < 0.1, s > -0.1], -1)
    return _build(p, fps, "salsa", direction, body, planted=planted)


# ---- two-person interactions -------------------------------------------------------------------------------


def _plateau(w: torch.Tensor, top: float = 0.9) -> torch.Tensor:
    """Contact weights from an envelope in [0, 1]: exactly 1 wherever ``w >= top`` (the hold), eased below."""
    return _smooth_step(w.double() / top)


def _partner_frame(d: float, side: float, direction: float):
    """Heading and offset of person ``side`` (-1 first, +1 second) of a pair ``d`` metres apart facing each
    other, as :func:`_facing_pair` places them."""
    heading = direction - side * 90.0
    offset = heading_matrix(direction) @ torch.tensor([side * d / 2, 0.0, 0.0])
    return heading, offset.double()


def _pair_from_poses(pa: _Pose, pb: _Pose, fps: float, name: str, d: float, direction: float, body,
                     planted=True, forward=None) -> list[Motion]:
    out = []
    for p, side, k in ((pa, -1.0, 0), (pb, 1.0, 1)):
        heading, offset = _partner_frame(d, side, direction)
        m = _finish(p, fps, f"{name}/{k}", heading=heading, body=body, forward=forward,
                    contacts=_both(p.F) if planted else None)
        out.append(m.copy(transl=m.transl + offset.float()))
    return out


def _world_joints(p: _Pose, d: float, side: float, direction: float, body) -> torch.Tensor:
    """Joint positions of a pair member's pose before grounding (height differs from the final by the
    grounding shift, which :func:`_ground_shift` gives)."""
    heading, offset = _partner_frame(d, side, direction)
    F = p.F
    return joint_positions(p.euler, offset.expand(F, 3), body, heading)


def _ground_shift(p: _Pose, body) -> torch.Tensor:
    """``(F,)`` the height the library's finishing adds to ground this pose (arms do not change it)."""
    m = _finish(p, 1.0, "probe", body=body, contacts=_both(p.F))
    return (m.transl[:, 1]).double()


def hug(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two people hugging (embracing): they step close, wrap their arms around each other's back with their
    hands together, hold the embrace and let go."""
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    # arms close over the first quarter (at most 0.6 s); a clip long enough to show it lets go at the end
    u, T = t * speed, seconds * speed
    ramp = min(0.6, 0.25 * T)
    w = _smooth_step(u / ramp) * (_smooth_step((T - u) / 0.5) if T >= 2.5 else 1.0)
    d = 0.42
    around = {L_SHOULDER: (0, -1.2, -0.3), R_SHOULDER: (0, 1.2, 0.3), L_ELBOW: (0, -1.6, 0),
              R_ELBOW: (0, 1.6, 0), SPINE1: (0.08, 0, 0), HEAD: (0, 0.4, 0)}
    pa = keyframed(t, [(0.0, around)])
    pb = keyframed(t, [(0.0, {**around, HEAD: (0, -0.4, 0)})])
    for p in (pa, pb):  # arms open before and after the embrace
        for j in (L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW):
            p.euler[:, j] = torch.tensor(_REST[j] if j in _REST else (0, 0, 0), dtype=torch.float64) + \
                (p.euler[:, j] - torch.tensor(_REST.get(j, (0, 0, 0)), dtype=torch.float64)) * w[:, None]
    for p, side, other, oside in ((pa, -1.0, pb, 1.0), (pb, 1.0, pa, -1.0)):
        heading, offset = _partner_frame(d, side, direction)
        lift = _ground_shift(p, body)
        with torch.no_grad():
            Jo = _world_joints(other, d, oside, direction, body)
            Jo[..., 1] += _ground_shift(other, body)[:, None]
        back = heading_matrix(heading).double()[:, 2]  # the partner's back is along my facing
        height = -0.03 if side < 0 else 0.06  # one holds lower, around the waist, the other higher
        centre = Jo[:, SPINE3] + back * 0.16 + torch.tensor([0.0, height, 0.0], dtype=torch.float64)
        across = heading_matrix(heading + 90.0).double()[:, 2] * 0.008  # palms clasped, 1.6 cm apart
        tr = offset.expand(F, 3).clone()
        tr[:, 1] += lift
        reach(p, {L_HAND: centre + across, R_HAND: centre - across}, _plateau(w), transl=tr, heading=heading,
              body=body)
    return _pair_from_poses(pa, pb, fps, "hug", d, direction, body)


def high_five(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two people giving each other a high five: right hands raised overhead slap together, then drop."""
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    u = torch.remainder(t * speed, 1.5)
    w = _smooth_step((u - 0.25) / 0.35) * _smooth_step((1.3 - u) / 0.35)  # raise, slap, lower
    d = 0.9
    raised = {R_SHOULDER: (-1.0, 0.6, -0.6), R_ELBOW: (0, 0.6, 0)}
    poses = []
    for side in (-1.0, 1.0):
        p = keyframed(t, [(0.0, {})])
        rest = p.euler[:, [R_SHOULDER, R_ELBOW]].clone()
        key = torch.tensor([raised[R_SHOULDER], raised[R_ELBOW]], dtype=torch.float64)
        p.euler[:, [R_SHOULDER, R_ELBOW]] = rest + (key - rest) * w[:, None, None].double()
        heading, offset = _partner_frame(d, side, direction)
        tr = offset.expand(F, 3).clone()
        tr[:, 1] += _ground_shift(p, body)
        # the palms meet above the pair's midpoint at about 1.75 m, each hand on its own side of the plane
        # between them (1.2 cm: half a palm's thickness)
        facing = heading_matrix(heading).double()[:, 2]
        target = torch.tensor([0.0, 1.75, 0.0], dtype=torch.float64) - facing * 0.012
        reach(p, {R_HAND: target.expand(F, 3)}, _plateau(w), transl=tr, heading=heading, body=body)
        poses.append(p)
    return _pair_from_poses(poses[0], poses[1], fps, "high_five", d, direction, body)


def push_pair(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """One person shoves another with both hands on the chest; the pushed one is rocked back."""
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    u = t * speed
    w = _smooth_step((u - 0.3) / 0.4) * _smooth_step((1.5 - u) / 0.3)
    d = 0.62
    pa = keyframed(t, [(0.0, {}), (0.7, {SPINE1: (0.15, 0, 0)}), (1.5, {})], speed)
    pb = keyframed(t, [(0.0, {}), (0.9, {SPINE1: (-0.2, 0, 0), SPINE2: (-0.1, 0, 0), L_SHOULDER: (0, 0, -0.8),
                                         R_SHOULDER: (0, 0, 0.8), L_KNEE: (0.25, 0, 0), R_KNEE: (0.25, 0, 0)}),
                       (1.8, {})], speed)
    heading_b, off_b = _partner_frame(d, 1.0, direction)
    b = _finish(pb, fps, "push_pair/1", heading=heading_b, body=body, forward=None,
                contacts=_both(F))
    b = b.copy(transl=b.transl + off_b.float())
    with torch.no_grad():
        Jb = body(betas=b.betas[None], global_orient=b.global_orient, body_pose=b.body_pose, transl=b.transl).joints
    heading_a, off_a = _partner_frame(d, -1.0, direction)
    tr = off_a.expand(F, 3).clone()
    tr[:, 1] += _ground_shift(pa, body)
    across = heading_matrix(heading_a + 90.0).double()[:, 2]
    facing = heading_matrix(heading_a).double()[:, 2]
    chest = Jb[:, SPINE3].double() - facing * 0.13  # the front of the partner's chest
    reach(pa, {L_HAND: chest + across * 0.12, R_HAND: chest - across * 0.12}, _plateau(w), transl=tr,
          heading=heading_a, body=body)
    a = _finish(pa, fps, "push_pair/0", heading=heading_a, body=body, contacts=_both(F))
    return [a.copy(transl=a.transl + off_a.float()), b]


def fight(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two people fighting (brawling, martial arts): punches and kicks traded in turn, guards up."""
    F, t = _time(seconds, fps)
    out = []
    for k, phase in ((0, 0.0), (1, 0.5)):
        u = torch.remainder(t * speed / 1.6 + phase, 1.0)
        punch = torch.exp(-((u - 0.25) / 0.07) ** 2)
        kick_ = torch.exp(-((u - 0.7) / 0.09) ** 2)
        p = _guard(_Pose(F))
        p.set(R_SHOULDER, z=-0.85 * punch, y=0.7 * punch).set(R_ELBOW, y=-2.0 * punch)
        p.set(R_HIP, x=-1.1 * kick_).set(R_KNEE, x=-0.35 * kick_)
        p.set(SPINE3, y=0.3 * punch)
        m = _finish(p, fps, f"fight/{k}", body=body)
        out.append(m)
    return _facing_pair(out[0], out[1], 1.25, direction)


def carry_pair(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """One person carries another piggyback: the rider sits on the carrier's back, arms around the shoulders,
    while the carrier walks slowly forward holding the rider's legs."""
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    pa, contacts, _ = _gait(t, speed, replace(_WALK, cadence=0.7, hip_amp=15.0, arm_amp=0.0, elbow=0.0, lean=0.25))
    pa.euler[:, [L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW]] = 0.0
    pa.euler[:, [SPINE1, SPINE3], 1] = 0.0
    pa.set(L_SHOULDER, y=0.3, z=-1.0).set(R_SHOULDER, y=-0.3, z=1.0).set(L_ELBOW, y=-1.2).set(R_ELBOW, y=1.2)
    a = _build(pa, fps, "carry_pair/0", direction, body, planted=contacts, travel=True)
    rider = keyframed(t, [(0.0, {L_HIP: (-1.3, 0, 0.35), R_HIP: (-1.3, 0, -0.35), L_KNEE: (1.4, 0, 0),
                                 R_KNEE: (1.4, 0, 0), L_SHOULDER: (0, -1.1, -0.4), R_SHOULDER: (0, 1.1, 0.4),
                                 L_ELBOW: (0, -1.5, 0), R_ELBOW: (0, 1.5, 0), SPINE1: (0.2, 0, 0)})])
    with torch.no_grad():
        Ja = body(betas=a.betas[None], global_orient=a.global_orient, body_pose=a.body_pose, transl=a.transl).joints
    facing = heading_matrix(direction)[:, 2]
    # the rider's pelvis sits behind the carrier's lower back, a little higher
    rb = _finish(rider, fps, "carry_pair/1", heading=direction, body=body)
    Jr0 = body(betas=rb.betas[None], global_orient=rb.global_orient[:1], body_pose=rb.body_pose[:1],
               transl=rb.transl[:1]).joints[0]
    want = Ja[:, 3] - facing * 0.24 + torch.tensor([0.0, 0.12, 0.0])
    b = rb.copy(transl=rb.transl + (want - Jr0[0]))
    with torch.no_grad():
        Jb = body(betas=b.betas[None], global_orient=b.global_orient, body_pose=b.body_pose, transl=b.transl).joints
    # contacts: the carrier's hands under the rider's knees, the rider's hands clasped on the carrier's chest
    reach(pa, {L_HAND: Jb[:, L_KNEE].double(), R_HAND: Jb[:, R_KNEE].double()}, transl=a.transl, heading=direction,
          body=body)
    chest = Ja[:, SPINE3].double() + facing.double() * 0.14
    across = heading_matrix(direction + 90.0).double()[:, 2] * 0.008
    reach(rider, {L_HAND: chest + across, R_HAND: chest - across}, transl=b.transl, heading=direction, body=body)
    return [_with_arms(a, pa), _with_arms(b, rider)]


def _with_arms(m: Motion, p: _Pose) -> Motion:
    """``m`` with the shoulder and elbow rotations of ``p`` (solved after ``m`` was finished)."""
    from render.rotations import matrix_to_axis_angle

    arms = [L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW]
    bp = m.body_pose.clone()
    bp[:, [j - 1 for j in arms]] = matrix_to_axis_angle(euler_to_matrix(p.euler[:, arms], "XYZ")).float()
    return m.copy(body_pose=bp)


def lead_follow(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two partners dancing in a closed hold (tango, waltz, ballroom, swing): one leads and the other follows,
    joined hands held out to the side, stepping side to side together as a couple."""
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    beat = 2 * math.pi * 0.5 * speed * t
    d = 0.45
    hold_a = {L_SHOULDER: (0, 0.2, -0.25), L_ELBOW: (0, -1.3, 0), R_SHOULDER: (0, 1.0, 0.5), R_ELBOW: (0, 1.5, 0)}
    hold_b = {R_SHOULDER: (0, -0.2, 0.25), R_ELBOW: (0, 1.3, 0), L_SHOULDER: (0, -1.0, -0.5), L_ELBOW: (0, -1.5, 0)}
    pa, pb = keyframed(t, [(0.0, hold_a)]), keyframed(t, [(0.0, hold_b)])
    bend = 0.25 * (1 - torch.cos(2 * beat)) / 2
    for p in (pa, pb):
        p.set(L_KNEE, x=bend).set(R_KNEE, x=bend).set(L_HIP, x=-0.5 * bend).set(R_HIP, x=-0.5 * bend)
    # the lead's left hand and the follower's right meet out to the lead's left, at shoulder height
    left_of_lead = -heading_matrix(direction).double()[:, 2]  # the lead faces the follower along +X
    joined = torch.tensor([0.0, 1.25, 0.0], dtype=torch.float64) + left_of_lead * 0.35
    facing_a = heading_matrix(_partner_frame(d, -1.0, direction)[0]).double()[:, 2]
    for p, side, hand, gap in ((pa, -1.0, L_HAND, -0.012), (pb, 1.0, R_HAND, 0.012)):
        heading, offset = _partner_frame(d, side, direction)
        tr = offset.expand(F, 3).clone()
        tr[:, 1] += _ground_shift(p, body)
        reach(p, {hand: (joined + facing_a * gap).expand(F, 3)}, None, transl=tr, heading=heading, body=body)
    return _pair_from_poses(pa, pb, fps, "lead_follow", d, direction, body)


# ---- descriptions: what text-to-motion matches actions against ----------------------------------------------

DESCRIPTIONS: dict[str, str] = {
    "idle": "standing still and waiting, breathing, shifting weight; idle, pose, watch, look, talk, listen, rest",
    "walk": "walking forward at a steady pace; stroll, wander, march, stride, hike",
    "run": "running fast, jogging, sprinting, racing, rushing, chasing",
    "jump": "jumping up on the spot with both arms raised, hopping, leaping, bouncing, jump to dunk",
    "wave": "waving a hand hello or goodbye, greeting someone, saluting",
    "dance": "dancing alone, grooving to music with bouncing knees, swaying hips, swinging arms; party, club",
    "box": "boxing: guard up, throwing punches, jabs and crosses, sparring, punching a bag",
    "fence": "fencing with a sword, a lunge, en garde, a duel",
    "turn_around": "turning around on the spot to face the other way",
    "sit_down": "sitting down on a chair or bench, taking a seat",
    "kick": "kicking a ball or an object with the leg, a soccer football kick, punt",
    "bow": "bowing forward from the hips to greet or thank an audience, a curtsy",
    "clap": "clapping hands together, applauding, cheering",
    "point": "pointing with an arm at something, gesturing, indicating a direction",
    "crouch": "crouching down into a squat, kneeling low, ducking",
    "crawl": "crawling on hands and knees on all fours like a baby, creeping",
    "lie_down": "lying down flat on the floor or ground, resting, going to sleep",
    "stand_up": "standing up, getting up, rising from the floor, a chair or a squat",
    "throw": "throwing a ball overhand, tossing, pitching a baseball, hurling an object",
    "catch": "catching a ball with both hands",
    "push": "pushing something heavy like a cart, a door or a car, shoving",
    "pull": "pulling a rope, dragging or hauling something, tug of war",
    "carry": "carrying a crate or a heavy load in both arms, holding and lifting it while walking",
    "stretch": "stretching the body and arms overhead, warming up, exercise, yoga",
    "spin": "spinning around on the spot, twirling, a pirouette, whirling",
    "climb_steps": "climbing steps, going up stairs, a staircase, ascending",
    "dribble": "dribbling a basketball, bouncing a ball while moving, playing basketball",
    "salsa": "salsa dancing, latin dance steps with hip motion: merengue, bachata, samba, cha-cha",
    "dance_pair": "two people dancing together facing each other, dance with a partner at a party",
    "box_pair": "two boxers sparring, boxing each other, trading punches",
    "handshake": "two people shaking hands, a handshake greeting, meeting and greeting each other",
    "hug": "two people hugging each other, an embrace, a cuddle, arms around each other",
    "high_five": "two people giving each other a high five, slapping raised hands, celebrating",
    "push_pair": "one person pushes or shoves another person, who stumbles back",
    "fight": "two people fighting each other, a brawl, a martial arts fight, wrestling, punching and kicking",
    "carry_pair": "one person carries another person on the back, a piggyback ride, lifting a partner",
    "lead_follow": "a couple dancing together in a closed hold, partner dance: one leads, the other follows; "
                   "tango, waltz, ballroom, swing",
}

_NEW: dict[str, tuple[Callable, bool, str | None]] = {
    "kick": (kick, False, None), "bow": (bow, False, None), "clap": (clap, False, None),
    "point": (point, False, None), "crouch": (crouch, False, None), "crawl": (crawl, False, None),
    "lie_down": (lie_down, False, None), "stand_up": (stand_up, False, None), "throw": (throw, False, None),
    "catch": (catch, False, None), "push": (push, False, None), "pull": (pull, False, None),
    "carry": (carry, False, None), "stretch": (stretch, False, None), "spin": (spin, False, None),
    "climb_steps": (climb_steps, False, None), "dribble": (dribble, False, None), "salsa": (salsa, False, None),
    "hug": (hug, True, "idle"), "high_five": (high_five, True, "wave"), "push_pair": (push_pair, True, "push"),
    "fight": (fight, True, "box"), "carry_pair": (carry_pair, True, "carry"),
    "lead_follow": (lead_follow, True, "dance"),
}

for _name, _text in DESCRIPTIONS.items():
    _fn, _pair, _solo = _NEW.get(_name, (None, False, None))
    # steps rise above the floor and a piggyback rider rides: regrounding must not pull them down
    register(_name, _fn, _text, pair=_pair, solo=_solo, airborne=_name in ("climb_steps", "carry_pair"))
register("dance_pair", None, DESCRIPTIONS["dance_pair"], solo="dance")
register("box_pair", None, DESCRIPTIONS["box_pair"], solo="box")
register("handshake", None, DESCRIPTIONS["handshake"], solo="wave")
