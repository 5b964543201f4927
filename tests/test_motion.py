import math
import pickle

import numpy as np
import pytest
import torch

from avatars.body import DEFAULT_BODY_PATH, BodyModel
from avatars.motion import Motion, load_bvh, save_bvh
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix

from motion_helpers import within_joint_limits
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
    m.body_pose[:, 21:] = 0.0  # SMPL-H holds fingers where SMPL has its hand joints
    rot = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Y-up -> Z-up
    pelvis = body.rest(m.betas[None])[1][0, 0]
    z = m.transformed(rot, pelvis=pelvis)
    poses = np.zeros((6, 156), np.float32)
    poses[:, :3] = z.global_orient.numpy()
    poses[:, 3:66] = z.body_pose[:, :21].reshape(6, 63).numpy()
    poses[:, 66:] = 0.7  # finger rotations must not reach SMPL's hand joints
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


@pytest.mark.parametrize("layout", ["smplh_156", "smplx_165", "smplx_55x3", "smplx_separate"])
def test_amass_hand_joints_never_come_from_fingers(tmp_path, body, layout):
    """SMPL-H/SMPL-X files: joints 1..21 as written, SMPL's hand joints 22/23 at rest (the hand follows the
    wrist), whatever the finger channels hold."""
    F = 4
    g = np.random.default_rng(1)
    root, body21 = g.normal(scale=0.3, size=(F, 3)), g.normal(scale=0.3, size=(F, 21, 3))
    width = 156 if layout == "smplh_156" else 165
    poses = g.normal(scale=1.0, size=(F, width)).astype(np.float32)  # fingers, jaw, eyes: large, random
    poses[:, :3], poses[:, 3:66] = root, body21.reshape(F, 63)
    arrays = dict(trans=np.zeros((F, 3)), mocap_framerate=np.array(60.0))
    if layout == "smplx_55x3":
        arrays["poses"] = poses.reshape(F, 55, 3)
    elif layout == "smplx_separate":
        arrays.update(root_orient=root, pose_body=body21.reshape(F, 63), pose_hand=poses[:, 75:165])
    else:
        arrays["poses"] = poses
    np.savez(tmp_path / "a.npz", **arrays)
    m = Motion.load(tmp_path / "a.npz", body=body)
    assert m.fps == 60.0
    assert torch.allclose(m.body_pose[:, :21], torch.as_tensor(body21, dtype=torch.float32), atol=1e-6)
    assert torch.equal(m.body_pose[:, 21:], torch.zeros(F, 2, 3))


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
    back = load_bvh(tmp_path / "m.bvh", body=body, betas=m.betas, ground=False)
    assert back.fps == pytest.approx(30.0)
    assert rotations_close(back.full_pose, m.full_pose, atol=1e-4)
    assert torch.allclose(back.transl, m.transl, atol=1e-4)
    # grounded by default: the same motion with its lowest foot point on the floor
    floor = load_bvh(tmp_path / "m.bvh", body=body, betas=m.betas)
    assert torch.allclose(floor.transl[:, [0, 2]], m.transl[:, [0, 2]], atol=1e-4)
    dy = floor.transl[:, 1] - m.transl[:, 1]
    assert torch.allclose(dy, dy[:1].expand_as(dy), atol=1e-5)


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


# ---- motion library -------------------------------------------------------------------------------

from avatars import motion_library as ml  # noqa: E402

needs_default = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")
LIB_FPS, LIB_SECONDS = 8.0, 2.5


@pytest.fixture(scope="module")
def library():
    out = {}
    for name in ml.names():
        out[name] = ml.make_people(name, seconds=LIB_SECONDS, fps=LIB_FPS)
    return out


def _inside_hull(points, hull_points):
    from scipy.spatial import ConvexHull

    eq = ConvexHull(hull_points).equations  # outward normals n, offsets d: inside when n.p + d <= 0
    return ((points @ eq[:, :3].T + eq[:, 3]) <= 0).all(1)


@needs_default
def test_library_names_cover_the_brief():
    need = {"idle", "walk", "run", "jump", "wave", "dance", "box", "fence", "turn_around", "sit_down",
            "dance_pair", "box_pair", "handshake"}
    assert need <= set(ml.names())
    with pytest.raises(AmgError, match="unknown"):
        ml.make("moonwalk")


@needs_default
@pytest.mark.parametrize("name", ["idle", "walk", "run", "jump", "wave", "dance", "box", "fence", "turn_around",
                                  "sit_down", "dance_pair", "box_pair", "handshake"])
def test_library_motion_is_plausible(name, library, default_body):
    body = default_body
    torso_id = 0  # PART_NAMES[0] == "torso"
    torso = body.part_labels == torso_id
    for m in library[name]:
        assert len(m) == round(LIB_SECONDS * LIB_FPS) and m.fps == LIB_FPS
        out = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
        low = out.vertices[..., 1].min(1).values
        # feet on the ground: no floating, no sinking beyond 2 cm (a jump may leave the ground)
        assert low.min() > -0.02, f"{name}: sinks {low.min():.3f} m"
        if name == "jump":
            assert low.max() > 0.2 and low.min() < 0.02
        else:
            assert low.max() < 0.02, f"{name}: floats {low.max():.3f} m"
        within_joint_limits(m, name)
        # no hand, wrist, elbow or mid-forearm inside the torso
        J = out.joints
        probes = torch.cat([J[:, [18, 19, 20, 21, 22, 23]], 0.5 * (J[:, [18, 19]] + J[:, [20, 21]])], 1)
        for f in range(0, len(m), 2):
            inside = _inside_hull(probes[f].numpy(), out.vertices[f, torso][::5].numpy())
            assert not inside.any(), f"{name}: limb inside the torso at frame {f}"


