"""Per-frame cost of the CPU Gaussian rasterizer against pyrender and the dense reference.

A humanoid built from capsules and a sphere (1.75 m tall) is covered with Gaussians sampled
area-uniformly on its surface (discs flattened along the normal, spaced to close the surface). Reported:

1. 256x256 with 10k / 30k / 100k Gaussians: the CPU rasterizer's time per frame against a pyrender
   render (RGB, depth, ids) of the same mesh from the same camera, measured in the same run (ratio;
   the goal is <= 2 at 30k);
2. 128x128 with 2k Gaussians: the CPU rasterizer against the dense reference of the tests (every pixel
   against every Gaussian), speed-up and maximum absolute difference.

Run: ``PYOPENGL_PLATFORM=osmesa python benchmarks/render.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from render.camera import Camera  # noqa: E402
from render.gaussian import Gaussians, rasterize  # noqa: E402
from render.mesh import render_mesh  # noqa: E402
from render.rotations import matrix_to_quaternion  # noqa: E402


def humanoid():
    """A closed capsule-and-sphere humanoid (trimesh), Y-up, feet at y=0, facing +Z; and part colours."""
    import trimesh

    def capsule(a, b, r):
        a, b = np.asarray(a, float), np.asarray(b, float)
        m = trimesh.creation.capsule(height=float(np.linalg.norm(b - a)), radius=r, count=[16, 16])
        m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], (b - a) / np.linalg.norm(b - a)))
        m.apply_translation((a + b) / 2)
        return m

    parts = [
        (capsule([0, 0.95, 0], [0, 1.35, 0], 0.16), (0.9, 0.8, 0.1)),        # torso
        (trimesh.creation.icosphere(3, 0.11).apply_translation([0, 1.62, 0]), (0.85, 0.65, 0.5)),
        (capsule([-0.2, 1.42, 0], [-0.32, 0.92, 0.05], 0.045), (0.85, 0.65, 0.5)),
        (capsule([0.2, 1.42, 0], [0.32, 0.92, 0.05], 0.045), (0.85, 0.65, 0.5)),
        (capsule([-0.09, 0.9, 0], [-0.11, 0.1, 0.02], 0.07), (0.2, 0.2, 0.5)),
        (capsule([0.09, 0.9, 0], [0.11, 0.1, 0.02], 0.07), (0.2, 0.2, 0.5)),
    ]
    mesh = trimesh.util.concatenate([p for p, _ in parts])
    face_colors = np.concatenate([np.tile(c, (len(p.faces), 1)) for p, c in parts])
    return mesh, face_colors


def surface_gaussians(mesh, face_colors, n: int, seed: int = 0) -> Gaussians:
    """``n`` Gaussians area-uniform on ``mesh``: discs in the tangent plane, 1/10 as thick."""
    import trimesh

    pts, fidx = trimesh.sample.sample_surface(mesh, n, seed=seed)
    normal = mesh.face_normals[fidx]
    helper = np.where(np.abs(normal[:, 1:2]) < 0.9, [[0, 1, 0]], [[1, 0, 0]])
    t1 = np.cross(normal, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normal, t1)
    rot = torch.from_numpy(np.stack([t1, t2, normal], axis=-1))
    spacing = np.sqrt(mesh.area / n)
    rng = np.random.default_rng(seed)
    scales = np.stack([np.full(n, 0.6 * spacing), np.full(n, 0.6 * spacing), np.full(n, 0.06 * spacing)], 1)
    colors = np.clip(face_colors[fidx] + rng.normal(0, 0.03, (n, 3)), 0, 1)
    return Gaussians(torch.tensor(pts, dtype=torch.float32), matrix_to_quaternion(rot).float(),
                     torch.tensor(scales, dtype=torch.float32), torch.full((n,), 0.9),
                     torch.tensor(colors, dtype=torch.float32))


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and process-CPU seconds per call (CPU time is steadier on a shared machine)."""
    out = fn()  # warm-up (allocator, OpenGL context, lazy imports)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--counts", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    mesh, face_colors = humanoid()
    cam = Camera.look_at((0.6, 1.1, 2.6), (0.0, 0.9, 0.0), fov_deg=45, width=256, height=256)

    t_mesh, c_mesh, mo = timed(lambda: render_mesh(mesh.vertices, mesh.faces, cam, colors=(0.8, 0.7, 0.3)),
                               args.repeats)
    print(f"torch threads {torch.get_num_threads()}; pyrender mesh 256x256 ({len(mesh.faces)} faces): "
          f"wall {t_mesh * 1e3:.1f} ms/frame, cpu {c_mesh * 1e3:.1f} ms/frame")
    for n in args.counts:
        g = surface_gaussians(mesh, face_colors, n)
        t_g, c_g, go = timed(lambda: rasterize(g, cam, backend="cpu"), args.repeats)
        iou = ((go.alpha > 0.5) & (mo.alpha > 0.5)).sum() / ((go.alpha > 0.5) | (mo.alpha > 0.5)).sum()
        print(f"cpu gaussians 256x256 n={n:>6}: wall {t_g * 1e3:7.1f} ms/frame (ratio vs pyrender {t_g / t_mesh:5.2f}), "
              f"cpu {c_g * 1e3:7.1f} ms/frame (ratio {c_g / c_mesh:5.2f}); silhouette IoU {float(iou):.3f}")

    from reference_gaussian import rasterize_dense

    small = Camera.look_at((0.6, 1.1, 2.6), (0.0, 0.9, 0.0), fov_deg=45, width=128, height=128)
    g = surface_gaussians(mesh, face_colors, 2000, seed=1)
    t_fast, _, fo = timed(lambda: rasterize(g, small, backend="cpu"), args.repeats)
    t0 = time.perf_counter()
    with torch.no_grad():
        do = rasterize_dense(g, small)
    t_dense = time.perf_counter() - t0
    diff = max(float((fo.rgb - do.rgb).abs().max()), float((fo.alpha - do.alpha).abs().max()))
    ddiff = float(((fo.depth - do.depth) * do.alpha).abs().max())
    print(f"dense reference 128x128 n=2000: {t_dense * 1e3:.0f} ms/frame; cpu rasterizer {t_fast * 1e3:.2f} ms/frame; "
          f"speed-up {t_dense / t_fast:.0f}x; max |diff| rgb/alpha {diff:.2e}, alpha*depth {ddiff:.2e}, "
          f"ids equal {float((fo.ids == do.ids).float().mean()) * 100:.2f}%")


if __name__ == "__main__":
    main()
