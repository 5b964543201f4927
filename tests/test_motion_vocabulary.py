"""The keyframed motion vocabulary: contacts hold (hands in a hug, palms in a high five, feet on the floor
without skating), every motion is described, and text-to-motion sequences, directions, paths and speeds."""

import math

import pytest
import torch

from avatars import motion_library as ml
from avatars.body import DEFAULT_BODY_PATH, default_body
from avatars.contact import flat_foot_heights, foot_slide
from avatars.motion_vocabulary import _NEW, L_HAND, R_HAND, SPINE3, joint_positions, keyframed, reach
from avatars.text_to_motion import LibraryTextToMotion
from render.rotations import axis_angle_to_matrix, euler_to_matrix
from motion_helpers import within_joint_limits

needs_default = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")
FPS, SECONDS = 8.0, 2.0
# motions whose feet leave the floor or turn on it by design: a spin pivots on the feet, lying down and
# crawling put the body on the floor, steps climb above y = 0, a piggyback rider rides
NO_STANCE = {"spin", "lie_down", "crawl", "climb_steps"}
OFF_GROUND = {("carry_pair", 1), ("climb_steps", 0)}


@pytest.fixture(scope="module")
def vocabulary():
    return {name: ml.make_people(name, seconds=SECONDS, fps=FPS) for name in _NEW}


def _out(m):
    return default_body()(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose,
                          transl=m.transl)


def test_vocabulary_size_and_descriptions():
    names = ml.names()
    assert len(names) >= 30
    need = {"kick", "bow", "clap", "point", "crouch", "crawl", "lie_down", "stand_up", "throw", "catch", "push",
            "pull", "carry", "stretch", "spin", "climb_steps", "salsa", "hug", "high_five", "push_pair", "fight",
            "carry_pair", "lead_follow"}
    assert need <= set(names)
    assert {"hug", "high_five", "push_pair", "fight", "carry_pair", "lead_follow"} <= set(ml.interactions())
    for n in names:
        assert len(ml.describe(n).split()) >= 4, n
        assert ml.solo_of(n) in names


@needs_default
def test_every_new_motion_is_grounded_and_does_not_skate(vocabulary):
    h = flat_foot_heights(default_body())
    for name, people in vocabulary.items():
        assert len(people) == (2 if name in ml.interactions() else 1), name
        for k, m in enumerate(people):
            assert len(m) == round(SECONDS * FPS) and torch.isfinite(m.body_pose).all(), name
            within_joint_limits(m, name)
            out = _out(m)
            low = out.vertices[..., 1].min(1).values
            assert low.min() > -0.01, f"{name}/{k}: a vertex {low.min():.3f} m below the floor"
            if (name, k) not in OFF_GROUND:
                assert low.max() < 0.02, f"{name}/{k}: floats {low.max():.3f} m"
            if name in NO_STANCE or (name, k) in OFF_GROUND:
                continue
            s = foot_slide(out.joints, h, min_frames=2)
            s = s[~torch.isnan(s)]
            assert len(s) > 0, f"{name}/{k}: no stance foot"
            # a planted foot moves less than 2 cm between frames at 8 fps, 0.5 cm on average
            assert s.max() < 0.02 and s.mean() < 0.005, f"{name}/{k}: stance foot slides {s.max():.3f} m"


@needs_default
def test_hug_hands_meet_behind_the_partner(vocabulary):
    a, b = vocabulary["hug"]
    ja, jb = _out(a).joints, _out(b).joints
    mid = len(a) // 2
    for me, other, om in ((ja, jb, b), (jb, ja, a)):
        assert (me[mid, L_HAND] - me[mid, R_HAND]).norm() < 0.03  # hands together, within 3 cm
        facing = axis_angle_to_matrix(om.global_orient[mid])[:, 2]
        behind = ((me[mid, [L_HAND, R_HAND]] - other[mid, SPINE3]) @ facing)
        assert (behind < -0.05).all()  # on the partner's back, not in front of the chest
    # the two stand close, facing each other, pelvises apart (no merge)
    assert 0.3 < (ja[mid, 0] - jb[mid, 0]).norm() < 0.6
    assert (ja[0, L_HAND] - ja[0, R_HAND]).norm() > 0.2  # arms open before the embrace


