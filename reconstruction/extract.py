"""The reconstruction entry point: frames -> people (SMPL motions), the camera, keypoints and flags."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.camera import Camera, CameraPath
from render.errors import AmgError
from render.image import video_array
from render.io import write_meta, write_npz

from .fit import BodyKeypoints, FitConfig, TrackFit, fit_track
from .pose import PoseEstimator
from .track import TrackingResult, track_people
from .video import DEFAULT_FOV_DEG, default_camera

__all__ = ["ExtractionResult", "extract_people", "default_body"]

_BODY_CACHE: dict = {}


def default_body():
    """The embedded default body (loaded once per process)."""
    if "default" not in _BODY_CACHE:
        from avatars.body import BodyModel

        _BODY_CACHE["default"] = BodyModel.load("default")
    return _BODY_CACHE["default"]


@dataclass
class ExtractionResult:
    """People found in a clip of ``F`` frames of ``H x W`` pixels.

    Attributes:
        motions: one ``avatars.motion.Motion`` per kept track (world metres, Y-up), in ``track_ids`` order.
        cameras: ``CameraPath`` of ``F`` frames (the static camera the fits assume, or the one given).
        keypoints: per track ``(F,33,3)`` BlazePose landmarks in pixels with confidence (0 where unknown).
        track_ids: ids (>= 1) of the tracks; also their values in ``masks``.
        flags: reasons to drop the clip (subject lost, nobody found); empty when the clip is usable.
        residuals: per track id (as a string) the fit residuals and tracking counts; JSON-ready.
        boxes: per track ``(F,4)`` x0, y0, x1, y1 pixels.
        world: per track ``(F,33,3)`` MediaPipe world landmarks in metres.
        masks: ``(F,H,W)`` int32 instance ids (track ids, 0 background) from the segmentation masks, or None.
        fits: per track :class:`reconstruction.fit.TrackFit` (warm starts for the next window).
        seconds: wall time per stage (``pose``, ``track``, ``fit``).
    """

    motions: list
    cameras: CameraPath
    keypoints: list[np.ndarray]
    track_ids: list[int]
    flags: list[str] = field(default_factory=list)
    residuals: dict = field(default_factory=dict)
    boxes: list[np.ndarray] = field(default_factory=list)
    world: list[np.ndarray] = field(default_factory=list)
    masks: np.ndarray | None = None
    fits: list[TrackFit] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """True when at least one person was tracked and nothing flags the clip."""
        return bool(self.motions) and not self.flags

    def save(self, directory: str | Path) -> Path:
        """Write ``motion_<id>.npz``, ``cameras.json``, ``keypoints.npz`` and ``meta.json`` (atomically)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for tid, motion in zip(self.track_ids, self.motions):
            motion.save(out / f"motion_{tid}.npz")
        self.cameras.save(out / "cameras.json")
        arrays = {}
        for tid, kp, box, wl in zip(self.track_ids, self.keypoints, self.boxes, self.world):
            arrays[f"keypoints_{tid}"], arrays[f"boxes_{tid}"], arrays[f"world_{tid}"] = kp, box, wl
        if self.masks is not None:
            arrays["masks"] = self.masks
        write_npz(out / "keypoints.npz", track_ids=np.asarray(self.track_ids, dtype=np.int64), **arrays)
        write_meta(out, "reconstruction", inputs={"frames": len(self.cameras), "size": [self.cameras.width,
                                                                                        self.cameras.height]},
                   track_ids=list(self.track_ids), flags=list(self.flags), residuals=self.residuals,
                   seconds=self.seconds)
        return out


def _check_inputs(frames, fps) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    frames = video_array(frames, name="frames", uint8=False)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise AmgError(f"fps: expected a positive number, got {fps!r}") from None
    if not np.isfinite(fps) or fps <= 0:
        raise AmgError(f"fps: expected a positive number, got {fps}")
    return frames


def _camera_path(camera, F: int, W: int, H: int, fps: float, fov_deg: float) -> CameraPath:
    if camera is None:
        return CameraPath.static(default_camera(W, H, fov_deg), F, fps)
    if isinstance(camera, Camera):
        path = CameraPath.static(camera, F, fps)
    elif isinstance(camera, CameraPath):
        path = camera
    else:
        raise AmgError(f"camera: expected a Camera, a CameraPath or None, got {type(camera).__name__}")
    if len(path) != F:
        raise AmgError(f"camera: expected {F} cameras for {F} frames, got a path of {len(path)}")
    if (path.width, path.height) != (W, H):
        raise AmgError(f"camera: image size {path.width}x{path.height} does not match the frames' {W}x{H}")
    return CameraPath(path.K, path.R, path.t, W, H, fps)


