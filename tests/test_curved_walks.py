"""Walks along arcs and S-curves (the 3D-box trajectory model's human clips): the facing turns, the path
bends with it, the feet stay planted and on the floor."""
import pytest
import torch

from avatars import motion_library as ml
from avatars.body import DEFAULT_BODY_PATH
from render.rotations import axis_angle_to_matrix

pytestmark = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")
FPS, SECONDS = 10.0, 3.0


@pytest.fixture(scope="module")
def walks(body):
    return {n: ml.make(n, seconds=SECONDS, fps=FPS, body=body) for n in ("walk_arc", "walk_arc_right", "walk_s_curve")}


def _facing(m):
    return axis_angle_to_matrix(m.global_orient)[:, :, 2]  # the body's +Z in the world, (F, 3)


def test_arcs_turn_ninety_degrees_and_bend_the_path_the_same_way(walks):
    for name, sign in (("walk_arc", 1.0), ("walk_arc_right", -1.0)):
        m = walks[name]
        f = _facing(m)
        assert f[0, 2] > 0.99 and sign * f[-1, 0] > 0.97, name  # from facing +Z to +X (left) or -X (right)
        d = m.transl[-1] - m.transl[0]
        assert d[2] > 1.0 and sign * d[0] > 1.0, name  # forward, then off to the turning side
        # constant curvature: the heading turns at a steady rate
        yaw = torch.atan2(f[:, 0], f[:, 2])
        rate = torch.diff(yaw)
        assert (sign * rate > 0).all() and rate.abs().max() < 2 * rate.abs().mean(), name


def test_s_curve_weaves_left_then_right_of_its_heading(walks):
    m = walks["walk_s_curve"]
    yaw = torch.rad2deg(torch.atan2(_facing(m)[:, 0], _facing(m)[:, 2]))
    F = len(m)
    assert yaw[F // 4] > 35 and yaw[3 * F // 4] < -35 and abs(float(yaw[-1])) < 10
    x = m.transl[:, 0] - m.transl[0, 0]
    assert x.max() > 0.4 and m.transl[-1, 2] - m.transl[0, 2] > 2.0  # swings out to the left, moves on
    assert x[-1] < x.max() - 0.3  # and comes back towards the heading line


@pytest.mark.parametrize("name", ["walk_arc", "walk_arc_right", "walk_s_curve"])
def test_curved_walks_keep_the_feet_planted_and_grounded(name, walks, body):
    from avatars.contact import flat_foot_heights, foot_slide

    m = walks[name]
    out = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    low = out.vertices[..., 1].min(1).values
    assert low.min() > -0.02 and low.max() < 0.02
    s = foot_slide(out.joints, flat_foot_heights(body), min_frames=2)
    assert (~torch.isnan(s)).any() and float(s[~torch.isnan(s)].mean()) * m.fps < 0.15


def test_curved_walks_are_library_motions_the_render_configs_name():
    from pathlib import Path

    conf = Path(__file__).parents[1] / "conf" / "motion"
    for name in ("walk_arc", "walk_arc_right", "walk_s_curve"):
        assert name in ml.names() and f"name: {name}" in (conf / f"{name}.yaml").read_text()
    assert ml.parse_text("a man walks")["motions"] == ["walk"]  # plain walks still choose the straight walk
