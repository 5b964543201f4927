"""A procedural motion library in SMPL axis-angle, and text to motion on top of it.

``make_people(name, seconds=, fps=, speed=, direction=)`` returns one :class:`~avatars.motion.Motion`
per person, placed in one world (two for an interaction: ``*_pair``, ``handshake``); ``make`` returns the
Motion of a one-person motion. Every clip is grounded on the default body (the lowest vertex on ``y = 0`` in every
frame, except in the air phase of a jump or a run), keeps its stance feet planted (gaits travel as far
as the stance foot pushes, feet locked by leg IK: :mod:`avatars.contact`; ``benchmarks/motion.py``
measures the slide), keeps each joint inside :data:`JOINT_LIMITS`, and keeps the
hands and elbows out of the torso; the tests measure all three.

Joint conventions (SMPL, rest body facing +Z, left at +X): a negative X rotation of a hip swings the
thigh forward, a positive X rotation of a knee bends it; a positive Z rotation raises the left arm and
a negative Z rotation raises the right arm; a negative Y rotation of the left elbow (positive for the
right) folds the forearm forward.

``from_text`` maps a prompt's verbs, adverbs and number of people onto the library;
:class:`TextToMotion` is the interface a learned model (InterGen-style, SMPL output) implements to
replace it.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch

from render.errors import AmgError
from render.rotations import euler_to_matrix, matrix_to_axis_angle

from .body import default_body as _default_body
from .contact import ground as ground_contact
from .contact import make_skate_free
from .motion import Motion

__all__ = [
    "names", "make", "make_people", "from_text", "parse_text", "TextToMotion", "RuleBasedTextToMotion",
    "JOINT_LIMITS", "ground", "heading_matrix", "register", "describe", "interactions", "solo_of",
]

AUTHOR_FPS = 30.0  # motions are built at this rate at least, then resampled to the one asked for

# SMPL joint index -> (min, max) Euler XYZ angles in radians of its local rotation (anatomical ranges,
# loose: they catch a sign error or a runaway angle, not a subtle pose)
_INF = math.pi
JOINT_LIMITS: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    1: ((-2.2, -0.6, -0.8), (0.8, 0.8, 1.0)),   # left hip
    2: ((-2.2, -0.8, -1.0), (0.8, 0.6, 0.8)),   # right hip
    3: ((-0.5, -0.6, -0.4), (0.9, 0.6, 0.4)),   # spine1
    4: ((-0.05, -0.3, -0.3), (2.6, 0.3, 0.3)),  # left knee: bends one way
    5: ((-0.05, -0.3, -0.3), (2.6, 0.3, 0.3)),  # right knee
    6: ((-0.4, -0.5, -0.3), (0.6, 0.5, 0.3)),   # spine2
    7: ((-0.8, -0.4, -0.4), (0.9, 0.4, 0.4)),   # left ankle
    8: ((-0.8, -0.4, -0.4), (0.9, 0.4, 0.4)),   # right ankle
    9: ((-0.4, -0.5, -0.3), (0.6, 0.5, 0.3)),   # spine3
    10: ((-0.6, -0.2, -0.2), (0.6, 0.2, 0.2)),  # left foot (toes)
    11: ((-0.6, -0.2, -0.2), (0.6, 0.2, 0.2)),  # right foot
    12: ((-0.6, -0.6, -0.4), (0.7, 0.6, 0.4)),  # neck
    13: ((-0.3, -0.4, -0.3), (0.3, 0.4, 0.5)),  # left collar
    14: ((-0.3, -0.4, -0.5), (0.3, 0.4, 0.3)),  # right collar
    15: ((-0.5, -0.7, -0.4), (0.6, 0.7, 0.4)),  # head
    16: ((-1.6, -1.6, -1.6), (1.6, 1.2, 1.6)),  # left shoulder
    17: ((-1.6, -1.2, -1.6), (1.6, 1.6, 1.6)),  # right shoulder
    18: ((-0.3, -2.6, -0.3), (0.3, 0.05, 0.3)),  # left elbow: folds forward only (negative Y)
    19: ((-0.3, -0.05, -0.3), (0.3, 2.6, 0.3)),  # right elbow: positive Y
    20: ((-0.8, -0.6, -0.8), (0.8, 0.6, 0.8)),  # left wrist
    21: ((-0.8, -0.6, -0.8), (0.8, 0.6, 0.8)),  # right wrist
    22: ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),  # left hand
    23: ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),  # right hand
}


class _Pose:
    """Builder of ``body_pose`` from per-joint Euler XYZ angle curves ``(F,)`` in radians."""

    def __init__(self, F: int):
        self.F = F
        self.euler = torch.zeros(F, 24, 3, dtype=torch.float64)

    def set(self, joint: int, x=0.0, y=0.0, z=0.0):
        for k, v in enumerate((x, y, z)):
            self.euler[:, joint, k] += torch.as_tensor(v, dtype=torch.float64)
        return self

    def arms_down(self, angle=1.25):
        return self.set(16, z=-angle).set(17, z=angle)

    def body_pose(self) -> torch.Tensor:
        return matrix_to_axis_angle(euler_to_matrix(self.euler[:, 1:], "XYZ")).float()


def heading_matrix(degrees: float) -> torch.Tensor:
    """Rotation about +Y by ``degrees`` (0 faces +Z, the default camera; 90 faces +X)."""
    a = math.radians(degrees)
    return torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def ground(motion: Motion, body=None, airborne: torch.Tensor | None = None) -> Motion:
    """Shift ``transl.y`` per frame so the body's lowest vertex touches ``y = 0``; ``airborne (F,)``
    metres are added back afterwards (a jump's flight). ``body`` defaults to the default body. (The
    per-frame case of :func:`avatars.contact.ground`.)"""
    return ground_contact(motion, body, per_frame=True, airborne=airborne)


def _time(seconds: float, fps: float):
    if not (seconds > 0 and fps > 0):
        raise AmgError(f"motion library: seconds={seconds} and fps={fps} must be positive")
    F = max(2, int(round(seconds * fps)))
    return F, torch.arange(F, dtype=torch.float64) / fps


def _smooth_step(x):
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def _finish(pose: _Pose, fps, name, forward=None, heading=0.0, yaw=None, airborne=None, body=None,
            betas=None, travel: bool = False, contacts=None) -> Motion:
    """Apply heading and travel, ground, and plant the feet (:func:`avatars.contact.make_skate_free`).

    ``forward (F,)`` metres along the facing is the authored root path; ``travel=True`` replaces it by
    the travel the stance foot pushes (gaits), so the feet carry the body instead of sliding.
    """
    F = pose.F
    body = body if body is not None else _default_body()
    betas = torch.zeros(body.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
    yaw_f = torch.zeros(F, dtype=torch.float64) if yaw is None else torch.as_tensor(yaw, dtype=torch.float64)
    root = euler_to_matrix(pose.euler[:, 0], "XYZ")
    R = torch.stack([heading_matrix(heading + math.degrees(float(a))).double() for a in yaw_f]) @ root
    transl = torch.zeros(F, 3, dtype=torch.float64)
    if forward is not None:
        transl += torch.as_tensor(forward, dtype=torch.float64)[:, None] * heading_matrix(heading).double()[:, 2]
    m = Motion(fps, betas, matrix_to_axis_angle(R).float(), pose.body_pose(), transl.float(), name=name)
    return make_skate_free(m, body, travel=travel, airborne=airborne, contacts=contacts)


# ---- one-person motions -----------------------------------------------------------------------------

def idle(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Standing, breathing, weight shifting, arms relaxed."""
    F, t = _time(seconds, fps)
    w = 2 * math.pi * 0.25 * speed * t
    p = _Pose(F).arms_down(1.2 + 0.03 * torch.sin(w))
    p.set(18, y=-0.15).set(19, y=0.15)
    p.set(0, z=0.03 * torch.sin(w)).set(1, z=-0.03 * torch.sin(w)).set(2, z=-0.03 * torch.sin(w))
    p.set(3, x=0.02 * torch.sin(2 * w)).set(9, x=0.02 * torch.sin(2 * w + 1))
    p.set(15, y=0.15 * torch.sin(0.5 * w))
    return _finish(p, fps, "idle", heading=direction, body=body)