def _instance_masks(tracking: TrackingResult, detections, F: int, H: int, W: int) -> np.ndarray | None:
    if not any(d.mask is not None for dets in detections for d in dets):
        return None
    masks = np.zeros((F, H, W), dtype=np.int32)
    best = np.zeros((F, H, W), dtype=np.float32)
    for tr in tracking.tracks:
        for f in range(F):
            j = tr.detection_index[f]
            if j < 0 or detections[f][j].mask is None:
                continue
            prob = detections[f][j].mask
            take = (prob > 0.5) & (prob > best[f])
            masks[f][take] = tr.track_id
            best[f][take] = prob[take]
    return masks


def extract_people(frames, fps: float, camera: Camera | CameraPath | None = None, body=None,
                   estimator: PoseEstimator | None = None, num_poses: int = 4, fov_deg: float = DEFAULT_FOV_DEG,
                   max_gap: int = 3, max_lost: int = 8, min_fraction: float = 0.25,
                   fit: FitConfig | dict | None = None,
                   previous: ExtractionResult | None = None, progress: bool = False) -> ExtractionResult:
    """Find, track and fit the people in a clip.

    Args:
        frames: ``(F,H,W,3)`` uint8 RGB (a single ``(H,W,3)`` image is a one-frame clip).
        fps: frames per second of ``frames``.
        camera: the camera of the frames (a static ``Camera`` or a ``CameraPath``); default: an
            uncalibrated camera with ``fov_deg`` across the long side (see ``video.default_camera``).
        body: the ``BodyModel`` to fit; default the embedded default body.
        estimator: a :class:`PoseEstimator` to reuse; default one with ``num_poses``.
        max_gap, max_lost, min_fraction: tracking (see :func:`reconstruction.track.track_people`).
        fit: :class:`FitConfig` or its fields as a dict.
        previous: the result of the previous window of the same shot: fits of tracks with the same id
            warm-start this window's.
    Returns:
        :class:`ExtractionResult`; a clip with nobody in it returns no motions and a flag, not an error.
    Raises:
        AmgError: frames that are not a uint8 video, a non-positive fps, a camera that does not match.
    """
    frames = _check_inputs(frames, fps)
    F, H, W = frames.shape[:3]
    path = _camera_path(camera, F, W, H, float(fps), fov_deg)
    cfg = fit if isinstance(fit, FitConfig) else FitConfig(**(fit or {}))
    seconds = {}

    t0 = time.perf_counter()
    own = estimator is None
    est = estimator or PoseEstimator(num_poses=num_poses)
    try:
        detections = est.video(frames, progress=progress)
    finally:
        if own:
            est.close()
    seconds["pose"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tracking = track_people(detections, max_gap=max_gap, max_lost=max_lost, min_fraction=min_fraction,
                            rotations=path.R.transpose(-1, -2).numpy())
    seconds["track"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    motions, fits, residuals = [], [], {}
    if tracking.tracks:
        body = body if body is not None else default_body()
        bk = BodyKeypoints(body)
        prev = {tid: f for tid, f in zip(previous.track_ids, previous.fits)} if previous is not None else {}
        for tr in tracking.tracks:
            result = fit_track(body, tr.keypoints, tr.world, path, cfg, init=prev.get(tr.track_id),
                               body_keypoints=bk)
            fits.append(result)
            motions.append(result.motion(float(fps)))
            residuals[str(tr.track_id)] = {**{k: (v if isinstance(v, int) else round(float(v), 4))
                                              for k, v in result.residuals.items()},
                                           "detected_frames": int(tr.detected.sum()),
                                           "bridged_frames": int(tr.bridged.sum())}
    seconds["fit"] = time.perf_counter() - t0

    return ExtractionResult(
        motions=motions, cameras=path, keypoints=[t.keypoints for t in tracking.tracks],
        track_ids=[t.track_id for t in tracking.tracks], flags=list(tracking.flags), residuals=residuals,
        boxes=[t.boxes for t in tracking.tracks], world=[t.world for t in tracking.tracks],
        masks=_instance_masks(tracking, detections, F, H, W), fits=fits, seconds=seconds)
