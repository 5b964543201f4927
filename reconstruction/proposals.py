"""Person proposals that do not start from the face-based detector: two people pressed side by side.

MediaPipe's person detector starts from a face-like detection and its landmark model reads the most salient
person in its square. Two people shoulder to shoulder (a hug, a couple dancing, a handshake) then give
either nobody or one reading that straddles both, a leg on each. The landmark model reads each of them once
the other is hidden from it, so a reading suspected of covering two people is split here: a line across
the reading's mask (perpendicular to the body's left-right axis) divides it, the pixels on one side are
hidden (covered by the median colour of the rest, :meth:`LandmarkModel.read`) and the model reads the
other side, then the reverse. The line is moved towards the side whose reading fails until both sides give a
whole, plausible body (:func:`split_reading`).

The same half-planes keep two people apart while they are followed from frame to frame
(:class:`reconstruction.follow.Follower`): each is read with the side of the line between their predicted hip
centres that belongs to the other hidden (:func:`half_plane`).

Units are frame pixels (x right, y down, pixel centres at +0.5); a region is a
:class:`~reconstruction.landmark_tracking.Roi`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from render.errors import AmgError

from .landmark_tracking import LandmarkModel, Roi, RoiReading, roi_from_landmarks

__all__ = ["half_plane", "PairSplit", "split_reading", "Apart", "read_apart"]


def half_plane(height: int, width: int, point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``(height, width)`` bool: the pixels whose centres lie on the side of the line through ``point (2,)``
    that ``normal (2,)`` points to (the line itself excluded); pixels, x right, y down."""
    if height < 1 or width < 1:
        raise AmgError(f"half_plane: expected a positive frame size, got {height}x{width}")
    n = np.asarray(normal, np.float64).reshape(2)
    if not np.isfinite(n).all() or np.hypot(*n) < 1e-12:
        raise AmgError(f"half_plane: normal must be a finite non-zero 2-vector, got {normal}")
    p = np.asarray(point, np.float64).reshape(2)
    x = (np.arange(width) + 0.5 - p[0]) * n[0]
    y = (np.arange(height) + 0.5 - p[1]) * n[1]
    return (y[:, None] + x[None, :]) > 0


@dataclass
class PairSplit:
    """Two people read apart from one reading (:func:`split_reading`).

    Attributes:
        first, second: the readings of the side against and along the body's left-right axis (``axis``):
            first is on the image's left for an upright reading.
        line: ``(2,)`` pixels, a point of the dividing line; axis: ``(2,)`` unit vector across the line.
        reads: landmark-model reads spent.
    """

    first: RoiReading
    second: RoiReading
    line: np.ndarray
    axis: np.ndarray
    reads: int