@needs_default
def test_high_five_and_clap_contacts(vocabulary):
    a, b = vocabulary["high_five"]
    ja, jb = _out(a).joints, _out(b).joints
    d = (ja[:, R_HAND] - jb[:, R_HAND]).norm(dim=-1)
    assert d.min() < 0.03 and d.max() > 0.5  # palms meet, and part again
    k = int(d.argmin())
    assert ja[k, R_HAND, 1] > ja[k, 15, 1]  # above the head
    (c,) = vocabulary["clap"]
    jc = _out(c).joints
    gap = (jc[:, L_HAND] - jc[:, R_HAND]).norm(dim=-1)
    assert gap.min() < 0.04 and gap.max() > 0.15
    pa, pb = vocabulary["push_pair"]
    ja = _out(pa).joints
    vb = _out(pb).vertices
    k = len(pa) // 2
    near = torch.cdist(ja[k, [L_HAND, R_HAND]], vb[k]).min(dim=1).values
    assert (near < 0.06).all()  # both hands on the pushed one's body
    carrier, rider = vocabulary["carry_pair"]
    jc, jr = _out(carrier).joints, _out(rider).joints
    assert (jc[:, [L_HAND, R_HAND]] - jr[:, [4, 5]]).norm(dim=-1).max() < 0.03  # holding the rider's knees
    assert (jr[:, L_HAND] - jr[:, R_HAND]).norm(dim=-1).max() < 0.03  # the rider's hands clasped
    assert (jr[:, 0, 1] > jc[:, 0, 1] + 0.05).all()  # riding higher than the carrier's pelvis


@needs_default
def test_reach_against_an_independent_forward_kinematics():
    """The IK solves through its own chain; the body model (a separate implementation) must agree."""
    F = 4
    t = torch.arange(F, dtype=torch.float64) / FPS
    p = keyframed(t, [(0.0, {})])
    target = torch.tensor([0.1, 0.25, 0.45], dtype=torch.float64)
    err = reach(p, {R_HAND: target.expand(F, 3)})
    assert err < 1e-6
    body = default_body()
    from render.rotations import matrix_to_axis_angle

    R = euler_to_matrix(p.euler, "XYZ")
    out = body(global_orient=matrix_to_axis_angle(R[:, 0]).float(), body_pose=matrix_to_axis_angle(R[:, 1:]).float())
    assert (out.joints[:, R_HAND].double() - target).norm(dim=-1).max() < 1e-4
    ours = joint_positions(p.euler, torch.zeros(F, 3, dtype=torch.float64))
    assert torch.allclose(ours.float(), out.joints, atol=1e-4)


@needs_default
def test_sequences_directions_paths_and_speed():
    t2m = LibraryTextToMotion()
    (m,) = t2m("a man walks then sits down", seconds=4.0, fps=FPS)
    J = _out(m).joints
    half = len(m) // 2
    assert m.transl[half - 1, 2] - m.transl[0, 2] > 0.8  # walks forward first
    assert J[-1, 0, 1] < J[0, 0, 1] - 0.25  # then sits
    assert (m.transl[1:] - m.transl[:-1]).norm(dim=-1).max() < 0.3  # no jump where the actions meet
    (toward,) = t2m("a woman walks toward the camera", seconds=2.0, fps=FPS)
    (away,) = t2m("a woman walks away from the camera", seconds=2.0, fps=FPS)
    assert toward.transl[-1, 2] - toward.transl[0, 2] > 0.8 and away.transl[-1, 2] - away.transl[0, 2] < -0.8
    (slow,) = t2m("a man walks slowly", seconds=2.0, fps=FPS)
    (fast,) = t2m("a man walks quickly", seconds=2.0, fps=FPS)
    dist = lambda x: float((x.transl[-1, [0, 2]] - x.transl[0, [0, 2]]).norm())  # noqa: E731
    assert dist(slow) < 0.7 * dist(toward) < 0.7 * dist(fast)
    (circle,) = t2m("a girl runs in a circle", seconds=2.0, fps=FPS)
    p = (circle.transl + _out(circle).joints[:1, 0] - circle.transl[:1])[:, [0, 2]]
    centre = p[0] + torch.tensor([t2m.circle_radius, 0.0])  # the circle turns left of the start heading
    r = (p - centre).norm(dim=-1)
    assert (r - t2m.circle_radius).abs().max() < 0.15 and dist(circle) > 1.0
    ring = t2m("five dancers spin in a circle", seconds=1.0, fps=FPS)
    pos = torch.stack([x.transl[0, [0, 2]] for x in ring])
    assert len(ring) == 5 and (pos.norm(dim=-1) - pos.norm(dim=-1).mean()).abs().max() < 0.1
    # the people face the ring's centre
    for x, q in zip(ring, pos):
        f = axis_angle_to_matrix(x.global_orient[0])[[0, 2], 2]
        assert float(f @ -q) / float(q.norm()) > 0.9
    hug = t2m("two people hug", seconds=2.0, fps=FPS)
    assert [x.name for x in hug] == ["hug/0", "hug/1"]


def test_circle_radius_sign_convention_is_left():
    """Heading 0 faces +Z; its left (the body's +X) is where a left turn goes (heading 90 faces +X)."""
    from avatars.motion_library import heading_matrix

    assert torch.allclose(heading_matrix(90.0)[:, 2], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert math.isclose(float(heading_matrix(0.0)[2, 2]), 1.0)
