"""Per-frame detections -> person tracks with stable ids.

Frame by frame, live tracks are matched to detections by the Hungarian algorithm on a cost mixing box
overlap (1 - IoU) and landmark distance (normalised by the person's size), both against a constant-velocity
prediction so that people crossing each other keep their ids. Frames in which the pose estimator read a
person back to front (left and right swapped) are mirrored back where that keeps the torso's facing
direction continuous (:func:`resolve_sides`). Short gaps with sightings on both sides are bridged by
interpolation, short tracks are dropped as spurious.

The tracks are then split into the clip's **subjects** (whom the clip is about: large and present over most
of it, at most ``max_subjects``) and **bystanders** (everyone else, :func:`choose_subjects`). Only subjects
decide whether frames are usable: a frame is valid when every subject is seen or bridged in it; the longest
run of valid frames is kept, and a clip whose run is too short gets a flag naming the subject and the
frames (AMG drops such clips). People entering or leaving the frame are not "lost": only a gap between two
sightings is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from render.errors import AmgError

from .landmark_tracking import MIRROR_ORDER, SIDE_PAIRS
from .pose import NUM_LANDMARKS, Detection, appearance_distance, box_iou, torso_axes

__all__ = ["Track", "TrackingResult", "track_people", "assignment_cost", "SIDE_PAIRS", "mirror_landmarks",
           "facing_directions", "resolve_sides", "choose_subjects", "longest_run"]

_UNMATCHED = 1e6


def mirror_landmarks(keypoints: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The other reading of a person: left and right labels swapped and world depth negated.

    A person seen from behind and read as facing the camera (or the reverse) projects to nearly the same
    pixels, with left and right exchanged and the body's depth reflected; this undoes such a reading.

    Args:
        keypoints: ``(...,33,3)`` pixels and confidence; world: ``(...,33,3)`` metres, camera axes.
    Returns:
        the mirrored ``keypoints`` and ``world`` (new arrays).
    """
    kp = np.asarray(keypoints)[..., MIRROR_ORDER, :].copy()
    w = np.asarray(world)[..., MIRROR_ORDER, :].copy()
    w[..., 2] = -w[..., 2]
    return kp, w


def facing_directions(world: np.ndarray, confidence: np.ndarray, min_confidence: float = 0.1) -> np.ndarray:
    """Unit forward direction of the torso per frame from world landmarks (:func:`pose.torso_axes`).

    Args:
        world: ``(F,33,3)`` metres (camera axes: x right, y down, z away); confidence: ``(F,33)``.
    Returns:
        ``(F,3)`` in the axes of ``world``; NaN where shoulders or hips are unseen or degenerate.
    """
    return torso_axes(world, confidence, min_confidence)[..., 2]


