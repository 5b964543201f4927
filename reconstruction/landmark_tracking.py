"""BlazePose's landmark model on a region of interest: a person found in one frame is followed into the next
without the person detector.

MediaPipe's PoseLandmarker finds people with a face-based detector and only then runs the landmark model on
a rotated square around each. The detector misses people in profile, from behind, and pressed against
someone else, while the landmark model reads any view once it is shown the person. MediaPipe's own video
mode carries each person's region from one frame to the next, but always starts from a detection; here the
region is handed over explicitly (:func:`roi_from_landmarks` from a detection's landmarks, then
:func:`roi_from_alignment` from the model's own two alignment points, as MediaPipe does) and the landmark
model (the ``pose_landmarks_detector.tflite`` of the bundle) runs through OpenCV's DNN module.

A region is ``(cx, cy, size, rotation)``: centre in pixels, side of the square in pixels, and the rotation in
radians that turns the square's up direction onto the body's (0: upright). A square pixel at ``(u, v)`` of
the model's 256-pixel input lies at ``centre + R(rotation) @ ((u, v) / 256 - 0.5) * size`` in the frame.

The landmarks' vocabulary shared by the person detector (:mod:`reconstruction.pose`, which re-exports it) and
following (:mod:`reconstruction.follow`) lives here too, below both: the 33 landmark names, one person's
reading in a frame (:class:`Detection`), their box, body checks (:func:`plausible_body`,
:func:`proportion_deviation`), torso axes and appearance (:func:`appearance_descriptor`).
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.errors import AmgError

__all__ = ["Roi", "RoiReading", "LandmarkModel", "roi_from_landmarks", "roi_from_alignment", "roi_matrix",
           "HEAVY_MODEL", "SIDE_PAIRS", "MIRROR_ORDER", "LANDMARK_NAMES", "LANDMARK_INDEX", "NUM_LANDMARKS", "DEFAULT_MODEL", "Detection", "landmark_box",
           "box_iou", "torso_axes", "appearance_descriptor", "appearance_distance", "plausible_body",
           "proportion_deviation", "BODY_PROPORTIONS"]

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "pose_landmarker.task"
#: the optional bundle with BlazePose's heavy landmark model (``tools/build_pose_model.py --variant heavy``)
HEAVY_MODEL = DEFAULT_MODEL.with_name("pose_landmarker_heavy.task")

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
#: BlazePose landmark pairs (left, right): eyes, ears, mouth, shoulders, arms, hands, hips, legs, feet.
SIDE_PAIRS = ((1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20),
              (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32))
#: landmark order with left and right exchanged
MIRROR_ORDER = np.arange(NUM_LANDMARKS)
for _l, _r in SIDE_PAIRS:
    MIRROR_ORDER[_l], MIRROR_ORDER[_r] = _r, _l


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
            the region handed over from a neighbouring frame (:meth:`reconstruction.pose.PoseEstimator.video`,
            ``follow``).
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


_INPUT = 256
#: MediaPipe's region around the alignment points: 1.25 x the circle they span (pose_landmarks_to_roi)
_ROI_SCALE = 1.25


@dataclass
class Roi:
    """A rotated square in frame pixels: centre ``(cx, cy)``, side ``size``, ``rotation`` radians (0 upright)."""

    cx: float
    cy: float
    size: float
    rotation: float = 0.0

    def shifted(self, dx: float, dy: float) -> "Roi":
        return Roi(self.cx + float(dx), self.cy + float(dy), self.size, self.rotation)


@dataclass
class RoiReading:
    """The landmark model's reading of one region.

    Attributes:
        keypoints: ``(33,3)`` float32 frame pixels and visibility in [0, 1].
        world: ``(33,3)`` float32 metres, hip-centred, camera-aligned axes (the region's rotation undone).
        presence: the model's probability that a person fills the region.
        mask: ``(H,W)`` float32 person probability in frame pixels, or None.
        next_roi: the region for the next frame from the model's alignment points (:func:`roi_from_alignment`).
    """

    keypoints: np.ndarray
    world: np.ndarray
    presence: float
    mask: np.ndarray | None
    next_roi: Roi


def roi_matrix(roi: Roi) -> np.ndarray:
    """``(2,3)`` affine map from the model's 256-pixel input to frame pixels (see the module docstring)."""
    c, s = np.cos(roi.rotation), np.sin(roi.rotation)
    k = roi.size / _INPUT
    A = np.array([[c, -s], [s, c]]) * k
    t = np.array([roi.cx, roi.cy]) - A @ np.array([_INPUT / 2, _INPUT / 2])
    return np.concatenate([A, t[:, None]], axis=1)


def _alignment_roi(centre: np.ndarray, end: np.ndarray) -> Roi:
    """MediaPipe's AlignmentPointsRectsCalculator then RectTransformationCalculator (x1.25, square): a square
    of side 2.5 x |end - centre| at ``centre``, turned so that ``end`` is straight above ``centre``."""
    d = np.asarray(end, np.float64) - np.asarray(centre, np.float64)
    radius = float(np.hypot(*d))
    rotation = np.pi / 2 - np.arctan2(-d[1], d[0])
    rotation = float((rotation + np.pi) % (2 * np.pi) - np.pi)
    return Roi(float(centre[0]), float(centre[1]), 2 * radius * _ROI_SCALE, rotation)


def roi_from_alignment(points: np.ndarray) -> Roi:
    """The next frame's region from the model's alignment points ``(2,2)`` pixels: the body's centre and a
    point whose distance is the radius of the circle around the body, in the body's up direction."""
    return _alignment_roi(points[0], points[1])


def roi_from_landmarks(keypoints: np.ndarray, min_visibility: float = 0.3) -> Roi | None:
    """A region around a person from their ``(33,3)`` landmarks (pixels, visibility), for a person found by
    the detector (whose alignment points the Tasks API does not return).

    The centre is the hip centre, up runs from the hips to the shoulders, and the radius is the farthest seen
    landmark's distance from the hips plus a head allowance of a quarter torso; None without seen hips and
    shoulders.
    """
    kp = np.asarray(keypoints, np.float64)
    I = LANDMARK_INDEX
    hips = kp[[I["left_hip"], I["right_hip"]]]
    shoulders = kp[[I["left_shoulder"], I["right_shoulder"]]]
    if min(hips[:, 2].min(), shoulders[:, 2].min()) < min_visibility:
        return None
    centre = hips[:, :2].mean(0)
    up = shoulders[:, :2].mean(0) - centre
    torso = float(np.hypot(*up))
    if torso < 1.0:
        return None
    seen = kp[kp[:, 2] >= min_visibility, :2]
    radius = float(np.linalg.norm(seen - centre, axis=1).max()) + 0.25 * torso
    return _alignment_roi(centre, centre + up / torso * radius)


class LandmarkModel:
    """BlazePose's landmark model (from a PoseLandmarker ``.task`` bundle) run on explicit regions.

    Args:
        model_path: the bundle; default :data:`DEFAULT_MODEL`.
        backend: ``"litert"`` (the TFLite interpreter of the ``ai-edge-litert`` package, with XNNPACK: about
            19 ms of CPU a region on one core), ``"opencv"`` (OpenCV's DNN module through its ONNX-runtime
            engine: about 40 ms on one core, 50 ms of CPU on two), or ``"auto"``: LiteRT when installed.
        threads: CPU threads of the LiteRT interpreter (default: 2, or 1 on a single core).
    """

    _OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_4")  # landmarks, presence, mask, world

    def __init__(self, model_path: str | Path | None = None, backend: str = "auto",
                 threads: int | None = None) -> None:
        import os

        import cv2

        if backend not in ("auto", "litert", "opencv"):
            raise AmgError(f"backend: expected 'auto', 'litert' or 'opencv', got {backend!r}")
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        try:
            data = zipfile.ZipFile(path).read("pose_landmarks_detector.tflite")
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise AmgError(f"{path}: no pose_landmarks_detector.tflite in the bundle ({e})") from None
        self._net = self._interpreter = None
        if backend in ("auto", "litert"):
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                if backend == "litert":
                    raise AmgError("backend='litert': the ai-edge-litert package is not installed") from None
            else:
                n = min(2, os.cpu_count() or 1) if threads is None else max(1, int(threads))
                self._interpreter = Interpreter(model_content=data, num_threads=n)
                self._interpreter.allocate_tensors()
                self._input = self._interpreter.get_input_details()[0]["index"]
                named = {o["name"]: o["index"] for o in self._interpreter.get_output_details()}
                self._outputs = [named[name] for name in self._OUTPUTS]
        if self._interpreter is None:
            # OpenCV reads a TFLite buffer only with its new engine, which mis-reads this model's NHWC input;
            # the ONNX-runtime engine reads it from a file
            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / "pose_landmarks_detector.tflite"
                file.write_bytes(data)
                self._net = cv2.dnn.readNetFromTFLite(str(file), engine=cv2.dnn.ENGINE_ORT)
        self.backend = "litert" if self._interpreter is not None else "opencv"

    def _forward(self, crop: np.ndarray) -> list[np.ndarray]:
        """The model's outputs (landmarks, presence, mask logits, world) for one ``(256,256,3)`` uint8 crop."""
        x = crop.astype(np.float32) / 255.0
        if self._interpreter is not None:
            self._interpreter.set_tensor(self._input, x[None])
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(i) for i in self._outputs]
        self._net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        return list(self._net.forward(list(self._OUTPUTS)))

    def read(self, frame: np.ndarray, rois: list[Roi], masks: bool = True,
             hide: np.ndarray | None = None, mirrored: bool = False) -> list[RoiReading]:
        """Run the model on each region of one ``(H,W,3)`` uint8 RGB frame.

        Args:
            hide: ``(H,W)`` bool pixels of other people, covered in each region by the median colour of the
                rest of the region, so the model cannot read them instead of the person sought (the model
                reads the most salient person in its square); or a list with one such array (or None) per
                region.
            mirrored: show the model each region mirrored left to right and map its reading back (pixels,
                world x, mask and the left/right labels): a second, partly independent reading of the same
                person (test-time augmentation).
        Returns:
            one :class:`RoiReading` per region, in frame pixels.
        """
        import cv2

        if not rois:
            return []
        H, W = frame.shape[:2]
        hides = list(hide) if isinstance(hide, (list, tuple)) else [hide] * len(rois)
        if len(hides) != len(rois):
            raise AmgError(f"hide: expected one mask per region ({len(rois)}), got {len(hides)}")
        mats = [roi_matrix(r) for r in rois]
        crops = []
        for M, hide in zip(mats, hides):
            # the inverse map samples the frame at each input pixel; outside the frame is black, as in MediaPipe
            crop = cv2.warpAffine(frame, M, (_INPUT, _INPUT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
            if hide is not None:
                if np.shape(hide) != (H, W):
                    raise AmgError(f"hide: expected a ({H},{W}) mask, got shape {np.shape(hide)}")
                cover = cv2.warpAffine(np.asarray(hide).astype(np.uint8), M, (_INPUT, _INPUT),
                                       flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0) > 0
                if cover.any() and not cover.all():
                    crop[cover] = np.median(crop[~cover], axis=0).astype(np.uint8)
            crops.append(np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop)
        out = []
        for roi, M, crop in zip(rois, mats, crops):
            lms, presence, seg, world = self._forward(crop)
            lms = lms.reshape(39, 5).astype(np.float64)
            world = world.reshape(39, 3).astype(np.float64)
            if mirrored:  # back to the region's own orientation: x mirrored, left and right exchanged
                lms[:, 0] = _INPUT - lms[:, 0]
                lms[:33] = lms[MIRROR_ORDER]
                world[:, 0] = -world[:, 0]
                world[:33] = world[MIRROR_ORDER]
                seg = seg.reshape(_INPUT, _INPUT)[:, ::-1]
            uv = lms[:, :2] @ M[:, :2].T + M[:, 2]
            vis = 1.0 / (1.0 + np.exp(-np.clip(lms[:33, 3], -30, 30)))
            kp = np.concatenate([uv[:33], vis[:, None]], axis=1).astype(np.float32)
            w = world[:33].copy()
            c, s = np.cos(roi.rotation), np.sin(roi.rotation)
            w[:, :2] = w[:, :2] @ np.array([[c, -s], [s, c]]).T
            mask = None
            if masks:
                prob = (1.0 / (1.0 + np.exp(-np.clip(seg.reshape(_INPUT, _INPUT), -30, 30)))).astype(np.float32)
                mask = cv2.warpAffine(prob, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=0.0)
            out.append(RoiReading(kp, w.astype(np.float32), float(np.ravel(presence)[0]), mask,
                                  roi_from_alignment(uv[33:35])))
        return out
