"""2D/3D human pose per frame: MediaPipe PoseLandmarker (Tasks API) on the embedded BlazePose bundle.

Each detected person gives 33 BlazePose landmarks in pixels with a visibility in [0, 1], the same 33
landmarks in metres (MediaPipe's "world" landmarks: origin between the hips, x right, y down, z away from
the camera, the camera's axes up to a small rotation), and a soft segmentation mask of that person.

The bundle ``reconstruction/data/pose_landmarker.task`` is built by ``tools/build_pose_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.errors import AmgError
from render.image import video_array

from .landmark_tracking import LandmarkModel, Roi, roi_from_landmarks
from .proposals import half_plane, read_apart, split_reading

__all__ = ["LANDMARK_NAMES", "LANDMARK_INDEX", "NUM_LANDMARKS", "DEFAULT_MODEL", "Detection", "PoseEstimator",
           "landmark_box", "box_iou", "torso_axes", "appearance_descriptor", "appearance_distance", "plausible_body",
           "proportion_deviation", "BODY_PROPORTIONS"]

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "pose_landmarker.task"

#: BlazePose's 33 landmarks, in model order ("left" is the person's left).
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)
#: landmark name -> index
LANDMARK_INDEX = {name: i for i, name in enumerate(LANDMARK_NAMES)}
_TORSO = [LANDMARK_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def torso_axes(world: np.ndarray, confidence: np.ndarray, min_confidence: float = 0.1) -> np.ndarray:
    """The torso's axes per frame from shoulder and hip landmarks.

    Args:
        world: ``(F,33,3)`` landmarks in metres (any axes, e.g. MediaPipe's camera axes); confidence ``(F,33)``.
    Returns:
        ``(F,3,3)`` rotations whose columns are the body's left, up and forward directions in the axes of
        ``world`` (left from the hip and shoulder lines, up from the hip centre to the shoulder centre, made
        orthogonal); NaN where any of the four landmarks is below ``min_confidence`` or the torso is flat.
    """
    w = np.asarray(world, dtype=np.float64)
    ls, rs, lh, rh = (w[:, i] for i in _TORSO)
    left = (lh - rh) + (ls - rs)
    up = 0.5 * (ls + rs) - 0.5 * (lh + rh)
    up_n = np.linalg.norm(up, axis=-1, keepdims=True)
    y = up / np.maximum(up_n, 1e-12)
    x = left - y * (left * y).sum(-1, keepdims=True)
    x_n = np.linalg.norm(x, axis=-1, keepdims=True)
    x = x / np.maximum(x_n, 1e-12)
    axes = np.stack([x, y, np.cross(x, y)], axis=-1)
    ok = (np.asarray(confidence)[:, _TORSO].min(-1) >= min_confidence) & (up_n[:, 0] > 1e-6) & (x_n[:, 0] > 1e-6)
    return np.where(ok[:, None, None], axes, np.nan)


@dataclass
class Detection:
    """One person in one frame.

    Attributes:
        keypoints: ``(33,3)`` float32: x, y in pixels (pixel centres at +0.5) and visibility in [0, 1].
        world: ``(33,3)`` float32 metres, hip-centred, camera-aligned axes (x right, y down, z away).
        box: ``(4,)`` float32 ``x0, y0, x1, y1`` pixels around the person.
        score: mean landmark visibility.
        mask: ``(H,W)`` float32 person probability in [0, 1], or None when masks were not requested.
        appearance: ``(2*B,)`` float32 colour histograms of torso and legs (:func:`appearance_descriptor`),
            or None; tracking uses it to keep identities through crossings.
        followed: True when the person detector missed this person here and the landmark model read them in
            the region handed over from a neighbouring frame (:meth:`PoseEstimator.video`, ``follow``).
        apart: ``(2,2)`` pixels for a person read apart from someone pressed beside them (``split_pairs``): a
            point of the line between them and the unit direction towards the other; None otherwise.
    """

    keypoints: np.ndarray
    world: np.ndarray
    box: np.ndarray
    score: float
    mask: np.ndarray | None = None
    appearance: np.ndarray | None = None
    followed: bool = False
    apart: np.ndarray | None = None


_APPEARANCE_BINS = 4  # per RGB channel: 64 bins per region


def appearance_descriptor(frame: np.ndarray, keypoints: np.ndarray, mask: np.ndarray | None = None,
                          min_confidence: float = 0.3) -> np.ndarray | None:
    """Colour statistics of one person: RGB histograms (4 bins a channel) of the torso and of the legs.

    Regions come from the landmarks (the shoulder-hip quad shrunk to its inner three quarters; thick lines
    hip-knee-ankle), intersected with the person's mask when given. Each region's histogram sums to 1/2
    (an unseen region is left at zero), so the Hellinger distance of two descriptors lies in [0, 1].

    Args:
        frame: ``(H,W,3)`` uint8 RGB; keypoints: ``(33,3)`` pixels and confidence; mask: ``(H,W)`` probability.
    Returns:
        ``(128,)`` float32, or None when neither region is seen.
    """
    import cv2

    H, W = frame.shape[:2]
    kp = np.asarray(keypoints, np.float32)
    ok = kp[:, 2] >= min_confidence
    ls, rs, lh, rh, lk, rk, la, ra = (LANDMARK_INDEX[n] for n in (
        "left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle"))
    width = max(2, int(0.15 * float(np.linalg.norm(kp[lh, :2] - kp[rh, :2]) + np.linalg.norm(kp[ls, :2] - kp[rs, :2]))))
    # only the window around the torso and legs is read (a full-frame pass per person is slow at 1280x720)
    used = [i for i in (ls, rs, lh, rh, lk, rk, la, ra) if ok[i]]
    if not used:
        return None
    lo = np.floor(kp[used, :2].min(0)).astype(int) - width - 2
    hi = np.ceil(kp[used, :2].max(0)).astype(int) + width + 3
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), W), min(int(hi[1]), H)
    if x1 <= x0 or y1 <= y0:
        return None
    frame = frame[y0:y1, x0:x1]
    mask = None if mask is None else np.asarray(mask)[y0:y1, x0:x1]
    kp = kp.copy()
    kp[:, :2] -= np.array([x0, y0], np.float32)
    H, W = frame.shape[:2]
    regions = []
    torso = np.zeros((H, W), np.uint8)
    if ok[[ls, rs, lh, rh]].all():
        quad = kp[[ls, rs, rh, lh], :2]
        c = quad.mean(0)
        cv2.fillPoly(torso, [np.round(c + 0.75 * (quad - c)).astype(np.int32)], 1)
    regions.append(torso)
    legs = np.zeros((H, W), np.uint8)
    for a, b in ((lh, lk), (lk, la), (rh, rk), (rk, ra)):
        if ok[a] and ok[b]:
            cv2.line(legs, tuple(int(v) for v in kp[a, :2]), tuple(int(v) for v in kp[b, :2]), 1, width)
    regions.append(legs)
    out = np.zeros(2 * _APPEARANCE_BINS ** 3, np.float32)
    q = (frame.astype(np.int32) * _APPEARANCE_BINS // 256).reshape(-1, 3)
    code = (q[:, 0] * _APPEARANCE_BINS + q[:, 1]) * _APPEARANCE_BINS + q[:, 2]
    seen = False
    for i, region in enumerate(regions):
        m = region.astype(bool)
        if mask is not None:
            m &= np.asarray(mask) > 0.5
        if m.sum() < 8:
            continue
        h = np.bincount(code[m.reshape(-1)], minlength=_APPEARANCE_BINS ** 3).astype(np.float32)
        out[i * _APPEARANCE_BINS ** 3:(i + 1) * _APPEARANCE_BINS ** 3] = 0.5 * h / h.sum()
        seen = True
    return out if seen else None


def appearance_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Hellinger distance in [0, 1] between two :func:`appearance_descriptor` values over the regions
    both show (0.5 when either is unknown: no evidence either way)."""
    if a is None or b is None:
        return 0.5
    n = _APPEARANCE_BINS ** 3
    ds = []
    for i in range(2):
        x, y = a[i * n:(i + 1) * n], b[i * n:(i + 1) * n]
        if x.sum() > 0 and y.sum() > 0:
            bc = float(np.sqrt((x / x.sum()) * (y / y.sum())).sum())
            ds.append(np.sqrt(max(0.0, 1.0 - bc)))
    return float(np.mean(ds)) if ds else 0.5


def landmark_box(keypoints: np.ndarray, min_visibility: float = 0.3, pad: float = 0.08) -> np.ndarray:
    """Box ``(4,)`` around the landmarks seen with at least ``min_visibility``, padded by ``pad`` x height.

    Landmarks stop at the nose and the feet, so the top gets an extra head allowance.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    seen = kp[:, 2] >= min_visibility
    pts = kp[seen, :2] if seen.sum() >= 2 else kp[:, :2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    h = max(y1 - y0, x1 - x0, 1.0)
    return np.array([x0 - pad * h, y0 - 2 * pad * h, x1 + pad * h, y1 + pad * h], dtype=np.float32)


def plausible_body(keypoints: np.ndarray, min_confidence: float = 0.5, max_shoulders: float = 2.0,
                   max_hips: float = 1.5, max_limb: float = 1.8) -> bool:
    """False for landmarks no single body makes: a reading fused from two people, with the left limbs on
    one and the right on the other.

    Lengths are in units of the torso (shoulder centre to hip centre, in pixels): shoulder width above
    ``max_shoulders``, hip width above ``max_hips`` or an upper arm, forearm, thigh or shin above
    ``max_limb`` torsos is implausible (a standing person facing the camera: about 0.8, 0.55 and 0.6-0.9).
    Landmarks below ``min_confidence`` are not judged; a reading without a seen torso passes.
    """
    kp = np.asarray(keypoints, np.float32)
    ok = kp[:, 2] >= min_confidence
    I = LANDMARK_INDEX
    ls, rs, lh, rh = I["left_shoulder"], I["right_shoulder"], I["left_hip"], I["right_hip"]
    if not ok[[ls, rs, lh, rh]].all():
        return True
    p = kp[:, :2]
    torso = float(np.linalg.norm(0.5 * (p[ls] + p[rs]) - 0.5 * (p[lh] + p[rh])))
    if torso < 1e-3:
        return True
    if np.linalg.norm(p[ls] - p[rs]) > max_shoulders * torso or np.linalg.norm(p[lh] - p[rh]) > max_hips * torso:
        return False
    for side in ("left", "right"):
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")):
            i, j = I[f"{side}_{a}"], I[f"{side}_{b}"]
            if ok[i] and ok[j] and np.linalg.norm(p[i] - p[j]) > max_limb * torso:
                return False
    return True


#: lengths in metres of a typical body in MediaPipe's world landmarks (the medians it gives real people):
#: (landmark, landmark, length); a reading of a cat's eye or a spoon as a person has other proportions
BODY_PROPORTIONS = tuple((LANDMARK_INDEX[a], LANDMARK_INDEX[b], length) for a, b, length in (
    ("left_shoulder", "left_elbow", 0.22), ("left_elbow", "left_wrist", 0.22),
    ("right_shoulder", "right_elbow", 0.22), ("right_elbow", "right_wrist", 0.22),
    ("left_hip", "left_knee", 0.39), ("left_knee", "left_ankle", 0.36),
    ("right_hip", "right_knee", 0.39), ("right_knee", "right_ankle", 0.36),
    ("left_shoulder", "right_shoulder", 0.32), ("left_hip", "right_hip", 0.22)))


def proportion_deviation(world: np.ndarray) -> np.ndarray:
    """How far world landmarks are from a human body's proportions: the mean over the segments of
    :data:`BODY_PROPORTIONS` (upper arms, forearms, thighs, shins, shoulder and hip width) and the torso
    (shoulder centre to hip centre, 0.47 m) of ``|log(length / typical length)|``.

    MediaPipe's world landmarks are metric and keep a person's proportions whatever the pose, hidden limbs
    included (median 0.07 on the people of the hard cases, 90% under 0.2; 0.15-0.18 on the half-length
    astronaut photograph); a phantom (a person read into background texture: a cat's eyes, a spoon) gets
    limbs of arbitrary lengths (95% over 0.2, median 0.37).

    Args:
        world: ``(...,33,3)`` metres.
    Returns:
        ``(...)`` float64, >= 0 (0: exactly the typical proportions).
    """
    w = np.asarray(world, np.float64)
    dev = [np.abs(np.log(np.maximum(np.linalg.norm(w[..., a, :] - w[..., b, :], axis=-1), 1e-3) / length))
           for a, b, length in BODY_PROPORTIONS]
    ls, rs, lh, rh = (w[..., i, :] for i in _TORSO)
    torso = np.linalg.norm(0.5 * (ls + rs) - 0.5 * (lh + rh), axis=-1)
    dev.append(np.abs(np.log(np.maximum(torso, 1e-3) / 0.47)))
    return np.mean(dev, axis=0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a (N,4)`` and ``b (M,4)`` (x0, y0, x1, y1) -> ``(N,M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class PoseEstimator:
    """MediaPipe PoseLandmarker over single frames (image mode: frames are independent; tracking is ours).

    Args:
        model_path: a ``.task`` bundle; default the embedded BlazePose bundle.
        num_poses: most people reported per frame (6: two subjects and four bystanders; a crowd beyond it
            goes partly unmasked, and each further person costs landmark-model reads).
        min_detection_confidence, min_presence_confidence: MediaPipe's thresholds.
        masks: also return a segmentation mask per person.
        duplicate_iou: detections overlapping a better one by more than this box IoU are dropped (the
            detector sometimes fires twice on one person when ``num_poses > 1``).
        passes: detection passes per frame. BlazePose's detector often reports only the most salient of
            several people, so each further pass paints the people found so far out of the frame (their
            dilated masks, or boxes, filled with the background's median colour) and looks again, until a
            pass finds nobody new or ``num_poses`` are found.
        propagate: in :meth:`video`, a person found in one frame but not in the next (or previous) one is
            looked for again in a crop around their box there (:meth:`detect_in_box`), sweeping forward and
            backward: the detector misses people against busy backgrounds and at small sizes far more
            often than when shown a crop around them (the usual top-down design).
        crop_scale: side of those crops in units of the person's box size; a tuple gives several sides,
            tried in order until the person is found (the detector finds a person at one framing and not
            at another, so a second framing recovers most misses).
        sweep_patience: frames after a person's last sighting in which the propagation still looks for them
            in a crop; default 0 with ``follow`` (only the frame right after a sighting: a person two framings
            missed there is rarely found by a crop a frame later, and the landmark model follows them at a
            fraction of the cost), else 3.
        key_frames: in :meth:`video`, this many evenly spaced frames also get tiled detection
            (:meth:`detect_tiled` at ``tile_scales``), whose finds the propagation carries to the other
            frames; 0 turns tiling off.
        max_proportion_deviation: detections whose world landmarks stray further than this from a human
            body's proportions (:func:`proportion_deviation`) are dropped as phantoms (texture read as a
            person); None keeps them.
        max_side: every image (a frame, a tile, a crop) is shown to the model with its long side at most this
            many pixels (landmarks, boxes and masks mapped back to its own pixels). The detector sees 224
            pixels and the landmark model a 256-pixel crop around the person whatever the input, so larger
            inputs only cost time (MediaPipe resamples and writes each mask at the input's size); small
            people are the tiles' job. None: the image as given.
        follow: in :meth:`video`, a person found in one frame and missed by the detector in the next (or
            previous) one is followed there by the landmark model alone, on the region handed over from the
            frame they were seen in (:mod:`reconstruction.landmark_tracking`): the detector is face-based and
            misses people in profile, from behind or pressed against someone, the landmark model reads them.
            A reading is kept only while it stays a plausible body of the same person (:meth:`_accept`).
        follow_presence: least presence probability of a followed reading (MediaPipe's tracking threshold).
        follow_appearance: most appearance distance (:func:`appearance_distance`) of a followed reading from
            the person as last detected: a reading that slid onto someone else looks like them.
        follow_deviation: most :func:`proportion_deviation` of a followed reading, stricter than
            ``max_proportion_deviation``: no detector vouches for it, and a reading that straddles two people
            pressed together keeps nearly human proportions (0.13-0.2 on the hugging pair, against 0.04-0.1
            on one person followed alone).
        follow_area: most mask area of a followed reading, in units of its landmarks' height squared: one
            person's mask covers 0.15-0.23 of it (profile to front, arms down), a mask over two people
            pressed together 0.26 and more.
        follow_small: how the two limits above grow for small people, whose readings the model gives wider
            masks and looser proportions (at a third to a quarter of the frame height one person's mask covers
            0.18-0.30 of the landmarks' height squared and their proportions stray 0.05-0.17; at 0.6 of the
            frame height 0.12-0.17 and 0.04-0.1): ``(tall, short, area, deviation)``: landmarks spanning
            ``tall`` or more of the frame height get ``follow_area`` and ``follow_deviation``, ``short`` or less
            get ``area`` and ``deviation``, linearly in between. None: the same limits at every size.
        follow_patience: frames a person is carried unseen (hidden behind someone crossing) before they are
            no longer looked for.
        follow_overlap: most share of a followed reading's mask (or box) inside another person's found in that
            frame: a reading that drifted onto the neighbour in a hug lies on them.
        workers: detector instances run side by side in threads (MediaPipe waits for its graph without the
            interpreter lock): frames, tiles and the crops of one frame are independent detections. Results
            are folded in the order a single instance would give, so they do not depend on ``workers``.
            Default: 2, or 1 on a single core.
        split_pairs: in :meth:`video`, a detection that may straddle two people pressed side by side (its
            proportions too far from a body's for following, ``follow_deviation``, or a mask wider than one
            person's, ``split_area``) is read again as two people, each with the other side of a line across
            its mask hidden (:func:`reconstruction.proposals.split_reading`); both readings must pass the
            checks of a followed reading, lie ``split_separation`` torso lengths apart (hip centres) and look
            different (``split_appearance``, :func:`appearance_distance`). Following then keeps them apart.
        split_area: mask area, in units of the landmarks' height squared, above which a detection is tried
            as two people (one person upright: 0.10-0.19; two pressed together: 0.19-0.27).
        split_separation: least distance of the two readings' hip centres, in torso lengths of the detection.
        split_appearance: least appearance distance of the two readings (halves of one person look alike).
    """

    def __init__(self, model_path: str | Path | None = None, num_poses: int = 6,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 masks: bool = True, duplicate_iou: float = 0.7, passes: int = 3, propagate: bool = True,
                 crop_scale: float | tuple[float, ...] = (2.0, 1.5), key_frames: int = 3, tile_scales: tuple[float, ...] = (1.0, 0.5),
                 max_proportion_deviation: float | None = 0.2, max_side: int | None = 640, follow: bool = True,
                 follow_presence: float = 0.5, follow_appearance: float = 0.45, follow_overlap: float = 0.5,
                 follow_patience: int = 4, follow_deviation: float = 0.12,
                 follow_area: float = 0.25,
                 follow_small: tuple[float, float, float, float] | None = (0.5, 0.25, 0.32, 0.15),
                 sweep_patience: int | None = None, workers: int | None = None,
                 split_pairs: bool = True, split_area: float = 0.2, split_separation: float = 0.45,
                 split_appearance: float = 0.6) -> None:
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise AmgError(f"{path}: pose model bundle not found; build it with tools/build_pose_model.py")
        if num_poses < 1:
            raise AmgError(f"num_poses: expected >= 1, got {num_poses}")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_poses=int(num_poses),
            min_pose_detection_confidence=float(min_detection_confidence),
            min_pose_presence_confidence=float(min_presence_confidence),
            # the masks also say what to paint out before a further detection pass
            output_segmentation_masks=bool(masks) or (passes > 1 and num_poses > 1),
        )
        import os
        import threading

        workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
        try:
            self._landmarkers = [vision.PoseLandmarker.create_from_options(options) for _ in range(workers)]
        except (RuntimeError, ValueError) as e:
            raise AmgError(f"{path}: not a usable PoseLandmarker bundle ({str(e).splitlines()[0]})") from None
        self._landmarker = self._landmarkers[0]
        self._local = threading.local()
        self._pool = None
        self.masks = masks
        self.duplicate_iou = duplicate_iou
        self.num_poses = int(num_poses)
        self.passes = max(1, int(passes)) if num_poses > 1 else 1
        self.propagate = bool(propagate)
        self.crop_scale = tuple(float(v) for v in np.atleast_1d(crop_scale))
        self.key_frames = max(0, int(key_frames))
        self.tile_scales = tuple(float(v) for v in tile_scales)
        self.max_proportion_deviation = None if max_proportion_deviation is None else float(max_proportion_deviation)
        self.max_side = None if max_side is None else max(32, int(max_side))
        self.follow = bool(follow)
        self.follow_presence = float(follow_presence)
        self.follow_appearance = float(follow_appearance)
        self.follow_overlap = float(follow_overlap)
        self.follow_patience = max(1, int(follow_patience))
        self.follow_deviation = float(follow_deviation)
        self.follow_area = float(follow_area)
        if follow_small is not None:
            follow_small = tuple(float(v) for v in follow_small)
            if len(follow_small) != 4 or not 0 < follow_small[1] < follow_small[0]:
                raise AmgError(f"follow_small: expected (tall, short, area, deviation) with 0 < short < tall, "
                               f"got {follow_small}")
        self.follow_small = follow_small
        self.sweep_patience = (0 if self.follow else 3) if sweep_patience is None else max(0, int(sweep_patience))
        self.split_pairs = bool(split_pairs)
        self.split_area = float(split_area)
        self.split_separation = float(split_separation)
        self.split_appearance = float(split_appearance)
        self._landmark_model = LandmarkModel(path) if self.follow or self.split_pairs else None
        self.reads = {"split": 0, "follow": 0}  # landmark-model reads spent by the last video()

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Detect people in one ``(H,W,3)`` uint8 RGB frame; best first."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
            raise AmgError(f"frame: expected an (H,W,3) uint8 RGB image, got {frame.dtype} {frame.shape}")
        H, W = frame.shape[:2]
        # every pass (and the painting out between passes) works on the image as the model is shown it
        shown = self._shown(frame)
        people: list[Detection] = []
        phantoms: list[Detection] = []  # rejected readings: painted out too, or the detector finds them again
        work = shown
        for _ in range(self.passes):
            rejected: list[Detection] = []
            found = [d for d in self._detect_shown(work, rejected) if not _overlaps(d, people, self.duplicate_iou)]
            rejected = [d for d in rejected if not _overlaps(d, phantoms, self.duplicate_iou)]
            if not found and not rejected:
                break
            people = _suppress_duplicates(people + found, self.duplicate_iou)[: self.num_poses]
            phantoms += rejected
            if len(people) >= self.num_poses:
                break
            work = _paint_out(shown, people + phantoms)
        people = [_rescaled(d, shown.shape[1], shown.shape[0], W, H) for d in people]
        if not self.masks:
            for d in people:
                d.mask = None
        return people

    def _shown(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` scaled down (area filter) so its long side is at most ``max_side``."""
        import cv2

        H, W = frame.shape[:2]
        if self.max_side is None or max(H, W) <= self.max_side:
            return frame
        s = self.max_side / float(max(H, W))
        return cv2.resize(frame, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)

    def _detect(self, frame: np.ndarray, rejected: list[Detection] | None = None) -> list[Detection]:
        """One detector pass: plausible people, best first, in ``frame``'s pixels; implausible readings go to
        ``rejected``."""
        H, W = frame.shape[:2]
        shown = self._shown(frame)
        h, w = shown.shape[:2]
        out = self._detect_shown(shown, rejected)
        if (h, w) != (H, W):
            out = [_rescaled(d, w, h, W, H) for d in out]
            if rejected is not None:
                rejected[:] = [_rescaled(d, w, h, W, H) for d in rejected]
        return out

    def _detect_shown(self, shown: np.ndarray, rejected: list[Detection] | None = None) -> list[Detection]:
        """One detector pass on an image as given (already at most ``max_side``), in its pixels."""
        H, W = shown.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(shown))
        result = getattr(self._local, "landmarker", self._landmarker).detect(image)
        people = []
        masks = result.segmentation_masks or []
        for i, lms in enumerate(result.pose_landmarks):
            kp = np.array([[lm.x * W, lm.y * H, _unit(lm.visibility)] for lm in lms], dtype=np.float32)
            world_lms = result.pose_world_landmarks[i] if i < len(result.pose_world_landmarks) else []
            world = np.array([[lm.x, lm.y, lm.z] for lm in world_lms], dtype=np.float32).reshape(-1, 3)
            if kp.shape != (NUM_LANDMARKS, 3) or world.shape != (NUM_LANDMARKS, 3):
                continue
            mask = None
            if i < len(masks):
                mask = np.asarray(masks[i].numpy_view(), dtype=np.float32).reshape(H, W).copy()
            box = np.clip(landmark_box(kp), 0, [W, H, W, H]).astype(np.float32)
            d = Detection(kp, world, box, float(kp[:, 2].mean()), mask)
            # fused from two people or a limb on someone else, or no human proportions (a person read into
            # the background): no body to fit
            if not plausible_body(kp) or (self.max_proportion_deviation is not None and
                                          proportion_deviation(world) > self.max_proportion_deviation):
                if rejected is not None:
                    rejected.append(d)
                continue
            people.append(d)
        return _suppress_duplicates(people, self.duplicate_iou)

    def _detect_crop(self, frame: np.ndarray, x0: int, y0: int, side: int) -> list[Detection]:
        """Detections in the square ``side`` at ``(x0, y0)`` (edge pixels repeated beyond the frame), in frame
        pixels; masks pasted into full-frame masks."""
        import cv2

        H, W = frame.shape[:2]
        # the part inside the frame, then edge pixels repeated to the square
        a, b = max(x0, 0), max(y0, 0)
        c, e = min(x0 + side, W), min(y0 + side, H)
        if c <= a or e <= b:
            return []
        crop = cv2.copyMakeBorder(np.ascontiguousarray(frame[b:e, a:c]), b - y0, y0 + side - e, a - x0,
                                  x0 + side - c, cv2.BORDER_REPLICATE)
        out = []
        for d in self._detect(crop):
            d.keypoints[:, 0] += x0
            d.keypoints[:, 1] += y0
            d.box = np.clip(d.box + np.array([x0, y0, x0, y0], np.float32), 0, [W, H, W, H]).astype(np.float32)
            if d.mask is not None:
                full = np.zeros((H, W), np.float32)
                full[b:e, a:c] = d.mask[b - y0:e - y0, a - x0:c - x0]
                d.mask = full if self.masks or self.passes > 1 else None
            out.append(d)
        return out

    def detect_in_box(self, frame: np.ndarray, box: np.ndarray, min_iou: float = 0.3,
                      scales: tuple[float, ...] | None = None) -> Detection | None:
        """Look for the person expected at ``box (4,)`` in a square crop around it (``crop_scale`` x its size,
        each of its scales in turn until one finds them).

        The crop is cut at the frame's resolution; the detection overlapping ``box`` best (IoU >= ``min_iou``)
        is returned in frame pixels, or None. ``scales`` replaces ``crop_scale`` for this call.
        """
        b = np.asarray(box, np.float64)
        for scale in self.crop_scale if scales is None else scales:
            side = int(max(64, round(scale * max(b[2] - b[0], b[3] - b[1]))))
            x0 = int(round(0.5 * (b[0] + b[2]) - side / 2))
            y0 = int(round(0.5 * (b[1] + b[3]) - side / 2))
            best, best_iou = None, min_iou
            for d in self._detect_crop(frame, x0, y0, side):
                iou = float(box_iou(d.box, b)[0, 0])
                if iou >= best_iou:
                    best, best_iou = d, iou
            if best is not None:
                return best
        return None

    def detect_tiled(self, frame: np.ndarray, scales: tuple[float, ...] = (1.0,)) -> list[Detection]:
        """People proposals from overlapping square tiles (side ``scale * min(H, W)``, half-side stride).

        The detector sees each tile at its own input resolution, so people too small or too cluttered to be
        found in the whole frame are found in a tile.
        """
        return self._tiled_many([frame], scales)[0]

    def _tiled_many(self, frames: list[np.ndarray], scales: tuple[float, ...]) -> list[list[Detection]]:
        """:meth:`detect_tiled` of each of ``frames``, every tile of every frame one job for :meth:`_map`."""
        jobs = []
        for i, frame in enumerate(frames):
            H, W = frame.shape[:2]
            for scale in scales:
                side = max(32, int(round(scale * min(H, W))))
                step = max(1, side // 2)
                for y0 in sorted({*range(0, max(H - side, 0) + 1, step), max(H - side, 0)}):
                    for x0 in sorted({*range(0, max(W - side, 0) + 1, step), max(W - side, 0)}):
                        jobs.append((i, x0, y0, side))
        results = self._map(lambda j: self._detect_crop(frames[j[0]], *j[1:]), jobs)
        found: list[list[Detection]] = [[] for _ in frames]
        for (i, *_), dets in zip(jobs, results):
            for d in dets:
                if not _overlaps(d, found[i], self.duplicate_iou):
                    found[i].append(d)
        return [_suppress_duplicates(f, self.duplicate_iou) for f in found]

    def video(self, frames: np.ndarray, progress: bool = False) -> list[list[Detection]]:
        """Detect people in each frame of ``(F,H,W,3)`` uint8 frames (with ``propagate``, also around the
        people found in neighbouring frames; with ``follow``, people then read by the landmark model where
        the detector missed them, marked ``followed``)."""
        frames = video_array(frames, name="frames", uint8=False)
        it = frames
        if progress:
            from tqdm import tqdm

            it = tqdm(frames, desc="pose", unit="frame")
        dets = self._map(self, list(it))
        F = len(frames)
        keys = sorted({int(round(v)) for v in np.linspace(0, F - 1, self.key_frames)}) if self.key_frames else []
        for f, tiled in zip(keys, self._tiled_many([frames[f] for f in keys], self.tile_scales)):
            for d in tiled:
                if len(dets[f]) < self.num_poses and not _overlaps(d, dets[f], self.duplicate_iou):
                    dets[f].append(d)
        if self.propagate and len(frames) > 1:
            for order in (range(len(frames)), range(len(frames) - 1, -1, -1)):
                self._sweep(frames, dets, list(order), self.sweep_patience)
        for frame, found in zip(frames, dets):
            for d in found:
                d.appearance = appearance_descriptor(frame, d.keypoints, d.mask)
        self.reads = {"split": 0, "follow": 0}
        if self.split_pairs:
            # on the key frames only (every frame of a short clip): following carries a pair read apart to the
            # other frames, and a test costs two to six landmark-model reads
            for f in keys if self.key_frames else range(F):
                dets[f] = self._split_pairs(frames[f], dets[f])
        if self.follow and len(frames) > 1:
            for order in (range(len(frames)), range(len(frames) - 1, -1, -1)):
                self._follow(frames, dets, list(order))
        return dets

    def _follow(self, frames: np.ndarray, dets: list[list[Detection]], order: list[int]) -> None:
        """Carry every person along ``order`` and, where nobody found in a frame is them, read them there with
        the landmark model on their region from the last frame they were seen in, moved by their mean step
        per frame; the people found there are hidden from the model (it reads the most salient person in its
        square). A reading :meth:`_accept` refuses while someone found covers where the person was expected
        leaves them carried unseen for up to ``follow_patience`` frames: people crossing come out the other
        side."""
        H, W = frames.shape[1:3]
        active: list[_Followed] = []
        for f in order:
            # a detection straddling two people followed side by side is set aside: they are read apart
            # (only people once read apart: walkers crossing pass in front of each other, not side by side)
            pairs = [a for a in active if a.apart is not None]
            fused = [d for d in dets[f] if d.apart is None and not d.followed and
                     _straddles(d, [a.predicted() for a in pairs])] if len(pairs) > 1 else []
            aside = fused + [d for d in dets[f] if d.apart is None and not d.followed and not any(d is e for e in fused)
                             and _covers_two(d, pairs)] if len(pairs) > 1 else []
            found = dets[f] = [d for d in dets[f] if not any(d is e for e in aside)]
            boxes = np.stack([e.box for e in found]) if found else np.zeros((0, 4))
            nxt: list[_Followed] = []
            missing: list[_Followed] = []
            claimed: set[int] = set()
            for a in active:
                ahead = a.gap + 1
                pred = a.last.box + ahead * np.concatenate([a.step, a.step])
                iou = box_iou(pred, boxes)[0] if len(found) else np.zeros(0)
                # found again: where they were expected and looking like them (a person crossing in front
                # covers the expected box too)
                same = [j for j in np.argsort(-iou) if iou[j] > 0.3 and j not in claimed and
                        (a.looks is None or found[j].appearance is None or
                         appearance_distance(a.looks, found[j].appearance) <= self.follow_appearance)]
                if same:
                    d = found[int(same[0])]
                    claimed.add(int(same[0]))
                    nxt.append(a.seen(d, roi_from_landmarks(d.keypoints), ahead))
                    continue
                centre = 0.5 * (pred[:2] + pred[2:])
                if 0 <= centre[0] < W and 0 <= centre[1] < H and len(found) + len(missing) < self.num_poses:
                    missing.append(a)
            cover = _people_cover(found, H, W) if missing and found else None
            readings, verdicts, lines = self._read_missing(frames[f], missing, found, cover)
            for a, r, verdict, line in zip(missing, readings, verdicts, lines):
                d = self._reading_detection(r, W, H)
                d.apart = line
                pred = a.last.box + (a.gap + 1) * np.concatenate([a.step, a.step])
                if verdict if verdict is not None else self._accept(frames[f], d, r.presence, pred, a.looks, found):
                    d.followed = True
                    # tracking weighs looks too: a followed person without them would match anyone as well
                    d.appearance = appearance_descriptor(frames[f], d.keypoints, d.mask)
                    if not self.masks:
                        d.mask = None
                    found.append(d)
                    claimed.add(len(found) - 1)
                    nxt.append(a.seen(d, r.next_roi, a.gap + 1))
                elif a.gap + 1 < self.follow_patience and (a.apart is not None or any(
                        _box_share(pred, e.box) > 0.2 for e in found + aside)):
                    # someone found here covers where they were expected: hidden behind them, carried on (one of
                    # a pair read apart is carried on too: pressed against the other, not gone)
                    a.gap += 1
                    nxt.append(a)
            for e in aside:
                # a reading over two people is dropped when its landmarks straddle them or either was read apart
                # inside it (the rest of it is the other, partly on them); else tracking judges it
                if not any(e is x for x in fused) and not any(d.followed and d.apart is not None and
                                                              _box_share(d.box, e.box) > 0.5 for d in found):
                    found.append(e)
            for j, d in enumerate(found):
                # only a reading that a follow would accept is followed: a detection straddling two people
                # or half a body gives no region to hand over
                if j not in claimed and proportion_deviation(d.world) <= self._follow_limits(d, H)[1]:
                    roi = roi_from_landmarks(d.keypoints)
                    if roi is not None:
                        nxt.append(_Followed(d, roi, np.zeros(2), d.appearance, apart=_apart_offset(d)))
            active = [a for a in nxt if a.roi is not None]

    def _read_missing(self, frame: np.ndarray, missing: list["_Followed"], found: list[Detection],
                      cover: np.ndarray | None) -> tuple[list, list, list]:
        """The landmark model's readings of the followed people ``missing`` in ``frame``, the people ``found``
        there (pixels ``cover``) hidden, for each reading whether it was already judged (True/False, by
        :meth:`_accept`) or not (None), and the line it was read apart along (``Detection.apart``) or None. Two of them once read apart (``Detection.apart``) and expected side
        by side (boxes meeting) are read apart again (:func:`reconstruction.proposals.read_apart`: a line
        between them, moved until both readings are accepted); each other person with the far side of a line
        hidden from every such neighbour missed too (:meth:`_apart`). People never read apart are read as
        before: walkers crossing pass in front of each other, and no line parts them."""
        H, W = frame.shape[:2]
        pairs, paired = [], set()
        for i, a in enumerate(missing):
            for j in range(i + 1, len(missing)):
                if i not in paired and j not in paired and a.apart is not None and missing[j].apart is not None \
                        and _box_share(a.expected()[0], missing[j].expected()[0]) > 0:
                    pairs.append((i, j))
                    paired |= {i, j}
        readings: list = [None] * len(missing)
        verdicts: list = [None] * len(missing)
        lines: list = [None] * len(missing)
        singles = [i for i in range(len(missing)) if i not in paired]
        rois = [missing[i].roi.shifted(*((missing[i].gap + 1) * missing[i].step)) for i in singles]
        hides = [self._apart(missing[i], [missing[j] for j in range(len(missing)) if j != i], cover, H, W)
                 for i in singles]
        for i, r in zip(singles, self._landmark_model.read(frame, rois, masks=True, hide=hides)):
            readings[i] = r
        self.reads["follow"] += len(rois)
        for i, j in pairs:
            point, u = _line_between(missing[i], missing[j])
            gap = float((missing[j].expected()[1] - missing[i].expected()[1]) @ u)
            people = {-1: missing[i], 1: missing[j]}

            def good(r, side, people=people):
                a, other = people[side], people[-side]
                d = self._reading_detection(r, W, H)
                return self._accept(frame, d, r.presence, a.expected()[0], a.looks, found, other.looks)

            got = read_apart(frame, self._landmark_model, point, u, max(2.0, 0.15 * abs(gap)),
                             lambda offset, side, people=people: people[side].roi.shifted(
                                 *((people[side].gap + 1) * people[side].step)),
                             good, hide=cover)
            self.reads["follow"] += got.reads
            readings[i], readings[j] = got.first, got.second
            verdicts[i], verdicts[j] = got.ok
            lines[i], lines[j] = (np.stack([got.line, s * u]).astype(np.float32) for s in (1.0, -1.0))
        return readings, verdicts, lines

    @staticmethod
    def _apart(a: "_Followed", others: list["_Followed"], cover: np.ndarray | None, H: int,
               W: int) -> np.ndarray | None:
        """What to hide from the landmark model when reading the followed person ``a``: the people found
        (``cover``) and, for each of ``others`` (people missed here too) whose expected box meets ``a``'s,
        the far side of a line across the bodies between them (people pressed side by side: the model would
        read whichever of them is more salient, or both as one): halfway between their expected hip centres,
        or where they were read apart (``Detection.apart``) moved with them."""
        box, hips = a.expected()
        out = None if cover is None else cover.copy()
        for b in others:
            other, there = b.expected()
            if a.apart is None or b.apart is None or _box_share(box, other) <= 0 or np.hypot(*(there - hips)) < 1.0:
                continue
            side = half_plane(H, W, *_line_between(a, b))
            out = side if out is None else out | side
        return out

    def _split_pairs(self, frame: np.ndarray, found: list[Detection]) -> list[Detection]:
        """``found`` with each detection that may straddle two people side by side replaced by the two
        (``split_pairs``); a side that re-finds someone else found here is left out."""
        H, W = frame.shape[:2]
        out = list(found)
        for d in found:
            if d.mask is None or len(out) >= self.num_poses:
                continue
            height = float(np.ptp(d.keypoints[:, 1]))
            wide = float((d.mask > 0.5).sum()) > self.split_area * height ** 2
            if not wide and proportion_deviation(d.world) <= self.follow_deviation:
                continue
            split = split_reading(frame, d.keypoints, d.mask, self._landmark_model,
                                  lambda r, side: self._whole(r, W, H, height), self.split_separation)
            if split is None:
                continue
            pair = [self._reading_detection(r, W, H) for r in (split.first, split.second)]
            for p, sign in zip(pair, (1.0, -1.0)):
                p.appearance = appearance_descriptor(frame, p.keypoints, p.mask)
                p.apart = np.stack([split.line, sign * split.axis]).astype(np.float32)
            if appearance_distance(pair[0].appearance, pair[1].appearance) < self.split_appearance:
                continue
            rest = [e for e in out if e is not d]
            new = [p for p in pair if not _overlaps(p, rest, self.duplicate_iou)]
            if not new:
                continue
            for p in new:
                if not self.masks:
                    p.mask = None
            out = rest + new
        return out

    def _whole(self, r, W: int, H: int, height: float) -> bool:
        """Whether the reading ``r`` of one side of a split is one whole person: as a followed reading is
        checked (presence, :func:`plausible_body`, ``follow_deviation``, ``follow_area``), at least 60% of
        the split detection's ``height``, centred inside the frame."""
        self.reads["split"] += 1  # each read of a split is judged once
        if r.presence < self.follow_presence or not plausible_body(r.keypoints):
            return False
        if proportion_deviation(r.world) > self.follow_deviation:
            return False
        h = float(np.ptp(r.keypoints[:, 1]))
        if h < 0.6 * height or (r.mask is not None and float((r.mask > 0.5).sum()) > self.follow_area * h ** 2):
            return False
        d = self._reading_detection(r, W, H)
        cx, cy = 0.5 * (d.box[:2] + d.box[2:])
        return bool(0 <= cx < W and 0 <= cy < H)

    def _reading_detection(self, r, W: int, H: int) -> Detection:
        """A :class:`Detection` from a ``landmark_tracking.RoiReading`` in a ``W`` x ``H`` frame."""
        box = np.clip(landmark_box(r.keypoints), 0, [W, H, W, H]).astype(np.float32)
        return Detection(r.keypoints, r.world, box, float(r.keypoints[:, 2].mean()), r.mask)

    def _follow_limits(self, d: Detection, frame_height: int) -> tuple[float, float]:
        """The most mask area (in units of the landmarks' height squared) and :func:`proportion_deviation` of a
        followed reading ``d`` in a frame ``frame_height`` pixels high: ``follow_area`` and
        ``follow_deviation``, raised for small people (``follow_small``)."""
        if self.follow_small is None:
            return self.follow_area, self.follow_deviation
        tall, short, area, deviation = self.follow_small
        share = float(np.ptp(d.keypoints[:, 1])) / max(float(frame_height), 1.0)
        t = min(max((tall - share) / (tall - short), 0.0), 1.0)
        return (self.follow_area + t * (area - self.follow_area),
                self.follow_deviation + t * (deviation - self.follow_deviation))

    def _accept(self, frame: np.ndarray, d: Detection, presence: float, pred: np.ndarray,
                looks: np.ndarray | None, found: list[Detection], rival: np.ndarray | None = None) -> bool:
        """Whether a followed reading ``d`` is still the person expected at box ``pred``: the model sees a person
        (``follow_presence``), a human body (:func:`plausible_body`, ``follow_deviation``), where the
        person was expected (box IoU with ``pred`` >= 0.3), inside the frame, with the mask of one person
        (``follow_area``; both limits looser for small people, ``follow_small``), not lying on anyone in ``found`` (``follow_overlap``) and looking like them
        (``follow_appearance``, against ``looks``; with ``rival``, the looks of the neighbour read apart from
        them, it is enough to look more like them than like the neighbour: the half of a pair read alone
        often shows some of the other's colours)."""
        H, W = frame.shape[:2]
        if presence < self.follow_presence or not plausible_body(d.keypoints):
            return False
        area, deviation = self._follow_limits(d, H)
        if proportion_deviation(d.world) > deviation:
            return False
        centre = 0.5 * (d.box[:2] + d.box[2:])
        if not (0 <= centre[0] < W and 0 <= centre[1] < H):
            return False
        if float(box_iou(d.box, pred)[0, 0]) < 0.3:
            return False
        height = float(np.ptp(d.keypoints[:, 1]))
        if d.mask is not None and float((d.mask > 0.5).sum()) > area * height ** 2:
            return False
        for e in found:
            if _share_inside(d, e) > self.follow_overlap:
                return False
        if looks is not None:
            now = appearance_descriptor(frame, d.keypoints, d.mask)
            if now is not None and appearance_distance(now, looks) > self.follow_appearance and (
                    rival is None or appearance_distance(now, looks) >= appearance_distance(now, rival)):
                return False
        return True

    def _sweep(self, frames: np.ndarray, dets: list[list[Detection]], order: list[int], patience: int = 3) -> None:
        """Carry every person's last box along ``order`` and look for them in a crop where they were missed;
        a box is given up after ``patience`` frames without a find (the person left or is hidden). Every
        framing of ``crop_scale`` is tried in the first frame a person is missed, only the first after that
        (a person who two framings did not find is rarely found by them a frame later: half the time of
        the sweep went there)."""
        active: list[list] = []  # [box, frames since found]
        for f in order:
            found = dets[f]
            # the crops are looked at side by side, then taken in order as one after the other would be
            wanted = [a for a in active if not found or box_iou(a[0], np.stack([e.box for e in found])).max() <= 0.3]
            if len(found) >= self.num_poses:
                wanted = []
            news = self._map(lambda a: self.detect_in_box(frames[f], a[0], scales=None if a[1] == 0 else
                                                          self.crop_scale[:1]), wanted)
            for a, new in zip(wanted, news):
                if found and box_iou(a[0], np.stack([e.box for e in found])).max() > 0.3:
                    continue
                if len(found) >= self.num_poses:
                    break
                if new is not None and not _overlaps(new, found, self.duplicate_iou):
                    found.append(new)
            nxt = []
            for d in found:
                nxt.append([d.box, 0])
            for a in active:
                if not found or box_iou(a[0], np.stack([e.box for e in found])).max() <= 0.3:
                    if a[1] + 1 <= patience:
                        nxt.append([a[0], a[1] + 1])
            active = nxt

    def _map(self, fn, items: list) -> list:
        """``[fn(item) for item in items]``, spread over the ``workers`` detector instances (each thread uses
        its own); in order."""
        items = list(items)
        if len(self._landmarkers) < 2 or len(items) < 2:
            return [fn(x) for x in items]
        if self._pool is None:
            import itertools
            from concurrent.futures import ThreadPoolExecutor

            free = itertools.count()

            def bind():
                self._local.landmarker = self._landmarkers[next(free) % len(self._landmarkers)]

            self._pool = ThreadPoolExecutor(len(self._landmarkers), initializer=bind)
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            self._pool = None
        for lm in getattr(self, "_landmarkers", []):
            lm.close()
        self._landmarkers = []
        self._landmarker = None

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Followed:
    """A person carried along a sweep of :meth:`PoseEstimator._follow`: their last reading, the region for the
    landmark model, their step per frame (pixels), their looks as last detected, and frames unseen since."""

    last: Detection
    roi: Roi
    step: np.ndarray
    looks: np.ndarray | None
    gap: int = 0
    path: list = field(default_factory=list)  # (frames since the previous point, hip centre (2,))
    apart: tuple | None = None  # (offset (2,) from the hip centre to the line beside them, unit direction across)

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the person is expected in the next frame looked at: box ``(4,)`` and hip centre ``(2,)``,
        pixels."""
        move = (self.gap + 1) * self.step
        return self.last.box + np.concatenate([move, move]), _hip_centre(self.last) + move

    def predicted(self) -> np.ndarray:
        """``(33,3)`` the last landmarks moved to where the person is expected next."""
        kp = self.last.keypoints.copy()
        kp[:, :2] += (self.gap + 1) * self.step
        return kp

    def seen(self, d: Detection, roi, frames: int) -> "_Followed":
        """Seen again as ``d`` ``frames`` frames after the last reading; the step is the mean over the last
        three sightings (a walker's hips surge and stall within a stride)."""
        path = (self.path or [(0, _hip_centre(self.last))]) + [(frames, _hip_centre(d))]
        path = path[-4:]
        span = sum(n for n, _ in path[1:])
        step = (path[-1][1] - path[0][1]) / max(span, 1)
        looks = self.looks if d.followed or d.appearance is None else d.appearance
        return _Followed(d, roi, step, looks, 0, path, _apart_offset(d) or self.apart)


def _line_between(a: "_Followed", b: "_Followed") -> tuple[np.ndarray, np.ndarray]:
    """A line between two followed people side by side where they are expected next: a point ``(2,)`` and the
    unit direction ``(2,)`` across it from ``a`` towards ``b``, pixels. The direction is their regions' mean
    horizontal (the line between their hips tilts with their heights and would cut one's head); the point
    is where they were last read apart (``Detection.apart``) moved with them, or halfway between their hips
    (hips are not midway when one leans towards the other)."""
    hips, there = a.expected()[1], b.expected()[1]
    u = np.array([np.cos(a.roi.rotation) + np.cos(b.roi.rotation), np.sin(a.roi.rotation) + np.sin(b.roi.rotation)])
    u = u / max(float(np.hypot(*u)), 1e-9) * (1.0 if (there - hips) @ u >= 0 else -1.0)
    point = 0.5 * (hips + there)
    if a.apart is not None and b.apart is not None and a.apart[1] @ u > 0 and b.apart[1] @ u < 0:
        point = 0.5 * (hips + a.apart[0] + there + b.apart[0])
    return point, u


def _apart_offset(d: Detection) -> tuple | None:
    """``d.apart`` relative to ``d``'s hip centre (offset ``(2,)`` to the line, unit direction across it)."""
    if d.apart is None:
        return None
    return np.asarray(d.apart[0], np.float64) - _hip_centre(d), np.asarray(d.apart[1], np.float64)


def _covers_two(d: Detection, people: list["_Followed"], share: float = 0.5) -> bool:
    """Whether two of the followed ``people`` are each expected with at least ``share`` of their box inside
    ``d``'s box: one reading over two people pressed side by side (its landmarks may lie mostly on one of
    them, its limbs on the other)."""
    box = np.asarray(d.box, np.float64)
    return sum(_box_share(a.expected()[0], box) >= share for a in people) >= 2


def _straddles(d: Detection, predictions: list[np.ndarray], share: float = 0.25, margin: float = 0.85,
               min_confidence: float = 0.5) -> bool:
    """Whether ``d``'s confident landmarks lie, for at least ``share`` of them each, clearly nearer (by the
    factor ``margin``) to two of the ``predictions`` (``(33,3)`` landmarks each) than to any other: a reading
    fused from two people (as tracking's ``merge_share`` test)."""
    if len(predictions) < 2:
        return False
    kp = np.asarray(d.keypoints, np.float64)
    ok = kp[:, 2] >= min_confidence
    if ok.sum() < 6:
        return False
    dist = np.stack([np.linalg.norm(kp[ok, :2] - np.asarray(p, np.float64)[ok, :2], axis=-1) for p in predictions])
    order = np.sort(dist, axis=0)
    nearest = dist.argmin(0)
    clear = order[0] < margin * order[1]
    counts = np.bincount(nearest[clear], minlength=len(predictions)) / ok.sum()
    return int((counts >= share).sum()) >= 2


def _people_cover(people: list[Detection], H: int, W: int) -> np.ndarray:
    """``(H,W)`` bool: the pixels of ``people`` (masks above 0.3, or boxes)."""
    cover = np.zeros((H, W), bool)
    for d in people:
        if d.mask is not None:
            cover |= d.mask > 0.3
        else:
            x0, y0, x1, y1 = (int(round(v)) for v in d.box)
            cover[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return cover


def _hip_centre(d: Detection) -> np.ndarray:
    """``(2,)`` pixels between the hips (steadier than a landmark box's centre, which swings with the limbs)."""
    return 0.5 * (d.keypoints[LANDMARK_INDEX["left_hip"], :2] + d.keypoints[LANDMARK_INDEX["right_hip"], :2])


def _unit(v) -> float:
    v = 0.0 if v is None else float(v)
    return min(max(v, 0.0), 1.0)


def _overlaps(d: Detection, people: list[Detection], iou: float) -> bool:
    """True when ``d`` re-finds one of ``people`` (a painted-out person's remains, or the same box)."""
    if not people:
        return False
    boxes = np.stack([k.box for k in people]).astype(np.float64)
    if box_iou(d.box, boxes).max() > iou:
        return True
    # a part of someone already found (a tile or crop that saw only their upper body) is not someone new
    b = np.asarray(d.box, np.float64)
    lt, rb = np.maximum(b[:2], boxes[:, :2]), np.minimum(b[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    if (inter / max(float(np.prod(np.clip(b[2:] - b[:2], 0, None))), 1e-9)).max() > 0.8:
        return True
    # a detection centred inside a found person's mask is that person again
    x, y = (int(v) for v in 0.5 * (d.box[:2] + d.box[2:]))
    return any(k.mask is not None and 0 <= y < k.mask.shape[0] and 0 <= x < k.mask.shape[1] and k.mask[y, x] > 0.5
               for k in people)


def _box_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a (4,)`` inside box ``b (4,)``."""
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    return float(np.clip(rb - lt, 0, None).prod()) / max(float(np.prod(np.clip(a[2:] - a[:2], 0, None))), 1e-9)


def _share_inside(d: Detection, e: Detection) -> float:
    """Share of ``d``'s mask (or box, without masks) that lies inside ``e``'s."""
    if d.mask is not None and e.mask is not None:
        x0, y0 = (int(max(v, 0)) for v in np.minimum(d.box[:2], e.box[:2]))
        x1, y1 = (int(np.ceil(v)) for v in np.maximum(d.box[2:], e.box[2:]))
        a, b = d.mask[y0:y1, x0:x1] > 0.5, e.mask[y0:y1, x0:x1] > 0.5
        return float((a & b).sum()) / max(float(a.sum()), 1.0)
    return _box_share(np.asarray(d.box, np.float64), np.asarray(e.box, np.float64))


def _rescaled(d: Detection, w: int, h: int, W: int, H: int) -> Detection:
    """``d`` found in a ``w`` x ``h`` image, in the pixels of the same image at ``W`` x ``H`` (mask resampled)."""
    import cv2

    if (w, h) == (W, H):
        return d
    sx, sy = W / float(w), H / float(h)
    kp = d.keypoints.copy()
    kp[:, 0] *= sx
    kp[:, 1] *= sy
    box = np.clip(d.box * np.array([sx, sy, sx, sy], np.float32), 0, [W, H, W, H]).astype(np.float32)
    mask = None if d.mask is None else cv2.resize(d.mask, (W, H), interpolation=cv2.INTER_LINEAR)
    return Detection(kp, d.world, box, d.score, mask, d.appearance, d.followed)


def _paint_out(frame: np.ndarray, people: list[Detection]) -> np.ndarray:
    """``frame`` with ``people`` covered by the median colour of the rest (masks dilated, or boxes)."""
    import cv2

    H, W = frame.shape[:2]
    cover = np.zeros((H, W), np.uint8)
    for d in people:
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        if d.mask is not None:
            r = max(2, int(0.04 * float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))))
            # the mask's pixels lie around its landmarks' box: dilate that window only, not the whole frame
            ys, xs = np.nonzero(d.mask > 0.3)
            if not len(ys):
                continue
            a, b = max(int(xs.min()) - r, 0), max(int(ys.min()) - r, 0)
            c, e = min(int(xs.max()) + r + 1, W), min(int(ys.max()) + r + 1, H)
            m = (d.mask[b:e, a:c] > 0.3).astype(np.uint8)
            cover[b:e, a:c] |= cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        else:
            cover[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    rest = frame[cover == 0]
    fill = np.median(rest, axis=0) if len(rest) else np.full(3, 127.0)
    out = frame.copy()
    out[cover > 0] = fill.astype(np.uint8)
    return out


def _suppress_duplicates(people: list[Detection], iou: float) -> list[Detection]:
    people = sorted(people, key=lambda d: -d.score)
    kept: list[Detection] = []
    for d in people:
        if kept and box_iou(d.box, np.stack([k.box for k in kept])).max() > iou:
            continue
        kept.append(d)
    return kept
