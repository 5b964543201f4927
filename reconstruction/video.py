"""Video -> training clips: reading, shot cuts, fps resampling, 16-frame windows, square 256 crops.

A clip keeps the camera consistent with its pixels: the crop shifts the principal point and the resize
scales the intrinsics (``render.camera.Camera.crop`` / ``.resize``), so SMPL fits and renders made with the
clip's camera land on the clip's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from render.defaults import AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE
from render.camera import OPENCV_TO_OPENGL, Camera
from render.errors import AmgError
from render.image import video_array

__all__ = [
    "DEFAULT_FOV_DEG", "TARGET_FPS", "CLIP_LENGTH", "CLIP_SIZE", "Clip", "decode_video", "read_frames", "default_camera",
    "shot_boundaries", "longest_shots", "resample_stride", "windows", "square_crop", "crop_resize",
    "subject_window", "prepare_clips",
]

#: Field of view of the long image side when a video comes without calibration (TRACE's fixed camera:
#: focal 548 px at a 512 px input, i.e. 2 * atan(256 / 548) = 50 degrees).
DEFAULT_FOV_DEG = 50.0
#: AMG's clips: 16 frames, 256x256, 8 frames per second (render.defaults).
TARGET_FPS, CLIP_LENGTH, CLIP_SIZE = AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE
#: World-to-camera rotation of an uncalibrated camera: at the origin, looking along world -Z, image up = +Y
#: (the OpenCV/OpenGL axis flip of ``render.camera``). A body in its rest pose (facing +Z) placed in front
#: of it faces the camera.
CAMERA_ROTATION = OPENCV_TO_OPENGL


@dataclass
class Clip:
    """A window of a video prepared for reconstruction.

    Attributes:
        frames: ``(F,S,S,3)`` uint8 square frames.
        fps: frames per second after resampling.
        camera: the camera of the cropped, resized frames (intrinsics in clip pixels).
        source_frames: ``(F,)`` indices of the frames in the decoded video.
        shot: index of the shot (in the list from :func:`shot_boundaries`) the clip comes from.
        crop_box: ``(x0, y0, w, h)`` of the crop in source pixels.
        source: ``(F,H,W,3)`` uint8 the window's frames at the source resolution (``crop="subjects"``), so
            people can be detected at full resolution and the crop placed around them (:meth:`recrop`).
        source_camera: the camera of ``source``.
    """

    frames: np.ndarray
    fps: float
    camera: Camera
    source_frames: np.ndarray
    shot: int = 0
    crop_box: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))  # x0, y0, w, h in source pixels
    source: np.ndarray | None = None
    source_camera: Camera | None = None

    def recrop(self, x0: int, y0: int, side: int, size: int | None = None) -> "Clip":
        """This clip cropped anew from its ``source``: the square ``side`` at ``(x0, y0)``, resized to ``size``."""
        if self.source is None or self.source_camera is None:
            raise AmgError("clip: recrop needs the source frames; prepare the clips with crop='subjects'")
        size = int(size or self.frames.shape[1])
        frames, cam = crop_resize(self.source, self.source_camera, (x0, y0, side, side), size)
        return Clip(frames, self.fps, cam, self.source_frames, self.shot, (int(x0), int(y0), int(side), int(side)),
                    self.source, self.source_camera)


def decode_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file into ``(F,H,W,3)`` uint8 RGB frames and its frame rate (``render.video.read_video``).

    Unlike ``render.video.read_frames`` (a folder of images), this reads one video file and insists on a
    frame rate. ``read_frames`` here is an older name of this function.
    """
    from render.video import read_video

    frames, fps = read_video(Path(path))
    frames = np.asarray(frames)
    if max_frames is not None:
        frames = frames[:max_frames]
    if not math.isfinite(fps) or fps <= 0:
        raise AmgError(f"{path}: the video stream has no frame rate; pass fps explicitly")
    return frames, float(fps)


#: the former name of :func:`decode_video` (``render.video.read_frames`` reads image folders)
read_frames = decode_video


def default_camera(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> Camera:
    """The camera assumed for an uncalibrated ``width x height`` video.

    Centred principal point, square pixels, ``fov_deg`` across the longer image side, placed at the world
    origin looking along -Z with +Y up (``CAMERA_ROTATION``).
    """
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    vertical = math.degrees(2 * math.atan(0.5 * height / f))  # Camera.look_at takes the vertical angle
    return Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), vertical, width, height)


