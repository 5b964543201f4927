import numpy as np
import pytest
import torch
import trimesh

from render.camera import Camera
from render.errors import AmgError
from render.gaussian import Gaussians, rasterize
from render.mesh import render_mesh
from render.rotations import matrix_to_quaternion

CAM = Camera.look_at((0, 0, 3), (0, 0, 0), fov_deg=40, width=64, height=48)


def box(center, size):
    b = trimesh.creation.box(extents=(size,) * 3)
    b.apply_translation(center)
    return b


def test_plane_depth_is_metric_z_and_background_is_exact():
    # a 4x4 m square at world z=-1, i.e. 4 m in front of the camera, filling the middle of the view
    v = np.array([[-0.5, -0.5, -1], [0.5, -0.5, -1], [0.5, 0.5, -1], [-0.5, 0.5, -1]], float)
    out = render_mesh(v, np.array([[0, 1, 2], [0, 2, 3]]), CAM, colors=(0.2, 0.8, 0.4), background=(0.1, 0.2, 0.3))
    hit = out.alpha > 0
    assert out.rgb.shape == (48, 64, 3) and out.depth.dtype == torch.float32
    assert torch.allclose(out.depth[hit], torch.tensor(4.0), atol=2e-3)
    assert (out.depth[~hit] == 0).all() and torch.equal(out.ids == 1, hit)
    assert torch.allclose(out.rgb[~hit], torch.tensor([0.1, 0.2, 0.3]))
    # the lit green square is green
    c = out.rgb[24, 32]
    assert c[1] > c[0] and c[1] > c[2]
    # its projected extent: corners project to these pixels
    uv, _ = CAM.project(torch.tensor(v))
    cols = torch.nonzero(hit.any(0)).squeeze(1)
    assert abs(cols.min().item() - uv[:, 0].min().item()) < 1.0 and abs(cols.max().item() + 1 - uv[:, 0].max().item()) < 1.0


def test_instances_occlusion_and_colours():
    near, far = box((0.1, 0, 0.5), 0.4), box((-0.1, 0, -0.5), 0.6)
    out = render_mesh([far.vertices, near.vertices], [far.faces, near.faces], CAM,
                      colors=[(0.0, 0.0, 1.0), (1.0, 0.0, 0.0)])
    assert set(torch.unique(out.ids).tolist()) == {0, 1, 2}
    # the near box (id 2, red) covers the overlap; the far box shows at its left edge only
    uv, _ = CAM.project(torch.tensor([[0.1, 0.0, 0.7]]))
    u, v = int(uv[0, 0]), int(uv[0, 1])
    assert out.ids[v, u] == 2 and out.rgb[v, u, 0] > 0.5 and out.rgb[v, u, 2] < 0.1
    assert torch.allclose(out.depth[v, u], torch.tensor(3 - 0.7), atol=2e-3)
    left = torch.nonzero(out.ids[v] == 1).squeeze(1)
    assert len(left) > 0 and left.max() < u


def test_per_vertex_colours():
    b = box((0, 0, 0), 0.8)
    colors = np.where(b.vertices[:, :1] > 0, [[1.0, 0, 0]], [[0, 0, 1.0]])
    out = render_mesh(b.vertices, b.faces, Camera.look_at((0, 0, 3), (0, 0, 0), width=32, height=32),
                      colors=[colors])
    assert out.rgb[16, 2:12, 2].mean() > out.rgb[16, 2:12, 0].mean()  # left half blue
    assert out.rgb[16, 20:30, 0].mean() > out.rgb[16, 20:30, 2].mean()  # right half red


def test_gaussians_on_a_sphere_match_the_mesh():
    """The Gaussian rasterizer and the mesh renderer agree on silhouette and depth of the same surface."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    pts, fidx = trimesh.sample.sample_surface(sphere, 6000, seed=0)
    n = sphere.face_normals[fidx]
    t1 = np.cross(n, np.where(np.abs(n[:, 1:2]) < 0.9, [[0, 1, 0]], [[1, 0, 0]]))
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    rot = torch.from_numpy(np.stack([t1, np.cross(n, t1), n], axis=-1))
    s = 0.6 * np.sqrt(sphere.area / len(pts))
    g = Gaussians(torch.tensor(pts, dtype=torch.float32), matrix_to_quaternion(rot).float(),
                  torch.tensor([[s, s, 0.1 * s]], dtype=torch.float32).repeat(len(pts), 1), torch.full((len(pts),), 0.95),
                  torch.full((len(pts), 3), 0.7))
    cam = CAM.resize(128, 96)
    go, mo = rasterize(g, cam, backend="cpu"), render_mesh(sphere.vertices, sphere.faces, cam)
    gm, mm = go.alpha > 0.5, mo.alpha > 0.5
    # splats blur the outline by about a pixel; the silhouettes agree in place and nearly in extent
    iou = (gm & mm).sum() / (gm | mm).sum()
    centroid = [torch.nonzero(m).double().mean(0) for m in (gm, mm)]
    assert iou > 0.88
    assert (centroid[0] - centroid[1]).abs().max() < 0.25
    # depth: splats report their centres' z, which on slanted surface lies nearer than the surface
    # itself; where the sphere faces the camera they agree within a centimetre
    rows, cols = torch.meshgrid(torch.arange(96), torch.arange(128), indexing="ij")
    facing = ((rows - centroid[1][0]) ** 2 + (cols - centroid[1][1]) ** 2).sqrt() < 0.6 * (mm.sum() / torch.pi).sqrt()
    assert (go.depth[facing] - mo.depth[facing]).abs().median() < 0.01
    assert (go.depth[gm & mm] - mo.depth[gm & mm]).abs().median() < 0.03


def test_bad_meshes_raise_amg_error():
    b = box((0, 0, 0), 1)
    with pytest.raises(AmgError, match="faces"):
        render_mesh(b.vertices, b.faces + 100, CAM)
    with pytest.raises(AmgError, match="vertices"):
        render_mesh(b.vertices[:, :2], b.faces, CAM)
    with pytest.raises(AmgError, match="2 vertex arrays"):
        render_mesh([b.vertices, b.vertices], [b.faces], CAM)
    with pytest.raises(AmgError, match="colors"):
        render_mesh(b.vertices, b.faces, CAM, colors=[np.ones((3, 3))])
