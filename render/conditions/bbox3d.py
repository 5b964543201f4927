"""Oriented 3D bounding boxes of people, projected and drawn: the 3D-aware trajectory thesis' box condition.

The thesis saves the 8 vertices of each object's 3D box per frame, maps them to pixels with the camera
and draws the box's 12 edges on the frames (its first training stage generates them). Our boxes are
oriented by the body's heading: the yaw of the root rotation ``global_orient`` about world Y (a body in
rest pose faces +Z), with tight extents of the posed vertices in that heading frame.

Corner order (heading frame axes ``x`` = body left, ``y`` = up, ``z`` = forward at yaw 0)::

    0 (x-, y-, z-)   1 (x+, y-, z-)   2 (x+, y-, z+)   3 (x-, y-, z+)     bottom face, y min
    4 (x-, y+, z-)   5 (x+, y+, z-)   6 (x+, y+, z+)   7 (x-, y+, z+)     top face, y max

Edges: bottom ring 0-1-2-3, top ring 4-5-6-7, verticals i-(i+4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ..camera import Camera, CameraPath
from ..errors import AmgError
from ..io import write_npy
from ..rotations import axis_angle_to_matrix

__all__ = ["CORNER_SIGNS", "EDGES", "PALETTE", "heading_yaw", "oriented_boxes", "project_boxes",
           "draw_boxes", "save_boxes", "write_box_video"]

CORNER_SIGNS = np.array([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1],
                         [-1, 1, -1], [1, 1, -1], [1, 1, 1], [-1, 1, 1]], dtype=np.int8)
EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
#: RGB colour per person, cycled.
PALETTE = ((255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 200, 40), (200, 80, 255), (40, 220, 220),
           (255, 128, 0), (255, 255, 255))


def heading_yaw(global_orient) -> np.ndarray:
    """Yaw (radians, about world +Y) of root rotations ``(..., 3)`` axis-angle: ``(...,)``.

    The yaw of the body's forward axis ``R @ (0, 0, 1)`` projected on the ground plane:
    ``atan2(f_x, f_z)``; 0 faces +Z. A body facing straight up or down keeps yaw 0.
    """
    aa = torch.as_tensor(np.asarray(global_orient, dtype=np.float64))
    if aa.shape[-1] != 3:
        raise AmgError(f"heading_yaw: expected axis-angle (..., 3), got shape {tuple(aa.shape)}")
    fwd = axis_angle_to_matrix(aa)[..., :, 2].numpy()
    return np.arctan2(fwd[..., 0], fwd[..., 2])


def _rot_y(yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros(yaw.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 2], R[..., 1, 1], R[..., 2, 0], R[..., 2, 2] = c, s, 1.0, -s, c
    return R


def oriented_boxes(vertices, global_orient) -> np.ndarray:
    """Per person per frame oriented boxes: corners ``float64 (F,P,8,3)`` in world metres.

    Args:
        vertices: posed vertices ``(F,P,V,3)``, ``(F,V,3)`` for one person, or a list of ``P`` arrays
            ``(F,V_p,3)`` (people with different meshes).
        global_orient: root axis-angle ``(F,P,3)``, ``(F,3)`` or a list of ``P`` arrays ``(F,3)``.

    The box axes are the heading frame ``R_y(yaw)`` (:func:`heading_yaw`); extents are the min/max of
    the vertices expressed in that frame, so the box is tight along the heading, its side and up.
    """
    if isinstance(vertices, (list, tuple)):
        verts = [np.asarray(v, dtype=np.float64) for v in vertices]
    else:
        v = np.asarray(vertices, dtype=np.float64)
        verts = [v] if v.ndim == 3 else [v[:, p] for p in range(v.shape[1])] if v.ndim == 4 else None
        if verts is None:
            raise AmgError(f"oriented_boxes: expected vertices (F,P,V,3), got shape {v.shape}")
    if isinstance(global_orient, (list, tuple)):
        orients = [np.asarray(o, dtype=np.float64) for o in global_orient]
    else:
        o = np.asarray(global_orient, dtype=np.float64)
        orients = [o] if o.ndim == 2 else [o[:, p] for p in range(o.shape[1])]
    if len(verts) != len(orients) or not verts:
        raise AmgError(f"oriented_boxes: {len(verts)} people in vertices but {len(orients)} in global_orient")
    F = verts[0].shape[0]
    out = np.zeros((F, len(verts), 8, 3))
    for p, (v, o) in enumerate(zip(verts, orients)):
        if v.ndim != 3 or v.shape[0] != F or v.shape[-1] != 3 or v.shape[1] == 0:
            raise AmgError(f"oriented_boxes: person {p} vertices must be (F={F},V,3), got {v.shape}")
        if o.shape != (F, 3):
            raise AmgError(f"oriented_boxes: person {p} global_orient must be (F={F},3), got {o.shape}")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(o))):
            raise AmgError(f"oriented_boxes: person {p} has non-finite vertices or orientation")
        R = _rot_y(heading_yaw(o))                       # (F,3,3) heading frame -> world
        local = np.einsum("fvi,fij->fvj", v, R)          # world -> heading frame (R^T v per vertex)
        lo, hi = local.min(axis=1), local.max(axis=1)    # (F,3)
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        corners_local = centre[:, None] + CORNER_SIGNS[None] * half[:, None]
        out[:, p] = np.einsum("fij,fcj->fci", R, corners_local)
    return out


def project_boxes(corners, camera_path) -> np.ndarray:
    """Project corners ``(F,P,8,3)`` with a :class:`CameraPath` (or one static :class:`Camera`):
    pixels ``float64 (F,P,8,2)`` (OpenCV, pixel centres at +0.5); corners at or behind the camera are NaN."""
    c = np.asarray(corners, dtype=np.float64)
    if c.ndim != 4 or c.shape[2:] != (8, 3):
        raise AmgError(f"project_boxes: expected corners (F,P,8,3), got shape {c.shape}")
    F, P = c.shape[:2]
    pts = torch.as_tensor(c.reshape(F, P * 8, 3))
    if isinstance(camera_path, Camera):
        uv, z = camera_path.project(pts.reshape(-1, 3))
        uv, z = uv.reshape(F, P * 8, 2), z.reshape(F, P * 8)
    elif isinstance(camera_path, CameraPath):
        if len(camera_path) != F:
            raise AmgError(f"project_boxes: camera path has {len(camera_path)} frames, boxes have {F}")
        uv, z = camera_path.project(pts)
    else:
        raise AmgError(f"project_boxes: expected a Camera or CameraPath, got {type(camera_path).__name__}")
    uv = uv.numpy().copy()
    uv[z.numpy() <= 0] = np.nan
    return uv.reshape(F, P, 8, 2)


def draw_boxes(corners2d, height: int, width: int, image=None, thickness: int = 2,
               colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Draw the 12 edges of every projected box: ``uint8 (F,H,W,3)`` RGB.

    Args:
        corners2d: ``(F,P,8,2)`` pixels from :func:`project_boxes` (NaN corners skip their edges).
        image: optional ``uint8 (F,H,W,3)`` RGB frames to draw over (copied); black otherwise.
        thickness: line thickness in pixels (2 as the thesis figures).
        colors: one RGB colour per person; :data:`PALETTE` cycled by default.

    Corner positions are rounded to the nearest pixel; lines are 8-connected ``cv2.line``.
    """
    c = np.asarray(corners2d, dtype=np.float64)
    if c.ndim != 4 or c.shape[2:] != (8, 2):
        raise AmgError(f"draw_boxes: expected corners (F,P,8,2), got shape {c.shape}")
    F, P = c.shape[:2]
    H, W = int(height), int(width)
    if image is None:
        out = np.zeros((F, H, W, 3), np.uint8)
    else:
        img = np.asarray(image)
        if img.shape != (F, H, W, 3) or img.dtype != np.uint8:
            raise AmgError(f"draw_boxes: image must be uint8 {(F, H, W, 3)}, got {img.dtype} {img.shape}")
        out = img.copy()
    colors = list(colors) if colors is not None else [PALETTE[p % len(PALETTE)] for p in range(P)]
    if len(colors) < P:
        raise AmgError(f"draw_boxes: {len(colors)} colours for {P} people")
    limit = 2 ** 30
    for f in range(F):
        frame = out[f]
        for p in range(P):
            col = tuple(int(v) for v in colors[p])
            for a, b in EDGES:
                pa, pb = c[f, p, a], c[f, p, b]
                if not (np.all(np.isfinite(pa)) and np.all(np.isfinite(pb))):
                    continue
                if np.abs(pa).max() > limit or np.abs(pb).max() > limit:
                    continue
                cv2.line(frame, tuple(int(v) for v in np.round(pa)), tuple(int(v) for v in np.round(pb)),
                         col, int(thickness))
    return out


