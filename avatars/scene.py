"""The render stage: people (avatar + motion) filmed along a camera path, every condition from one pass.

``render_scene(people, cameras, conditions=[...])`` poses each body once for all frames, rasterizes all
people's Gaussians of the whole clip in one call (instance ids make occlusion between people right) and
derives the selected conditions from that single pass:

=========  ===========================================================================================
avatar     the RGB avatar video ``uint8 (F,H,W,3)`` (AMG's condition; on black unless a colour is given)
depth      metric camera-z depth ``float32 (F,H,W)``, 0 where empty
mask       instance ids ``int32 (F,H,W)``, person ``i`` is ``i+1``, 0 background
bbox3d     projected oriented 3D boxes ``(F,P,8,2)`` and their edge drawings (the 3D-aware trajectory thesis)
levitor    K-means control points per frame and the ``(F,3,H,W)`` [heat, id, depth] control (LeviTor)
flow       sparse tracks of body-surface points and the ``(2,F,H,W)`` Gaussian-filtered flow (Image Conductor)
traj       trajectory frames ``uint8 (F,H,W,3)`` of region-aware box tracks (thesis / PoseTraj)
=========  ===========================================================================================

With a background plate (an image or video) and/or ``shadow=True`` the result also holds a ``preview``:
the avatars composited with their alpha over the plate, with a soft contact shadow on the ground plane
``y = 0`` under each person. The conditions never see the plate.

``save_scene(result, directory)`` writes each condition in its model's own layout (one writer per
condition, :data:`WRITERS`) plus the previews and a contact sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from render.camera import CameraPath
from render.errors import AmgError
from render.gaussian import Gaussians, rasterize_clip
from render.image import colorize_depth, colorize_ids, composite_over, flow_to_rgb, load_plate, to_uint8

from .gaussians import GaussianAvatar
from .motion import Motion

__all__ = ["Person", "SceneRender", "SceneConditions", "Box3DCondition", "LevitorCondition", "FlowCondition",
           "TrajCondition", "render_scene", "save_scene", "contact_shadow", "CONDITIONS", "WRITERS",
           "colorize_ids", "colorize_depth", "flow_to_rgb"]

CONDITIONS = ("avatar", "depth", "mask", "bbox3d", "levitor", "flow", "traj")


@dataclass
class Person:
    """One person of a scene: an avatar driven by a motion (its ``F`` frames match the camera path)."""

    avatar: GaussianAvatar
    motion: Motion
    name: str = ""


@dataclass
class Box3DCondition:
    """Oriented 3D boxes: ``corners3d (F,P,8,3)`` world metres, ``corners2d (F,P,8,2)`` pixels, and the
    ``frames uint8 (F,H,W,3)`` with their 12 edges drawn."""

    corners2d: np.ndarray
    corners3d: np.ndarray
    frames: np.ndarray


@dataclass
class LevitorCondition:
    """LeviTor's control: per frame ``points (K,4)`` [x, y, id, disparity], the ``control (F,3,H,W)``
    [heat, id, depth] tensor and the 8-bit ``disparity (F,H,W)`` it was read from."""

    points: list[np.ndarray]
    control: np.ndarray
    disparity: np.ndarray


@dataclass
class FlowCondition:
    """Image Conductor's input: sparse ``tracks (N,F,2)`` pixels and the filtered ``flow (2,F,H,W)``."""

    tracks: np.ndarray
    flow: np.ndarray


@dataclass
class TrajCondition:
    """Trajectory images: region-aware box ``tracks (N,F,2)`` pixels and ``frames uint8 (F,H,W,3)``."""

    tracks: np.ndarray
    frames: np.ndarray