def split_reading(frame: np.ndarray, keypoints: np.ndarray, mask: np.ndarray, model: LandmarkModel,
                  good: Callable[[RoiReading, int], bool], min_separation: float = 0.45,
                  max_steps: int = 2) -> PairSplit | None:
    """Read two people side by side out of one reading that may straddle both.

    The dividing line starts at the median of the reading's mask along its left-right axis (the region's
    horizontal, :func:`roi_from_landmarks`); each side is read with the other hidden, on a square of the
    reading's region size centred a quarter of the mask's width (5th to 95th percentile) beside the line.
    While one side's reading fails ``good``, the line moves an eighth of that width away from it, at most
    ``max_steps`` times. The split stands when both readings pass ``good`` and their hip centres lie at least
    ``min_separation`` torso lengths of the reading apart (halves of one person lie closer).

    Args:
        frame: ``(H,W,3)`` uint8 RGB.
        keypoints: ``(33,3)`` the suspect reading's landmarks, pixels and visibility.
        mask: ``(H,W)`` its person probability.
        model: the landmark model.
        good: ``(reading, side) -> bool``, whether one side's reading is a whole, plausible, single body.
    Returns:
        a :class:`PairSplit`, or None (no region, no mask, or no line that gives two good readings).
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise AmgError(f"frame: expected an (H,W,3) uint8 RGB image, got {frame.dtype} {frame.shape}")
    H, W = frame.shape[:2]
    m = np.asarray(mask)
    if m.shape != (H, W):
        raise AmgError(f"mask: expected shape {(H, W)}, got {m.shape}")
    kp = np.asarray(keypoints, np.float64)
    roi = roi_from_landmarks(kp)
    if roi is None:
        return None
    ys, xs = np.nonzero(m > 0.5)
    if len(xs) < 32:
        return None
    axis = np.array([np.cos(roi.rotation), np.sin(roi.rotation)])  # the region's left-to-right direction
    centre = np.array([roi.cx, roi.cy])
    along = (xs + 0.5 - centre[0]) * axis[0] + (ys + 0.5 - centre[1]) * axis[1]
    mid = float(np.median(along))
    width = float(np.percentile(along, 95) - np.percentile(along, 5))
    if width < 4.0:
        return None
    torso = _torso(kp)

    def region(offset: float, s: int) -> Roi:
        c = centre + (mid + offset + s * width / 4) * axis
        return Roi(float(c[0]), float(c[1]), roi.size, roi.rotation)

    got = read_apart(frame, model, centre + mid * axis, axis, width / 8, region, good, max_steps=max_steps)
    if not all(got.ok) or torso <= 0:
        return None
    if np.linalg.norm(_hips(got.first.keypoints) - _hips(got.second.keypoints)) < min_separation * torso:
        return None
    return PairSplit(got.first, got.second, got.line, axis, got.reads)


@dataclass
class Apart:
    """The outcome of :func:`read_apart`: the readings against and along the axis (``first``, ``second``) at
    the last line tried, whether each was good (``ok``, two bools), that line (``line (2,)`` pixels) and the
    landmark-model reads spent."""

    first: RoiReading
    second: RoiReading
    ok: tuple[bool, bool]
    line: np.ndarray
    reads: int


def read_apart(frame: np.ndarray, model: LandmarkModel, line: np.ndarray, axis: np.ndarray, step: float,
               region: Callable[[float, int], Roi], good: Callable[[RoiReading, int], bool],
               hide: np.ndarray | None = None, max_steps: int = 2, unseen: float = 0.2) -> Apart:
    """Read two people on either side of a line, moving the line until both readings are good.

    The side against ``axis`` is read with the other side hidden, then the reverse; while one side's reading
    fails ``good``, the line moves ``step`` pixels away from it (giving it more room), at most ``max_steps``
    times; it stops when both fail. Landmarks a reading puts on the hidden side of the line (a hand reaching
    over to the other person) were not seen: their visibility is capped at ``unseen``.

    Args:
        frame: ``(H,W,3)`` uint8 RGB.
        line: ``(2,)`` pixels, a point of the line; axis: ``(2,)`` unit vector across it.
        step: pixels the line moves per step.
        region: ``(offset, side) -> Roi``: the region read for ``side`` (-1 against ``axis``, +1 along it)
            when the line lies ``offset`` pixels along ``axis`` from ``line``.
        good: ``(reading, side) -> bool``: whether that side's reading is the one person sought.
        hide: ``(H,W)`` bool, pixels hidden from both readings as well (other people found).
    Returns:
        an :class:`Apart` (both ``ok`` when a line parted them).
    """
    H, W = frame.shape[:2]
    line = np.asarray(line, np.float64).reshape(2)
    axis = np.asarray(axis, np.float64).reshape(2)
    reads = 0
    k, tried = 0, set()
    while True:
        tried.add(k)
        at = line + k * step * axis
        sides = []
        for s in (-1, 1):
            cover = half_plane(H, W, at, -s * axis)  # the other side of the line
            sides.append(cover if hide is None else cover | hide)
        a, b = model.read(frame, [region(k * step, -1), region(k * step, 1)], masks=True, hide=sides)
        for r, s in ((a, -1), (b, 1)):
            beyond = ((r.keypoints[:, :2] - at) @ axis) * s < 0  # on the other's side of the line
            r.keypoints[beyond, 2] = np.minimum(r.keypoints[beyond, 2], unseen)
        reads += 2
        ok = (bool(good(a, -1)), bool(good(b, 1)))
        nxt = k + (-1 if ok[0] else 1)  # away from the failing side: give it more room
        if ok[0] == ok[1] or abs(nxt) > max_steps or nxt in tried:
            return Apart(a, b, ok, at, reads)
        k = nxt


def _hips(kp: np.ndarray) -> np.ndarray:
    return 0.5 * (np.asarray(kp[23, :2], np.float64) + np.asarray(kp[24, :2], np.float64))


def _torso(kp: np.ndarray) -> float:
    """Shoulder centre to hip centre, pixels."""
    kp = np.asarray(kp, np.float64)
    return float(np.linalg.norm(0.5 * (kp[11, :2] + kp[12, :2]) - _hips(kp)))