def resolve_sides(keypoints: np.ndarray, world: np.ndarray, rotations: np.ndarray | None = None,
                  swap_cost: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make one track's left/right reading consistent over time.

    Pose estimators now and then read a person's back as their front (or the reverse) for a frame or two:
    the torso's facing direction then jumps by more than 90 degrees and back. Each frame is kept or
    mirrored (:func:`mirror_landmarks`) by dynamic programming over the frames whose torso is seen,
    minimising the sum of the angles (radians) the facing direction turns between them plus
    ``swap_cost`` per mirrored frame, so a reading is only changed when that removes a larger turn.

    Args:
        keypoints, world: ``(F,33,3)`` one track (confidence 0 in frames where it is unknown).
        rotations: ``(F,3,3)`` camera-to-world rotations, so a moving camera's turn is not counted as the
            person's; default: a static camera.
        swap_cost: radians charged per mirrored frame.
    Returns:
        ``keypoints``, ``world`` (copies, mirrored where chosen) and ``swapped (F,)`` bool.
    """
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    w = np.array(world, dtype=np.float32, copy=True)
    F = kp.shape[0]
    swapped = np.zeros(F, dtype=bool)
    mkp, mw = mirror_landmarks(kp, w)
    dirs = np.stack([facing_directions(w, kp[..., 2]), facing_directions(mw, mkp[..., 2])], axis=1)  # (F,2,3)
    if rotations is not None:
        dirs = np.einsum("fij,fsj->fsi", np.asarray(rotations, dtype=np.float64), dirs)
    frames = [f for f in range(F) if kp[f, :, 2].max() > 0 and np.isfinite(dirs[f]).all()]
    if len(frames) < 2:
        return kp, w, swapped
    unary = np.array([0.0, swap_cost])
    cost = unary.copy()
    back = []
    for prev, cur in zip(frames[:-1], frames[1:]):
        turn = np.arccos(np.clip(dirs[prev] @ dirs[cur].T, -1.0, 1.0))  # (2 previous, 2 current)
        total = cost[:, None] + turn
        back.append(total.argmin(0))
        cost = total.min(0) + unary
    state = int(cost.argmin())
    for f, b in zip(reversed(frames), reversed([None] + back)):
        swapped[f] = bool(state)
        if b is not None:
            state = int(b[state])
    kp[swapped], w[swapped] = mkp[swapped], mw[swapped]
    return kp, w, swapped


@dataclass
class Track:
    """One person through a clip of ``F`` frames.

    Attributes:
        track_id: stable id, >= 1 (also the person's value in instance masks).
        keypoints: ``(F,33,3)`` pixels and confidence; confidence 0 where the person is not known.
        world: ``(F,33,3)`` MediaPipe world landmarks in metres (zeros where unknown).
        boxes: ``(F,4)`` x0, y0, x1, y1 pixels.
        detected: ``(F,)`` bool, a detection was matched in that frame.
        bridged: ``(F,)`` bool, the frame was filled by interpolation across a short gap.
        detection_index: ``(F,)`` int, index of the matched detection in that frame's list, -1 if none.
        lost: ``(F,)`` bool, the person was not seen between two sightings and the gap was too long to
            bridge (interpolated with confidence 0). Frames before the first or after the last sighting are
            not lost: the person is out of view there (``present`` is False).
        role: ``"subject"`` or ``"bystander"`` (:func:`choose_subjects`); reason: why, in words.
    """

    track_id: int
    keypoints: np.ndarray
    world: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray
    bridged: np.ndarray
    detection_index: np.ndarray
    lost: np.ndarray
    role: str = "subject"
    reason: str = ""

    @property
    def known(self) -> np.ndarray:
        """``(F,)`` bool: detected or bridged."""
        return self.detected | self.bridged

    @property
    def valid(self) -> np.ndarray:
        """``(F,)`` bool: frames whose landmarks are observed or bridged from both sides (same as ``known``)."""
        return self.known

    @property
    def present(self) -> np.ndarray:
        """``(F,)`` bool: frames between the first and the last sighting."""
        seen = np.nonzero(self.detected)[0]
        out = np.zeros(len(self.detected), dtype=bool)
        if len(seen):
            out[seen[0]:seen[-1] + 1] = True
        return out

    @property
    def confidence(self) -> np.ndarray:
        """``(F,)`` float32 in [0, 1]: mean landmark confidence per frame (0 where not valid)."""
        c = self.keypoints[..., 2].mean(-1).astype(np.float32)
        return np.where(self.valid, c, 0.0).astype(np.float32)

    @property
    def is_subject(self) -> bool:
        return self.role == "subject"


@dataclass
class TrackingResult:
    """Tracks of a clip, the reasons it should be dropped (empty when usable), and dropped track ids.

    Attributes:
        valid: ``(F,)`` bool, frames in which every subject is valid and that lie in the kept run.
        kept: ``(start, stop)`` half-open range of the longest run of frames valid for every subject.
        merged: ``(frame, detection index)`` of readings fused from two people, given to no track.
    """

    tracks: list[Track]
    num_frames: int
    flags: list[str] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    valid: np.ndarray | None = None
    kept: tuple[int, int] = (0, 0)
    merged: list[tuple[int, int]] = field(default_factory=list)

    @property
    def subjects(self) -> list[Track]:
        return [t for t in self.tracks if t.is_subject]

    @property
    def bystanders(self) -> list[Track]:
        return [t for t in self.tracks if not t.is_subject]

    def people(self) -> dict:
        """JSON-ready per track id: role, reason, detected / bridged / lost frame counts and first/last frame."""
        out = {}
        for t in self.tracks:
            seen = np.nonzero(t.detected)[0]
            out[str(t.track_id)] = {"role": t.role, "reason": t.reason, "detected_frames": int(t.detected.sum()),
                                    "bridged_frames": int(t.bridged.sum()), "lost_frames": int(t.lost.sum()),
                                    "first_frame": int(seen[0]) if len(seen) else -1,
                                    "last_frame": int(seen[-1]) if len(seen) else -1}
        return out


def choose_subjects(tracks: Sequence[Track], num_frames: int, max_subjects: int = 2,
                    min_presence: float = 0.5, min_relative_size: float = 0.65,
                    frame_height: float | None = None, min_height: float = 0.1) -> None:
    """Mark each track ``role = "subject"`` or ``"bystander"`` and say why in ``reason`` (in place).

    A subject is large and present over most of the clip: detected in at least ``min_presence`` of the
    frames, with a median box height of at least ``min_relative_size`` times the largest such person's (and
    ``min_height`` of ``frame_height`` when given); of those, the ``max_subjects`` with the largest
    presence x height are subjects. When nobody qualifies, the single best-scoring person is the subject
    (a clip is about someone).
    """
    if not tracks:
        return
    F = max(1, int(num_frames))
    info = []
    for t in tracks:
        heights = (t.boxes[t.detected, 3] - t.boxes[t.detected, 1]) if t.detected.any() else np.zeros(1)
        presence = float(t.detected.sum()) / F
        size = float(np.median(heights))
        info.append((t, presence, size, presence * size))
    eligible = [i for i in info if i[1] >= min_presence
                and (frame_height is None or i[2] >= min_height * float(frame_height))]
    largest = max((i[2] for i in eligible), default=0.0)
    eligible = [i for i in eligible if i[2] >= min_relative_size * largest]
    ranked = sorted(eligible, key=lambda i: -i[3])
    chosen = ranked[:max(0, int(max_subjects))]
    if not chosen and max_subjects > 0:
        chosen = [max(info, key=lambda i: i[3])]
    rank = {id(i[0]): r for r, i in enumerate(chosen, 1)}
    for t, presence, size, score in info:
        seen = f"detected in {int(t.detected.sum())} of {F} frames, median height {size:.0f} px"
        if id(t) in rank:
            t.role, t.reason = "subject", f"subject {rank[id(t)]} of {len(chosen)}: {seen}"
            continue
        t.role = "bystander"
        if presence < min_presence:
            why = f"present in under {min_presence:.0%} of the clip"
        elif frame_height is not None and size < min_height * float(frame_height):
            why = f"smaller than {min_height:.0%} of the frame height"
        elif size < min_relative_size * largest:
            why = f"smaller than {min_relative_size:.0%} of the largest person ({largest:.0f} px)"
        else:
            why = f"beyond max_subjects={max_subjects}"
        t.reason = f"bystander ({why}): {seen}"


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Half-open ``(start, stop)`` of the longest run of True in a ``(F,)`` bool mask (first one on ties)."""
    from avatars.contact import true_runs

    return max(true_runs(mask), key=lambda r: r[1] - r[0], default=(0, 0))


def assignment_cost(track_boxes: np.ndarray, track_kp: np.ndarray, det_boxes: np.ndarray, det_kp: np.ndarray,
                    keypoint_weight: float = 1.0, min_confidence: float = 0.3) -> np.ndarray:
    """Matching cost ``(T,D)``: ``(1 - IoU) + keypoint_weight * d``.

    ``d`` is the confidence-weighted mean landmark distance between track and detection, divided by the
    diagonal of the track's box; landmarks below ``min_confidence`` on either side are ignored (a pair
    with none in common gets ``d = 1``).
    """
    iou = box_iou(track_boxes, det_boxes)
    tb = np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)
    diag = np.maximum(np.hypot(tb[:, 2] - tb[:, 0], tb[:, 3] - tb[:, 1]), 1.0)
    a = np.asarray(track_kp, dtype=np.float64)[:, None]  # (T,1,33,3)
    b = np.asarray(det_kp, dtype=np.float64)[None]  # (1,D,33,3)
    w = np.where((a[..., 2] >= min_confidence) & (b[..., 2] >= min_confidence), a[..., 2] * b[..., 2], 0.0)
    dist = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)
    wsum = w.sum(-1)
    d = np.where(wsum > 0, (w * dist).sum(-1) / np.maximum(wsum, 1e-12), diag[:, None]) / diag[:, None]
    return (1.0 - iou) + keypoint_weight * np.minimum(d, 2.0)


