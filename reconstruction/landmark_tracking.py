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
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.errors import AmgError

__all__ = ["Roi", "RoiReading", "LandmarkModel", "roi_from_landmarks", "roi_from_alignment", "roi_matrix"]

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
    from .pose import LANDMARK_INDEX

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
        model_path: the bundle; default :data:`reconstruction.pose.DEFAULT_MODEL`.
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

        from .pose import DEFAULT_MODEL

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
             hide: np.ndarray | None = None) -> list[RoiReading]:
        """Run the model on each region of one ``(H,W,3)`` uint8 RGB frame.

        Args:
            hide: ``(H,W)`` bool pixels of other people, covered in each region by the median colour of the
                rest of the region, so the model cannot read them instead of the person sought (the model
                reads the most salient person in its square); or a list with one such array (or None) per
                region.
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
            crops.append(crop)
        out = []
        for roi, M, crop in zip(rois, mats, crops):
            lms, presence, seg, world = self._forward(crop)
            lms = lms.reshape(39, 5).astype(np.float64)
            uv = lms[:, :2] @ M[:, :2].T + M[:, 2]
            vis = 1.0 / (1.0 + np.exp(-np.clip(lms[:33, 3], -30, 30)))
            kp = np.concatenate([uv[:33], vis[:, None]], axis=1).astype(np.float32)
            w = world.reshape(39, 3)[:33].astype(np.float64)
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
