"""Person proposals from motion: walkers that the face-based detector never proposes.

BlazePose's detector needs a face about a tenth of its input wide, so small passers-by are found only by tiles
far finer than a video can afford. People who walk, though, differ from the background once the camera's
turn is undone: the background of a clip seen by a turning camera obeys one homography from frame to frame.
:func:`moving_regions` estimates that homography on a downscaled grey image (corners tracked by optical flow
outside the people already found), subtracts each frame's neighbours warped onto it and keeps the pixels that
differ from both (three-frame differencing puts a walker where they are now, not where they were); blobs of a
person's shape (taller than wide, of a plausible height) that no found person covers become regions for the
landmark model (:func:`proposal_rois`). The estimator reads them and keeps a reading only with the checks of a
followed one (:meth:`reconstruction.follow.Follower.accept`).

Units are frame pixels (x right, y down); a region is a :class:`~reconstruction.landmark_tracking.Roi`.
"""

from __future__ import annotations

import numpy as np

from render.errors import AmgError

from .camera_motion import track_background
from .landmark_tracking import Roi

__all__ = ["background_homography", "moving_regions", "proposal_rois"]


def _grey(frame: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        g = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g, (3, 3), 0)


def background_homography(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray | None:
    """``(3,3)`` homography taking pixels of the grey image ``a (h,w)`` uint8 to ``b``'s, from the background
    corners :func:`reconstruction.camera_motion.track_background` tracks (inside ``keep (h,w)`` bool; None:
    everywhere), fitted with RANSAC; None when fewer than 12 corners survive."""
    import cv2

    p0, p1 = track_background(a, b, keep, max_corners=300, min_distance=5, window=15)
    if len(p0) < 12:
        return None
    Hm, inl = cv2.findHomography(p0, p1, cv2.RANSAC, 1.5)
    if Hm is None or inl is None or inl.sum() < 12:
        return None
    return Hm


def moving_regions(frames: np.ndarray, people: list[list[np.ndarray]], work_side: int = 320,
                   threshold: float = 18.0, min_height: float = 0.12, max_height: float = 0.7,
                   min_aspect: float = 1.1) -> list[list[np.ndarray]]:
    """Boxes of person-shaped blobs that move against the camera-compensated background, per frame.

    Args:
        frames: ``(F,H,W,3)`` uint8 RGB, F >= 2.
        people: per frame, the boxes ``(4,)`` (x0, y0, x1, y1 pixels) of the people already found: they are
            left out of the homography and their (padded) boxes out of the moving pixels.
        work_side: long side, pixels, of the grey image the motion is measured on.
        threshold: least grey-level difference (0-255) of a moving pixel from both neighbours, warped.
        min_height, max_height: the blob's height in units of the frame height.
        min_aspect: least height / width of a blob.
    Returns:
        per frame a list of boxes ``(4,)`` float32 in frame pixels (x0, y0, x1, y1), tallest first.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise AmgError(f"frames: expected (F>=2,H,W,3) uint8 RGB, got {frames.dtype} of shape {frames.shape}")
    if len(people) != len(frames):
        raise AmgError(f"people: expected one list of boxes per frame ({len(frames)}), got {len(people)}")
    F, H, W = frames.shape[:3]
    s = min(1.0, work_side / max(H, W))
    greys = [_grey(f, s) for f in frames]
    h, w = greys[0].shape
    covers = []
    for boxes in people:
        c = np.zeros((h, w), bool)
        for b in boxes:
            bw, bh = b[2] - b[0], b[3] - b[1]
            x0, y0 = int(max(0, (b[0] - 0.15 * bw) * s)), int(max(0, (b[1] - 0.08 * bh) * s))
            x1, y1 = int(min(w, np.ceil((b[2] + 0.15 * bw) * s))), int(min(h, np.ceil((b[3] + 0.08 * bh) * s)))
            c[y0:y1, x0:x1] = True
        covers.append(c)
    # differences of each frame from its neighbours warped onto it (None where the homography failed)
    diffs: list[list[np.ndarray]] = [[] for _ in range(F)]
    for f in range(F - 1):
        Hm = background_homography(greys[f], greys[f + 1], ~(covers[f]))
        if Hm is None:
            continue
        for src, dst, M in ((f + 1, f, Hm), (f, f + 1, np.linalg.inv(Hm))):
            # dst pixel x sees src at M x
            warped = cv2.warpPerspective(greys[src], M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderValue=0)
            valid = cv2.warpPerspective(np.full((h, w), 255, np.uint8), M, (w, h),
                                        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
            d = cv2.absdiff(greys[dst], warped)
            d[cv2.erode(valid, np.ones((5, 5), np.uint8)) == 0] = 0  # the border interpolates with black
            diffs[dst].append(d)
    k = max(3, int(round(0.03 * h)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, 2 * k + 1))
    out: list[list[np.ndarray]] = []
    for f in range(F):
        if not diffs[f]:
            out.append([])
            continue
        moving = np.minimum.reduce(diffs[f]) > threshold if len(diffs[f]) > 1 else diffs[f][0] > threshold
        moving &= ~covers[f]
        blob = cv2.morphologyEx(moving.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        n, _, stats, _ = cv2.connectedComponentsWithStats(blob, connectivity=8)
        boxes = []
        for j in range(1, n):
            x, y, bw, bh, area = stats[j]
            if not (min_height * h <= bh <= max_height * h) or bh < min_aspect * bw or bw < 0.05 * bh \
                    or area < 0.25 * bw * bh:
                continue
            boxes.append(np.array([x, y, x + bw, y + bh], np.float32) / s)
        boxes.sort(key=lambda b: -(b[3] - b[1]))
        out.append(boxes)
    return out


def proposal_rois(box: np.ndarray, scale: float = 1.4) -> Roi:
    """An upright landmark-model region around a moving blob's box ``(4,)`` pixels: centred on it, its side
    ``scale`` x the box height (MediaPipe's region around a standing person is about 1.3-1.5 x their height)."""
    b = np.asarray(box, np.float64)
    return Roi(float(0.5 * (b[0] + b[2])), float(0.5 * (b[1] + b[3])), float(scale * (b[3] - b[1])), 0.0)