@dataclass
class _Live:
    track_id: int
    frames: list[int]
    dets: list[int]
    boxes: list[np.ndarray]
    kps: list[np.ndarray]
    appearance: np.ndarray | None = None

    def remember(self, descriptor: np.ndarray | None, rate: float = 0.3) -> None:
        """Fold a detection's appearance into the track's running mean (per region, where it is seen)."""
        if descriptor is None:
            return
        if self.appearance is None:
            self.appearance = descriptor.copy()
            return
        n = len(descriptor) // 2
        for i in range(2):
            new, old = descriptor[i * n:(i + 1) * n], self.appearance[i * n:(i + 1) * n]
            if new.sum() > 0:
                self.appearance[i * n:(i + 1) * n] = new if old.sum() == 0 else (1 - rate) * old + rate * new

    def predict(self, frame: int, damping: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        box, kp = self.boxes[-1], self.kps[-1].copy()
        if len(self.frames) >= 2:
            dt = self.frames[-1] - self.frames[-2]
            ahead = (frame - self.frames[-1]) * damping
            vb = (self.boxes[-1] - self.boxes[-2]) / dt
            vk = (self.kps[-1][:, :2] - self.kps[-2][:, :2]) / dt
            box = box + ahead * vb
            kp[:, :2] = kp[:, :2] + ahead * vk
        return box, kp


def track_people(detections: Sequence[Sequence[Detection]], max_gap: int = 3, max_lost: int = 8,
                 min_fraction: float = 0.25, max_cost: float = 1.5, keypoint_weight: float = 1.0,
                 bridged_confidence: float = 0.5, lost_frames: int = 1, side_swap_cost: float | None = 0.5,
                 rotations: np.ndarray | None = None, max_subjects: int = 2, min_presence: float = 0.5,
                 min_valid_fraction: float = 0.75, frame_height: float | None = None,
                 appearance_weight: float = 1.0, merge_share: float | None = 0.3) -> TrackingResult:
    """Associate per-frame detections into tracks.

    Args:
        detections: for each of ``F`` frames, the detections of that frame.
        max_gap: longest run of missing frames that is bridged: filled by linear interpolation with
            confidence times ``bridged_confidence``, not counted as lost.
        max_lost: longest run of missing frames after which a person still keeps their id (occlusion by
            someone crossing in front); such longer gaps are interpolated with zero confidence and
            reported as lost.
        min_fraction: tracks detected in fewer than ``max(1, ceil(min_fraction * F))`` frames are dropped.
        max_cost: matches costing more (see :func:`assignment_cost`) start a new track instead; the bound
            grows by a quarter per missing frame, since predictions get less certain.
        appearance_weight: weight of the colour-statistics distance (torso and legs,
            :func:`reconstruction.pose.appearance_distance`) between a track and a detection, added to the
            cost when both have a descriptor: people who cross keep their ids by how they look.
        lost_frames: a subject's gap (between two sightings) of at least this many unknown frames makes
            those frames invalid; shorter unknown runs are tolerated.
        max_subjects, min_presence, frame_height: subject choice (:func:`choose_subjects`).
        min_valid_fraction: the longest run of frames valid for every subject must cover at least
            ``ceil(min_valid_fraction * F)`` frames, or the clip is flagged.
        side_swap_cost: left/right readings of each track are made consistent over its detected frames
            (:func:`resolve_sides` with this cost) before gaps are bridged; None leaves them as detected.
        rotations: ``(F,3,3)`` camera-to-world rotations for :func:`resolve_sides` (moving cameras).
        merge_share: a detection matched to one track whose confident landmarks lie nearest to another
            recently seen track's predicted landmarks for at least this share (of the landmarks with
            confidence >= 0.5) is a reading fused from two people crossing or pressed together: it is given
            to neither (both are bridged over it, or lost) and starts no track; its frame and index are
            listed in ``TrackingResult.merged``. None keeps every match. Readings the pose estimator made
            with the people beside them hidden (``Detection.followed``, ``Detection.apart``) are not tested:
            it checked them as one person's, and people pressed together reach over to each other.
    Returns:
        :class:`TrackingResult` with tracks ordered by id (ids 1, 2, ... by first appearance).
    """
    F = len(detections)
    if F == 0:
        raise AmgError("detections: expected at least one frame, got none")
    finished: list[_Live] = []
    live: list[_Live] = []
    merged: list[tuple[int, int]] = []
    next_id = 1
    for f, dets in enumerate(detections):
        # tracks unseen for longer than the bridgeable gap can no longer continue
        still = []
        for t in live:
            (still if f - t.frames[-1] <= max(max_gap, max_lost) + 1 else finished).append(t)
        live = still
        matched_dets: set[int] = set()
        if live and dets:
            preds = [t.predict(f) for t in live]
            cost = assignment_cost(np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds]),
                                   np.stack([d.box for d in dets]), np.stack([d.keypoints for d in dets]),
                                   keypoint_weight)
            if appearance_weight:
                app = np.array([[appearance_distance(t.appearance, d.appearance) if
                                 t.appearance is not None and d.appearance is not None else 0.0 for d in dets]
                                for t in live])
                cost = cost + appearance_weight * app
            missed = np.array([f - t.frames[-1] - 1 for t in live], dtype=np.float64)
            cost = np.where(cost > max_cost * (1 + 0.25 * missed)[:, None], _UNMATCHED, cost)
            rows, cols = linear_sum_assignment(cost)
            recent = [(i, preds[i][1]) for i, t in enumerate(live) if f - t.frames[-1] <= max_gap + 1]
            for r, c in zip(rows, cols):
                if cost[r, c] >= _UNMATCHED:
                    continue
                if merge_share is not None and not _read_alone(dets[c]) and _fused(dets[c].keypoints, r, recent,
                                                                                   merge_share):
                    merged.append((f, int(c)))
                    matched_dets.add(int(c))
                    continue
                t = live[r]
                t.frames.append(f)
                t.dets.append(int(c))
                t.boxes.append(np.asarray(dets[c].box, dtype=np.float64))
                t.kps.append(np.asarray(dets[c].keypoints, dtype=np.float64))
                t.remember(dets[c].appearance)
                matched_dets.add(int(c))
        for j, d in enumerate(dets):
            if j not in matched_dets:
                live.append(_Live(next_id, [f], [j], [np.asarray(d.box, dtype=np.float64)],
                                  [np.asarray(d.keypoints, dtype=np.float64)],
                                  None if d.appearance is None else d.appearance.copy()))
                next_id += 1
    finished.extend(live)

    min_frames = max(1, int(np.ceil(min_fraction * F)))
    tracks, dropped, flags = [], [], []
    for t in sorted(finished, key=lambda t: t.track_id):
        if len(t.frames) < min_frames:
            dropped.append(t.track_id)
            continue
        tracks.append(_materialise(t, detections, F, max_gap, bridged_confidence, side_swap_cost, rotations))
    # renumber kept tracks 1..N so ids are stable across runs whatever was dropped
    for new_id, tr in enumerate(tracks, start=1):
        tr.track_id = new_id
    if not tracks:
        flags.append("no person found in any frame" if not any(len(d) for d in detections)
                     else f"no person tracked in at least {min_frames} of {F} frames")
        return TrackingResult(tracks, F, flags, dropped, np.zeros(F, dtype=bool), (0, 0), merged)
    choose_subjects(tracks, F, max_subjects, min_presence, frame_height=frame_height)
    valid = np.ones(F, dtype=bool)
    for tr in tracks:
        if tr.is_subject:
            valid &= _tolerated(tr, lost_frames)
    kept = longest_run(valid)
    need = max(1, int(np.ceil(min_valid_fraction * F - 1e-9)))
    if kept[1] - kept[0] < need:
        for tr in tracks:
            missing = np.nonzero(tr.is_subject & ~_tolerated(tr, lost_frames))[0]
            if len(missing):
                flags.append(f"track {tr.track_id}: subject lost in frames {_ranges(missing)} of {F} "
                             f"(longest usable run {kept[1] - kept[0]} frames, expected at least {need})")
    inside = np.zeros(F, dtype=bool)
    inside[kept[0]:kept[1]] = True
    return TrackingResult(tracks, F, flags, dropped, valid & inside, kept, merged)


