"""The reconstruction entry point: frames -> people (SMPL motions), the camera, keypoints and flags."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from render.camera import Camera, CameraPath
from render.errors import AmgError
from render.image import video_array
from render.io import write_meta, write_npz

from .fit import BodyKeypoints, FitConfig, TrackFit, fit_track
from .pose import PoseEstimator
from .track import TrackingResult, track_people
from .video import DEFAULT_FOV_DEG, default_camera

__all__ = ["ExtractionResult", "extract_people", "default_body"]

def default_body():
    """The embedded default body (loaded once per process; the one cache is :func:`avatars.body.default_body`)."""
    from avatars.body import default_body as shared

    return shared()


@dataclass
class ExtractionResult:
    """People found in a clip of ``F`` frames of ``H x W`` pixels.

    Attributes:
        motions: one ``avatars.motion.Motion`` per fitted track (world metres, Y-up), in ``track_ids`` order:
            the clip's subjects (and its bystanders when asked to fit them). In frames where a track is not
            valid the motion holds the nearest valid frame's pose (nothing is fitted from nothing).
        cameras: ``CameraPath`` of ``F`` frames (the static camera the fits assume, or the one given).
        keypoints: per track ``(F,33,3)`` BlazePose landmarks in pixels with confidence (0 where unknown).
        track_ids: ids (>= 1) of the fitted tracks; also their values in ``masks``.
        flags: reasons to drop the clip (a subject lost for too long, nobody found); empty when usable.
        residuals: per track id (as a string) the fit residuals and tracking counts; JSON-ready.
        boxes: per track ``(F,4)`` x0, y0, x1, y1 pixels.
        world: per track ``(F,33,3)`` MediaPipe world landmarks in metres.
        masks: ``(F,H,W)`` int32 instance ids (track ids of subjects and bystanders, 0 background) from the
            segmentation masks, or None.
        fits: per track :class:`reconstruction.fit.TrackFit` (warm starts for the next window).
        seconds: wall time per stage (``pose``, ``track``, ``fit``).
        valid: per track ``(F,)`` bool, frames whose landmarks were observed or bridged across a short gap.
        confidence: per track ``(F,)`` float32 mean landmark confidence (0 where not valid).
        frame_valid: ``(F,)`` bool, frames in which every subject is valid, inside the kept run.
        people: per track id (string) of every tracked person, subjects and bystanders: ``role``, ``reason``
            and frame counts (:meth:`reconstruction.track.TrackingResult.people`).
        crop_box: ``(x0, y0, w, h)`` source pixels of the clip crop the result was mapped into, or None.
        floor: the floor found under the feet when grounding (``normal``, ``offset``, ``tilt_deg``), or ``{}``.
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
    valid: list[np.ndarray] = field(default_factory=list)
    confidence: list[np.ndarray] = field(default_factory=list)
    frame_valid: np.ndarray | None = None
    people: dict = field(default_factory=dict)
    crop_box: tuple[int, int, int, int] | None = None
    floor: dict = field(default_factory=dict)

    def to_clip(self, x0: int, y0: int, side: int, size: int) -> "ExtractionResult":
        """The result in the pixels of a square clip: crop ``side`` at ``(x0, y0)``, resized to ``size``.

        Keypoints, boxes, masks (nearest neighbour) and cameras (``CameraPath.crop``/``resize``, K exact)
        are mapped; motions and world landmarks are unchanged (the camera's pose does not change).
        """
        import cv2

        s = size / float(side)
        shift = np.array([x0, y0], np.float32)

        def kp_map(kp):
            kp = np.array(kp, np.float32, copy=True)
            kp[..., :2] = (kp[..., :2] - shift) * s
            return kp

        def box_map(b):
            return ((np.asarray(b, np.float32) - np.tile(shift, 2)) * s).astype(np.float32)

        masks = None
        if self.masks is not None:
            masks = np.stack([cv2.resize(m[y0:y0 + side, x0:x0 + side], (size, size),
                                         interpolation=cv2.INTER_NEAREST) for m in self.masks]).astype(np.int32)
        residuals = {k: ({**v, "reprojection_px": round(v["reprojection_px"] * s, 4)}
                         if "reprojection_px" in v else v) for k, v in self.residuals.items()}
        return replace(self, cameras=self.cameras.crop(x0, y0, side, side).resize(size, size),
                       keypoints=[kp_map(k) for k in self.keypoints], boxes=[box_map(b) for b in self.boxes],
                       masks=masks, residuals=residuals, crop_box=(int(x0), int(y0), int(side), int(side)))

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
        for tid, v, c in zip(self.track_ids, self.valid, self.confidence):
            arrays[f"valid_{tid}"], arrays[f"confidence_{tid}"] = np.asarray(v, bool), np.asarray(c, np.float32)
        if self.frame_valid is not None:
            arrays["frame_valid"] = np.asarray(self.frame_valid, bool)
        if self.masks is not None:
            arrays["masks"] = self.masks
        write_npz(out / "keypoints.npz", track_ids=np.asarray(self.track_ids, dtype=np.int64), **arrays)
        write_meta(out, "reconstruction", inputs={"frames": len(self.cameras), "size": [self.cameras.width,
                                                                                        self.cameras.height]},
                   track_ids=list(self.track_ids), flags=list(self.flags), residuals=self.residuals,
                   people=self.people, seconds=self.seconds,
                   crop_box=None if self.crop_box is None else list(self.crop_box), floor=self.floor)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "ExtractionResult":
        """Read back what :meth:`save` wrote (motions, cameras, keypoints, boxes, world landmarks, masks,
        flags, residuals); ``fits`` stay empty.

        Raises:
            AmgError: a missing or unreadable file.
        """
        from avatars.motion import Motion
        from render.io import read_json

        d = Path(directory)
        path = d / "keypoints.npz"
        if not path.is_file():
            raise AmgError(f"{path}: no such file; expected the keypoints ExtractionResult.save writes")
        try:
            with np.load(path) as kp:
                arrays = {k: kp[k] for k in kp.files}
        except (OSError, ValueError) as e:
            raise AmgError(f"{path}: not a readable npz ({e})") from None
        ids = [int(t) for t in arrays.pop("track_ids")]
        meta = read_json(d / "meta.json")
        return cls(motions=[Motion.load(d / f"motion_{t}.npz") for t in ids],
                   cameras=CameraPath.load(d / "cameras.json"),
                   keypoints=[arrays[f"keypoints_{t}"] for t in ids], track_ids=ids,
                   flags=list(meta.get("flags", [])), residuals=dict(meta.get("residuals", {})),
                   boxes=[arrays[f"boxes_{t}"] for t in ids], world=[arrays[f"world_{t}"] for t in ids],
                   masks=arrays.get("masks"), seconds=dict(meta.get("seconds", {})),
                   valid=[arrays[f"valid_{t}"] for t in ids if f"valid_{t}" in arrays],
                   confidence=[arrays[f"confidence_{t}"] for t in ids if f"confidence_{t}" in arrays],
                   frame_valid=arrays.get("frame_valid"), people=dict(meta.get("people", {})),
                   crop_box=None if meta.get("crop_box") is None else tuple(int(v) for v in meta["crop_box"]),
                   floor=dict(meta.get("floor", {})))


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


