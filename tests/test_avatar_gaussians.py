import numpy as np
import pytest
import torch
import trimesh

from avatars.surface import closest_points


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