def _read_alone(d: Detection) -> bool:
    """Whether the pose estimator read ``d`` with the people beside it hidden and checked it as one person's
    (followed by the landmark model, or read apart from a neighbour pressed against them): people in a hug
    or a handshake reach over to each other, so their faces and hands lie on the other's predicted landmarks
    although the reading is one person's."""
    return bool(getattr(d, "followed", False) or getattr(d, "apart", None) is not None)


def _fused(keypoints: np.ndarray, own: int, predictions: list[tuple[int, np.ndarray]], share: float,
           min_confidence: float = 0.5, margin: float = 0.7) -> bool:
    """Whether a reading matched to track ``own`` lies for at least ``share`` of its confident landmarks
    nearer to another track's predicted landmarks than ``margin`` times their distance to its own
    (``predictions``: (track index, (33,3)) pairs)."""
    if len(predictions) < 2 or not any(i == own for i, _ in predictions):
        return False
    kp = np.asarray(keypoints, np.float64)
    ok = kp[:, 2] >= min_confidence
    if ok.sum() < 6:
        return False
    dist = {i: np.linalg.norm(kp[ok, :2] - np.asarray(p, np.float64)[ok, :2], axis=-1) for i, p in predictions}
    # a landmark is the other's only when clearly nearer to them: where two people stand
    # in one place, predictions alone cannot tell them apart
    return any(float(np.mean(d < margin * dist[own])) >= share for i, d in dist.items() if i != own)


