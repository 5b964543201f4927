"""Surface geometry of a triangle mesh: area-uniform sampling, normals, nearest surface points.

Pure tensor functions on ``vertices (V,3)`` float and ``faces (F,3)`` int64; the avatar samples and binds
its Gaussians with them (:mod:`avatars.gaussians`), the garment geometry anchors free points with them
(:mod:`avatars.dress`).
"""

from __future__ import annotations

import torch

from render.rotations import matrix_to_quaternion

__all__ = ["stratified_faces", "sample_bary", "vertex_normals", "normal_frame_quats", "bind_free_points",
           "closest_points", "vertex_faces", "closest_on_triangles"]


def stratified_faces(area: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n,)`` face ids, area-proportional by jittered systematic sampling of the cumulative area.

    Every face gets ``floor`` or ``ceil`` of its expected count (multinomial sampling would leave a third
    of the faces empty where there is one sample per face), so the surface is covered evenly and the
    splats can stay small without leaving holes.
    """
    cum = torch.cumsum(area.double(), 0)
    pos = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) * (cum[-1] / n)
    return torch.searchsorted(cum, pos).clamp_max(len(area) - 1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(V,3)`` unit vertex normals, the area-weighted mean of the faces around each vertex."""
    tri = vertices[faces]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)  # length = 2 * area
    acc = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), n.repeat_interleave(3, dim=0))
    return acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sample_bary(n: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform barycentric coordinates on a triangle ``(n,3)``."""
    u, v = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
    su = u.sqrt()
    return torch.stack([1 - su, su * (1 - v), su * v], -1)


def normal_frame_quats(normal: torch.Tensor) -> torch.Tensor:
    """Quaternions rotating the local z axis onto ``normal (N,3)`` (x, y tangent)."""
    ref = torch.where(normal[:, 1:2].abs() < 0.9, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    t1 = torch.nn.functional.normalize(torch.cross(ref, normal, dim=-1), dim=-1)
    t2 = torch.cross(normal, t1, dim=-1)
    return matrix_to_quaternion(torch.stack([t1, t2, normal], dim=-1))


def bind_free_points(points: torch.Tensor, rest_v: torch.Tensor, faces: torch.Tensor, W: torch.Tensor,
                     pull: int | None = None, pull_amount: float = 0.0):
    """Anchor free points ``(P,3)`` to their nearest point on the mesh ``rest_v (V,3)``, ``faces (F,3)``.

    Returns face ids ``(P,)``, barycentrics ``(P,3)``, offsets from the surface point ``(P,3)`` (metres) and
    skin weights ``(P,J)`` interpolated from ``W (V,J)``; ``pull`` moves ``pull_amount`` of each point's
    weight onto that joint (a skirt follows the pelvis more than the thighs).
    """
    fid, bary, closest = closest_points(rest_v, faces, points)
    w = (W[faces[fid]] * bary[..., None]).sum(1)
    if pull is not None and pull_amount > 0:
        onehot = torch.zeros_like(w)
        onehot[:, pull] = 1
        w = (1 - pull_amount) * w + pull_amount * onehot
    return fid, bary, points - closest, w


def closest_points(vertices: torch.Tensor, faces: torch.Tensor, points: torch.Tensor, chunk: int = 8192):
    """Nearest surface point of each of ``points (P,3)`` on the mesh: face ids, barycentrics, positions.

    Exact point-triangle distances over candidate faces: those touching the 8 nearest vertices (a k-d
    tree query), which contain the true nearest face for points near a mesh of even-sized triangles.
    """
    from scipy.spatial import cKDTree

    vf_t = vertex_faces(faces, vertices.shape[0])
    tree = cKDTree(vertices.double().numpy())
    out_f, out_b, out_p = [], [], []
    for s in range(0, len(points), chunk):
        p = points[s: s + chunk]
        knn = torch.as_tensor(tree.query(p.double().numpy(), k=8)[1], dtype=torch.long).reshape(len(p), 8)
        cand = vf_t[knn].reshape(len(p), -1)  # (P,8*deg)
        valid = cand >= 0
        cand_c = cand.clamp_min(0)
        tri = vertices[faces[cand_c]]  # (P,C,3,3)
        q, bary = closest_on_triangles(p[:, None, :].expand(-1, cand.shape[1], -1), tri)
        d = (q - p[:, None]).norm(dim=-1)
        d = torch.where(valid, d, torch.full_like(d, float("inf")))
        best = d.argmin(dim=1)
        ar = torch.arange(len(p))
        out_f.append(cand_c[ar, best])
        out_b.append(bary[ar, best])
        out_p.append(q[ar, best])
    return torch.cat(out_f), torch.cat(out_b), torch.cat(out_p)


def vertex_faces(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """``(V, D)`` the faces around each vertex, padded with -1 (``D`` the largest vertex degree)."""
    flat = faces.reshape(-1)
    fid = torch.arange(faces.shape[0]).repeat_interleave(faces.shape[1])
    order = torch.argsort(flat, stable=True)
    v_sorted, f_sorted = flat[order], fid[order]
    deg = torch.bincount(flat, minlength=num_vertices)
    start = torch.cumsum(deg, 0) - deg
    slot = torch.arange(len(flat)) - start[v_sorted]
    out = torch.full((num_vertices, int(deg.max()) if len(flat) else 1), -1, dtype=torch.long)
    out[v_sorted, slot] = f_sorted
    return out


def closest_on_triangles(p: torch.Tensor, tri: torch.Tensor):
    """Closest point on triangles ``tri (...,3,3)`` to ``p (...,3)`` and its barycentrics (Ericson's method)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-20
    # default: inside the face
    denom = (va + vb + vc)
    denom = torch.where(denom.abs() < eps, torch.full_like(denom, eps), denom)
    v = vb / denom
    w = vc / denom
    u = 1 - v - w
    bary = torch.stack([u, v, w], -1)

    def setb(mask, uu, vv, ww):
        nonlocal bary
        nb = torch.stack([uu, vv, ww], -1)
        bary = torch.where(mask[..., None], nb, bary)

    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    # edge regions (applied in reverse priority so vertex regions win)
    m_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    wbc = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(eps)
    setb(m_bc, zero, 1 - wbc, wbc)
    m_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    wac = d2 / (d2 - d6).clamp_min(eps)
    setb(m_ac, 1 - wac, zero, wac)
    m_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    vab = d1 / (d1 - d3).clamp_min(eps)
    setb(m_ab, 1 - vab, vab, zero)
    setb((d6 >= 0) & (d5 <= d6), zero, zero, one)
    setb((d3 >= 0) & (d4 <= d3), zero, one, zero)
    setb((d1 <= 0) & (d2 <= 0), one, zero, zero)
    q = (tri * bary[..., None]).sum(-2)
    return q, bary
