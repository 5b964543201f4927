"""Gaussian avatars against the posed mesh: silhouettes, depth, joints, skinning, occlusion, files, looks.

The mesh rendered by pyrender is the ground truth. Views are 256x256 (AMG's resolution) with the body's
projection filling 90% of the image; the splat surface is tuned for that scale (see
``avatars/gaussians.py``), so the silhouette check runs at it rather than at a smaller test size.
"""

import colorsys
import math

import numpy as np
import pytest
import torch
import trimesh

from avatars import motion_library
from avatars.appearance import Appearance
from avatars.gaussians import GaussianAvatar
from avatars.surface import closest_on_triangles, vertex_faces
from render.ply import save_ply
from avatars.scene import Person, render_scene
from render.camera import Camera, CameraPath
from render.gaussian import Gaussians, rasterize
from render.mesh import render_mesh
from render.rotations import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, quaternion_to_matrix

WOMAN = "A woman wearing a bright yellow dress, sleeveless, flowing just above her knees"
MAN = "A man wearing a white dress shirt and dark pants"
SKIN_TIGHT = Appearance(text="bald, nothing worn", hair_length="bald", garments={})


def random_poses(n: int, seed: int):
    """``n`` plausible poses (global_orient (n,3), body_pose (n,23,3)): any heading, arms between hanging
    and raised, elbows and knees bent forward, hips flexed, a little spine, neck and head motion."""
    g = torch.Generator().manual_seed(seed)

    def U(lo, hi, *size):
        return lo + (hi - lo) * torch.rand(size or (n,), generator=g)

    eu = torch.zeros(n, 24, 3)
    eu[:, 0, 1] = U(-math.pi, math.pi)
    eu[:, 16, 2], eu[:, 17, 2] = -U(0.3, 1.4), U(0.3, 1.4)
    eu[:, 16, 1], eu[:, 17, 1] = U(-0.6, 0.6), U(-0.6, 0.6)
    eu[:, 18, 1], eu[:, 19, 1] = -U(0.0, 1.8), U(0.0, 1.8)
    eu[:, 1, 0], eu[:, 2, 0] = U(-1.0, 0.4), U(-1.0, 0.4)
    eu[:, 1, 2], eu[:, 2, 2] = U(-0.1, 0.4), U(-0.4, 0.1)
    eu[:, 4, 0], eu[:, 5, 0] = U(0.0, 1.4), U(0.0, 1.4)
    for j in (3, 6, 9):
        eu[:, j] = U(-0.15, 0.15, n, 3)
    eu[:, 12], eu[:, 15] = U(-0.2, 0.2, n, 3), U(-0.3, 0.3, n, 3)
    aa = matrix_to_axis_angle(euler_to_matrix(eu.double(), "XYZ")).float()
    return aa[:, 0], aa[:, 1:]


def framing_cameras(vertices: torch.Tensor, size: int = 256, fill: float = 0.9, fov: float = 45.0,
                    views=((0, 5), (70, 20), (200, -10))) -> list[Camera]:
    """Cameras at (azimuth, elevation) degrees aimed at the bounding-box centre of ``vertices (V,3)``,
    at the distance where the body's projection spans ``fill`` of the image."""
    v = vertices.double()
    center = (v.min(0).values + v.max(0).values) / 2
    out = []
    for az, el in views:
        a, e = math.radians(az), math.radians(el)
        d = torch.tensor([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)], dtype=torch.float64)
        dist = 3.0
        for _ in range(3):  # perspective: the extent is not exactly linear in 1/distance
            uv, _ = Camera.look_at(center + dist * d, center, fov_deg=fov, width=size, height=size).project(v)
            dist *= float((uv - size / 2).abs().max()) * 2 / (fill * size)
        out.append(Camera.look_at(center + dist * d, center, fov_deg=fov, width=size, height=size))
    return out


# ------------------------------------------------------------------------------------------------
# silhouette, depth and joints against the mesh
# ------------------------------------------------------------------------------------------------