def _hsv_histograms(frames: np.ndarray, bins: tuple[int, int, int] = (16, 4, 4)) -> np.ndarray:
    """Normalised joint HSV histograms ``(F, prod(bins))`` of frames downscaled to 64 px."""
    hists = []
    for frame in frames:
        small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, list(bins), [0, 180, 0, 256, 0, 256]).ravel()
        hists.append(h / max(h.sum(), 1.0))
    return np.asarray(hists, dtype=np.float64)


def histogram_distances(frames: np.ndarray) -> np.ndarray:
    """Hellinger (Bhattacharyya) distances ``(F-1,)`` in [0, 1] between consecutive frames' HSV histograms."""
    h = _hsv_histograms(frames)
    bc = np.sqrt(h[1:] * h[:-1]).sum(axis=1)
    return np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))


def shot_boundaries(frames: np.ndarray, threshold: float = 0.5, relative: float = 4.0) -> list[tuple[int, int]]:
    """Split a video into shots at hard cuts.

    A cut lies between frames ``i`` and ``i+1`` when their HSV histogram distance exceeds ``threshold``
    and ``relative`` times the median distance (so steady camera motion does not count as a cut).

    Returns:
        ``[(start, stop), ...]`` half-open frame ranges covering the video in order.
    """
    frames = _check_frames(frames, "frames")
    if len(frames) == 1:
        return [(0, 1)]
    d = histogram_distances(frames)
    cut = (d > threshold) & (d > relative * np.median(d))
    starts = [0] + [int(i) + 1 for i in np.nonzero(cut)[0]]
    stops = starts[1:] + [len(frames)]
    return list(zip(starts, stops))


def longest_shots(shots: list[tuple[int, int]], count: int = 1, min_frames: int = 1) -> list[int]:
    """Indices of the ``count`` longest shots with at least ``min_frames`` frames, in video order."""
    ranked = sorted(range(len(shots)), key=lambda i: (-(shots[i][1] - shots[i][0]), i))
    keep = [i for i in ranked if shots[i][1] - shots[i][0] >= min_frames][:count]
    return sorted(keep)


def resample_stride(fps: float, target_fps: float = TARGET_FPS) -> int:
    """Frame stride that brings ``fps`` closest to ``target_fps`` (1 when the video is already slower)."""
    if fps <= 0 or target_fps <= 0:
        raise AmgError(f"fps: expected positive frame rates, got {fps} and target {target_fps}")
    return max(1, int(round(fps / target_fps)))


def windows(num_frames: int, length: int = CLIP_LENGTH, step: int | None = None) -> list[tuple[int, int]]:
    """Half-open ``[(start, stop)]`` windows of ``length`` frames every ``step`` (default: no overlap)."""
    step = step or length
    return [(s, s + length) for s in range(0, num_frames - length + 1, step)]


def square_crop(frames: np.ndarray, camera: Camera, size: int = CLIP_SIZE,
                center_x: float | None = None, center_y: float | None = None) -> tuple[np.ndarray, Camera, tuple]:
    """Crop the largest square (around ``center_x/center_y`` pixels, clamped inside) and resize to ``size``.

    Args:
        frames: ``(F,H,W,3)`` uint8.
        camera: camera of the full frames.
    Returns:
        ``(frames (F,size,size,3), camera of the result, (x0, y0, side, side))``.
    """
    frames = _check_frames(frames, "frames")
    _, H, W, _ = frames.shape
    side = min(H, W)
    cx = W / 2 if center_x is None else float(center_x)
    cy = H / 2 if center_y is None else float(center_y)
    x0 = int(np.clip(round(cx - side / 2), 0, W - side))
    y0 = int(np.clip(round(cy - side / 2), 0, H - side))
    out, cam = crop_resize(frames, camera, (x0, y0, side, side), size)
    return out, cam, (x0, y0, side, side)


def crop_resize(frames: np.ndarray, camera: Camera, box: tuple[int, int, int, int],
                size: int) -> tuple[np.ndarray, Camera]:
    """Crop ``box = (x0, y0, w, h)`` source pixels out of ``(F,H,W,3)`` frames and resize to ``size x size``.

    Returns the frames and their camera (``Camera.crop`` then ``resize``: K stays exact).
    """
    x0, y0, w, h = (int(v) for v in box)
    crop = frames[:, y0:y0 + h, x0:x0 + w]
    interp = cv2.INTER_AREA if max(w, h) > size else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp) for f in crop])
    return out, camera.crop(x0, y0, w, h).resize(size, size)


