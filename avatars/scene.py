"""The render stage: people (avatar + motion) filmed along a camera path, every condition from one pass.

``render_scene(people, cameras, conditions=[...])`` poses each body once per frame, rasterizes all people's
Gaussians together (instance ids make occlusion between people right) and derives the selected conditions
from that single pass:

=========  ===========================================================================================
avatar     the RGB avatar video ``uint8 (F,H,W,3)`` (AMG's condition)
depth      metric camera-z depth ``float32 (F,H,W)``, 0 where empty
mask       instance ids ``int32 (F,H,W)``, person ``i`` is ``i+1``, 0 background
bbox3d     projected oriented 3D boxes ``(F,P,8,2)`` and their edge drawings (the 3D-aware trajectory thesis)
levitor    K-means control points per frame and the ``(F,3,H,W)`` [heat, id, depth] control (LeviTor)
flow       sparse tracks of body-surface points and the ``(2,F,H,W)`` Gaussian-filtered flow (Image Conductor)
traj       trajectory frames ``uint8 (F,H,W,3)`` of region-aware box tracks (thesis / PoseTraj)
=========  ===========================================================================================

``save_scene(result, directory)`` writes each in its model's own layout plus an MP4 preview and a contact sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from render.camera import CameraPath
from render.errors import AmgError
from render.gaussian import Gaussians, rasterize

from .gaussians import GaussianAvatar
from .motion import Motion

__all__ = ["Person", "SceneRender", "render_scene", "save_scene", "CONDITIONS", "colorize_ids", "colorize_depth", "flow_to_rgb"]

CONDITIONS = ("avatar", "depth", "mask", "bbox3d", "levitor", "flow", "traj")


@dataclass
class Person:
    """One person of a scene: an avatar driven by a motion (its ``F`` frames match the camera path)."""

    avatar: GaussianAvatar
    motion: Motion
    name: str = ""


@dataclass
class SceneRender:
    """Everything one pass over the frames produced (arrays are numpy; see the module table)."""

    cameras: CameraPath
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    vertices: list[np.ndarray]
    joints: list[np.ndarray]
    conditions: dict[str, object] = field(default_factory=dict)
    pose_calls: int = 0  # how many times bodies were posed (one batched call per person)
    visible_pixels: np.ndarray | None = None  # (P, F) pixels of each person in the instance mask

    def out_of_view(self, min_pixels: int | None = None) -> np.ndarray:
        """``(P,)`` share of frames in which each person covers fewer than ``min_pixels`` pixels
        (default: 0.05 percent of the image, at least one pixel)."""
        if self.visible_pixels is None:
            return np.zeros(0)
        if min_pixels is None:
            min_pixels = max(1, int(0.0005 * self.mask.shape[1] * self.mask.shape[2]))
        return (self.visible_pixels < min_pixels).mean(axis=1)

    @property
    def num_frames(self) -> int:
        return self.rgb.shape[0]


def render_scene(people: Sequence[Person], cameras: CameraPath, conditions: Sequence[str] = ("avatar", "depth", "mask"),
                 background: Sequence[float] = (0.0, 0.0, 0.0), backend: str = "auto", seed: int = 0,
                 progress: bool = True) -> SceneRender:
    """Render ``people`` along ``cameras`` and derive ``conditions`` (any subset of :data:`CONDITIONS`).

    Bodies are posed once (one batched call per person for all frames); every condition is computed from
    that pass's vertices, joints, depth and instance masks.

    Args:
        people: one or more :class:`Person`; each motion must have ``len(cameras)`` frames.
        cameras: the camera path, ``F`` cameras.
        conditions: names from :data:`CONDITIONS`.
        background: RGB in [0,1] behind the avatars.
        backend: rasterizer backend (``auto``, ``cpu`` or ``gsplat``).
        seed: for the track samplers (flow, traj).
        progress: show a progress bar over frames.
    """
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise AmgError(f"conditions: unknown {unknown[0]!r}; expected some of {', '.join(CONDITIONS)}")
    if not people:
        raise AmgError("render_scene: expected at least one person, got none")
    F = len(cameras)
    for i, p in enumerate(people):
        if len(p.motion) != F:
            raise AmgError(f"person {i} ({p.name or 'unnamed'}): motion has {len(p.motion)} frames, "
                           f"the camera path {F}; resample or slice one of them")
    posed, verts, joints = [], [], []
    with torch.no_grad():
        for i, p in enumerate(people):
            frames, out = p.avatar.pose_motion(p.motion, instance_id=i + 1, return_body=True)
            posed.append(frames)
            verts.append(out.vertices.float().numpy())
            joints.append(out.joints.float().numpy())
        H, W = cameras.height, cameras.width
        rgb = np.zeros((F, H, W, 3), np.uint8)
        depth = np.zeros((F, H, W), np.float32)
        mask = np.zeros((F, H, W), np.int32)
        alpha = np.zeros((F, H, W), np.float32)
        for f in tqdm(range(F), desc="render", disable=not progress, leave=False):
            scene = Gaussians.cat([posed[i][f] for i in range(len(people))])
            r = rasterize(scene, cameras[f], background=background, backend=backend)
            rgb[f] = r.image()
            depth[f] = r.depth.float().cpu().numpy()
            mask[f] = r.ids.cpu().numpy().astype(np.int32)
            alpha[f] = r.alpha.float().cpu().numpy()
    # pixels per person per frame: a person filmed off-screen is a silent failure without this
    visible = np.stack([(mask == i + 1).sum(axis=(1, 2)) for i in range(len(people))])
    result = SceneRender(cameras, rgb, depth, mask, alpha, verts, joints, pose_calls=len(people),
                         visible_pixels=visible)
    _derive_conditions(result, people, conditions, seed)
    return result


def _derive_conditions(res: SceneRender, people: Sequence[Person], conditions: Sequence[str], seed: int) -> None:
    from render.conditions import bbox3d, flow, levitor, traj_image

    H, W = res.cameras.height, res.cameras.width
    need_boxes = "bbox3d" in conditions or "traj" in conditions
    if need_boxes:
        orient = [p.motion.global_orient.detach().float().numpy() if torch.is_tensor(p.motion.global_orient)
                  else np.asarray(p.motion.global_orient) for p in people]
        corners3d = bbox3d.oriented_boxes(res.vertices, orient)
        corners2d = bbox3d.project_boxes(corners3d, res.cameras)
        if "bbox3d" in conditions:
            res.conditions["bbox3d"] = {"corners2d": corners2d, "corners3d": corners3d,
                                        "frames": bbox3d.draw_boxes(corners2d, H, W)}
    if "levitor" in conditions:
        disparity = levitor.disparity_from_depth(res.depth)
        points = levitor.kmeans_points(res.mask, depth=disparity)
        res.conditions["levitor"] = {"points": points, "control": levitor.control_tensor(points, H, W),
                                     "disparity": disparity}
    if "flow" in conditions:
        rng = np.random.default_rng(seed)
        dense = []
        for v in res.vertices:  # 400 surface points per person, projected per frame
            idx = rng.choice(v.shape[1], size=min(400, v.shape[1]), replace=False)
            uv, z = res.cameras.project(torch.as_tensor(v[:, idx], dtype=torch.float64))
            dense.append(uv.permute(1, 0, 2).numpy())
        dense_tracks = np.concatenate(dense, 0)
        tracks, _ = flow.sample_tracks(dense_tracks, seed=seed)
        res.conditions["flow"] = {"tracks": tracks, "flow": flow.trajectory_flow(tracks, H, W)}
    if "traj" in conditions:
        tracks = [traj_image.region_tracks(corners2d[:, p], seed=seed + p) for p in range(corners2d.shape[1])]
        tracks = np.concatenate(tracks, 0)
        res.conditions["traj"] = {"tracks": tracks, "frames": traj_image.trajectory_frames(tracks, H, W)}


def save_scene(res: SceneRender, directory: str | Path, fps: float | None = None,
               conditions: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Write a :class:`SceneRender` into ``directory`` (atomically, file by file).

    Layout: ``avatar.mp4`` (+ ``avatar_frames.npz`` uint8), ``depth.npz`` (``depth`` float32 (F,H,W) metres),
    ``masks.npz`` (``masks`` int32 (F,H,W)), ``cameras.json`` (our camera-path layout), ``bbox3d.npy`` +
    ``bbox3d.mp4``, ``levitor_control.npy`` (F,3,H,W) + ``levitor_points.npz`` + ``levitor.mp4``,
    ``flow.npy`` (2,F,H,W) + ``flow_tracks.npy`` + ``flow.mp4``, ``traj.npy`` (F,H,W,3) uint8 + ``traj.mp4``,
    ``contact_sheet.png``. Returns name -> path of what was written.
    """
    from render.conditions import bbox3d as bb
    from render.io import write_npy, write_npz
    from render.video import contact_sheet, write_image, write_video

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fps = float(fps or res.cameras.fps)
    conditions = list(conditions if conditions is not None else ["avatar", "depth", "mask", *res.conditions])
    out: dict[str, Path] = {}

    def npz(name, **arrays):
        out[name] = write_npz(d / name, **arrays)

    def npy(name, array):
        out[name] = write_npy(d / name, array)

    if "avatar" in conditions:
        out["avatar.mp4"] = write_video(d / "avatar.mp4", res.rgb, fps=fps)
    if "depth" in conditions:
        npz("depth.npz", depth=res.depth)
    if "mask" in conditions:
        npz("masks.npz", masks=res.mask)
    out["cameras.json"] = res.cameras.save(d / "cameras.json")
    c = res.conditions
    if "bbox3d" in c:
        out["bbox3d.npy"] = bb.save_boxes(d, c["bbox3d"]["corners2d"], c["bbox3d"]["corners3d"])
        out["bbox3d.mp4"] = write_video(d / "bbox3d.mp4", c["bbox3d"]["frames"], fps=fps)
    if "levitor" in c:
        npy("levitor_control.npy", c["levitor"]["control"].astype(np.float32))
        pts = c["levitor"]["points"]
        npz("levitor_points.npz", **{f"frame_{i:04d}": p for i, p in enumerate(pts)})
        heat = c["levitor"]["control"][:, 0]
        out["levitor.mp4"] = write_video(d / "levitor.mp4", np.repeat(np.clip(heat, 0, 255).astype(np.uint8)[..., None], 3, -1), fps=fps)
    if "flow" in c:
        npy("flow.npy", c["flow"]["flow"].astype(np.float32))
        npy("flow_tracks.npy", c["flow"]["tracks"].astype(np.float32))
        out["flow.mp4"] = write_video(d / "flow.mp4", flow_to_rgb(c["flow"]["flow"]), fps=fps)
    if "traj" in c:
        npy("traj.npy", c["traj"]["frames"])
        out["traj.mp4"] = write_video(d / "traj.mp4", c["traj"]["frames"], fps=fps)
    # contact sheet: a row of frames per output a person looks at
    rows, names = [res.rgb], ["avatar"]
    if "mask" in conditions:
        rows.append(colorize_ids(res.mask)); names.append("mask")
    if "depth" in conditions:
        rows.append(colorize_depth(res.depth)); names.append("depth")
    for key, frames in (("bbox3d", lambda: c["bbox3d"]["frames"]), ("traj", lambda: c["traj"]["frames"]),
                        ("flow", lambda: flow_to_rgb(c["flow"]["flow"]))):
        if key in c:
            rows.append(frames()); names.append(key)
    F = res.num_frames
    pick = np.unique(np.linspace(0, F - 1, min(F, 8)).round().astype(int))
    grid = np.concatenate([r[pick] for r in rows], 0)
    sheet_labels = [f"{n} {i}" for n in names for i in pick]
    out["contact_sheet.png"] = write_image(d / "contact_sheet.png", contact_sheet(grid, labels=sheet_labels, cols=len(pick)))
    return out


_ID_COLORS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                       [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.uint8)


def colorize_ids(mask: np.ndarray) -> np.ndarray:
    return _ID_COLORS[np.where(mask > 0, (mask - 1) % (len(_ID_COLORS) - 1) + 1, 0)]


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    valid = depth > 0
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    lo, hi = float(depth[valid].min()), float(depth[valid].max())
    t = np.where(valid, 1 - (depth - lo) / max(hi - lo, 1e-6), 0)  # near is bright
    g = (t * 255).astype(np.uint8)
    return np.stack([g, g, g], -1)


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """Visualise a ``(2,F,H,W)`` flow map as ``uint8 (F,H,W,3)``: hue = direction, value = magnitude."""
    import cv2

    dx, dy = flow[0], flow[1]
    mag = np.sqrt(dx * dx + dy * dy)
    ang = (np.degrees(np.arctan2(dy, dx)) % 360) / 2
    scale = max(float(mag.max()), 1e-6)
    hsv = np.stack([ang, np.full_like(ang, 255), np.clip(mag / scale * 255, 0, 255)], -1).astype(np.uint8)
    return np.stack([cv2.cvtColor(h, cv2.COLOR_HSV2RGB) for h in hsv])