def test_silhouette_depth_and_joints_match_the_posed_mesh(body):
    """10 random poses x 3 cameras, skin-tight appearance (garments and hair legitimately leave the skin).

    Silhouette IoU (alpha > 0.5 vs the mesh mask): mean >= 0.95 over the 30 views, none below 0.93.
    Depth: median |splat - mesh| on pixels both cover <= 1 cm in every view. Joints: all 24 SMPL joints
    project inside the splat silhouette (undilated); they lie inside the body, so this holds whether or not
    a joint is hidden behind another limb.
    """
    av = GaussianAvatar.from_body(body, SKIN_TIGHT, num_gaussians=30000, seed=0)
    go, bp = random_poses(10, seed=0)
    frames, out = av.pose(go, bp, return_body=True)
    ious, medians = [], []
    for i in range(10):
        for cam in framing_cameras(out.vertices[i]):
            r = rasterize(frames[i], cam, backend="cpu")
            m = render_mesh(out.vertices[i], body.faces, cam)
            a, b = r.alpha > 0.5, m.ids > 0
            ious.append(float((a & b).sum() / (a | b).sum()))
            both = a & b
            medians.append(float((r.depth[both] - m.depth[both]).abs().median()))
            uv, z = cam.project(out.joints[i].double())
            px = uv.floor().long()
            assert (z > 0).all() and ((px >= 0) & (px < 256)).all()
            assert a[px[:, 1], px[:, 0]].all(), f"pose {i}: joints {torch.nonzero(~a[px[:, 1], px[:, 0]]).flatten().tolist()} outside"
    ious = np.array(ious)
    assert ious.mean() >= 0.95, f"mean IoU {ious.mean():.4f}"
    assert ious.min() >= 0.93, f"min IoU {ious.min():.4f}"
    assert max(medians) <= 0.01, f"depth medians up to {max(medians) * 1000:.1f} mm"


def test_surface_has_no_holes_at_twice_the_resolution(body):
    """Inside the mesh outline (2 px in), the splat surface is opaque even where splats are several pixels
    wide (512 px), so small splats did not open gaps between them."""
    av = GaussianAvatar.from_body(body, SKIN_TIGHT, num_gaussians=30000, seed=1)
    go, bp = random_poses(1, seed=3)
    frames, out = av.pose(go, bp, return_body=True)
    cam = framing_cameras(out.vertices[0], size=512, views=((30, 10),))[0]
    r = rasterize(frames[0], cam, backend="cpu")
    m = render_mesh(out.vertices[0], body.faces, cam).ids.numpy() > 0
    from scipy.ndimage import binary_erosion

    inner = torch.from_numpy(binary_erosion(m, iterations=2))
    assert (r.alpha[inner] < 0.98).float().mean() < 0.01
    assert r.alpha[inner].mean() > 0.995


# ------------------------------------------------------------------------------------------------
# skinning
# ------------------------------------------------------------------------------------------------


def _vertex_anchored(av: GaussianAvatar, vertex_ids: torch.Tensor) -> GaussianAvatar:
    """An avatar whose Gaussians sit exactly on the given vertices (bary one-hot, zero offset)."""
    faces = torch.as_tensor(np.asarray(av.body.faces))
    vf = vertex_faces(faces, av.body.num_vertices)
    fid = vf[vertex_ids, 0]
    corner = (faces[fid] == vertex_ids[:, None]).float()
    n = len(vertex_ids)
    W = torch.as_tensor(np.asarray(av.body.weights), dtype=torch.float32)[vertex_ids]
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    return GaussianAvatar(av.body, fid, corner, torch.zeros(n, 3), W, q, torch.full((n, 3), 0.01),
                          torch.full((n,), 0.9), torch.rand(n, 3), av.betas)


def test_posed_means_are_lbs_of_rest_means(body):
    av = GaussianAvatar.from_body(body, MAN, num_gaussians=2000, seed=0)
    go, bp = random_poses(3, seed=1)
    tr = torch.tensor([[0.3, 0.0, -1.0], [0.0, 0.2, 0.0], [-2.0, 0.1, 0.5]])
    # Gaussians anchored exactly at vertices land exactly on the posed vertices
    vids = torch.randperm(body.num_vertices, generator=torch.Generator().manual_seed(0))[:500]
    on_v = _vertex_anchored(av, vids)
    frames, out = on_v.pose(go, bp, tr, return_body=True)
    for f in range(3):
        assert torch.allclose(frames[f].means, out.vertices[f, vids], atol=2e-5)
    # every Gaussian: skinned with transforms built here by forward kinematics from the axis-angles, the
    # parents and the rest joints (scipy's rotations), not with the body model's own skin transforms
    from scipy.spatial.transform import Rotation

    frames, _ = av.pose(go, bp, tr)
    rest = av.rest_means().double().numpy()
    _, rest_j = body.rest(av.betas[None])
    J = rest_j[0].double().numpy()
    for f in range(3):
        local = Rotation.from_rotvec(np.concatenate([go[f:f + 1].numpy(), bp[f].numpy()])).as_matrix()
        G, p = [None] * 24, [None] * 24
        for j in range(24):
            par = body.parents[j]
            if par < 0:
                G[j], p[j] = local[j], J[j]
            else:
                G[j], p[j] = G[par] @ local[j], p[par] + G[par] @ (J[j] - J[par])
        w = av.weights.double().numpy()
        ref = sum(w[:, j:j + 1] * ((rest - J[j]) @ G[j].T + p[j]) for j in range(24)) + tr[f].numpy()
        assert np.allclose(frames[f].means.numpy(), ref, atol=5e-5)