def _tolerated(tr: Track, lost_frames: int) -> np.ndarray:
    """Frames in which a subject counts as seen: valid, or inside a lost gap shorter than ``lost_frames``."""
    ok = tr.valid.copy()
    if lost_frames > 1:
        lost = tr.lost
        f = 0
        while f < len(lost):
            if lost[f]:
                g = f
                while g < len(lost) and lost[g]:
                    g += 1
                if g - f < lost_frames:
                    ok[f:g] = True
                f = g
            else:
                f += 1
    return ok


def _materialise(t: _Live, detections, F: int, max_gap: int, bridged_confidence: float,
                 side_swap_cost: float | None = None, rotations: np.ndarray | None = None) -> Track:
    kp = np.zeros((F, NUM_LANDMARKS, 3), dtype=np.float32)
    world = np.zeros((F, NUM_LANDMARKS, 3), dtype=np.float32)
    boxes = np.zeros((F, 4), dtype=np.float32)
    detected = np.zeros(F, dtype=bool)
    bridged = np.zeros(F, dtype=bool)
    index = np.full(F, -1, dtype=np.int64)
    for f, j in zip(t.frames, t.dets):
        d = detections[f][j]
        kp[f], world[f], boxes[f] = d.keypoints, d.world, d.box
        detected[f], index[f] = True, j
    if side_swap_cost is not None:
        kp, world, _ = resolve_sides(kp, world, rotations, side_swap_cost)
    lost = np.zeros(F, dtype=bool)
    for f0, f1 in zip(t.frames[:-1], t.frames[1:]):
        gap = f1 - f0 - 1
        if gap <= 0:
            continue
        short = gap <= max_gap
        for f in range(f0 + 1, f1):
            u = (f - f0) / (f1 - f0)
            kp[f, :, :2] = (1 - u) * kp[f0, :, :2] + u * kp[f1, :, :2]
            kp[f, :, 2] = bridged_confidence * np.minimum(kp[f0, :, 2], kp[f1, :, 2]) if short else 0.0
            world[f] = (1 - u) * world[f0] + u * world[f1]
            boxes[f] = (1 - u) * boxes[f0] + u * boxes[f1]
            bridged[f], lost[f] = short, not short
    return Track(t.track_id, kp, world, boxes, detected, bridged, index, lost)


def _ranges(idx: np.ndarray) -> str:
    parts, start, prev = [], int(idx[0]), int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = i
        prev = i
    parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)