def save_boxes(directory, corners2d, corners3d=None) -> Path:
    """Write ``bbox3d.npy``: the projected corners ``float32 (F,P,8,2)``; with ``corners3d`` also
    ``bbox3d_world.npy`` ``(F,P,8,3)``. Atomic. Returns the ``bbox3d.npy`` path."""
    d = Path(directory)
    c2 = np.asarray(corners2d, dtype=np.float32)
    if c2.ndim != 4 or c2.shape[2:] != (8, 2):
        raise AmgError(f"save_boxes: expected corners (F,P,8,2), got shape {c2.shape}")
    c3 = None
    if corners3d is not None:
        c3 = np.asarray(corners3d, dtype=np.float32)
        if c3.shape != (*c2.shape[:2], 8, 3):
            raise AmgError(f"save_boxes: expected corners3d {(*c2.shape[:2], 8, 3)} matching the 2D corners, "
                           f"got shape {c3.shape}")
    path = write_npy(d / "bbox3d.npy", c2)
    if c3 is not None:
        write_npy(d / "bbox3d_world.npy", c3)
    return path


def write_box_video(path, frames, fps: float = 8.0) -> Path:
    """Write drawn box frames ``uint8 (F,H,W,3)`` as the ``bbox3d.mp4`` preview with the project's
    video writer (``render.video.write_video``)."""
    from ..video import write_video  # imported here: the video module is optional for the npy outputs

    return write_video(path, np.asarray(frames), fps=fps)