def _bump(phase, centre, width):
    """A smooth periodic bump over a gait cycle: 1 at ``centre``, ``phase``/``centre`` in cycles."""
    d = torch.remainder(phase - centre + 0.5, 1.0) - 0.5
    return torch.exp(-(d / width) ** 2)


@dataclass(frozen=True)
class _GaitShape:
    """Sagittal joint curves of one gait, in degrees over a cycle starting at heel strike (after
    Winter's and Novacheck's normal walking and running kinematics, simplified to bumps)."""

    cadence: float        # strides (two steps) per second at speed 1
    duty: float           # share of the cycle a foot is on the ground
    hip_mean: float       # hip flexion (thigh forward) offset and amplitude; peak flexion at heel strike
    hip_amp: float
    knee_stance: tuple    # (peak flexion, phase, width) of the loading-response bend
    knee_swing: tuple     # (peak flexion, phase, width) of the swing bend
    knee_base: float      # flexion added everywhere (negative straightens past the rest bend)
    push_off: float       # ankle plantar flexion at toe-off
    arm_amp: float        # radians of arm swing, elbow bend and forward lean of the torso
    elbow: float
    lean: float


_WALK = _GaitShape(cadence=0.95, duty=0.62, hip_mean=10.0, hip_amp=22.0, knee_stance=(14.0, 0.13, 0.07),
                   knee_swing=(59.0, 0.72, 0.11), knee_base=-2.5, push_off=14.0, arm_amp=0.35, elbow=0.2,
                   lean=0.05)
