"""Motion files in the apps: segments, timing and placement of files, the follow camera, the empty-render guard."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from avatars import motion_library
from avatars.body import DEFAULT_BODY_PATH, default_body
from avatars.motion import Motion
from render.camera import Camera, follow_framing
from render.errors import AmgError

from test_bvh_retarget import LAFAN, _zero_pose, write_bvh

pytestmark = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")
CONF = str(Path(__file__).resolve().parents[1] / "conf")
TINY = ["num_frames=4", "width=64", "height=64", "avatar.num_gaussians=1500", "progress=false"]


def cfg(name, overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def long_bvh(tmp_path_factory):
    """A 36 s LAFAN-style take in centimetres (joint frames rotated against the bones), T-pose bookends,
    walking along a winding path tens of metres long."""
    fps = 5.0
    walk = motion_library.make("walk", seconds=36.0, fps=fps, direction=30.0)
    tpose = Motion(fps, walk.betas, torch.zeros(1, 3), torch.zeros(1, 23, 3), walk.transl[:1])
    take = Motion.concatenate([tpose, walk[1:-1], tpose.copy(transl=walk.transl[-1:])])
    path = tmp_path_factory.mktemp("mocap") / "take.bvh"
    write_bvh(path, take, LAFAN, unit=100.0, zero=_zero_pose("random"))
    return path, take


def test_render_a_segment_of_a_long_cm_take(long_bvh, tmp_path):
    """amg.render motion=file motion.path=take.bvh motion.start=30 motion.seconds=2: the whole body on
    the ground, in view, in every frame."""
    from amg.render import run

    path, take = long_bvh
    c = cfg("render", TINY + ["motion=file", f"motion.path={path}", "motion.start=30", "motion.seconds=2",
                              "camera=follow", "fps=2", "strict=true"])
    run(c, tmp_path)
    masks = np.load(tmp_path / "masks.npz")["masks"]
    for f, m in enumerate(masks):
        ys, xs = np.nonzero(m == 1)
        assert len(ys) > 50, f"frame {f}: person not in view"
        assert ys.min() > 0 and ys.max() < m.shape[0] - 1, f"frame {f}: body cut at the image border"
    from amg.build import build_motions

    seg = build_motions(c.motion, 4, 2.0)[0]
    body = default_body()
    with torch.no_grad():
        v = body(betas=seg.betas[None], global_orient=seg.global_orient, body_pose=seg.body_pose,
                 transl=seg.transl).vertices
    low = v[..., 1].min(1).values
    assert low.abs().max() < 0.03  # standing on y = 0 in every frame (stance foot down in a walk)
    # the segment is the take's 30 s..32 s: the pelvis travels as the take's does there
    J0 = body.rest(seg.betas[None])[1][0, 0]
    moved = (seg.transl[-1] - seg.transl[0])[[0, 2]].norm()
    truth = (take.transl[int(31.5 * 5)] - take.transl[150])[[0, 2]].norm()
    assert abs(float(moved - truth)) < 0.15 and torch.isfinite(J0).all()


def test_file_segment_speed_direction_offset(tmp_path):
    from amg.build import build_motions

    m = motion_library.make("walk", seconds=3.0, fps=10.0)
    f = tmp_path / "walk.npz"
    m.save(f)
    base = ["motion=file", f"motion.path={f}"]
    whole = build_motions(cfg("render", base).motion, 30, 10.0)[0]
    seg = build_motions(cfg("render", base + ["motion.start=1.0", "motion.seconds=1.0"]).motion, 10, 10.0)[0]
    assert torch.allclose(seg.body_pose, whole.body_pose[10:20], atol=1e-6)
    fast = build_motions(cfg("render", base + ["motion.speed=2.0"]).motion, 10, 10.0)[0]
    assert torch.allclose(fast.transl[5, [0, 2]], whole.transl[10, [0, 2]], atol=1e-4)  # twice the pace
    turned = build_motions(cfg("render", base + ["motion.direction=90"]).motion, 30, 10.0)[0]
    d = turned.transl[-1] - turned.transl[0]
    assert d[0] > 2.0 and abs(float(d[2])) < 0.1  # walks along +X instead of +Z, from the same spot
    assert torch.allclose(turned.transl[0], whole.transl[0], atol=1e-4)
    moved = build_motions(cfg("render", base + ["motion.offset=[1.0,0.0,-2.0]"]).motion, 30, 10.0)[0]
    assert torch.allclose(moved.transl - whole.transl, torch.tensor([1.0, 0.0, -2.0]).expand(30, 3), atol=1e-5)
    with pytest.raises(AmgError, match="motion.start"):
        build_motions(cfg("render", base + ["motion.start=10"]).motion, 10, 10.0)
    with pytest.raises(AmgError, match="motion.path"):
        build_motions(cfg("render", ["motion=file"]).motion, 10, 10.0)


def test_library_configs_build_objects_with_target():
    from amg.build import FileMotion, LibraryMotion, motion_spec

    for name in ("walk", "box_pair", "auto"):
        c = cfg("render", [f"motion={name}"])
        assert c.motion._target_ == "amg.build.LibraryMotion"
        spec = motion_spec(c.motion)
        assert isinstance(spec, LibraryMotion) and spec.name == name
    assert isinstance(motion_spec(cfg("render", ["motion=file", "motion.path=x.bvh"]).motion), FileMotion)


def test_out_of_view_warns_and_strict_fails(tmp_path, caplog):
    from amg.render import run

    m = motion_library.make("idle", seconds=1.0, fps=8)
    f = tmp_path / "idle.npz"
    m.save(f)
    far = TINY + ["motion=file", f"motion.path={f}", "camera=static", "motion.offset=[40.0,0.0,0.0]"]
    with caplog.at_level(logging.WARNING, logger="amg"):
        run(cfg("render", far), tmp_path / "a")
    lines = [r.getMessage() for r in caplog.records if "out of view" in r.getMessage()]
    assert len(lines) == 1 and "100%" in lines[0] and "\n" not in lines[0]
    with pytest.raises(AmgError, match="out of view"):
        run(cfg("render", far + ["strict=true"]), tmp_path / "b")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amg"):
        run(cfg("render", TINY + ["motion=idle", "camera=static"]), tmp_path / "c")
    assert not [r for r in caplog.records if "out of view" in r.getMessage()]


def test_follow_framing_keeps_a_tall_body_in_view():
    g = np.random.default_rng(0)
    F = 5
    for height in (1.0, 2.4):  # a child and a very tall person standing at different places
        pts = g.uniform(-0.25, 0.25, size=(F, 200, 3))
        pts[..., 1] = g.uniform(0.0, height, size=(F, 200))
        pts[:, :, 0] += np.linspace(0, 3, F)[:, None]
        targets, offset = follow_framing(pts, (0.0, 0.3, 2.0), 50.0, 64, 64)
        assert np.allclose(targets[:, 1].numpy(), height / 2, atol=0.02)
        for f in range(F):
            cam = Camera.look_at(targets[f] + offset, targets[f], fov_deg=50.0, width=64, height=64)
            uv, z = cam.project(torch.as_tensor(pts[f]))
            assert (z > 0).all() and (uv >= 0).all() and (uv[:, 0] < 64).all() and (uv[:, 1] < 64).all()
    _, near = follow_framing(pts[:, :, :] * [1, 0.2, 1], (0.0, 0.3, 2.0), 50.0, 64, 64)
    assert math.isclose(float(near.norm()), math.hypot(0.3, 2.0), rel_tol=1e-6)  # fits: the offset stays
