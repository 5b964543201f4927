
import numpy as np
import pytest
import torch

from avatars.body import (
    DEFAULT_BODY_PATH, PART_NAMES, SMPL_PARENTS, VERTEX_ID_NAMES, BodyModel, part_labels_from_weights,
)
from avatars.lbs import lbs, lbs_reference, regress_joint_basis
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix


def write_synthetic_smpl(path, rng, V=160, nb=6, posedirs=True):
    """A tiny random SMPL-layout body: a blob of vertices around 24 joints of a stick figure."""
    joints = np.cumsum(rng.normal(scale=0.1, size=(24, 3)), 0)
    owner = rng.integers(0, 24, size=V)
    v = joints[owner] + rng.normal(scale=0.03, size=(V, 3))
    W = rng.random((V, 24)) ** 8
    W[np.arange(V), owner] += 1
    W /= W.sum(1, keepdims=True)
    Jr = rng.random((24, V)) * (owner[None] == np.arange(24)[:, None])
    Jr[Jr.sum(1) == 0, 0] = 1
    Jr /= Jr.sum(1, keepdims=True)
    data = dict(
        v_template=v.astype(np.float32),
        shapedirs=rng.normal(scale=0.02, size=(V, 3, nb)).astype(np.float32),
        posedirs=(rng.normal(scale=0.01, size=(V, 3, 207)) if posedirs else np.zeros((V, 3, 207))).astype(np.float32),
        J_regressor=Jr.astype(np.float32),
        weights=W.astype(np.float32),
        kintree_table=np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64),
        f=rng.integers(0, V, size=(200, 3)).astype(np.int64),
        vertex_id_names=np.array(VERTEX_ID_NAMES),
        vertex_id_values=rng.integers(0, V, size=len(VERTEX_ID_NAMES)),
    )
    np.savez(path, **data)
    return data


def random_inputs(B, nb, scale=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        betas=torch.randn(B, nb, generator=g),
        global_orient=torch.randn(B, 3, generator=g) * scale,
        body_pose=torch.randn(B, 23, 3, generator=g) * scale,
        transl=torch.randn(B, 3, generator=g),
    )


@pytest.mark.parametrize("posedirs", [True, False])
def test_ours_equals_smplx_on_synthetic_file(tmp_path, rng, posedirs):
    path = tmp_path / "tiny_smpl.npz"
    write_synthetic_smpl(path, rng, posedirs=posedirs)
    ours = BodyModel.load(path)
    ref = BodyModel.load(path, backend="smplx")
    assert ours.has_posedirs == posedirs
    x = random_inputs(5, ours.num_betas)
    a, b = ours(**x), ref(**x)
    for name in ("vertices", "joints", "transforms", "skin_transforms"):
        assert (getattr(a, name) - getattr(b, name)).abs().max() < 1e-5, name
    assert a.vertices.shape == (5, 160, 3) and a.joints.shape == (5, 24, 3)
    assert a.transforms.shape == (5, 24, 4, 4)


def test_fast_lbs_matches_reference_and_world_frames(rng):
    V, nb, B = 90, 4, 3
    g = torch.Generator().manual_seed(1)
    v = torch.randn(V, 3, generator=g)
    sd = torch.randn(V, 3, nb, generator=g) * 0.05
    pd = torch.randn(207, V * 3, generator=g) * 0.01
    Jr = torch.rand(24, V, generator=g)
    Jr /= Jr.sum(1, keepdim=True)
    W = torch.rand(V, 24, generator=g) ** 4
    W /= W.sum(1, keepdim=True)
    betas = torch.randn(B, nb, generator=g)
    pose = torch.randn(B, 24, 3, generator=g)
    J0, Jd = regress_joint_basis(Jr, v, sd)
    fast = lbs(betas, pose, v, sd, J0, Jd, SMPL_PARENTS, W, pd)
    slow = lbs_reference(betas, pose, v, sd, pd, Jr, SMPL_PARENTS, W)
    for name in ("vertices", "joints", "transforms", "skin_transforms", "rest_joints"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), atol=1e-5), name
    # world frame rotations are the composed local rotations; skin transform maps rest joint to posed joint
    R = axis_angle_to_matrix(pose)
    assert torch.allclose(fast.transforms[:, 3, :3, :3], R[:, 0] @ R[:, 3], atol=1e-5)
    rest_h = torch.cat([fast.rest_joints, torch.ones(B, 24, 1)], -1)
    moved = (fast.skin_transforms @ rest_h[..., None])[..., :3, 0]
    assert torch.allclose(moved, fast.joints, atol=1e-5)


