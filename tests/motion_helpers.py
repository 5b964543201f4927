"""What the motion tests share: anatomical plausibility checks."""

import math

import torch

from avatars import motion_library as ml
from render.rotations import axis_angle_to_matrix, matrix_to_euler


def within_joint_limits(m, name):
    """Assert every joint of ``m`` stays within ``motion_library.JOINT_LIMITS`` (XYZ Euler, 1 mrad slack)."""
    eul = matrix_to_euler(axis_angle_to_matrix(m.body_pose.double()), "XYZ")
    # (a, b, c) and (a + pi, pi - b, c + pi) are the same rotation; a joint is fine if either fits
    wrap = lambda x: torch.remainder(x + math.pi, 2 * math.pi) - math.pi  # noqa: E731
    alt = torch.stack([wrap(eul[..., 0] + math.pi), wrap(math.pi - eul[..., 1]), wrap(eul[..., 2] + math.pi)], -1)
    for j, (lo, hi) in ml.JOINT_LIMITS.items():
        lo_t, hi_t = torch.tensor(lo, dtype=eul.dtype) - 1e-3, torch.tensor(hi, dtype=eul.dtype) + 1e-3
        ok = [((e >= lo_t) & (e <= hi_t)).all(-1) for e in (eul[:, j - 1], alt[:, j - 1])]
        assert (ok[0] | ok[1]).all(), f"{name}: joint {j} beyond its limits"
