"""Seconds per 16-frame clip for pose, tracking and fitting, and closed-loop accuracy on mesh renders.

The default body walks (and, in a second clip, two bodies cross each other); pyrender renders 256x256
frames under three cameras (front, 45 degrees to the side, raised); ``extract_people`` recovers them.
Reported per clip: seconds of each stage, the ratio of the whole to the clip's real-time length (2 s at
8 fps), the Procrustes-aligned MPJPE of the 24 joints (mm), the mean landmark reprojection error (px) and
the ids kept through the crossing. A second table times one fitting iteration of the fast keypoint path
against the full body forward it replaces (the baseline), in the same run.

Run: ``PYOPENGL_PLATFORM=osmesa python benchmarks/reconstruct.py``
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from avatars.body import BodyModel  # noqa: E402
from reconstruction import extract_people  # noqa: E402
from reconstruction.fit import BodyKeypoints, body_keypoints_reference, mpjpe  # noqa: E402
from reconstruction.pose import PoseEstimator  # noqa: E402
from reconstruction_helpers import walking_pose  # noqa: E402
from render.camera import Camera  # noqa: E402
from render.mesh import render_mesh  # noqa: E402

F = 16
SKIN, SHIRT = (0.85, 0.65, 0.55), (0.7, 0.2, 0.2)


def render(body, outs, cam):
    frames = []
    for f in range(F):
        r = render_mesh([o.vertices[f] for o in outs], [body.faces] * len(outs), cam,
                        colors=[SKIN, SHIRT][: len(outs)], background=(0.35, 0.45, 0.55))
        frames.append((np.clip(np.asarray(r.rgb), 0, 1) * 255).astype(np.uint8))
    return np.stack(frames)


def cameras(centre):
    out = {}
    for name, (az, el) in {"front": (0, 5), "side45": (45, 5), "raised": (15, 30)}.items():
        a, e = math.radians(az), math.radians(el)
        eye = (3.4 * math.sin(a) * math.cos(e), centre + 3.4 * math.sin(e), 3.4 * math.cos(a) * math.cos(e))
        out[name] = Camera.look_at(eye, (0, centre, 0), fov_deg=50, width=256, height=256)
    return out


def report(name, res, truths, wall):
    s = res.seconds
    pa = []
    for fit, kp in zip(res.fits, res.keypoints):
        # frames where the person was seen (lost frames are flagged and the clip would be dropped), each
        # track against the nearest true body (the crossing clip has two)
        seen = torch.as_tensor(kp[..., 2].max(-1) > 0)
        pa.append(min(1000 * mpjpe(fit.joints[seen], t.joints[seen]).mean().item() for t in truths))
    reproj = [r["reprojection_px"] for r in res.residuals.values()]
    print(f"{name:<16} pose {s['pose']:5.2f}s  track {s['track'] * 1000:5.1f}ms  fit {s['fit']:5.2f}s  "
          f"total {wall:5.2f}s ({wall / (F / 8):4.2f}x real time)  ids {res.track_ids}  "
          f"PA-MPJPE {', '.join(f'{p:.0f}' for p in pa)} mm  reproj {', '.join(f'{r:.1f}' for r in reproj)} px"
          + (f"  flags {res.flags}" if res.flags else ""))


def main() -> None:
    torch.set_flush_denormal(True)
    print("(the first fit of a process also pays about 2 s of one-time torch.optim imports; not counted below)")
    body = BodyModel.load("default")
    go, pose, _ = walking_pose(F)
    go[:, 1] = torch.linspace(0.3, 0.9, F)
    walk = body(global_orient=go, body_pose=pose, transl=torch.zeros(F, 3))
    centre = float(walk.vertices[0, :, 1].mean())

    # two people crossing: one walks left to right in front, the other right to left behind
    s = torch.linspace(-1, 1, F)
    go_a, go_b = torch.zeros(F, 3), torch.zeros(F, 3)
    go_a[:, 1], go_b[:, 1] = math.pi / 2, -math.pi / 2
    a = body(global_orient=go_a, body_pose=pose, transl=torch.stack([0.9 * s, torch.zeros(F), torch.full((F,), 0.4)], -1))
    b = body(global_orient=go_b, body_pose=pose, transl=torch.stack([-0.9 * s, torch.zeros(F), torch.full((F,), -0.6)], -1))

    with PoseEstimator(num_poses=2) as est:
        warm = render(body, [walk], cameras(centre)["front"])[:4]
        extract_people(warm, 8, camera=cameras(centre)["front"].resize(256, 256), body=body, estimator=est)
        print(f"{F}-frame clips at 256x256, 8 fps, default body ({body.num_vertices} vertices)")
        for cname, cam in cameras(centre).items():
            frames = render(body, [walk], cam)
            t0 = time.perf_counter()
            res = extract_people(frames, 8, camera=cam, body=body, estimator=est)
            report(f"walk/{cname}", res, [walk], time.perf_counter() - t0)
        cam = cameras(centre)["raised"]
        frames = render(body, [a, b], cam)
        t0 = time.perf_counter()
        res = extract_people(frames, 8, camera=cam, body=body, estimator=est)
        report("crossing/raised", res, [a, b], time.perf_counter() - t0)

    torch.set_num_threads(1)  # as the fit runs
    bk = BodyKeypoints(body)
    betas = torch.zeros(body.num_betas, requires_grad=True)
    g, p, t = go.clone().requires_grad_(True), pose.clone().requires_grad_(True), torch.zeros(F, 3, requires_grad=True)

    def step(fn):
        joints, pts = fn()
        (joints.square().sum() + pts.square().sum()).backward()

    timings = {}
    for name, fn in {"keypoints (fast)": lambda: bk(betas, g, p, t),
                     "full body (baseline)": lambda: body_keypoints_reference(body, bk, betas, g, p, t)}.items():
        step(fn)
        t0 = time.perf_counter()
        for _ in range(10):
            step(fn)
        timings[name] = (time.perf_counter() - t0) / 10
    base = timings["full body (baseline)"]
    print("one fitting evaluation (forward + backward, 16 frames):")
    for name, sec in timings.items():
        print(f"  {name:<22} {sec * 1000:7.1f} ms  ({base / sec:5.1f}x faster than the baseline)")


if __name__ == "__main__":
    main()
