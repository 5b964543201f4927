import math

import numpy as np
import pytest
import torch

from avatars import motion_library as ml
from avatars.body import DEFAULT_BODY_PATH, default_body
from avatars.contact import (flat_foot_heights, foot_contacts, foot_slide, ground, knee_angles, lock_feet,
                             make_skate_free, stance_root_motion, two_bone_ik)
from avatars.motion import Motion
from render.rotations import axis_angle_to_matrix

needs_default = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")


def _rot(axis, angle):
    """Rodrigues' formula written out, independent of the rotation module."""
    axis = axis / axis.norm()
    K = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                     dtype=axis.dtype)
    return torch.eye(3, dtype=axis.dtype) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_two_bone_ik_reaches_reachable_targets_with_the_least_knee_change():
    g = torch.Generator().manual_seed(0)
    F = 64
    hip = torch.randn(F, 3, generator=g, dtype=torch.float64)
    u = torch.randn(F, 3, generator=g, dtype=torch.float64) * 0.4
    side = torch.randn(F, 3, generator=g, dtype=torch.float64)
    n = torch.nn.functional.normalize(torch.cross(u, side, dim=-1), dim=-1)
    bend = torch.rand(F, generator=g, dtype=torch.float64) * 2.0 + 0.2
    v = torch.stack([_rot(n[i], float(bend[i])) @ u[i] for i in range(F)]) * 1.1  # shank in the bend plane
    knee, ankle = hip + u, hip + u + v
    # targets at a reachable distance in a random direction
    lu, lv = u.norm(dim=-1), v.norm(dim=-1)
    d = (lu - lv).abs() + (lu + lv - (lu - lv).abs()) * (0.1 + 0.8 * torch.rand(F, generator=g, dtype=torch.float64))
    way = torch.nn.functional.normalize(torch.randn(F, 3, generator=g, dtype=torch.float64), dim=-1)
    target = hip + way * d[:, None]
    knee_rot, hip_rot = two_bone_ik(hip, knee, ankle, target, n)
    reached = hip + (hip_rot @ (u + (knee_rot @ v[..., None])[..., 0])[..., None])[..., 0]
    assert (reached - target).norm(dim=-1).max() < 1e-6
    assert (hip_rot @ (knee_rot @ v[..., None]))[..., 0].norm(dim=-1).sub(lv).abs().max() < 1e-9  # rigid bones
    # slow reference: the smallest knee turn about n that gives the wanted hip-ankle distance, by grid search
    grid = torch.linspace(-math.pi, math.pi, 4001, dtype=torch.float64)
    for i in range(0, F, 8):
        a = grid[:, None]  # Rodrigues' rotation of the shank for every grid angle at once
        nv = torch.cross(n[i], v[i], dim=0)
        rv = v[i] * torch.cos(a) + nv * torch.sin(a) + n[i] * (n[i] @ v[i]) * (1 - torch.cos(a))
        f = (u[i] + rv).norm(dim=-1) - d[i]
        cross = torch.nonzero(f[:-1] * f[1:] <= 0)[:, 0]
        roots = grid[cross] - f[cross] * (grid[cross + 1] - grid[cross]) / (f[cross + 1] - f[cross])
        best = roots[roots.abs().argmin()]
        ang = torch.acos(((knee_rot[i].trace() - 1) / 2).clamp(-1, 1))
        assert abs(float(ang) - abs(float(best))) < 1e-3


def test_foot_slide_and_contacts_on_known_feet():
    F = 6
    J = torch.zeros(F, 24, 3)
    h = torch.tensor([0.08, 0.08, 0.03, 0.03])
    J[:, [7, 8], 1] = 0.08
    J[:, [10, 11], 1] = 0.03
    J[:, 7, 0] = torch.arange(F) * 0.01  # left heel slides 1 cm per frame, left toe too
    J[:, 10, 0] = torch.arange(F) * 0.01
    J[:, 8, 1] = J[:, 11, 1] = 0.3  # right foot in the air
    J[3:, 11, 1] = 0.03  # right toe lands at frame 3 and stays
    c = foot_contacts(J, h)
    assert c[:, 0].all() and c[:, 1].tolist() == [False] * 3 + [True] * 3
    s = foot_slide(J, h)
    assert torch.allclose(s[:, 0], torch.full((F - 1,), 0.01))
    assert torch.isnan(s[:2, 1]).all() and torch.allclose(s[3:, 1], torch.zeros(2))
    # a swing foot skimming the floor for one frame is not a stance with min_frames=2
    J[:, 8, 1] = 0.3
    J[1, 8, 1] = 0.08
    assert not foot_contacts(J, h, min_frames=2)[:3, 1].any()