def subject_window(boxes, valid, width: int, height: int, side: int | None = None) -> tuple[int, int, int]:
    """One square window per clip that contains the subjects in every frame.

    Args:
        boxes: per subject ``(F,4)`` x0, y0, x1, y1 source pixels; valid: per subject ``(F,)`` bool (frames
            whose boxes count).
        side: the square's side (default the largest square, ``min(width, height)``).
    Returns:
        ``(x0, y0, side)``: the window's top-left corner and side, inside the frame. When the subjects span
        more than ``side``, the window is centred on their extent (it cannot contain all of them).
    """
    side = int(min(width, height) if side is None else min(side, width, height))
    pts = [np.asarray(b, np.float64)[np.asarray(v, bool)] for b, v in zip(boxes, valid)]
    pts = [p for p in pts if len(p)]
    if not pts:
        return (width - side) // 2, (height - side) // 2, side
    allb = np.concatenate(pts)
    lo = np.maximum(allb[:, :2].min(0), 0.0)
    hi = np.minimum(allb[:, 2:].max(0), [width, height])
    start = []
    for a, b, extent in ((lo[0], hi[0], width), (lo[1], hi[1], height)):
        # the window's start range that contains [a, b]; centred when none does
        first, last = b - side, a
        s0 = 0.5 * (first + last) if first <= last else 0.5 * (a + b) - side / 2
        start.append(int(np.clip(round(s0), 0, extent - side)))
    return start[0], start[1], side


def prepare_clips(video: str | Path | np.ndarray, fps: float | None = None, camera: Camera | None = None,
                  target_fps: float = TARGET_FPS, length: int = CLIP_LENGTH, size: int = CLIP_SIZE,
                  max_shots: int = 1, max_clips: int | None = None, crop: str = "center") -> list[Clip]:
    """Cut a video into square clips of ``length`` frames at about ``target_fps``.

    The ``max_shots`` longest shots are kept; each is resampled by stride and cut into non-overlapping
    windows, each window square-cropped around the frame centre and resized to ``size``.

    Args:
        video: a path or ``(F,H,W,3)`` uint8 frames (then ``fps`` is required).
        camera: the camera of the full frames; default :func:`default_camera`.
        crop: ``"center"``: each window square-cropped around the frame centre; ``"subjects"``: the same
            centred frames for now, plus the window's full-resolution frames (``Clip.source``) so people are
            detected at full resolution and the crop placed around them (:func:`subject_window`,
            :meth:`Clip.recrop`).
    Raises:
        AmgError: unreadable video, or no shot long enough for one window.
    """
    name = str(video) if isinstance(video, (str, Path)) else "frames"
    if crop not in ("center", "subjects"):
        raise AmgError(f"crop={crop!r}: expected 'center' or 'subjects'")
    keep_source = crop == "subjects"
    if isinstance(video, (str, Path)):
        frames, file_fps = decode_video(video)
        fps = fps or file_fps
    else:
        frames = _check_frames(video, "frames")
        if fps is None:
            raise AmgError("prepare_clips: frames given without fps; pass fps")
    _, H, W, _ = frames.shape
    camera = camera or default_camera(W, H)
    stride = resample_stride(fps, target_fps)
    shots = shot_boundaries(frames)
    kept = longest_shots(shots, max_shots, min_frames=(length - 1) * stride + 1)
    if not kept:
        longest = max(b - a for a, b in shots)
        raise AmgError(f"{name}: longest shot has {longest} frames at {fps:g} fps; expected at least "
                       f"{(length - 1) * stride + 1} for one {length}-frame clip at {fps / stride:g} fps")
    clips = []
    for shot in kept:
        a, b = shots[shot]
        idx = np.arange(a, b, stride)
        for s, e in windows(len(idx), length):
            sel = idx[s:e]
            out, cam, box = square_crop(frames[sel], camera, size)
            clips.append(Clip(out, fps / stride, cam, sel, shot, box, frames[sel] if keep_source else None,
                              camera if keep_source else None))
            if max_clips is not None and len(clips) >= max_clips:
                return clips
    return clips


def _check_frames(frames, name: str) -> np.ndarray:
    return video_array(frames, name=name, uint8=False)