def test_rotations_follow_the_limbs_and_root(body):
    av = GaussianAvatar.from_body(body, SKIN_TIGHT, num_gaussians=3000, seed=0)
    # Gaussians skinned only to the left elbow sit on the forearm
    fore = av.weights[:, 18] > 0.9999
    assert fore.sum() > 20
    bp = torch.zeros(23, 3)
    bp[17] = torch.tensor([0.0, -1.5, 0.0])  # left elbow (joint 18) folds the forearm
    bp[15] = torch.tensor([0.0, 0.0, -1.2])  # left shoulder lowers the arm
    (posed,), out = av.pose(torch.zeros(3), bp, return_body=True)
    R_elbow = out.transforms[0, 18, :3, :3]
    got = quaternion_to_matrix(posed.quats[fore])
    want = R_elbow @ quaternion_to_matrix(av.quats[fore])
    assert torch.allclose(got, want, atol=1e-4)
    # the splats' normal axis still matches the posed surface normal around them
    rest_n = quaternion_to_matrix(av.quats[fore])[:, :, 2]
    assert torch.allclose(got[:, :, 2], rest_n @ R_elbow.T, atol=1e-4)
    # root orientation and translation: rotation about the pelvis, then the shift
    go = torch.tensor([0.2, 1.3, -0.4])
    t = torch.tensor([1.0, -0.5, 2.0])
    (g0,), out0 = av.pose(torch.zeros(3), bp, return_body=True)
    (g1,), _ = av.pose(go, bp, t)
    R = axis_angle_to_matrix(go)
    J0 = out0.joints[0, 0]
    assert torch.allclose(g1.means, (g0.means - J0) @ R.T + J0 + t, atol=2e-5)
    assert torch.allclose(quaternion_to_matrix(g1.quats), R @ quaternion_to_matrix(g0.quats), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# two people
# ------------------------------------------------------------------------------------------------


def test_person_walking_behind_another_disappears(body):
    red = GaussianAvatar.from_body(body, "a man wearing a red t-shirt and red pants and red shoes, bald",
                                   num_gaussians=4000, seed=0)
    blue = GaussianAvatar.from_body(body, "a man wearing a blue t-shirt and blue pants and blue shoes, bald",
                                    num_gaussians=4000, seed=1)
    F = 9
    stand = motion_library.make("idle", seconds=F / 4, fps=4)[:F]
    walk = motion_library.make("walk", seconds=F / 4, fps=4, direction=90.0)[:F]
    walk = walk.transformed(torch.eye(3), offset=(-1.25, 0.0, -1.2))  # crosses behind, 1.2 m farther
    cams = CameraPath.static(Camera.look_at((0.0, 1.0, 4.0), (0.0, 0.9, -0.5), fov_deg=50, width=128, height=128),
                             num_frames=F, fps=4)
    res = render_scene([Person(red, stand), Person(blue, walk)], cams, backend="cpu", progress=False)
    blue_alone = blue.pose_motion(walk, instance_id=2).frames
    shown, crossing = [], (None, 0)
    for f in range(F):
        verts = [res.vertices[p][f] for p in range(2)]
        together = render_mesh(verts, [body.faces] * 2, cams[f]).ids.numpy()
        alone = [render_mesh(v, body.faces, cams[f]).ids.numpy() > 0 for v in verts]
        # the share of the walker left visible, by the splats and by the depth-tested meshes
        whole = int((rasterize(blue_alone[f], cams[f], backend="cpu").ids == 2).sum())
        shown.append(((res.mask[f] == 2).sum() / whole, (together == 2).sum() / alone[1].sum()))
        # (the nearer person's splat outline is a pixel wider than their mesh, so hides a little more)
        assert shown[-1][1] - 0.2 < shown[-1][0] < shown[-1][1] + 0.03, f"frame {f}: {shown[-1]}"
        overlap = alone[0] & alone[1]
        if overlap.sum() < 20:
            continue
        # where the two overlap, the nearer (red) one's id and colour win
        assert (res.mask[f][overlap] == 1).mean() > 0.97
        rgb = res.rgb[f][overlap].astype(int)
        assert (rgb[:, 2] > rgb[:, 0] + 20).mean() < 0.02
        if overlap.sum() > crossing[1]:
            crossing = (f, int(overlap.sum()))
    f = crossing[0]
    assert f is not None and 0 < f < F - 1, "the walker never passed behind the standing person"
    # mostly hidden at the crossing, seen whole (in blue) before and after it
    assert shown[f][0] < 0.3 and shown[0][0] > 0.95 and shown[-1][0] > 0.95, shown
    walker = res.rgb[0][res.mask[0] == 2].astype(int)
    assert (walker[:, 2] > walker[:, 0] + 20).mean() > 0.5


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


def test_humangaussian_ply_binds_to_the_nearest_surface_point(body, tmp_path):
    rest_v, _ = body.rest(torch.zeros(1, body.num_betas))
    rest_v = rest_v[0].float()
    faces = torch.as_tensor(np.asarray(body.faces))
    mesh = trimesh.Trimesh(rest_v.numpy(), faces.numpy(), process=False)
    pts, fidx = trimesh.sample.sample_surface(mesh, 1500, seed=0)
    rng = np.random.default_rng(0)
    # canonical Gaussians around the body, in and out of the surface by up to 1.5 cm, with SH colours
    pts = pts + mesh.face_normals[fidx] * rng.uniform(-0.005, 0.015, (len(pts), 1))
    n = len(pts)
    g = Gaussians(torch.tensor(pts, dtype=torch.float32), torch.nn.functional.normalize(torch.randn(n, 4), dim=-1),
                  torch.rand(n, 3) * 0.01 + 0.002, torch.rand(n) * 0.8 + 0.1, torch.randn(n, 4, 3) * 0.3)
    save_ply(tmp_path / "hg.ply", g)
    av = GaussianAvatar.load(tmp_path / "hg.ply", body)  # no binding sidecar: import
    assert torch.allclose(av.rest_means(), g.means, atol=1e-5)
    anchor = av.rest_means() - av.offsets
    # the anchor is the nearest surface point: brute force over every triangle for a subset
    sub = torch.arange(0, n, 25)
    tri = rest_v[faces]
    for k in sub.tolist():
        q, _ = closest_on_triangles(g.means[k].expand(len(tri), 3), tri)
        best = (q - g.means[k]).norm(dim=-1).min()
        assert abs(float((anchor[k] - g.means[k]).norm()) - float(best)) < 1e-5
    # skin weights are the anchor face's, interpolated
    W = torch.as_tensor(np.asarray(body.weights), dtype=torch.float32)
    assert torch.allclose(av.weights, (W[faces[av.face_ids]] * av.bary[..., None]).sum(1), atol=1e-6)
    # posed with the body: the Gaussians follow it (a pose moves them by about as much as the surface)
    bp = torch.zeros(23, 3)
    bp[15, 2] = -1.2
    (posed,), out = av.pose(torch.zeros(3), bp, return_body=True)
    dist_to_surface = torch.cdist(posed.means[sub], out.vertices[0]).min(1).values
    assert dist_to_surface.max() < 0.03


def test_save_and_load_round_trip_to_identical_renders(body, tmp_path):
    av = GaussianAvatar.from_body(body, WOMAN, num_gaussians=3000, seed=2)
    av.save(tmp_path / "woman.ply")
    back = GaussianAvatar.load(tmp_path / "woman.ply", body)
    go, bp = random_poses(1, seed=5)
    cam = framing_cameras(body(global_orient=go, body_pose=bp).vertices[0], size=96, views=((20, 0),))[0]
    a = rasterize(av.pose(go, bp).frames[0], cam, backend="cpu")
    b = rasterize(back.pose(go, bp).frames[0], cam, backend="cpu")
    for name in ("rgb", "depth", "alpha", "ids"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_vertex_face_table_matches_a_loop(body):
    faces = torch.as_tensor(np.asarray(body.faces))
    got = vertex_faces(faces, body.num_vertices)
    ref = [[] for _ in range(body.num_vertices)]
    for f, tri in enumerate(faces.tolist()):
        for v in tri:
            ref[v].append(f)
    assert got.shape == (body.num_vertices, max(len(r) for r in ref))
    for v in range(0, body.num_vertices, 7):
        assert got[v][got[v] >= 0].tolist() == ref[v]


# ------------------------------------------------------------------------------------------------
# the paper's prompts
# ------------------------------------------------------------------------------------------------


def _hsv(rgb: np.ndarray) -> tuple[float, float, float]:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255.0))