def _skating_walk(fps=15.0, seconds=1.6):
    """The library's walking legs with a root pushed at constant speed: feet skate."""
    F, t = ml._time(seconds, fps)
    p, _, _ = ml._gait(t, 1.0, ml._WALK)
    m = Motion(fps, torch.zeros(default_body().num_betas), torch.zeros(F, 3), p.body_pose(),
               torch.stack([torch.zeros(F), torch.zeros(F), 2.0 * t.float()], -1))
    return ground(m, per_frame=True)


def _slide_cm(m):
    body = default_body()
    J = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl).joints
    s = foot_slide(J, flat_foot_heights(body), min_frames=2) * 100
    return float(s[~torch.isnan(s)].mean()), J


@needs_default
def test_stance_root_motion_and_lock_feet_remove_skate():
    m = _skating_walk()
    before, _ = _slide_cm(m)
    assert before > 2.0
    carried = stance_root_motion(m)
    after, J = _slide_cm(lock_feet(carried))
    assert after < 0.5
    assert carried.transl[-1, 2] - carried.transl[0, 2] > 1.0  # the legs still walk forward
    assert torch.equal(carried.transl[:, 1], m.transl[:, 1])
    knees = knee_angles(J)
    assert knees.min() > 5.0 and knees.max() < 70.0


@needs_default
def test_lock_feet_pins_feet_of_a_swaying_pelvis():
    F = 12
    t = torch.arange(F) / 12.0
    pose = torch.zeros(F, 23, 3)
    pose[:, 15, 2] = 1.2
    go = torch.zeros(F, 3)
    go[:, 1] = 0.3 * torch.sin(2 * math.pi * t)  # pelvis turns left and right, feet should stay
    tr = torch.stack([0.05 * torch.sin(2 * math.pi * t), torch.zeros(F), torch.zeros(F)], -1)
    m = ground(Motion(12.0, torch.zeros(default_body().num_betas), go, pose, tr), per_frame=True)
    before, _ = _slide_cm(m)
    after, _ = _slide_cm(make_skate_free(m, travel=False))
    assert before > 1.0 and after < 0.2
    # leg joints only: the upper body is untouched
    fixed = lock_feet(m)
    upper = [j - 1 for j in range(1, 24) if j not in (1, 2, 4, 5)]
    assert torch.allclose(axis_angle_to_matrix(fixed.body_pose[:, upper]), axis_angle_to_matrix(m.body_pose[:, upper]),
                          atol=1e-5)


@needs_default
def test_ground_puts_the_lowest_foot_point_on_the_floor():
    m = _skating_walk()
    lifted = m.copy(transl=m.transl + torch.tensor([0.0, 0.7, 0.0]))
    g = ground(lifted)
    body = default_body()
    v = body(betas=g.betas[None], global_orient=g.global_orient, body_pose=g.body_pose, transl=g.transl).vertices
    assert abs(float(v[..., 1].min())) < 1e-5
    assert torch.allclose(g.transl - m.transl, (g.transl - m.transl)[:1].expand_as(g.transl), atol=1e-6)


@needs_default
def test_foot_only_grounding_matches_the_full_forward_pass():
    from avatars.contact import _foot_vertex_mask, _lowest

    body = default_body()
    g = torch.Generator().manual_seed(3)
    F = 7
    m = Motion(30.0, torch.randn(body.num_betas, generator=g) * 0.5, torch.randn(F, 3, generator=g) * 0.4,
               torch.randn(F, 23, 3, generator=g) * 0.4, torch.randn(F, 3, generator=g))
    out = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    ref = out.vertices[:, _foot_vertex_mask(body), 1].min(1).values
    assert torch.allclose(_lowest(m, body, per_frame=False), ref, atol=1e-5)
    assert torch.allclose(_lowest(m, body, per_frame=True), out.vertices[..., 1].min(1).values, atol=1e-6)


def test_true_runs_match_a_plain_scan_on_random_masks():
    from avatars.contact import true_runs

    rng = np.random.default_rng(3)
    for _ in range(200):
        mask = rng.random(int(rng.integers(0, 25))) < 0.5
        expected, i = [], 0
        while i < len(mask):  # the obvious scan: from each True, walk to the end of its run
            if mask[i]:
                j = i
                while j < len(mask) and mask[j]:
                    j += 1
                expected.append((i, j))
                i = j
            else:
                i += 1
        assert true_runs(mask) == expected == true_runs(torch.from_numpy(mask)) == true_runs(mask.tolist())