_RUN = _GaitShape(cadence=1.4, duty=0.38, hip_mean=18.0, hip_amp=30.0, knee_stance=(30.0, 0.16, 0.09),
                  knee_swing=(96.0, 0.62, 0.16), knee_base=6.0, push_off=20.0, arm_amp=0.6, elbow=1.3, lean=0.2)


def _gait(t, speed, shape: _GaitShape):
    """Joint curves of a gait and its foot contacts ``(F, 2)`` (left, right; known by construction)."""
    F = len(t)
    cycle = shape.cadence * speed * t  # cycles since the left heel strike
    p = _Pose(F).arms_down(1.25)
    rad = math.radians
    contacts = []
    for side, (hip, knee, ankle) in enumerate(((1, 4, 7), (2, 5, 8))):
        ph = torch.remainder(cycle + 0.5 * side, 1.0)
        flex = shape.hip_mean + shape.hip_amp * torch.cos(2 * math.pi * ph)
        bend = (shape.knee_base + shape.knee_stance[0] * _bump(ph, *shape.knee_stance[1:])
                + shape.knee_swing[0] * _bump(ph, *shape.knee_swing[1:]))
        p.set(hip, x=-rad(1) * flex)  # negative X swings the thigh forward
        p.set(knee, x=rad(1) * bend)
        # plantar flexion pushes off; dorsiflexion in swing lifts the toes clear of the floor
        p.set(ankle, x=rad(shape.push_off) * _bump(ph, shape.duty - 0.02, 0.06) - rad(10) * _bump(ph, 0.8, 0.1))
        contacts.append(ph < shape.duty)
    s = torch.sin(2 * math.pi * cycle)
    # arms swing against the legs: left arm forward (negative Y) when the right leg is forward
    a = shape.arm_amp
    p.set(16, y=-a * s).set(17, y=-a * s)
    p.set(18, y=-shape.elbow - 0.2 * torch.clamp(s, min=0)).set(19, y=shape.elbow + 0.2 * torch.clamp(-s, min=0))
    p.set(3, x=shape.lean, y=-0.06 * s).set(9, y=0.08 * s)
    p.set(0, y=-0.05 * s)
    return p, torch.stack(contacts, -1), cycle


