import math
import pickle

import numpy as np
import pytest
import torch

from avatars.body import DEFAULT_BODY_PATH, BodyModel
from avatars.motion import Motion, load_bvh, save_bvh
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix

from test_body import write_synthetic_smpl


@pytest.fixture
def body(tmp_path, rng):
    path = tmp_path / "tiny.npz"
    write_synthetic_smpl(path, rng, posedirs=False)
    return BodyModel.load(path)


def random_motion(F=12, fps=30.0, scale=0.4, seed=0, nb=6):
    g = torch.Generator().manual_seed(seed)
    return Motion(fps, torch.randn(nb, generator=g) * 0.5, torch.randn(F, 3, generator=g) * scale,
                  torch.randn(F, 23, 3, generator=g) * scale, torch.randn(F, 3, generator=g), name="rand")


def rotations_close(a, b, atol=1e-4):
    return torch.allclose(axis_angle_to_matrix(a), axis_angle_to_matrix(b), atol=atol)


def test_validation_errors_are_one_line():
    F = 4
    ok = dict(fps=30, betas=np.zeros(10), global_orient=np.zeros((F, 3)), body_pose=np.zeros((F, 23, 3)),
              transl=np.zeros((F, 3)))
    Motion(**ok)
    for change, pattern in [
        (dict(body_pose=np.zeros((F, 21, 3))), "21 joints"),
        (dict(transl=np.zeros((F + 1, 3))), "transl"),
        (dict(global_orient=np.full((F, 3), np.nan)), "NaN"),
        (dict(fps=0), "fps"),
        (dict(global_orient=np.zeros((F, 4))), "global_orient"),
    ]:
        with pytest.raises(AmgError, match=pattern) as e:
            Motion(**{**ok, **change})
        assert "\n" not in str(e.value)


def test_slicing_and_flat_pose():
    m = random_motion(F=20)
    s = m[5:15]
    assert len(s) == 10 and torch.equal(s.body_pose, m.body_pose[5:15])
    h = m[::2]
    assert len(h) == 10 and h.fps == 15.0
    flat = Motion(30, m.betas, m.global_orient, m.body_pose.reshape(20, 69), m.transl)
    assert flat.body_pose.shape == (20, 23, 3)


def test_resample_keeps_keyframes_and_interpolates_on_the_arc():
    m = random_motion(F=10, fps=10)
    up = m.resample(20)
    assert up.fps == 20 and len(up) == 19
    assert rotations_close(up.full_pose[::2], m.full_pose)
    assert torch.allclose(up.transl[::2], m.transl, atol=1e-5)
    # the midpoint rotation is halfway on the geodesic: equal angular distance to both ends
    R = axis_angle_to_matrix(up.full_pose)
    Rk = axis_angle_to_matrix(m.full_pose)
    def angle(a, b):
        c = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
        return torch.acos(c.clamp(-1, 1))
    d0, d1 = angle(R[1::2], Rk[:-1]), angle(R[1::2], Rk[1:])
    assert torch.allclose(d0, d1, atol=1e-3)
    down = m.resample(5)
    assert len(down) == 5 and rotations_close(down.full_pose, m.full_pose[::2])


def test_npz_round_trip(tmp_path):
    m = random_motion()
    m.save(tmp_path / "m.npz")
    n = Motion.load(tmp_path / "m.npz")
    assert n.fps == m.fps and n.name == "rand"
    for k in ("betas", "global_orient", "body_pose", "transl"):
        assert torch.equal(getattr(n, k), getattr(m, k))


def test_amass_zup_to_yup(tmp_path, body):
    """An AMASS file is a Y-up motion seen in a Z-up world; loading must give back the Y-up motion."""
    m = random_motion(F=6, nb=body.num_betas)
    rot = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Y-up -> Z-up
    pelvis = body.rest(m.betas[None])[1][0, 0]
    z = m.transformed(rot, pelvis=pelvis)
    poses = np.zeros((6, 156), np.float32)
    poses[:, :3] = z.global_orient.numpy()
    poses[:, 3:72] = z.body_pose.reshape(6, 69).numpy()
    path = tmp_path / "amass.npz"
    np.savez(path, poses=poses, trans=z.transl.numpy(), mocap_framerate=np.array(120.0),
             betas=np.pad(m.betas.numpy(), (0, 16 - body.num_betas)), gender=np.array("neutral"))
    back = Motion.load(path, body=body)
    assert back.fps == 120.0
    assert rotations_close(back.full_pose, m.full_pose)
    assert torch.allclose(back.transl, m.transl, atol=1e-4)
    # and the posed bodies agree: loaded Y-up joints == rotated Z-up joints
    zj = body(betas=m.betas[None], global_orient=z.global_orient, body_pose=z.body_pose, transl=z.transl).joints
    yj = body(betas=m.betas[None], global_orient=back.global_orient, body_pose=back.body_pose,
              transl=back.transl).joints
    assert torch.allclose(yj, zj @ rot, atol=1e-4)  # rot^T applied to column vectors


def test_smpl_pkl_and_aist_keys(tmp_path, body):
    m = random_motion(F=5, nb=body.num_betas)
    poses = m.full_pose.reshape(5, 72).numpy()
    with open(tmp_path / "seq.pkl", "wb") as fh:
        pickle.dump({"smpl_poses": poses, "smpl_trans": m.transl.numpy() * 2.0, "smpl_scaling": [2.0]}, fh)
    a = Motion.load(tmp_path / "seq.pkl", fps=60)
    assert a.fps == 60 and torch.allclose(a.full_pose, m.full_pose) and torch.allclose(a.transl, m.transl)
    np.savez(tmp_path / "seq.npz", poses=poses, trans=m.transl.numpy(), fps=25)
    b = Motion.load(tmp_path / "seq.npz")
    assert b.fps == 25 and torch.allclose(b.full_pose, m.full_pose)