def _sample(res, cam, points: torch.Tensor, radius: int = 1) -> np.ndarray:
    """Median colour of the (2r+1)^2 window around each projected point; asserts it is on the person."""
    uv, _ = cam.project(points.double())
    out = []
    for u, v in uv.floor().long().tolist():
        win = (slice(v - radius, v + radius + 1), slice(u - radius, u + radius + 1))
        assert (res.ids[win] == 1).all(), f"sample at ({u},{v}) is off the person"
        out.append(np.median(res.image()[win].reshape(-1, 3), axis=0))
    return np.array(out)


@pytest.fixture(scope="module")
def front_views(body):
    """The two prompts' avatars standing (idle pose), seen from the front at 128 px."""
    idle = motion_library.make("idle", seconds=0.5, fps=4)[:1]
    views = {}
    for name, text in (("woman", WOMAN), ("man", MAN)):
        av = GaussianAvatar.from_body(body, text, num_gaussians=12000, seed=0)
        (g,), out = av.pose_motion(idle, instance_id=1, return_body=True)
        cam = framing_cameras(out.vertices[0], size=128, views=((0, 0),))[0]
        views[name] = (av, rasterize(g, cam, background=(0.5, 0.5, 0.5), backend="cpu"), cam, out.joints[0])
    return views