@dataclass
class SceneConditions:
    """The derived conditions of one render; a field is ``None`` when that condition was not asked for."""

    bbox3d: Box3DCondition | None = None
    levitor: LevitorCondition | None = None
    flow: FlowCondition | None = None
    traj: TrajCondition | None = None

    def present(self) -> list[str]:
        """Names of the conditions computed, in :data:`CONDITIONS` order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __contains__(self, name: str) -> bool:
        return getattr(self, name, None) is not None


@dataclass
class SceneRender:
    """Everything one pass over the frames produced (arrays are numpy; see the module table).

    ``rgb`` is the avatar condition (over black or the given colour); ``preview`` the composite over a
    plate with shadows, ``None`` when neither was asked for.
    """

    cameras: CameraPath
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    vertices: list[np.ndarray]
    joints: list[np.ndarray]
    conditions: SceneConditions = field(default_factory=SceneConditions)
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
    preview: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.rgb.shape[0]


def render_scene(people: Sequence[Person], cameras: CameraPath, conditions: Sequence[str] = ("avatar", "depth", "mask"),
                 background=(0.0, 0.0, 0.0), backend: str = "auto", seed: int = 0,
                 progress: bool = True, shadow: bool = False) -> SceneRender:
    """Render ``people`` along ``cameras`` and derive ``conditions`` (any subset of :data:`CONDITIONS`).

    Bodies are posed once (one batched call per person for all frames) and the clip is rasterized in one
    call; every condition is computed from that pass's vertices, joints, depth and instance masks.

    Args:
        people: one or more :class:`Person`; each motion must have ``len(cameras)`` frames.
        cameras: the camera path, ``F`` cameras.
        conditions: names from :data:`CONDITIONS`.
        background: RGB in [0,1] behind the avatars in the avatar video, or a plate: a path to an image or
            video, or an array ``(H,W,3)``/``(F,H,W,3)`` (scaled to cover the camera image, centre-cropped,
            frame by frame). A plate goes into ``preview`` only; the avatar video is then on black.
        backend: rasterizer backend (``auto``, ``cpu``, ``torch``, ``numba`` or ``gsplat``).
        seed: for the track samplers (flow, traj).
        progress: show a progress bar over the people posed.
        shadow: darken the ground plane ``y = 0`` under each person in ``preview`` (see :func:`contact_shadow`).
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
    colour, plate = _background(background)
    H, W = cameras.height, cameras.width
    posed, verts, joints = [], [], []
    with torch.no_grad():
        for i, p in enumerate(tqdm(people, desc="pose", disable=not progress, leave=False)):
            frames, out = p.avatar.pose_motion(p.motion, instance_id=i + 1, return_body=True)
            posed.append(frames)
            verts.append(out.vertices.float().numpy())
            joints.append(out.joints.float().numpy())
        scenes = [Gaussians.cat([posed[i][f] for i in range(len(people))]) for f in range(F)]
        r = rasterize_clip(scenes, cameras, background=colour, backend=backend)
        rgb = r.image()
        depth = r.depth.float().cpu().numpy()
        mask = r.ids.cpu().numpy().astype(np.int32)
        alpha = r.alpha.float().cpu().numpy()
    # pixels per person per frame: a person filmed off-screen is a silent failure without this
    visible = np.stack([(mask == i + 1).sum(axis=(1, 2)) for i in range(len(people))])
    result = SceneRender(cameras, rgb, depth, mask, alpha, verts, joints, pose_calls=len(people),
                         visible_pixels=visible)
    if plate is not None or shadow:
        # the render less its colour background is the premultiplied colour that compositing needs
        fg = np.clip(r.rgb.float().cpu().numpy() - (1.0 - alpha)[..., None] * np.asarray(colour, np.float32), 0, 1)
        plate_frames = (load_plate(plate, F, H, W) if plate is not None
                        else np.broadcast_to(to_uint8(np.asarray(colour, np.float32)), (F, H, W, 3)))
        shade = contact_shadow(verts, cameras) if shadow else None
        result.preview = composite_over(fg, alpha, plate_frames, shade)
    _derive_conditions(result, people, conditions, seed)
    return result


