"""Render a body in the T-pose and a few SMPL poses to one PNG contact sheet (pyrender, headless).

Run: ``PYOPENGL_PLATFORM=osmesa python tools/preview_body.py [--body default|PATH] [--out body.png]``.
Vertices are coloured by body part (the right side of the body in warm colours, the left in cool
ones), so a glance tells whether a rotation of SMPL joint 17 (right shoulder) moved the right arm.
Optionally ``--motion NAME`` adds frames of a motion-library clip.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

from avatars.body import PART_NAMES, BodyModel  # noqa: E402
from render.camera import Camera  # noqa: E402
from render.io import atomic_path  # noqa: E402
from render.mesh import render_mesh  # noqa: E402

PART_COLORS = {
    "torso": (0.75, 0.75, 0.72), "head": (0.95, 0.80, 0.65), "hair": (0.35, 0.22, 0.12),
    "right_upper_arm": (0.90, 0.30, 0.20), "right_lower_arm": (0.95, 0.55, 0.15), "right_hand": (0.95, 0.85, 0.2),
    "left_upper_arm": (0.20, 0.40, 0.90), "left_lower_arm": (0.20, 0.70, 0.90), "left_hand": (0.4, 0.9, 0.9),
    "right_upper_leg": (0.70, 0.15, 0.15), "right_lower_leg": (0.85, 0.40, 0.40), "right_foot": (0.5, 0.1, 0.1),
    "left_upper_leg": (0.15, 0.20, 0.65), "left_lower_leg": (0.40, 0.45, 0.85), "left_foot": (0.1, 0.1, 0.5),
}


def example_poses() -> dict[str, torch.Tensor]:
    """Named ``body_pose (23, 3)`` examples; index ``j - 1`` is SMPL joint ``j``."""
    poses = {}
    poses["T-pose"] = torch.zeros(23, 3)
    p = torch.zeros(23, 3)
    p[16, 2] = -1.3  # joint 17 right shoulder: up
    poses["right arm up"] = p
    p = torch.zeros(23, 3)
    p[15, 2], p[16, 2] = -1.2, 1.2  # arms down
    p[0, 0], p[1, 0] = -0.5, 0.4  # left hip forward, right hip back
    p[4, 0] = 0.6  # right knee bent
    p[17, 1], p[18, 1] = -0.5, 0.5  # elbows
    poses["stride"] = p
    p = torch.zeros(23, 3)
    p[0, 0], p[1, 0] = -1.5, -1.5  # hips flexed
    p[3, 0], p[4, 0] = 1.5, 1.5  # knees flexed
    p[15, 2], p[16, 2] = -1.1, 1.1
    poses["sit"] = p
    return poses


def render_sheet(body: BodyModel, frames: list[tuple[str, dict]], size: int = 320, side: bool = True) -> np.ndarray:
    """Render each ``(title, forward kwargs)`` from the front (and the side) into one uint8 sheet."""
    colors = np.array([PART_COLORS[PART_NAMES[i]] for i in body.part_labels.numpy()])
    faces = body.faces.numpy()
    tiles = []
    for _, kw in frames:
        out = body(**kw)
        v = out.vertices[0].detach().numpy()
        c = v.mean(0)
        views = [(0.0, 3.2)] + ([(90.0, 3.2)] if side else [])
        row = []
        for az, dist in views:
            a = np.radians(az)
            eye = c + np.array([dist * np.sin(a), 0.2, dist * np.cos(a)])
            cam = Camera.look_at(eye.tolist(), c.tolist(), fov_deg=40, width=size, height=size)
            img = render_mesh(v, faces, cam, colors=[colors], background=(1.0, 1.0, 1.0)).rgb.numpy()
            row.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
        tiles.append(np.concatenate(row, axis=0))
    return np.concatenate(tiles, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--body", default="default")
    ap.add_argument("--gender", default="neutral")
    ap.add_argument("--out", default="body_preview.png")
    ap.add_argument("--motion", default=None, help="also show 4 frames of this motion-library clip")
    ap.add_argument("--size", type=int, default=320)
    args = ap.parse_args()
    body = BodyModel.load(args.body, gender=args.gender)
    frames = [(k, dict(body_pose=v[None])) for k, v in example_poses().items()]
    if args.motion:
        from avatars.motion_library import make

        made = make(args.motion, seconds=2.0, fps=8)
        m = made[0] if isinstance(made, list) else made
        for f in np.linspace(0, len(m) - 1, 4).round().astype(int):
            frames.append((f"{args.motion} {f}", dict(betas=m.betas[None], global_orient=m.global_orient[f:f + 1],
                                                      body_pose=m.body_pose[f:f + 1], transl=m.transl[f:f + 1])))
    sheet = render_sheet(body, frames, size=args.size)
    from PIL import Image

    with atomic_path(args.out) as tmp:
        Image.fromarray(sheet).save(tmp)
    print(f"wrote {args.out}: {', '.join(t for t, _ in frames)} (front row, side row)")


if __name__ == "__main__":
    main()