def _people_masks(detections, H: int, W: int) -> np.ndarray:
    """``(F,H,W)`` bool: pixels of any detected person (segmentation masks, or boxes without them)."""
    out = np.zeros((len(detections), H, W), dtype=bool)
    for f, dets in enumerate(detections):
        for d in dets:
            if d.mask is not None:
                out[f] |= d.mask > 0.3
            else:
                x0, y0, x1, y1 = (int(round(v)) for v in d.box)
                out[f, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return out


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
                   estimator: PoseEstimator | None = None, num_poses: int = 6, fov_deg: float = DEFAULT_FOV_DEG,
                   max_gap: int = 3, max_lost: int = 8, min_fraction: float = 0.25,
                   fit: FitConfig | dict | None = None,
                   previous: ExtractionResult | None = None, progress: bool = False, max_subjects: int = 2,
                   fit_bystanders: bool = False, min_valid_fraction: float = 0.75, camera_motion: bool = False,
                   ground: bool = False) -> ExtractionResult:
    """Find, track and fit the people in a clip.

    Args:
        frames: ``(F,H,W,3)`` uint8 RGB (a single ``(H,W,3)`` image is a one-frame clip).
        fps: frames per second of ``frames``.
        camera: the camera of the frames (a static ``Camera`` or a ``CameraPath``); default: an
            uncalibrated camera with ``fov_deg`` across the long side (see ``video.default_camera``).
        body: the ``BodyModel`` to fit; default the embedded default body.
        estimator: a :class:`PoseEstimator` to reuse; default one with ``num_poses``. When it has a
            ``second_opinion`` model, the fitted people's detected landmarks are first averaged with its
            further readings (:meth:`PoseEstimator.second_reading`; ``seconds["second_opinion"]``).
        max_gap, max_lost, min_fraction, max_subjects, min_valid_fraction: tracking and the choice of
            subjects (see :func:`reconstruction.track.track_people`).
        fit_bystanders: also fit bodies to the bystanders (by default only subjects are fitted; bystanders
            still appear in ``masks`` and ``people``).
        camera_motion: estimate the camera's rotation per frame from background features outside the
            people's masks (:mod:`reconstruction.camera_motion`) when the camera is not given as a moving path.
        ground: move the world so the floor under the fitted feet is ``y = 0`` with Y up (motions, fits and
            cameras together, so projections do not change).
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

    if camera_motion and bool((path.R == path.R[:1]).all()):
        from .camera_motion import frame_rotations, rotating_path

        t0 = time.perf_counter()
        people = _people_masks(detections, H, W)
        rel, _ = frame_rotations(frames, path.K[0].numpy(), people)
        chained = [np.eye(3)]
        for R in rel:
            chained.append(R @ chained[-1])
        path = rotating_path(path, np.stack(chained))
        seconds["camera"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tracking = track_people(detections, max_gap=max_gap, max_lost=max_lost, min_fraction=min_fraction,
                            rotations=path.R.transpose(-1, -2).numpy(), max_subjects=max_subjects,
                            min_valid_fraction=min_valid_fraction, frame_height=H)
    seconds["track"] = time.perf_counter() - t0

    fitted = [t for t in tracking.tracks if fit_bystanders or t.is_subject]
    if getattr(est, "second_opinion", None) is not None and fitted:
        t0 = time.perf_counter()
        _second_opinion(est, frames, detections, fitted)
        seconds["second_opinion"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    motions, fits, residuals = [], [], {}
    if fitted:
        body = body if body is not None else default_body()
        bk = BodyKeypoints(body)
        prev = {tid: f for tid, f in zip(previous.track_ids, previous.fits)} if previous is not None else {}
        for tr in fitted:
            result = hold_invalid(fit_track(body, tr.keypoints, tr.world, path, cfg, init=prev.get(tr.track_id),
                                            body_keypoints=bk), tr.valid, bk)
            fits.append(result)
            motions.append(result.motion(float(fps)))
            residuals[str(tr.track_id)] = {**{k: (v if isinstance(v, int) else round(float(v), 4))
                                              for k, v in result.residuals.items()},
                                           "detected_frames": int(tr.detected.sum()),
                                           "bridged_frames": int(tr.bridged.sum())}
    seconds["fit"] = time.perf_counter() - t0

    floor = {}
    if ground and fits:
        from .camera_motion import floor_transform, move_body, move_path

        subject_fits = [m for m, t in zip(motions, fitted) if t.is_subject] or motions
        found = floor_transform(subject_fits, body, [t.valid for t in fitted if t.is_subject] or None)
        if found is not None:
            G, d, floor = found
            Gt, dt = torch.as_tensor(G, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32)
            path = move_path(path, G, d)
            refine = replace(cfg, orient_iterations=0, iterations=max(1, cfg.iterations // 2), robust_rounds=0)
            for i, (f, tr) in enumerate(zip(fits, fitted)):
                J0 = (bk.J_template + torch.einsum("l,jkl->jk", f.betas, bk.J_shapedirs))[0]
                go, transl = move_body(f.global_orient, f.transl, J0, G, d)
                moved = TrackFit(f.betas, go, f.body_pose, transl, f.joints @ Gt.T + dt, f.residuals)
                # with the floor known, refine so the standing foot touches it and none sinks below
                again = fit_track(body, tr.keypoints, tr.world, path, refine, init=moved, body_keypoints=bk,
                                  floor=(0.0, 1.0, 0.0, 0.0))
                fits[i] = hold_invalid(TrackFit(again.betas, again.global_orient, again.body_pose, again.transl,
                                                again.joints, {**f.residuals, "floor_refit_seconds":
                                                               round(again.residuals["seconds"], 4)}), tr.valid, bk)
                motions[i] = fits[i].motion(float(fps))

    return ExtractionResult(
        motions=motions, cameras=path, keypoints=[t.keypoints for t in fitted],
        track_ids=[t.track_id for t in fitted], flags=list(tracking.flags), residuals=residuals,
        boxes=[t.boxes for t in fitted], world=[t.world for t in fitted],
        masks=_instance_masks(tracking, detections, F, H, W), fits=fits, seconds=seconds,
        valid=[t.valid.copy() for t in fitted], confidence=[t.confidence for t in fitted],
        frame_valid=tracking.valid, people=tracking.people(), floor=floor)


def _second_opinion(est: PoseEstimator, frames: np.ndarray, detections, tracks) -> None:
    """Replace each track's detected landmarks, in place, by the average of the detection's reading and the
    estimator's second model's (:meth:`PoseEstimator.second_reading`), the other people found in the frame
    hidden; mirrored as the track mirrored that frame (:func:`reconstruction.track.resolve_sides`)."""
    from .follow import _people_cover
    from .track import mirror_landmarks

    H, W = frames.shape[1:3]
    for tr in tracks:
        for f in np.nonzero(tr.detected)[0]:
            j = int(tr.detection_index[f])
            d = detections[f][j]
            if np.array_equal(tr.keypoints[f], d.keypoints):
                mirrored = False
            elif np.array_equal(tr.keypoints[f], mirror_landmarks(d.keypoints, d.world)[0]):
                mirrored = True
            else:
                continue
            others = [e for i, e in enumerate(detections[f]) if i != j]
            got = est.second_reading(frames[f], d.keypoints, d.world,
                                     hide=_people_cover(others, H, W) if others else None)
            if got is not None:
                tr.keypoints[f], tr.world[f] = mirror_landmarks(*got) if mirrored else got


def hold_invalid(fit: TrackFit, valid: np.ndarray, body_keypoints: BodyKeypoints) -> TrackFit:
    """``fit`` with every frame outside ``valid (F,)`` set to the nearest valid frame's pose and position.

    Frames nobody observed are not fitted from nothing: the optimiser's guess there (priors and smoothness
    alone) can lie on its side or drift off; holding the nearest observed body is the honest stand-in.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.all() or not valid.any():
        return fit
    known = np.nonzero(valid)[0]
    nearest = known[np.abs(np.arange(len(valid))[:, None] - known[None]).argmin(1)]
    idx = torch.as_tensor(nearest)
    go, pose, tr = fit.global_orient[idx].clone(), fit.body_pose[idx].clone(), fit.transl[idx].clone()
    with torch.no_grad():
        joints, _ = body_keypoints(fit.betas, go, pose, tr)
    return TrackFit(fit.betas, go, pose, tr, joints, {**fit.residuals, "held_frames": int((~valid).sum())})