def test_bvh_round_trip(tmp_path, body):
    m = random_motion(F=8, nb=body.num_betas, scale=0.5)
    # SMPL's hand joints have no BVH counterpart in common rigs but do in our export
    save_bvh(m, tmp_path / "m.bvh", body=body)
    back = load_bvh(tmp_path / "m.bvh", body=body, betas=m.betas)
    assert back.fps == pytest.approx(30.0)
    assert rotations_close(back.full_pose, m.full_pose, atol=1e-4)
    assert torch.allclose(back.transl, m.transl, atol=1e-4)


def _bvh_text(arm_down_deg, frames):
    """A minimal Y-up BVH (cm) whose rest pose has the arms lowered by ``arm_down_deg``."""
    a = math.radians(arm_down_deg)
    dx, dy = 25 * math.cos(a), -25 * math.sin(a)
    def arm(side, sx):
        return f"""
    JOINT {side}Arm
    {{
      OFFSET {sx * 15} 45 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      JOINT {side}ForeArm
      {{
        OFFSET {sx * dx:.4f} {dy:.4f} 0
        CHANNELS 3 Zrotation Xrotation Yrotation
        End Site
        {{
          OFFSET {sx * dx:.4f} {dy:.4f} 0
        }}
      }}
    }}"""
    def leg(side, sx):
        return f"""
  JOINT {side}UpLeg
  {{
    OFFSET {sx * 9} -5 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT {side}Leg
    {{
      OFFSET 0 -45 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      JOINT {side}Foot
      {{
        OFFSET 0 -42 0
        CHANNELS 3 Zrotation Xrotation Yrotation
        End Site
        {{
          OFFSET 0 -5 12
        }}
      }}
    }}
  }}"""
    text = f"""HIERARCHY
ROOT Hips
{{
  OFFSET 0 97 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {{
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation{arm('Left', 1)}{arm('Right', -1)}
    JOINT Neck
    {{
      OFFSET 0 50 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      JOINT Head
      {{
        OFFSET 0 10 0
        CHANNELS 3 Zrotation Xrotation Yrotation
        End Site
        {{
          OFFSET 0 15 0
        }}
      }}
    }}
  }}{leg('Left', 1)}{leg('Right', -1)}
}}
MOTION
Frames: {len(frames)}
Frame Time: 0.04
""" + "\n".join(" ".join(str(v) for v in f) for f in frames) + "\n"
    return text


def test_bvh_rest_pose_is_retargeted(tmp_path, body):
    """A BVH standing still in an A-pose (arms 40 degrees down) must give SMPL arms 40 degrees down."""
    n_ch = 6 + 3 * 13
    frames = [[0, 97, 0] + [0] * (n_ch - 3), [10, 97, 0] + [0] * (n_ch - 3)]
    (tmp_path / "a.bvh").write_text(_bvh_text(40, frames))
    m = load_bvh(tmp_path / "a.bvh", body=body)
    assert m.fps == pytest.approx(25) and len(m) == 2
    out = body(global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    rest = body()
    a = math.radians(40)
    for sh, el, sx in ((16, 18, 1.0), (17, 19, -1.0)):
        # the SMPL upper arm points where the BVH rest upper arm points: 40 degrees below horizontal
        d = out.joints[0, el] - out.joints[0, sh]
        d0 = rest.joints[0, el] - rest.joints[0, sh]
        assert torch.allclose(d / d.norm(), torch.tensor([sx * math.cos(a), -math.sin(a), 0.0]), atol=1e-4)
        assert d.norm() == pytest.approx(d0.norm().item(), rel=1e-4)
    # root moved 10 cm in x, scaled by the hip-height ratio
    dx = (m.transl[1] - m.transl[0])[0]
    assert 0.0 < dx < 0.3 and torch.allclose(m.transl[1, 1:], m.transl[0, 1:], atol=1e-5)


def test_bad_motion_files(tmp_path):
    with pytest.raises(AmgError, match="no such"):
        Motion.load(tmp_path / "none.npz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(AmgError, match="unknown motion format"):
        Motion.load(tmp_path / "x.txt")
    np.savez(tmp_path / "nan.npz", poses=np.full((3, 72), np.nan), trans=np.zeros((3, 3)))
    with pytest.raises(AmgError, match="NaN"):
        Motion.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "joints.npz", poses=np.zeros((3, 60)), trans=np.zeros((3, 3)))
    with pytest.raises(AmgError, match="72"):
        Motion.load(tmp_path / "joints.npz")
    np.savez(tmp_path / "empty.npz", foo=np.zeros(3))
    with pytest.raises(AmgError, match="no poses"):
        Motion.load(tmp_path / "empty.npz")
    (tmp_path / "bad.bvh").write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n")
    with pytest.raises(AmgError, match="bad.bvh"):
        Motion.load(tmp_path / "bad.bvh")
    (tmp_path / "bad.pkl").write_bytes(b"garbage")
    with pytest.raises(AmgError, match="bad.pkl"):
        Motion.load(tmp_path / "bad.pkl")
