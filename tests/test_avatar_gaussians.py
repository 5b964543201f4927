import numpy as np
import pytest
import torch
import trimesh

from avatars.surface import closest_points
from render.ply import load_ply, save_ply
from render.errors import AmgError
from render.gaussian import Gaussians


def random_gaussians(n, sh=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, 3, generator=g) if sh is None else torch.randn(n, sh, 3, generator=g) * 0.3
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return Gaussians(torch.randn(n, 3, generator=g), q, torch.rand(n, 3, generator=g) * 0.05 + 1e-3,
                     torch.rand(n, generator=g) * 0.9 + 0.05, colors)


@pytest.mark.parametrize("sh", [None, 4, 16])
def test_ply_round_trip_and_header(tmp_path, sh):
    g = random_gaussians(50, sh)
    f = save_ply(tmp_path / "a.ply", g)
    text = f.read_bytes()[:2000].decode("ascii", errors="replace")
    for field in ["element vertex 50", "property float x", "property float nx", "property float f_dc_0",
                  "property float opacity", "property float scale_2", "property float rot_3"]:
        assert field in text
    if sh:
        assert f"property float f_rest_{(sh - 1) * 3 - 1}" in text
    back = load_ply(f)
    assert torch.allclose(back.means, g.means) and torch.allclose(back.scales, g.scales, rtol=1e-6)
    assert torch.allclose(back.opacities, g.opacities, atol=1e-6) and torch.allclose(back.quats, g.quats, atol=1e-7)
    if sh:
        assert torch.allclose(back.colors, g.colors, atol=1e-7)
    else:
        assert torch.allclose((back.colors[:, 0] * 0.28209479177387814 + 0.5), g.colors, atol=1e-6)
    # a loaded file written again is byte-identical
    save_ply(tmp_path / "b.ply", back)
    again = load_ply(tmp_path / "b.ply")
    for name in ("means", "quats", "colors"):
        assert torch.equal(getattr(again, name), getattr(back, name))


def test_bad_ply(tmp_path):
    p = tmp_path / "bad.ply"
    p.write_bytes(b"not a ply")
    with pytest.raises(AmgError, match="bad.ply"):
        load_ply(p)
    with pytest.raises(AmgError, match="no such"):
        load_ply(tmp_path / "missing.ply")


def test_closest_points_match_trimesh():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    v = torch.as_tensor(mesh.vertices, dtype=torch.float32)
    f = torch.as_tensor(mesh.faces, dtype=torch.long)
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * rng.uniform(0.4, 0.6, size=(300, 1))
    fid, bary, q = closest_points(v, f, torch.as_tensor(pts, dtype=torch.float32))
    # brute force over every triangle with trimesh's per-pair closest point
    tris = np.repeat(mesh.triangles[None], len(pts), 0).reshape(-1, 3, 3)
    cand = trimesh.triangles.closest_point(tris, np.repeat(pts, len(mesh.faces), 0)).reshape(len(pts), -1, 3)
    ref = cand[np.arange(len(pts)), np.linalg.norm(cand - pts[:, None], axis=-1).argmin(1)]
    assert np.allclose(q.numpy(), ref, atol=1e-5)
    assert torch.allclose((v[f[fid]] * bary[..., None]).sum(1), q, atol=1e-5)
    assert (bary >= -1e-6).all() and torch.allclose(bary.sum(-1), torch.ones(300), atol=1e-5)