def extract_clip(clip, body=None, estimator: PoseEstimator | None = None, **kwargs) -> ExtractionResult:
    """:func:`extract_people` on a ``reconstruction.video.Clip``, in the clip's pixels.

    When the clip keeps its full-resolution ``source`` frames, people are detected there and the square
    crop is placed around the subjects (:func:`reconstruction.video.subject_window`); the result is then
    mapped into that crop (:meth:`ExtractionResult.to_clip`; ``crop_box`` says where). Otherwise the
    clip's own frames are used.

    Args:
        clip: a ``Clip``; kwargs: further :func:`extract_people` arguments.
    """
    from .video import subject_window

    if clip.source is None or clip.source_camera is None:
        return extract_people(clip.frames, clip.fps, camera=clip.camera, body=body, estimator=estimator, **kwargs)
    H, W = clip.source.shape[1:3]
    res = extract_people(clip.source, clip.fps, camera=clip.source_camera, body=body, estimator=estimator,
                         **kwargs)
    subjects = {int(k) for k, v in res.people.items() if v.get("role") == "subject"}
    chosen = [(b, v) for t, b, v in zip(res.track_ids, res.boxes, res.valid) if t in subjects]
    x0, y0, side = subject_window([b for b, _ in chosen], [v for _, v in chosen], W, H)
    return res.to_clip(x0, y0, side, int(clip.frames.shape[1]))
