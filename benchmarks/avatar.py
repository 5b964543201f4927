"""Gaussian avatars: build time, posing and rendering cost, and fidelity to the posed mesh.

Reported, all measured in the same run:

1. ``GaussianAvatar.from_body`` at 30k Gaussians for three prompts (the dress and long hair bind ~5k free
   Gaussians to their nearest surface points), and the nearest-surface-point binding alone against the
   previous approach (a Python-loop vertex-face table and a dense point-vertex distance matrix) as the
   baseline (speed-up);
2. posing 16 frames (LBS of means and rotations), per frame;
3. per-frame CPU rasterization of the posed avatar at 256x256, compiled and PyTorch paths, against a
   pyrender render of the posed mesh from the same camera (ratios), and a 16-frame clip in one call;
4. silhouette IoU (alpha > 0.5 against the mesh mask) and median |depth difference| over 10 seeded random
   poses x 3 cameras, the body's projection spanning 90% of the image, for a skin-tight appearance and
   the two prompts of the AMG paper, at 256 px (and at the sizes given with ``--sizes``).

Run: ``PYOPENGL_PLATFORM=osmesa python benchmarks/avatar.py [--threads 1] [--sizes 256 384 512]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import _timing  # noqa: E402
from avatars.body import BodyModel  # noqa: E402
from avatars.gaussians import GaussianAvatar, _closest_on_triangles, _closest_points  # noqa: E402
from render.gaussian import rasterize, rasterize_clip  # noqa: E402
from render.mesh import render_mesh  # noqa: E402
from test_avatar_render import MAN, SKIN_TIGHT, WOMAN, framing_cameras, random_poses  # noqa: E402


def closest_points_baseline(vertices, faces, points, chunk=4096):
    """The binding as first written: vertex-face lists built in Python, 8 nearest vertices from a dense
    distance matrix, exact distances to the faces around them."""
    V = vertices.shape[0]
    vf = [[] for _ in range(V)]
    for f, tri in enumerate(faces.tolist()):
        for v in tri:
            vf[v].append(f)
    vf_t = torch.full((V, max(len(x) for x in vf)), -1, dtype=torch.long)
    for v, lst in enumerate(vf):
        vf_t[v, : len(lst)] = torch.as_tensor(lst)
    out = []
    for s in range(0, len(points), chunk):
        p = points[s: s + chunk]
        knn = torch.cdist(p, vertices).topk(8, largest=False).indices
        cand = vf_t[knn].reshape(len(p), -1)
        q, _ = _closest_on_triangles(p[:, None, :].expand(-1, cand.shape[1], -1), vertices[faces[cand.clamp_min(0)]])
        d = torch.where(cand >= 0, (q - p[:, None]).norm(dim=-1), torch.full(cand.shape, float("inf")))
        out.append(q[torch.arange(len(p)), d.argmin(1)])
    return torch.cat(out)


def timed(fn, repeats=3):
    """Median wall seconds and the last result (the shared timing loop, without its warm-up call)."""
    t = _timing.timed(fn, repeats, warmup=False)
    return t.wall, t.out


def fidelity(body, appearance, size, num_gaussians=30000):
    av = GaussianAvatar.from_body(body, appearance, num_gaussians=num_gaussians, seed=0)
    go, bp = random_poses(10, seed=0)
    frames, out = av.pose(go, bp, return_body=True)
    ious, meds = [], []
    for i in range(10):
        for cam in framing_cameras(out.vertices[i], size=size):
            r = rasterize(frames[i], cam, backend="cpu")
            m = render_mesh(out.vertices[i], body.faces, cam)
            a, b = r.alpha > 0.5, m.ids > 0
            ious.append(float((a & b).sum() / (a | b).sum()))
            meds.append(float((r.depth[a & b] - m.depth[a & b]).abs().median()))
    return np.array(ious), np.array(meds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[256], help="image sizes for 4 (none: skip it)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    body = BodyModel.load()

    print("\n1. build (30k Gaussians)")
    GaussianAvatar.from_body(body, "a person", num_gaussians=1000)  # imports and caches out of the timing
    for name, text in (("skin-tight", SKIN_TIGHT), ("man (paper)", MAN), ("woman (paper)", WOMAN)):
        t, av = timed(lambda: GaussianAvatar.from_body(body, text, num_gaussians=30000, seed=0), args.repeats)
        print(f"   {name:14s} {t * 1000:7.0f} ms  ({len(av)} Gaussians)")
    rest_v, _ = body.rest(torch.zeros(1, body.num_betas))
    rest_v = rest_v[0].float()
    faces = torch.as_tensor(np.asarray(body.faces))
    pts = rest_v[torch.randint(0, len(rest_v), (5000,), generator=torch.Generator().manual_seed(0))]
    pts = pts + 0.02 * torch.randn(pts.shape, generator=torch.Generator().manual_seed(1))
    t_new, (_, _, q_new) = timed(lambda: _closest_points(rest_v, faces, pts), args.repeats)
    t_old, q_old = timed(lambda: closest_points_baseline(rest_v, faces, pts), 1)
    print(f"   binding 5000 free points: {t_new * 1000:.0f} ms vs baseline {t_old * 1000:.0f} ms "
          f"(speed-up {t_old / t_new:.1f}x, max |diff| {float((q_new - q_old).abs().max()):.1e} m)")

    print("\n2. pose 16 frames (30k Gaussians)")
    av = GaussianAvatar.from_body(body, WOMAN, num_gaussians=30000, seed=0)
    go, bp = random_poses(16, seed=1)
    t, (frames, _) = timed(lambda: av.pose(go, bp), args.repeats)
    print(f"   {t / 16 * 1000:.1f} ms per frame")

    print("\n3. render one frame at 256x256 (30k Gaussians)")
    out = body(global_orient=go[:1], body_pose=bp[:1])
    cam = framing_cameras(out.vertices[0], size=256, views=((30, 10),))[0]
    rasterize(frames[0], cam, backend="cpu")  # JIT compile or cache load, untimed
    t_c, _ = timed(lambda: rasterize(frames[0], cam, backend="cpu"), args.repeats)
    t_g, _ = timed(lambda: rasterize(frames[0], cam, backend="torch"), args.repeats)
    t_m, _ = timed(lambda: render_mesh(out.vertices[0], body.faces, cam), args.repeats)
    t_clip, _ = timed(lambda: rasterize_clip(frames, [cam] * len(frames), backend="cpu"), args.repeats)
    print(f"   compiled {t_c * 1000:.0f} ms (ratio {t_c / t_m:.2f}), PyTorch {t_g * 1000:.0f} ms (ratio {t_g / t_m:.2f}), "
          f"pyrender mesh {t_m * 1000:.0f} ms; 16-frame clip in one call {t_clip / len(frames) * 1000:.0f} ms/frame")

    print("\n4. fidelity to the posed mesh: 10 poses x 3 cameras, body spanning 90% of the image")
    for size in args.sizes:
        for name, text in (("skin-tight", SKIN_TIGHT), ("man (paper)", MAN), ("woman (paper)", WOMAN)):
            ious, meds = fidelity(body, text, size)
            print(f"   {size}px {name:14s} IoU mean {ious.mean():.4f} min {ious.min():.4f} max {ious.max():.4f} | "
                  f"median |depth diff| max {meds.max() * 1000:.1f} mm, mean {meds.mean() * 1000:.1f} mm")


if __name__ == "__main__":
    main()