@pytest.mark.parametrize("B", [1, 3, 6, 11])
def test_one_dimensional_betas_broadcast_over_the_pose_batch(tmp_path, rng, B):
    """A shared (NB,) betas with B poses equals the same betas repeated per row, whatever B is relative
    to NB (the synthetic body has NB = 6, so B = 3 is shorter and B = 11 longer than betas)."""
    path = tmp_path / "b.npz"
    write_synthetic_smpl(path, rng)
    body = BodyModel.load(path)
    x = random_inputs(B, body.num_betas)
    shared = x["betas"][0]
    out = body(betas=shared, global_orient=x["global_orient"], body_pose=x["body_pose"], transl=x["transl"])
    ref = body(betas=shared[None].repeat(B, 1), global_orient=x["global_orient"], body_pose=x["body_pose"],
               transl=x["transl"])
    assert out.vertices.shape == (B, 160, 3)
    assert torch.allclose(out.vertices, ref.vertices, atol=1e-6)
    # each row matches a one-row evaluation of that pose
    last = body(betas=shared[None], global_orient=x["global_orient"][-1:], body_pose=x["body_pose"][-1:],
                transl=x["transl"][-1:])
    assert torch.allclose(out.joints[-1], last.joints[0], atol=1e-5)


def test_mismatched_batches_raise_one_line_errors(tmp_path, rng):
    path = tmp_path / "b.npz"
    write_synthetic_smpl(path, rng)
    body = BodyModel.load(path)
    with pytest.raises(AmgError, match="global_orient: batch of 3") as e:
        body(global_orient=torch.zeros(3, 3), body_pose=torch.zeros(4, 23, 3))
    assert "\n" not in str(e.value)
    with pytest.raises(AmgError, match="betas: batch of 2"):
        body(betas=torch.zeros(2, body.num_betas), body_pose=torch.zeros(5, 23, 3))


def test_forward_is_differentiable(tmp_path, rng):
    path = tmp_path / "b.npz"
    write_synthetic_smpl(path, rng)
    body = BodyModel.load(path)
    x = random_inputs(2, body.num_betas)
    x["body_pose"].requires_grad_(True)
    x["betas"].requires_grad_(True)
    body(**x).vertices.square().sum().backward()
    assert x["body_pose"].grad.abs().sum() > 0 and x["betas"].grad.abs().sum() > 0


def test_part_labels_derived_from_weights_for_smpl_files(tmp_path, rng):
    path = tmp_path / "b.npz"
    data = write_synthetic_smpl(path, rng)
    body = BodyModel.load(path)
    dominant = data["weights"].argmax(1)
    labels = body.part_labels.numpy()
    assert labels.shape == (160,)
    # a vertex dominated by the right elbow is on the right lower arm
    sel = dominant == 19
    assert sel.any() and (labels[sel] == PART_NAMES.index("right_lower_arm")).all()
    lab = part_labels_from_weights(data["weights"], data["v_template"], data["J_regressor"] @ data["v_template"])
    assert (lab == labels).all()


def test_bad_body_files(tmp_path):
    with pytest.raises(AmgError, match="no such"):
        BodyModel.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, v_template=np.zeros((3, 3)))
    with pytest.raises(AmgError, match="missing"):
        BodyModel.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(AmgError, match="junk.npz"):
        BodyModel.load(junk)
    with pytest.raises(AmgError, match="gender"):
        BodyModel.load("default", gender="robot")


needs_default = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")


@needs_default
def test_default_body_is_small_and_smpl_shaped():
    # load time is measured by benchmarks/body_forward.py, not asserted here
    body = BodyModel.load("default")
    assert DEFAULT_BODY_PATH.stat().st_size <= 8 * 2**20
    assert body.num_betas >= 8 and body.num_joints == 24
    assert tuple(body.parents) == SMPL_PARENTS
    w = body.skin_weights
    assert torch.allclose(w.sum(1), torch.ones(body.num_vertices), atol=1e-4)
    assert set(body.part_labels.unique().tolist()) == set(range(len(PART_NAMES)))


@needs_default
def test_default_body_is_a_tpose_human_in_smpl_frame():
    body = BodyModel.load("default")
    v, j = body.rest()
    v, j = v[0], j[0]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 2.0
    span = v[:, 0].max() - v[:, 0].min()
    assert span > 0.85 * height  # arms out in a T
    # SMPL sides: left joints at +X, right at -X; head above pelvis; feet below knees
    assert j[16, 0] > 0.1 and j[17, 0] < -0.1 and j[1, 0] > 0 and j[2, 0] < 0
    assert j[15, 1] > j[12, 1] > j[0, 1] > j[4, 1] > j[7, 1]
    # arms horizontal: wrists at shoulder height
    assert abs(j[20, 1] - j[16, 1]) < 0.06 and abs(j[21, 1] - j[17, 1]) < 0.06
    # feet point forward (+Z): toes ahead of the ankles
    assert j[10, 2] > j[7, 2] and j[11, 2] > j[8, 2]
    # shape directions change the body
    v2, _ = body.rest(torch.ones(1, body.num_betas) * 2)
    assert (v2[0] - v).norm(dim=-1).max() > 0.02


