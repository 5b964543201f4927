"""2D/3D human pose per frame: MediaPipe PoseLandmarker (Tasks API) on the embedded BlazePose bundle.

Each detected person gives 33 BlazePose landmarks in pixels with a visibility in [0, 1], the same 33
landmarks in metres (MediaPipe's "world" landmarks: origin between the hips, x right, y down, z away from
the camera, the camera's axes up to a small rotation), and a soft segmentation mask of that person.

The bundle ``reconstruction/data/pose_landmarker.task`` is built by ``tools/build_pose_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.errors import AmgError
from render.image import video_array

__all__ = ["LANDMARK_NAMES", "LANDMARK_INDEX", "NUM_LANDMARKS", "DEFAULT_MODEL", "Detection", "PoseEstimator",
           "landmark_box", "box_iou", "torso_axes"]

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
    """

    keypoints: np.ndarray
    world: np.ndarray
    box: np.ndarray
    score: float
    mask: np.ndarray | None = None


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
        num_poses: most people reported per frame.
        min_detection_confidence, min_presence_confidence: MediaPipe's thresholds.
        masks: also return a segmentation mask per person.
        duplicate_iou: detections overlapping a better one by more than this box IoU are dropped (the
            detector sometimes fires twice on one person when ``num_poses > 1``).
        passes: detection passes per frame. BlazePose's detector often reports only the most salient of
            several people, so each further pass paints the people found so far out of the frame (their
            dilated masks, or boxes, filled with the background's median colour) and looks again, until a
            pass finds nobody new or ``num_poses`` are found.
    """

    def __init__(self, model_path: str | Path | None = None, num_poses: int = 4,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 masks: bool = True, duplicate_iou: float = 0.7, passes: int = 3) -> None:
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
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise AmgError(f"{path}: not a usable PoseLandmarker bundle ({str(e).splitlines()[0]})") from None
        self.masks = masks
        self.duplicate_iou = duplicate_iou
        self.num_poses = int(num_poses)
        self.passes = max(1, int(passes)) if num_poses > 1 else 1

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Detect people in one ``(H,W,3)`` uint8 RGB frame; best first."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
            raise AmgError(f"frame: expected an (H,W,3) uint8 RGB image, got {frame.dtype} {frame.shape}")
        people: list[Detection] = []
        work = frame
        for _ in range(self.passes):
            found = [d for d in self._detect(work) if not _overlaps(d, people, self.duplicate_iou)]
            if not found:
                break
            people = _suppress_duplicates(people + found, self.duplicate_iou)[: self.num_poses]
            if len(people) >= self.num_poses:
                break
            work = _paint_out(frame, people)
        if not self.masks:
            for d in people:
                d.mask = None
        return people

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        H, W = frame.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        result = self._landmarker.detect(image)
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
            people.append(Detection(kp, world, box, float(kp[:, 2].mean()), mask))
        return _suppress_duplicates(people, self.duplicate_iou)

    def video(self, frames: np.ndarray, progress: bool = False) -> list[list[Detection]]:
        """Detect people in each frame of ``(F,H,W,3)`` uint8 frames."""
        frames = video_array(frames, name="frames", uint8=False)
        it = frames
        if progress:
            from tqdm import tqdm

            it = tqdm(frames, desc="pose", unit="frame")
        return [self(f) for f in it]

    def close(self) -> None:
        if getattr(self, "_landmarker", None) is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unit(v) -> float:
    v = 0.0 if v is None else float(v)
    return min(max(v, 0.0), 1.0)


def _overlaps(d: Detection, people: list[Detection], iou: float) -> bool:
    """True when ``d`` re-finds one of ``people`` (a painted-out person's remains, or the same box)."""
    if not people:
        return False
    if box_iou(d.box, np.stack([k.box for k in people])).max() > iou:
        return True
    # a detection centred inside a found person's mask is that person again
    x, y = (int(v) for v in 0.5 * (d.box[:2] + d.box[2:]))
    return any(k.mask is not None and 0 <= y < k.mask.shape[0] and 0 <= x < k.mask.shape[1] and k.mask[y, x] > 0.5
               for k in people)


def _paint_out(frame: np.ndarray, people: list[Detection]) -> np.ndarray:
    """``frame`` with ``people`` covered by the median colour of the rest (masks dilated, or boxes)."""
    import cv2

    H, W = frame.shape[:2]
    cover = np.zeros((H, W), np.uint8)
    for d in people:
        if d.mask is not None:
            m = (d.mask > 0.3).astype(np.uint8)
            r = max(2, int(0.04 * float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))))
            cover |= cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        else:
            x0, y0, x1, y1 = (int(round(v)) for v in d.box)
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