@needs_default
@pytest.mark.parametrize("name", ["walk", "run", "dance", "box", "fence", "turn_around", "dance_pair", "box_pair",
                                  "handshake"])
def test_library_feet_do_not_skate(name, library, default_body):
    """Stance feet stay put (the benchmark's goal: 0.5 cm per frame at 30 fps, 15 cm/s) and gait knees
    bend like real ones."""
    from avatars.contact import flat_foot_heights, foot_slide, knee_angles

    h = flat_foot_heights(default_body)
    for m in library[name]:
        J = default_body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose,
                         transl=m.transl).joints
        s = foot_slide(J, h, min_frames=2)
        assert (~torch.isnan(s)).any(), f"{name}: never stands"
        assert float(s[~torch.isnan(s)].mean()) * m.fps < 0.15, f"{name}: skates"
        knees = knee_angles(J)
        if name == "walk":
            assert knees.min() < 10 and 55 < knees.max() < 75
        if name == "run":
            assert 95 < knees.max() < 125


@needs_default
def test_library_motions_do_what_they_say(library, default_body):
    body = default_body

    def joints(m):
        return body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl).joints

    walk = library["walk"][0]
    assert walk.transl[-1, 2] - walk.transl[0, 2] > 2.0  # walks forward (+Z) about 1.2 m/s
    run = library["run"][0]
    assert run.transl[-1, 2] - run.transl[0, 2] > 2 * (walk.transl[-1, 2] - walk.transl[0, 2])
    J = joints(library["jump"][0])
    assert (J[:, 20, 1] > J[:, 15, 1]).all() and (J[:, 21, 1] > J[:, 15, 1]).all()  # arms above the head
    J = joints(library["wave"][0])
    assert J[-1, 21, 1] > J[-1, 15, 1] - 0.1 and J[-1, 20, 1] < J[-1, 16, 1]  # right hand up, left down
    t = library["turn_around"][0]
    fwd = axis_angle_to_matrix(t.global_orient)[:, :, 2]
    assert fwd[0, 2] > 0.99 and fwd[-1, 2] < -0.99  # faces +Z, ends facing -Z
    J = joints(library["sit_down"][0])
    assert J[-1, 0, 1] < J[0, 0, 1] - 0.25  # pelvis lowered
    # two-person interactions: face each other, no overlap, right hands meet in the handshake
    for name in ("dance_pair", "box_pair", "handshake"):
        a, b = library[name]
        ja, jb = joints(a), joints(b)
        assert ((ja[:, 0] - jb[:, 0]).norm(dim=-1) > 0.6).all()
        fa = axis_angle_to_matrix(a.global_orient[0])[:, 2]
        fb = axis_angle_to_matrix(b.global_orient[0])[:, 2]
        assert fa @ fb < -0.95 and fa @ (jb[0, 0] - ja[0, 0]) > 0
    a, b = library["handshake"]
    ja, jb = joints(a), joints(b)
    mid = len(a) // 2
    assert (ja[mid, 23] - jb[mid, 23]).norm() < 0.1
    assert (ja[0, 23] - jb[0, 23]).norm() > 0.3


@needs_default
def test_direction_and_speed_parameters():
    a = ml.make("walk", seconds=1.0, fps=10, direction=90.0)
    d = a.transl[-1] - a.transl[0]
    assert d[0] > 0.8 and abs(d[2]) < 0.05  # heading 90 walks along +X
    slow = ml.make("walk", seconds=1.0, fps=10, speed=0.5)
    assert (slow.transl[-1, 2] - slow.transl[0, 2]) < 0.6 * (a.transl[-1, 0] - a.transl[0, 0])


@needs_default
def test_from_text():
    one = ml.from_text("a man walks slowly towards the camera", seconds=1.0, fps=10)
    assert len(one) == 1 and one[0].name == "walk"
    base = ml.from_text("a man walks", seconds=1.0, fps=10)[0]
    assert (one[0].transl[-1, 2] - one[0].transl[0, 2]) < 0.7 * (base.transl[-1, 2] - base.transl[0, 2])
    two = ml.from_text("two people dancing in a club", seconds=1.0, fps=10)
    assert [m.name for m in two] == ["dance_pair/0", "dance_pair/1"]
    shake = ml.from_text("a woman and a man shake hands", seconds=1.0, fps=10)
    assert len(shake) == 2 and shake[0].name.startswith("handshake")
    three = ml.from_text("three kids jumping", seconds=1.0, fps=10)
    assert len(three) == 3 and all(m.name.startswith("jump") for m in three)
    xs = sorted(float(m.transl[0, 0]) for m in three)
    assert xs[1] - xs[0] > 0.8 and xs[2] - xs[1] > 0.8
    left = ml.from_text("a person runs to the left", seconds=1.0, fps=10)[0]
    assert left.transl[-1, 0] - left.transl[0, 0] < -1.5
    with pytest.warns(UserWarning, match="idle"):
        unk = ml.from_text("a person juggles", seconds=1.0, fps=10)
    assert unk[0].name == "idle"
    assert ml.parse_text("A boxer punching quickly")["speed"] == pytest.approx(1.5)
    assert isinstance(ml.RuleBasedTextToMotion(), ml.TextToMotion)
    assert len(ml.RuleBasedTextToMotion()("two boxers fight", seconds=1.0, fps=10)) == 2


@needs_default
def test_torso_check_detects_penetration(default_body):
    v = default_body.rest()[0][0]
    torso = v[default_body.part_labels == 0].numpy()
    centre = torso.mean(0)
    probes = np.stack([centre, centre + [0.0, 0.0, 1.0], centre + [0.5, 0.0, 0.0]])
    assert _inside_hull(probes, torso[::5]).tolist() == [True, False, False]