def walk(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Walking forward along the heading at about 1.2 m/s (times ``speed``); the stance foot carries the
    body, so travel comes from the legs."""
    F, t = _time(seconds, fps)
    p, contacts, _ = _gait(t, speed, _WALK)
    return _finish(p, fps, "walk", heading=direction, body=body, travel=True, contacts=contacts)


def run(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Running at about 3 m/s (times ``speed``), arms bent and pumping, with a flight phase."""
    F, t = _time(seconds, fps)
    p, contacts, cycle = _gait(t, speed, _RUN)
    # ballistic flight between toe-off and the other foot's strike
    flight_s = (0.5 - _RUN.duty) / (_RUN.cadence * speed)
    u = torch.remainder(cycle, 0.5) - _RUN.duty
    air = torch.where(u > 0, 0.5 * 9.81 * (u / (_RUN.cadence * speed)) * (flight_s - u / (_RUN.cadence * speed)),
                      torch.zeros_like(u))
    return _finish(p, fps, "run", heading=direction, body=body, travel=True, contacts=contacts, airborne=air)


def jump(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Jumping on the spot with both arms raised overhead; one jump per 1.2 s (divided by ``speed``)."""
    F, t = _time(seconds, fps)
    period = 1.2 / speed
    u = torch.remainder(t, period) / period  # 0..1 per jump: crouch, push, flight, land
    crouch = torch.exp(-((u - 0.25) / 0.1) ** 2) + torch.exp(-((u - 0.95) / 0.06) ** 2)
    flight_u = ((u - 0.4) / 0.4).clamp(0, 1)
    air = 0.35 * 4 * flight_u * (1 - flight_u)  # ballistic arc, 35 cm apex
    raise_arms = 1.25 + 0.2 * torch.sin(math.pi * flight_u)  # from overhead-ish to fully up in the air
    p = _Pose(F)
    p.set(16, z=raise_arms).set(17, z=-raise_arms)  # arms up: left +Z, right -Z
    p.set(18, y=-0.15).set(19, y=0.15)
    p.set(1, x=-0.9 * crouch).set(2, x=-0.9 * crouch)
    p.set(4, x=1.5 * crouch).set(5, x=1.5 * crouch)
    p.set(7, x=-0.55 * crouch + 0.4 * (air > 0)).set(8, x=-0.55 * crouch + 0.4 * (air > 0))
    p.set(3, x=0.35 * crouch)
    return _finish(p, fps, "jump", heading=direction, airborne=air, body=body)


def wave(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Waving the right hand: upper arm out to the side and rolled back, forearm up and swaying."""
    F, t = _time(seconds, fps)
    ph = 2 * math.pi * 1.5 * speed * t
    up = _smooth_step(t / 0.6)
    p = _Pose(F)
    p.set(16, z=-1.2).set(18, y=-0.2)
    # rolling the horizontal upper arm about its own axis turns the elbow's forward fold into an upward
    # one, so the wave is just the elbow opening and closing in the frontal plane
    p.set(17, x=-1.5 * up, z=1.2 * (1 - up))
    p.set(19, y=(1.6 + 0.35 * torch.sin(ph)) * up)
    p.set(15, y=-0.15 * up)
    return _finish(p, fps, "wave", heading=direction, body=body)


def dance(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None, phase=0.0):
    """A grooving dance: knee bounce on the beat, hip sway, arms swinging overhead and down."""
    F, t = _time(seconds, fps)
    beat = 2 * math.pi * 1.0 * speed * t + phase
    bounce = 0.5 * (1 - torch.cos(2 * beat))
    p = _Pose(F)
    p.set(1, x=-0.3 * bounce, z=0.1).set(2, x=-0.3 * bounce, z=-0.1)
    p.set(4, x=0.55 * bounce).set(5, x=0.55 * bounce)
    p.set(7, x=-0.25 * bounce).set(8, x=-0.25 * bounce)
    p.set(0, z=0.08 * torch.sin(beat), y=0.25 * torch.sin(beat))
    p.set(3, z=-0.1 * torch.sin(beat)).set(9, z=-0.1 * torch.sin(beat), y=-0.2 * torch.sin(beat))
    p.set(16, z=0.2 + 0.8 * torch.sin(beat), y=-0.4).set(17, z=-0.2 + 0.8 * torch.sin(beat), y=0.4)
    p.set(18, y=-0.9 - 0.4 * torch.cos(beat)).set(19, y=0.9 + 0.4 * torch.cos(beat))
    p.set(15, x=0.1 * torch.sin(2 * beat))
    return _finish(p, fps, "dance", heading=direction, body=body)


def _guard(p: _Pose):
    """Boxing guard: fists up in front of the chin, elbows down, knees soft, slight crouch."""
    p.set(16, z=-0.95, y=-0.75).set(17, z=0.95, y=0.75)
    p.set(18, y=-2.1).set(19, y=2.1)
    p.set(1, x=-0.25, z=0.15).set(2, x=-0.25, z=-0.15).set(4, x=0.45).set(5, x=0.45)
    p.set(7, x=-0.2).set(8, x=-0.2).set(3, x=0.12).set(12, x=-0.1).set(15, x=-0.05)
    return p


def box(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None, phase=0.0):
    """Boxing: guard stance, alternating straight punches (jab with the left, cross with the right)."""
    F, t = _time(seconds, fps)
    period = 0.9 / speed
    u = torch.remainder(t + phase * period, 2 * period) / period  # 0..2: left punch in 0..1, right in 1..2
    lp = torch.exp(-((u - 0.5) / 0.15) ** 2)
    rp = torch.exp(-((u - 1.5) / 0.15) ** 2)
    p = _guard(_Pose(F))
    # a punch extends the elbow and lifts the upper arm forward to shoulder height
    p.set(16, z=0.85 * lp, y=-0.7 * lp).set(18, y=2.0 * lp)
    p.set(17, z=-0.85 * rp, y=0.7 * rp).set(19, y=-2.0 * rp)
    p.set(9, y=0.3 * rp - 0.3 * lp).set(3, y=0.15 * rp - 0.15 * lp)
    return _finish(p, fps, "box", heading=direction, body=body)


def fence(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Fencing: en garde side stance, sword arm forward, repeated lunges."""
    F, t = _time(seconds, fps)
    period = 1.5 / speed
    u = torch.remainder(t, period) / period
    lunge = torch.exp(-((u - 0.5) / 0.15) ** 2)
    p = _Pose(F)
    p.set(0, y=0.6)  # the body turns side-on, right side leading along the heading
    p.set(2, x=-0.5 - 0.6 * lunge, y=-0.3).set(5, x=0.5 + 0.3 * lunge)  # front (right) leg
    p.set(1, x=0.25 + 0.2 * lunge, z=0.25).set(4, x=0.4 - 0.3 * lunge)  # back (left) leg
    p.set(8, x=-0.2).set(7, x=-0.1)
    p.set(17, z=0.35 - 0.35 * lunge, y=0.6 + 0.15 * lunge).set(19, y=0.6 - 0.55 * lunge)  # sword arm
    p.set(16, z=1.1, y=0.2).set(18, y=-1.5)  # back arm raised and bent
    p.set(12, y=-0.4).set(15, y=-0.3)  # head looks along the blade
    return _finish(p, fps, "fence", heading=direction, forward=0.35 * lunge, body=body, travel=True)


def turn_around(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Turning 180 degrees on the spot with small steps, arms relaxed."""
    F, t = _time(seconds, fps)
    T = min(2.0 / speed, float(t[-1]) if F > 1 else 1.0)
    u = _smooth_step(t / T)
    step = torch.sin(2 * math.pi * 2.0 * t / T) * (u > 0) * (u < 1)
    p = _Pose(F).arms_down(1.2)
    p.set(18, y=-0.2).set(19, y=0.2)
    p.set(1, x=-0.25 * step.clamp(min=0)).set(4, x=0.5 * step.clamp(min=0))
    p.set(2, x=0.25 * step.clamp(max=0)).set(5, x=-0.5 * step.clamp(max=0))
    p.set(12, y=0.3 * torch.sin(math.pi * u))
    return _finish(p, fps, "turn_around", heading=direction, yaw=math.pi * u, body=body)


def sit_down(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """From standing, lowering into a seated pose (thighs level, as on a chair) and staying there."""
    F, t = _time(seconds, fps)
    u = _smooth_step((t - 0.3) / (1.6 / speed))
    p = _Pose(F).arms_down(1.2 - 0.2 * u)
    p.set(1, x=-1.5 * u).set(2, x=-1.5 * u)
    p.set(4, x=1.5 * u).set(5, x=1.5 * u)
    p.set(3, x=0.35 * u * (1 - u) * 4)  # leaning forward while lowering
    p.set(16, y=-0.4 * u).set(17, y=0.4 * u).set(18, y=-0.6 * u).set(19, y=0.6 * u)  # hands onto the thighs
    return _finish(p, fps, "sit_down", heading=direction, forward=-0.25 * u, body=body)


# ---- interactions -----------------------------------------------------------------------------------

def _facing_pair(a: Motion, b: Motion, distance: float, direction: float) -> list[Motion]:
    """Place ``a`` and ``b`` (both authored at the origin facing +Z) facing each other ``distance`` apart
    along the axis perpendicular to ``direction`` (so a camera looking along the heading sees both)."""
    out = []
    for m, side in ((a, -1.0), (b, 1.0)):
        turned = m.transformed(heading_matrix(direction - side * 90.0))
        offset = heading_matrix(direction) @ torch.tensor([side * distance / 2, 0.0, 0.0])
        out.append(turned.copy(transl=turned.transl + offset))
    return out


def dance_pair(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two people dancing facing each other, 1.6 m apart, one half a beat behind the other."""
    a = dance(seconds, fps, speed, 0.0, body)
    b = dance(seconds, fps, speed, 0.0, body, phase=math.pi / 2)
    return _facing_pair(a.copy(name="dance_pair/0"), b.copy(name="dance_pair/1"), 1.6, direction)


def box_pair(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two boxers facing each other, 1.3 m apart, trading punches in turn."""
    a = box(seconds, fps, speed, 0.0, body)
    b = box(seconds, fps, speed, 0.0, body, phase=0.5)
    return _facing_pair(a.copy(name="box_pair/0"), b.copy(name="box_pair/1"), 1.3, direction)


def handshake(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Two people facing each other shaking right hands: reach, shake, release.

    Their distance and sideways offset are chosen so the right hands meet at full reach (measured on
    the body used for grounding).
    """
    body = body if body is not None else _default_body()
    F, t = _time(seconds, fps)
    reach = _smooth_step((t - 0.2) / (0.8 / speed)) * _smooth_step((seconds - 0.3 - t) / 0.6)
    shake = 0.12 * torch.sin(2 * math.pi * 2.5 * speed * t) * reach
    p = _Pose(F).arms_down(1.2)
    p.set(17, z=-0.45 * reach, y=0.95 * reach)  # right upper arm forward and down
    p.set(19, y=0.55 * reach + shake)  # forearm raised to meet the partner's; the shake pumps it
    p.set(18, y=-0.2).set(3, x=0.08 * reach).set(12, x=0.15 * reach)
    m = _finish(p, fps, "handshake", body=body)
    with torch.no_grad():
        out = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    k = int(torch.argmax(reach))
    hand = out.joints[k, 23]
    # facing each other at distance d, the hands (reach hz ahead, hx to the side) meet when d = 2 hz and
    # each person steps hx along its own left
    pair = _facing_pair(m.copy(name="handshake/0"), m.copy(name="handshake/1"), 2 * float(hand[2]) + 0.02,
                        direction)
    shift = heading_matrix(direction) @ torch.tensor([0.0, 0.0, float(hand[0])])
    pair[0] = pair[0].copy(transl=pair[0].transl + shift)
    pair[1] = pair[1].copy(transl=pair[1].transl - shift)
    return pair


_LIBRARY: dict[str, Callable] = {
    "idle": idle, "walk": walk, "run": run, "jump": jump, "wave": wave, "dance": dance, "box": box,
    "fence": fence, "turn_around": turn_around, "sit_down": sit_down,
    "dance_pair": dance_pair, "box_pair": box_pair, "handshake": handshake,
}
_PAIRS = {"dance_pair", "box_pair", "handshake"}
_AIRBORNE = {"jump", "run"}  # motions with a flight phase


_DESCRIPTIONS: dict[str, str] = {}
_SOLO: dict[str, str] = {}


def register(name: str, fn: Callable | None, description: str, pair: bool = False, solo: str | None = None,
             airborne: bool = False):
    """Add a motion to the library (or, with ``fn=None``, describe an existing one).

    ``description`` is the text actions are matched against; ``solo`` names the one-person motion an
    interaction falls back to when fewer or more than two people do it; ``airborne`` marks a motion with
    a body off the floor on purpose (regrounding after resampling only lifts it out of the floor).
    """
    if fn is not None:
        _LIBRARY[name] = fn
        if pair:
            _PAIRS.add(name)
        if airborne:
            _AIRBORNE.add(name)
    _DESCRIPTIONS[name] = description
    if solo is not None:
        _SOLO[name] = solo


def describe(name: str) -> str:
    """The written description of a library motion (what text-to-motion matches actions against)."""
    return _DESCRIPTIONS.get(name) or (_LIBRARY[name].__doc__ or name).strip()


def interactions() -> list[str]:
    """Names of the two-person motions."""
    return [n for n in _LIBRARY if n in _PAIRS]


def solo_of(name: str) -> str:
    """The one-person motion an interaction falls back to for a single person (``hug`` -> ``idle``)."""
    return _SOLO.get(name, "idle") if name in _PAIRS else name


def names() -> list[str]:
    """Names :func:`make` accepts (one-person motions first, then interactions)."""
    return [n for n in _LIBRARY if n not in _PAIRS] + [n for n in _LIBRARY if n in _PAIRS]


def make_people(name: str, seconds: float = 3.0, fps: float = 30.0, speed: float = 1.0, direction: float = 0.0,
                body=None) -> list[Motion]:
    """Build a library motion as one Motion per person (one for a solo motion, two for an interaction).

    Args:
        name: one of :func:`names`.
        seconds, fps: length and frame rate.
        speed: tempo multiplier (0.5 half speed; travel speed scales too).
        direction: heading in degrees about +Y (0 faces +Z, the default camera; 90 faces +X).
        body: the :class:`~avatars.body.BodyModel` used for grounding (default body when omitted).
    Returns:
        A list of Motions in one world, ``round(seconds * fps)`` frames each.
    """
    if name not in _LIBRARY:
        raise AmgError(f"motion {name!r}: unknown; expected one of {', '.join(names())}")
    if not (speed > 0 and math.isfinite(speed)):
        raise AmgError(f"motion {name!r}: speed {speed} must be positive")
    F, _ = _time(seconds, fps)
    # feet are planted and the root carried at a fine frame rate, then sampled: a coarse rate would
    # step the stance foot in jumps
    rate = max(float(fps), AUTHOR_FPS)
    made = _LIBRARY[name](seconds=F / fps + 2.0 / rate if rate != fps else seconds, fps=rate, speed=speed,
                          direction=float(direction), body=body)
    made = list(made) if isinstance(made, (list, tuple)) else [made]
    if rate == fps:
        return made
    # interpolated frames can dip into the floor or hover: ground again (flights only lift out of it)
    return [ground_contact(m.resample(fps)[:F], body, per_frame=True, lift_only=name in _AIRBORNE) for m in made]


def make(name: str, seconds: float = 3.0, fps: float = 30.0, speed: float = 1.0, direction: float = 0.0,
         body=None) -> Motion:
    """Build a one-person library motion (arguments as :func:`make_people`).

    Interactions need :func:`make_people`; for them this still returns the list of Motions, as it always
    did, with a ``DeprecationWarning``.
    """
    people = make_people(name, seconds=seconds, fps=fps, speed=speed, direction=direction, body=body)
    if name in _PAIRS:
        warnings.warn(f"motion_library.make({name!r}) returns several people; use make_people",
                      DeprecationWarning, stacklevel=2)
        return people
    return people[0]


# ---- text to motion ---------------------------------------------------------------------------------

class TextToMotion(ABC):
    """Prompt -> SMPL motions for the people in it, in one world (Y-up, metres).

    A learned model (e.g. InterGen producing SMPL parameters) implements ``__call__``; the output
    contract is that of :func:`from_text`.
    """

    @abstractmethod
    def __call__(self, text: str, seconds: float = 3.0, fps: float = 30.0,
                 num_people: int | None = None) -> list[Motion]:
        """One :class:`Motion` per person, all ``round(seconds * fps)`` frames at ``fps``."""


def parse_text(text: str, num_people: int | None = None) -> dict:
    """What :func:`from_text` reads from a prompt: motion names, speed, heading and number of people.

    Returns ``{"motions": [names...], "speed": float, "direction": degrees, "num_people": int,
    "unknown": bool}``; ``unknown`` is true when no action matched (the motion falls back to idle). The
    prompt is read by :mod:`avatars.prompt_grammar` and matched by :mod:`avatars.text_to_motion`.
    """
    from .text_to_motion import LibraryTextToMotion

    plan = LibraryTextToMotion().plan_text(text, num_people)
    first = plan.choices[0]
    return {"motions": [c.motion for c in plan.choices], "speed": first.speed, "direction": first.direction,
            "num_people": plan.num_people, "unknown": not any(c.matched and c.action for c in plan.choices)}


def from_text(text: str, seconds: float = 3.0, fps: float = 30.0, num_people: int | None = None,
              body=None) -> list[Motion]:
    """Pick, parameterise and place library motions from a prompt.

    Each action the prompt names ("walks", "is boxing", "walks then sits down") is matched to the motion
    whose description means the same (:class:`avatars.text_to_motion.LibraryTextToMotion`); actions play
    in sequence; speed words scale the tempo ("slowly" 0.6x, "quickly" 1.5x), "towards the camera"/"to
    the left" set the heading, and the number of people comes from the prompt's noun phrases ("two
    people", "a woman and a man", "a couple") or ``num_people``. Two people get an interaction when one
    matches (facing each other); otherwise several people do the motion side by side, 1 m apart, with
    staggered tempo. An action nothing matches gives idle with a warning.
    """
    from .text_to_motion import LibraryTextToMotion

    return LibraryTextToMotion(body=body)(text, seconds=seconds, fps=fps, num_people=num_people)


class RuleBasedTextToMotion(TextToMotion):
    """:class:`TextToMotion` backed by the procedural library (:func:`from_text`)."""

    def __init__(self, body=None):
        self.body = body

    def __call__(self, text, seconds=3.0, fps=30.0, num_people=None):
        return from_text(text, seconds=seconds, fps=fps, num_people=num_people, body=self.body)


# ---- walks along curved paths (the 3D-box trajectory model's training recipe: people turning along arcs
# and S-curves, so their boxes turn and foreshorten) --------------------------------------------------------

def _curved_walk(t, speed, yaw, fps, name, direction, body):
    """A walk whose facing turns by ``yaw (F,)`` radians about +Y (positive: to the person's left).

    The stance foot carries the body (:func:`avatars.contact.stance_root_motion`) in the world, so the
    root follows the turning facing: the path bends with the heading instead of the body sliding sideways.
    """
    p, contacts, _ = _gait(t, speed, _WALK)
    return _finish(p, fps, name, heading=direction, yaw=yaw, body=body, travel=True, contacts=contacts)


def walk_arc(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None, turn=90.0):
    """Walking along an arc: the facing turns steadily by ``turn`` degrees to the left over the clip
    (negative: to the right), a circle segment of constant curvature."""
    F, t = _time(seconds, fps)
    yaw = math.radians(turn) * t / max(float(t[-1]), 1e-9)
    return _curved_walk(t, speed, yaw, fps, "walk_arc" if turn >= 0 else "walk_arc_right", direction, body)


def walk_arc_right(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None):
    """Walking along an arc turning 90 degrees to the right (:func:`walk_arc` with ``turn=-90``)."""
    return walk_arc(seconds, fps, speed, direction, body, turn=-90.0)


def walk_s_curve(seconds=3.0, fps=30.0, speed=1.0, direction=0.0, body=None, swing=45.0):
    """Walking an S-curve: the facing swings ``swing`` degrees to the left, back through the heading and
    as far to the right (one period of ``swing * sin(2 pi t / T)`` over the clip), so the path weaves
    left then right of the heading."""
    F, t = _time(seconds, fps)
    yaw = math.radians(swing) * torch.sin(2 * math.pi * t / max(float(t[-1]), 1e-9))
    return _curved_walk(t, speed, yaw, fps, "walk_s_curve", direction, body)


register("walk_arc", walk_arc, "walking along an arc, a curved path turning steadily to the left")
register("walk_arc_right", walk_arc_right, "walking along an arc, a curved path turning steadily to the right")
register("walk_s_curve", walk_s_curve, "walking an s curve, a winding path weaving left and right")


# the keyframed vocabulary and every motion's description register themselves here
from . import motion_vocabulary  # noqa: E402,F401
