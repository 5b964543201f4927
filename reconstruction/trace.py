"""Import TRACE (``trace2``) results: per-person SMPL motions and the camera, in the project's world.

TRACE saves one npz per video: ``outputs`` (a pickled dict) with one row per detected person per frame:
``reorganize_idx`` (frame index), ``track_ids``, ``smpl_thetas (N,72)`` (global orient + 23 joints,
camera frame, OpenCV axes), ``smpl_betas (N,10)`` and ``cam_trans (N,3)`` (metres, camera frame). TRACE's
meshes are root-aligned to the mid-hip before ``cam_trans`` is added, and its camera is fixed: 50 degree
field of view, focal 548 px at its 512 px input (the long side), centred.

The import puts that camera at the world origin looking along -Z (``video.CAMERA_ROTATION``), converts the
orientations into the Y-up world, and places each body so that its mid-hip (the mean of SMPL's hip joints,
the nearest joint-based stand-in for TRACE's regressed hips) lands at ``cam_trans``. Frames a track misses
between its first and last appearance are interpolated (slerp for rotations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.camera import CameraPath
from render.errors import AmgError
from render.rotations import (axis_angle_to_matrix, axis_angle_to_quaternion, matrix_to_axis_angle,
                              quaternion_to_axis_angle, slerp)

from .video import CAMERA_ROTATION, default_camera

__all__ = ["TRACE_FOCAL", "TRACE_INPUT", "TraceImport", "load_trace", "trace_camera"]

TRACE_FOCAL = 548.0  # pixels at the 512 px input: 256 / tan(25 deg)
TRACE_INPUT = 512
_KEYS = ("reorganize_idx", "track_ids", "smpl_thetas", "smpl_betas", "cam_trans")


@dataclass
class TraceImport:
    """Motions and camera of a TRACE result.

    Attributes:
        motions: one ``Motion`` per track, covering frames ``start_frames[i]`` .. ``start_frames[i] + len - 1``.
        track_ids: TRACE's track ids.
        start_frames: first frame of each motion in the video.
        cameras: ``CameraPath`` over all ``num_frames`` frames (static).
    """

    motions: list
    track_ids: list[int]
    start_frames: list[int]
    cameras: CameraPath


def trace_camera(width: int, height: int, num_frames: int, fps: float) -> CameraPath:
    """TRACE's fixed camera for a ``width x height`` video: focal 548 px at 512, rescaled; centred."""
    fov = math.degrees(2 * math.atan(0.5 * TRACE_INPUT / TRACE_FOCAL))
    return CameraPath.static(default_camera(width, height, fov), num_frames, fps)


def _read(path: Path) -> dict:
    try:
        # TRACE stores its outputs dict as a pickled object array, so pickles must be allowed here
        with np.load(path, allow_pickle=True) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise AmgError(f"{path}: no such TRACE result file") from None
    except Exception as e:
        raise AmgError(f"{path}: not a readable npz ({type(e).__name__})") from None
    if "outputs" in data:
        out = data["outputs"]
        out = out.item() if out.dtype == object and out.shape == () else out
        if not isinstance(out, dict):
            raise AmgError(f"{path}: 'outputs' is not a dict of arrays; expected TRACE's trace2 result")
        data = {**out, **{k: v for k, v in data.items() if k != "outputs"}}
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise AmgError(f"{path}: missing {', '.join(missing)}; expected TRACE trace2 outputs")
    return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in data.items()}


