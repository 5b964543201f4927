"""Following people from frame to frame with BlazePose's landmark model, where the person detector missed them.

MediaPipe's person detector is face-based: it misses people in profile, from behind, small, or pressed against
someone else, while the landmark model reads any view once it is shown the person
(:mod:`reconstruction.landmark_tracking`). :class:`Follower` carries every person found in one frame to the
next (or previous) one along a sweep and, where nobody found there is them, reads them with the landmark model
on the region handed over from the frame they were last seen in, moved by their mean step per frame. A reading
is kept only while it stays a plausible body of the same person (:meth:`Follower.accept`); people crossing are
carried unseen for a few frames and come out the other side.

Two people pressed side by side (a hug) give the detector one reading over both. :meth:`Follower.split_pairs`
reads such a detection again as two people, each with the other's side of a line across its mask hidden
(:func:`reconstruction.proposals.split_reading`), and following keeps a pair once read apart apart
(:func:`reconstruction.proposals.read_apart`, :func:`reconstruction.proposals.half_plane`).

:meth:`reconstruction.pose.PoseEstimator.video` builds a :class:`Follower` from its own settings (the
``follow_*`` and ``split_*`` arguments, documented there) and runs it after detection. Units are frame pixels
(x right, y down, pixel centres at +0.5); detections are :class:`~reconstruction.landmark_tracking.Detection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .landmark_tracking import (LANDMARK_INDEX, Detection, LandmarkModel, Roi, _overlaps, appearance_descriptor,
                                appearance_distance, box_iou, landmark_box, plausible_body, proportion_deviation,
                                roi_from_landmarks)
from .proposals import half_plane, read_apart, split_reading

__all__ = ["Follower", "reading_detection"]


@dataclass
class Follower:
    """Frame-to-frame following and pair splitting with the landmark model, on the settings of a
    :class:`~reconstruction.pose.PoseEstimator` (same names and meanings; see its arguments).

    Attributes:
        model: the landmark model (:class:`~reconstruction.landmark_tracking.LandmarkModel`).
        reads: counts of landmark-model reads, ``{"split": int, "follow": int}``, added to in place (the
            estimator's ``reads``).
        num_poses: most people kept per frame.
        masks: keep the segmentation masks of the readings added (else they are set to None once judged).
        duplicate_iou: box IoU above which a side of a split re-finds someone already found.
        follow_presence, follow_appearance, follow_overlap, follow_patience, follow_deviation, follow_area,
            follow_small: the limits a followed reading must keep (:meth:`accept`, :meth:`limits`) and the
            frames a person is carried unseen.
        split_area, split_separation, split_appearance: when a detection is tried as two people and when its
            two readings are kept (:meth:`split_pairs`).

    Every setting is given by the estimator (:meth:`reconstruction.pose.PoseEstimator._follower`): its
    arguments of the same names, with their defaults, are the one place these values are written.
    """

    model: LandmarkModel
    reads: dict
    num_poses: int
    masks: bool
    duplicate_iou: float
    follow_presence: float
    follow_appearance: float
    follow_overlap: float
    follow_patience: int
    follow_deviation: float
    follow_area: float
    follow_small: tuple[float, float, float, float] | None
    split_area: float
    split_separation: float
    split_appearance: float

    def follow(self, frames: np.ndarray, dets: list[list[Detection]], order: list[int]) -> None:
        """Carry every person along ``order`` and, where nobody found in a frame is them, read them there with
        the landmark model on their region from the last frame they were seen in, moved by their mean step
        per frame; the people found there are hidden from the model (it reads the most salient person in its
        square). A reading :meth:`accept` refuses while someone found covers where the person was expected
        leaves them carried unseen for up to ``follow_patience`` frames: people crossing come out the other
        side.

        ``frames`` is ``(F,H,W,3)`` uint8; ``dets`` holds each frame's detections (pixels) and is changed in
        place: followed readings (``followed`` True, with ``appearance``) are added and a detection over two
        people read apart is dropped; ``order`` is the frame indices of one sweep (forward or backward)."""
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
                d = reading_detection(r, W, H)
                d.apart = line
                pred = a.last.box + (a.gap + 1) * np.concatenate([a.step, a.step])
                if verdict if verdict is not None else self.accept(frames[f], d, r.presence, pred, a.looks, found):
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
                if j not in claimed and proportion_deviation(d.world) <= self.limits(d, H)[1]:
                    roi = roi_from_landmarks(d.keypoints)
                    if roi is not None:
                        nxt.append(_Followed(d, roi, np.zeros(2), d.appearance, apart=_apart_offset(d)))
            active = [a for a in nxt if a.roi is not None]

    def _read_missing(self, frame: np.ndarray, missing: list[_Followed], found: list[Detection],
                      cover: np.ndarray | None) -> tuple[list, list, list]:
        """The landmark model's readings of the followed people ``missing`` in ``frame``, the people ``found``
        there (pixels ``cover``) hidden, for each reading whether it was already judged (True/False, by
        :meth:`accept`) or not (None), and the line it was read apart along (``Detection.apart``) or None. Two
        of them once read apart (``Detection.apart``) and expected side by side (boxes meeting) are read apart
        again (:func:`reconstruction.proposals.read_apart`: a line between them, moved until both readings are
        accepted); each other person with the far side of a line hidden from every such neighbour missed too
        (:meth:`_apart`). People never read apart are read as before: walkers crossing pass in front of each
        other, and no line parts them. ``cover`` is ``(H,W)`` bool or None."""
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
        for i, r in zip(singles, self.model.read(frame, rois, masks=True, hide=hides)):
            readings[i] = r
        self.reads["follow"] += len(rois)
        for i, j in pairs:
            point, u = _line_between(missing[i], missing[j])
            gap = float((missing[j].expected()[1] - missing[i].expected()[1]) @ u)
            people = {-1: missing[i], 1: missing[j]}

            def good(r, side, people=people):
                a, other = people[side], people[-side]
                d = reading_detection(r, W, H)
                return self.accept(frame, d, r.presence, a.expected()[0], a.looks, found, other.looks)

            got = read_apart(frame, self.model, point, u, max(2.0, 0.15 * abs(gap)),
                             lambda offset, side, people=people: people[side].roi.shifted(
                                 *((people[side].gap + 1) * people[side].step)),
                             good, hide=cover)
            self.reads["follow"] += got.reads
            readings[i], readings[j] = got.first, got.second
            verdicts[i], verdicts[j] = got.ok
            lines[i], lines[j] = (np.stack([got.line, s * u]).astype(np.float32) for s in (1.0, -1.0))
        return readings, verdicts, lines

    @staticmethod
    def _apart(a: _Followed, others: list[_Followed], cover: np.ndarray | None, H: int,
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

    def split_pairs(self, frame: np.ndarray, found: list[Detection]) -> list[Detection]:
        """``found`` with each detection that may straddle two people side by side replaced by the two
        (``split_pairs``); a side that re-finds someone else found here is left out.

        A detection is tried when its mask covers more than ``split_area`` x its landmarks' height squared or
        its :func:`proportion_deviation` exceeds ``follow_deviation``; the two readings get ``appearance`` and
        ``apart`` (``(2,2)`` pixels: a point of the line between them and the unit direction towards the other).
        ``frame`` is ``(H,W,3)`` uint8; ``found`` is not changed."""
        H, W = frame.shape[:2]
        out = list(found)
        for d in found:
            if d.mask is None or len(out) >= self.num_poses:
                continue
            height = float(np.ptp(d.keypoints[:, 1]))
            wide = float((d.mask > 0.5).sum()) > self.split_area * height ** 2
            if not wide and proportion_deviation(d.world) <= self.follow_deviation:
                continue
            split = split_reading(frame, d.keypoints, d.mask, self.model,
                                  lambda r, side: self.whole(r, W, H, height), self.split_separation)
            if split is None:
                continue
            pair = [reading_detection(r, W, H) for r in (split.first, split.second)]
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

    def whole(self, r, W: int, H: int, height: float) -> bool:
        """Whether the reading ``r`` of one side of a split is one whole person: as a followed reading is
        checked (presence, :func:`plausible_body`, ``follow_deviation``, ``follow_area``), at least 60% of
        the split detection's ``height`` (pixels), centred inside the ``W`` x ``H`` frame. Counts one ``split``
        read in ``reads``."""
        self.reads["split"] += 1  # each read of a split is judged once
        if r.presence < self.follow_presence or not plausible_body(r.keypoints):
            return False
        if proportion_deviation(r.world) > self.follow_deviation:
            return False
        h = float(np.ptp(r.keypoints[:, 1]))
        if h < 0.6 * height or (r.mask is not None and float((r.mask > 0.5).sum()) > self.follow_area * h ** 2):
            return False
        d = reading_detection(r, W, H)
        cx, cy = 0.5 * (d.box[:2] + d.box[2:])
        return bool(0 <= cx < W and 0 <= cy < H)

    def limits(self, d: Detection, frame_height: int) -> tuple[float, float]:
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

    def accept(self, frame: np.ndarray, d: Detection, presence: float, pred: np.ndarray,
               looks: np.ndarray | None, found: list[Detection], rival: np.ndarray | None = None) -> bool:
        """Whether a followed reading ``d`` is still the person expected at box ``pred``: the model sees a person
        (``follow_presence``), a human body (:func:`plausible_body`, ``follow_deviation``), where the
        person was expected (box IoU with ``pred`` >= 0.3), inside the frame, with the mask of one person
        (``follow_area``; both limits looser for small people, ``follow_small``), not lying on anyone in
        ``found`` (``follow_overlap``) and looking like them (``follow_appearance``, against ``looks``; with
        ``rival``, the looks of the neighbour read apart from them, it is enough to look more like them than like
        the neighbour: the half of a pair read alone often shows some of the other's colours).

        ``frame`` is ``(H,W,3)`` uint8, ``presence`` the model's person probability in [0, 1], ``pred`` a box
        ``(4,)`` in pixels, ``looks`` and ``rival`` :func:`appearance_descriptor` values or None."""
        H, W = frame.shape[:2]
        if presence < self.follow_presence or not plausible_body(d.keypoints):
            return False
        area, deviation = self.limits(d, H)
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


def reading_detection(r, W: int, H: int) -> Detection:
    """A :class:`Detection` from a ``landmark_tracking.RoiReading`` ``r`` in a ``W`` x ``H`` frame (box around
    its landmarks, score their mean visibility)."""
    box = np.clip(landmark_box(r.keypoints), 0, [W, H, W, H]).astype(np.float32)
    return Detection(r.keypoints, r.world, box, float(r.keypoints[:, 2].mean()), r.mask)


@dataclass
class _Followed:
    """A person carried along a sweep of :meth:`Follower.follow`: their last reading, the region for the
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

    def seen(self, d: Detection, roi, frames: int) -> _Followed:
        """Seen again as ``d`` ``frames`` frames after the last reading; the step is the mean over the last
        three sightings (a walker's hips surge and stall within a stride)."""
        path = (self.path or [(0, _hip_centre(self.last))]) + [(frames, _hip_centre(d))]
        path = path[-4:]
        span = sum(n for n, _ in path[1:])
        step = (path[-1][1] - path[0][1]) / max(span, 1)
        looks = self.looks if d.followed or d.appearance is None else d.appearance
        return _Followed(d, roi, step, looks, 0, path, _apart_offset(d) or self.apart)


def _line_between(a: _Followed, b: _Followed) -> tuple[np.ndarray, np.ndarray]:
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


def _covers_two(d: Detection, people: list[_Followed], share: float = 0.5) -> bool:
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