def _background(background):
    """``(colour, plate)``: an RGB triple for the rasterizer and an optional plate source."""
    if isinstance(background, (str, Path)):
        return (0.0, 0.0, 0.0), background
    a = np.asarray(background)
    if a.ndim >= 2:
        return (0.0, 0.0, 0.0), a
    try:
        c = tuple(float(x) for x in a.reshape(-1))
    except (TypeError, ValueError):
        raise AmgError(f"background: expected RGB in [0,1], an image/video path or an array, got {background!r}") from None
    if len(c) != 3 or not all(0.0 <= x <= 1.0 for x in c):
        raise AmgError(f"background: expected 3 numbers in [0,1], an image/video path or an array, got {background!r}")
    return c, None


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
            res.conditions.bbox3d = Box3DCondition(corners2d, corners3d, bbox3d.draw_boxes(corners2d, H, W))
    if "levitor" in conditions:
        disparity = levitor.disparity_from_depth(res.depth)
        points = levitor.kmeans_points(res.mask, depth=disparity)
        res.conditions.levitor = LevitorCondition(points, levitor.control_tensor(points, H, W), disparity)
    if "flow" in conditions:
        rng = np.random.default_rng(seed)
        dense = []
        for v in res.vertices:  # 400 surface points per person, projected per frame
            idx = rng.choice(v.shape[1], size=min(400, v.shape[1]), replace=False)
            uv, z = res.cameras.project(torch.as_tensor(v[:, idx], dtype=torch.float64))
            dense.append(uv.permute(1, 0, 2).numpy())
        dense_tracks = np.concatenate(dense, 0)
        tracks, _ = flow.sample_tracks(dense_tracks, seed=seed)
        res.conditions.flow = FlowCondition(tracks, flow.trajectory_flow(tracks, H, W))
    if "traj" in conditions:
        tracks = [traj_image.region_tracks(corners2d[:, p], seed=seed + p) for p in range(corners2d.shape[1])]
        tracks = np.concatenate(tracks, 0)
        res.conditions.traj = TrajCondition(tracks, traj_image.trajectory_frames(tracks, H, W))


# ------------------------------------------------------------------------------------------------
# Contact shadows
# ------------------------------------------------------------------------------------------------

SHADOW_STRENGTH = 0.6   #: darkening of the ground right under a body part that rests on it
SHADOW_HEIGHT = 0.4     #: metres: a body part this high above the ground casts e^-1 of the contact darkness
SHADOW_CELL = 0.02      #: metres per cell of the ground shadow map
#: height bands (metres) and the radius (metres) of the soft disc each part in them darkens: tight under
#: contacts, wider and fainter higher up
_SHADOW_BANDS = ((0.0, 0.05, 0.04), (0.05, 0.3, 0.08), (0.3, 1.2, 0.15))