def load_trace(path: str | Path, width: int, height: int, fps: float, body=None,
               num_frames: int | None = None) -> TraceImport:
    """Read a TRACE npz into Motions and a CameraPath.

    Args:
        width, height: the original video's size in pixels (TRACE does not store it).
        fps: the video's frame rate.
        body: the ``BodyModel`` used for placement (its hip joints); default the embedded default body.
        num_frames: video length; default one past the last frame with a detection.
    """
    from avatars.motion import Motion

    path = Path(path)
    d = _read(path)
    frame = d["reorganize_idx"].astype(np.int64).reshape(-1)
    tid = d["track_ids"].astype(np.int64).reshape(-1)
    thetas = d["smpl_thetas"].astype(np.float64)
    betas = d["smpl_betas"].astype(np.float64)
    cam_trans = d["cam_trans"].astype(np.float64)
    N = len(frame)
    if N == 0:
        raise AmgError(f"{path}: no detections in the TRACE result")
    if thetas.shape != (N, 72) or betas.ndim != 2 or len(betas) != N or cam_trans.shape != (N, 3) or len(tid) != N:
        raise AmgError(f"{path}: expected per-row smpl_thetas (N,72), smpl_betas (N,>=10), cam_trans (N,3) "
                       f"and track_ids (N,) for N={N} rows; got {thetas.shape}, {betas.shape}, {cam_trans.shape}, "
                       f"{tid.shape}")
    if not all(np.isfinite(a).all() for a in (thetas, betas, cam_trans)):
        raise AmgError(f"{path}: NaN or infinite values in the TRACE parameters")
    if frame.min() < 0:
        raise AmgError(f"{path}: negative frame index in reorganize_idx")
    total = int(frame.max()) + 1 if num_frames is None else int(num_frames)
    if frame.max() >= total:
        raise AmgError(f"{path}: frame index {frame.max()} beyond num_frames={total}")
    if body is None:
        from .extract import default_body

        body = default_body()
    M = CAMERA_ROTATION  # camera-to-world rotation of the import (it is its own inverse)

    motions, ids, starts = [], [], []
    for track in np.unique(tid):
        rows = np.nonzero(tid == track)[0]
        rows = rows[np.argsort(frame[rows], kind="stable")]
        f_rows = frame[rows]
        _, first = np.unique(f_rows, return_index=True)  # one row per frame: the first reported
        rows, f_rows = rows[first], f_rows[first]
        th = torch.as_tensor(thetas[rows]).reshape(-1, 24, 3)
        go_world = matrix_to_axis_angle(M @ axis_angle_to_matrix(th[:, 0]))
        body_pose = th[:, 1:].clone()
        body_pose[:, 21:] = 0  # SMPL hand joints: TRACE leaves them zero; keep them exactly so
        shape = torch.as_tensor(betas[rows, :10]).mean(0)
        with torch.no_grad():
            out = body(betas=shape.float()[None].expand(len(rows), -1), global_orient=go_world.float(),
                       body_pose=body_pose.float())
        hip_mid = 0.5 * (out.joints[:, 1] + out.joints[:, 2]).double()
        transl = torch.as_tensor(cam_trans[rows]) @ M.T - hip_mid
        go, bp, tr = _fill_gaps(f_rows, go_world, body_pose, transl)
        motions.append(Motion(fps=fps, betas=shape, global_orient=go, body_pose=bp, transl=tr,
                              name=f"trace_track{int(track)}"))
        ids.append(int(track))
        starts.append(int(f_rows[0]))
    return TraceImport(motions, ids, starts, trace_camera(width, height, total, fps))


def _fill_gaps(frames: np.ndarray, go: torch.Tensor, bp: torch.Tensor, tr: torch.Tensor):
    """Dense per-frame parameters from ``frames[0]`` to ``frames[-1]``: slerp rotations, lerp translation."""
    span = int(frames[-1] - frames[0]) + 1
    if span == len(frames):
        return go, bp, tr
    rots = torch.cat([go[:, None], bp], dim=1)  # (n,24,3)
    q = axis_angle_to_quaternion(rots)
    out_q = torch.zeros(span, 24, 4, dtype=q.dtype)
    out_t = torch.zeros(span, 3, dtype=tr.dtype)
    rel = frames - frames[0]
    for k in range(len(frames) - 1):
        a, b = int(rel[k]), int(rel[k + 1])
        for f in range(a, b):
            u = (f - a) / (b - a)
            out_q[f] = slerp(q[k], q[k + 1], torch.tensor(u, dtype=q.dtype))
            out_t[f] = (1 - u) * tr[k] + u * tr[k + 1]
    out_q[-1], out_t[-1] = q[-1], tr[-1]
    aa = quaternion_to_axis_angle(out_q)
    return aa[:, 0], aa[:, 1:], out_t