@needs_default
def test_default_body_ours_equals_smplx():
    ours = BodyModel.load("default")
    ref = BodyModel.load("default", backend="smplx")
    x = random_inputs(3, ours.num_betas, scale=0.5)
    a, b = ours(**x), ref(**x)
    assert (a.vertices - b.vertices).abs().max() < 1e-5
    assert (a.joints - b.joints).abs().max() < 1e-5


@needs_default
def test_default_body_raised_right_arm_goes_up():
    body = BodyModel.load("default")
    pose = torch.zeros(1, 23, 3)
    pose[0, 16, 2] = -1.2  # joint 17 (right shoulder), arm along -X: a turn about -Z swings it up
    out = body(body_pose=pose)
    rest = body()
    assert out.joints[0, 21, 1] > rest.joints[0, 21, 1] + 0.3
    assert torch.allclose(out.joints[0, 20], rest.joints[0, 20], atol=1e-5)


@needs_default
def test_default_body_gender_is_the_neutral_body_with_the_gender_shape():
    """A gendered default body is the neutral body shaped by the file's gender betas: same vertices and
    joints, rest and posed (a shift with the wrong sign or scale, joints left at the neutral skeleton,
    or the wrong gender row would all show)."""
    n = BodyModel.load("default")
    with np.load(DEFAULT_BODY_PATH) as d:
        names = [str(x) for x in d["gender_names"]]
        gender_betas = d["gender_betas"][:, : n.num_betas]
    x = random_inputs(2, n.num_betas, scale=0.4)
    heights = {}
    for gender in ("female", "male"):
        g = BodyModel.load("default", gender=gender)
        betas = torch.as_tensor(gender_betas[names.index(gender)], dtype=torch.float32).expand(2, -1)
        a = g(global_orient=x["global_orient"], body_pose=x["body_pose"], transl=x["transl"])
        b = n(betas=betas, global_orient=x["global_orient"], body_pose=x["body_pose"], transl=x["transl"])
        assert (a.vertices - b.vertices).abs().max() < 1e-5 and (a.joints - b.joints).abs().max() < 1e-5
        assert (g.v_template - n.v_template).abs().max() > 1e-3  # the shape really changed
        heights[gender] = float(g.v_template[:, 1].max() - g.v_template[:, 1].min())
    hn = float(n.v_template[:, 1].max() - n.v_template[:, 1].min())
    assert heights["female"] < hn < heights["male"]


def write_synthetic_smplx(path, rng, V=10475):
    """A random SMPL-X-layout file (smplx indexes keypoint vertices up to 10474, hence V)."""
    parents = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15]
                       + [p for base in (20, 21) for k in range(5) for p in (base, 0, 0)])
    for i in range(25, 55):  # finger chains: base joint hangs off the wrist, the next two off their predecessor
        if parents[i] == 0:
            parents[i] = i - 1
    J = np.zeros((55, 3))
    for j in range(1, 55):
        J[j] = J[parents[j]] + rng.normal(scale=0.08, size=3)
    owner = rng.integers(0, 55, V)
    W = rng.random((V, 55)) ** 8
    W[np.arange(V), owner] += 1
    W /= W.sum(1, keepdims=True)
    Jr = (owner[None] == np.arange(55)[:, None]).astype(np.float32)
    Jr /= Jr.sum(1, keepdims=True)
    np.savez(path, v_template=(J[owner] + rng.normal(scale=0.02, size=(V, 3))).astype(np.float32),
             shapedirs=rng.normal(scale=0.01, size=(V, 3, 20)).astype(np.float32),
             posedirs=rng.normal(scale=0.002, size=(V, 3, 486)).astype(np.float32), J_regressor=Jr,
             weights=W.astype(np.float32), kintree_table=np.stack([parents, np.arange(55)]),
             f=rng.integers(0, V, (100, 3)), hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
             hands_meanl=np.zeros(45), hands_meanr=np.zeros(45), lmk_faces_idx=np.zeros(51, np.int64),
             lmk_bary_coords=np.full((51, 3), 1 / 3), dynamic_lmk_faces_idx=np.zeros((79, 17), np.int64),
             dynamic_lmk_bary_coords=np.full((79, 17, 3), 1 / 3))


def test_smplx_file_reduced_to_smpl_tree_matches_smplx(tmp_path, rng):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    write_synthetic_smplx(path, rng)
    ours = BodyModel.load(tmp_path)  # a folder: picks SMPLX_NEUTRAL.npz
    ref = BodyModel.load(path, backend="smplx")
    assert ours.num_joints == 24 and ours.weights.shape == (10475, 24) and ours.has_posedirs
    assert torch.allclose(ours.weights.sum(1), torch.ones(10475), atol=1e-5)
    x = random_inputs(2, ours.num_betas, scale=0.5)
    x["body_pose"][:, 21:] = 0  # SMPL's hand joints stand for SMPL-X's fingers, which smplx poses separately
    a, b = ours(**x), ref(**x)
    assert (a.vertices - b.vertices).abs().max() < 1e-5
    assert (a.joints[:, :22] - b.joints[:, :22]).abs().max() < 1e-5