def contact_shadow(vertices: Sequence[np.ndarray], cameras: CameraPath, strength: float = SHADOW_STRENGTH,
                   height: float = SHADOW_HEIGHT, cell: float = SHADOW_CELL) -> np.ndarray:
    """Soft contact shadows on the ground plane ``y = 0`` -> darkening ``float32 (F,H,W)`` in ``[0, strength]``.

    Under each person, a ground map of ``cell`` metres holds, per height band (:data:`_SHADOW_BANDS`), the
    occupancy ``exp(-h / height)`` of the lowest body part above each cell (a maximum, so it does not depend
    on how densely the mesh is sampled), spread over a soft disc of that band's radius: a foot on the ground
    gives a dark core around its sole, the legs higher up a fainter, wider penumbra. Each pixel looks the map up where its camera
    ray meets the ground (rays that never reach it, or reach it behind the camera, stay unshaded).

    Args:
        vertices: per person ``(F,V,3)`` posed vertices in world metres (Y up).
        cameras: the ``F`` cameras of the clip.
        strength: darkening at full occupancy; ``height``, ``cell``: metres (see the constants).
    """
    import cv2

    F, H, W = len(cameras), cameras.height, cameras.width
    K, R, t = (x.double().numpy() for x in (cameras.K, cameras.R, cameras.t))
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([jj, ii, np.ones_like(jj)], -1).reshape(-1, 3)
    reach = _SHADOW_BANDS[-1][1]
    margin = 2 * _SHADOW_BANDS[-1][2]
    out = np.zeros((F, H, W), np.float32)
    for f in range(F):
        centre = -R[f].T @ t[f]
        rays = pix @ np.linalg.inv(K[f]).T @ R[f]  # world directions: R^T K^-1 p, as rows
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -centre[1] / rays[:, 1]
        hits = np.isfinite(s) & (s > 0)
        ground = centre[None, [0, 2]] + np.where(hits, s, 0)[:, None] * rays[:, [0, 2]]
        light = np.ones(H * W, np.float32)
        for v in vertices:
            pts = np.asarray(v[f], np.float64)
            h = np.clip(pts[:, 1], 0.0, None)
            low = h < reach
            if not low.any():
                continue
            lo = pts[low][:, [0, 2]].min(0) - margin
            shape = np.ceil((pts[low][:, [0, 2]].max(0) + margin - lo) / cell).astype(int) + 2
            occ = np.zeros((shape[1], shape[0]), np.float32)
            for band_lo, band_hi, radius in _SHADOW_BANDS:
                sel = low & (h >= band_lo) & (h < band_hi)
                if not sel.any():
                    continue
                layer = np.zeros_like(occ)
                cx = ((pts[sel, 0] - lo[0]) / cell).astype(int)
                cz = ((pts[sel, 2] - lo[1]) / cell).astype(int)
                np.maximum.at(layer, (cz, cx), np.exp(-h[sel] / height).astype(np.float32))
                r = max(1, int(round(radius / cell)))
                layer = cv2.dilate(layer, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
                occ = np.maximum(occ, cv2.GaussianBlur(layer, (0, 0), sigmaX=r / 2, sigmaY=r / 2))
            gx, gz = (ground[:, 0] - lo[0]) / cell, (ground[:, 1] - lo[1]) / cell
            inside = hits & (gx >= 0) & (gz >= 0) & (gx < shape[0] - 1) & (gz < shape[1] - 1)
            val = np.zeros(H * W, np.float32)
            val[inside] = _bilinear(occ, gx[inside], gz[inside])
            light *= 1.0 - strength * np.clip(val, 0.0, 1.0)
        out[f] = (1.0 - light).reshape(H, W)
    return out


def _bilinear(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    return ((grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx) * (1 - fy)
            + (grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx) * fy)


# ------------------------------------------------------------------------------------------------
# Writing: one writer per condition
# ------------------------------------------------------------------------------------------------

Writer = Callable[[SceneRender, Path, float], dict]


def _write_avatar(res: SceneRender, d: Path, fps: float) -> dict:
    from render.video import write_video

    return {"avatar.mp4": write_video(d / "avatar.mp4", res.rgb, fps=fps)}


def _write_depth(res: SceneRender, d: Path, fps: float) -> dict:
    from render.io import write_npz

    return {"depth.npz": write_npz(d / "depth.npz", depth=res.depth)}


def _write_mask(res: SceneRender, d: Path, fps: float) -> dict:
    from render.io import write_npz

    return {"masks.npz": write_npz(d / "masks.npz", masks=res.mask)}


def _write_bbox3d(res: SceneRender, d: Path, fps: float) -> dict:
    from render.conditions import bbox3d as bb
    from render.video import write_video

    c = res.conditions.bbox3d
    return {"bbox3d.npy": bb.save_boxes(d, c.corners2d, c.corners3d),
            "bbox3d.mp4": write_video(d / "bbox3d.mp4", c.frames, fps=fps)}


def _write_levitor(res: SceneRender, d: Path, fps: float) -> dict:
    from render.io import write_npy, write_npz
    from render.video import write_video

    c = res.conditions.levitor
    heat = np.clip(c.control[:, 0], 0, 255).astype(np.uint8)
    return {"levitor_control.npy": write_npy(d / "levitor_control.npy", c.control.astype(np.float32)),
            "levitor_points.npz": write_npz(d / "levitor_points.npz",
                                            **{f"frame_{i:04d}": p for i, p in enumerate(c.points)}),
            "levitor.mp4": write_video(d / "levitor.mp4", np.repeat(heat[..., None], 3, -1), fps=fps)}


def _write_flow(res: SceneRender, d: Path, fps: float) -> dict:
    from render.io import write_npy
    from render.video import write_video

    c = res.conditions.flow
    return {"flow.npy": write_npy(d / "flow.npy", c.flow.astype(np.float32)),
            "flow_tracks.npy": write_npy(d / "flow_tracks.npy", c.tracks.astype(np.float32)),
            "flow.mp4": write_video(d / "flow.mp4", flow_to_rgb(c.flow), fps=fps)}


def _write_traj(res: SceneRender, d: Path, fps: float) -> dict:
    from render.io import write_npy
    from render.video import write_video

    c = res.conditions.traj
    return {"traj.npy": write_npy(d / "traj.npy", c.frames),
            "traj.mp4": write_video(d / "traj.mp4", c.frames, fps=fps)}


#: condition -> the writer of its files (each returns name -> path of what it wrote)
WRITERS: dict[str, Writer] = {"avatar": _write_avatar, "depth": _write_depth, "mask": _write_mask,
                              "bbox3d": _write_bbox3d, "levitor": _write_levitor, "flow": _write_flow,
                              "traj": _write_traj}

#: what the contact sheet shows per condition (one row of frames each), in this order
_SHEET_ROWS: dict[str, Callable[[SceneRender], np.ndarray]] = {
    "mask": lambda r: colorize_ids(r.mask),
    "depth": lambda r: colorize_depth(r.depth),
    "bbox3d": lambda r: r.conditions.bbox3d.frames,
    "traj": lambda r: r.conditions.traj.frames,
    "flow": lambda r: flow_to_rgb(r.conditions.flow.flow),
}


def save_scene(res: SceneRender, directory: str | Path, fps: float | None = None,
               conditions: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Write a :class:`SceneRender` into ``directory`` (atomically, file by file).

    Layout, by condition (:data:`WRITERS`): ``avatar.mp4``; ``depth.npz`` (``depth`` float32 (F,H,W)
    metres); ``masks.npz`` (``masks`` int32 (F,H,W)); ``bbox3d.npy`` (F,P,8,2) + ``bbox3d_world.npy``
    (F,P,8,3) + ``bbox3d.mp4``; ``levitor_control.npy`` (F,3,H,W) + ``levitor_points.npz`` +
    ``levitor.mp4``; ``flow.npy`` (2,F,H,W) + ``flow_tracks.npy`` + ``flow.mp4``; ``traj.npy``
    (F,H,W,3) uint8 + ``traj.mp4``. Always ``cameras.json`` (our camera-path layout) and
    ``contact_sheet.png``; ``preview.mp4`` (the composite over the plate) when the render has one.
    ``conditions`` defaults to avatar, depth, mask and every derived condition present; one that was asked
    for but not computed raises :class:`AmgError`. Returns name -> path of what was written.
    """
    from render.video import contact_sheet, write_image, write_video

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fps = float(fps or res.cameras.fps)
    conditions = list(conditions if conditions is not None else ["avatar", "depth", "mask", *res.conditions.present()])
    missing = [c for c in conditions if c not in WRITERS or (c not in ("avatar", "depth", "mask") and c not in res.conditions)]
    if missing:
        raise AmgError(f"save_scene: condition {missing[0]!r} was not rendered; rendered: "
                       f"avatar, depth, mask{''.join(', ' + c for c in res.conditions.present())}")
    out: dict[str, Path] = {}
    for name in conditions:
        out.update(WRITERS[name](res, d, fps))
    out["cameras.json"] = res.cameras.save(d / "cameras.json")
    if res.preview is not None:
        out["preview.mp4"] = write_video(d / "preview.mp4", res.preview, fps=fps)
    # contact sheet: a row of frames per output a person looks at
    rows, names = [res.rgb], ["avatar"]
    if res.preview is not None:
        rows.append(res.preview); names.append("preview")
    for key, make in _SHEET_ROWS.items():
        if key in conditions:
            rows.append(make(res)); names.append(key)
    F = res.num_frames
    pick = np.unique(np.linspace(0, F - 1, min(F, 8)).round().astype(int))
    grid = np.concatenate([r[pick] for r in rows], 0)
    sheet_labels = [f"{n} {i}" for n in names for i in pick]
    out["contact_sheet.png"] = write_image(d / "contact_sheet.png", contact_sheet(grid, labels=sheet_labels, cols=len(pick)))
    return out