def _is_skin(c, skin) -> bool:
    h, s, v = _hsv(c)
    hs, ss, vs = _hsv(np.array(skin) * 255)
    return abs(h - hs) < 0.05 and abs(s - ss) < 0.2 and 0.55 * vs < v < 1.1 * vs


def test_woman_in_a_yellow_dress_reads_as_such(front_views):
    av, res, cam, J = front_views["woman"]
    mid = lambda a, b, t=0.5: J[a] + t * (J[b] - J[a])  # noqa: E731
    torso = _sample(res, cam, torch.stack([J[6], J[3], mid(3, 9)]))
    thigh_below_hips = _sample(res, cam, torch.stack([mid(1, 4, 0.35), mid(2, 5, 0.35)]))
    shins = _sample(res, cam, torch.stack([mid(4, 7, 0.4), mid(5, 8, 0.4)]))
    upper_arms = _sample(res, cam, torch.stack([mid(16, 18, 0.6), mid(17, 19, 0.6)]))
    for c in np.concatenate([torso, thigh_below_hips]):  # yellow: red and green high, blue low
        h, s, v = _hsv(c)
        assert 0.11 < h < 0.2 and s > 0.6 and v > 0.6, c
    skin = av.appearance.skin
    for c in np.concatenate([shins, upper_arms]):  # legs below the hem and sleeveless arms show skin
        assert _is_skin(c, skin), (c, skin)
    # long hair frames the face: beside the head, below the head joint, hair colour shows (shading ~ +-30%)
    hair = np.array(av.appearance.hair_color) * 255
    for side in _sample(res, cam, J[15] + torch.tensor([[0.095, -0.06, 0.0], [-0.095, -0.06, 0.0]])):
        assert np.abs(side - hair).max() < 0.35 * 255 and not _is_skin(side, skin), (side, hair)


def test_man_in_a_white_shirt_and_dark_pants_reads_as_such(front_views):
    av, res, cam, J = front_views["man"]
    mid = lambda a, b, t=0.5: J[a] + t * (J[b] - J[a])  # noqa: E731
    shirt = _sample(res, cam, torch.stack([J[6], J[9], mid(6, 9), mid(16, 18), mid(17, 19), mid(18, 20), mid(19, 21)]))
    pants = _sample(res, cam, torch.stack([mid(1, 4), mid(2, 5), mid(4, 7, 0.4), mid(5, 8, 0.4)]))
    for c in shirt:  # white: bright and unsaturated, long sleeves included
        h, s, v = _hsv(c)
        assert s < 0.15 and v > 0.7, c
    for c in pants:  # dark and not skin
        h, s, v = _hsv(c)
        assert v < 0.4 and s < 0.25, c
    # hands stay skin
    hands = _sample(res, cam, torch.stack([J[20] + 0.3 * (J[22] - J[20]), J[21] + 0.3 * (J[23] - J[21])]), radius=0)
    for c in hands:
        assert _is_skin(c, av.appearance.skin), c
