import numpy as np
import pytest

from reconstruction.pose import Detection, landmark_box
from reconstruction.track import assignment_cost, track_people
from render.errors import AmgError


def _person(cx, cy, h=60.0, seed=0):
    """A detection: 33 landmarks scattered in a 0.4h x h box centred at (cx, cy)."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((33, 3), np.float32)
    kp[:, 0] = cx + rng.uniform(-0.2, 0.2, 33) * h
    kp[:, 1] = cy + np.linspace(-0.5, 0.5, 33) * h
    kp[:, 2] = 1.0
    world = rng.normal(0, 0.3, (33, 3)).astype(np.float32)
    return Detection(kp, world, landmark_box(kp), 1.0)


def test_two_people_crossing_keep_their_ids():
    F = 16
    dets = []
    for f in range(F):
        a = _person(40 + 8 * f, 100, seed=1)  # walks right
        b = _person(160 - 8 * f, 104, seed=2)  # walks left, crossing at frame 7-8
        frame = [b, a] if f % 2 else [a, b]  # the detector's order means nothing
        if f == 8:
            frame = [a]  # b hidden behind a at the crossing
        dets.append(frame)
    result = track_people(dets, max_gap=2)
    assert [t.track_id for t in result.tracks] == [1, 2]
    first, second = result.tracks
    # track 1 is the person seen first at x=40 who moves right all along
    assert np.all(np.diff(first.boxes[:, 0]) > 0)
    assert np.all(np.diff(second.boxes[:, 0]) < 0)
    assert second.bridged[8] and not second.detected[8] and second.known.all()
    assert abs(second.keypoints[8, 0, 0] - _person(160 - 64, 104, seed=2).keypoints[0, 0]) < 1e-3
    assert second.keypoints[8, 0, 2] == pytest.approx(0.5)
    assert result.flags == []


def test_short_tracks_dropped_and_lost_subjects_flagged():
    F = 12
    dets = [[_person(50, 50, seed=1)] if f < 6 or f >= 11 else [] for f in range(F)]
    dets[3].append(_person(150, 60, seed=3))  # a one-frame false positive
    result = track_people(dets, max_gap=2, max_lost=8)
    # the gap of 5 frames is too long to bridge but short enough to keep the id: lost, not renamed
    assert len(result.tracks) == 1 and result.dropped == [2]
    assert result.flags == ["track 1: subject lost in frames 6-10 of 12"]
    tr = result.tracks[0]
    assert tr.detected.sum() == 7 and not tr.bridged.any() and tr.lost[6:11].all()
    assert (tr.keypoints[6:11, :, 2] == 0).all() and np.allclose(tr.keypoints[6:11, :, 0], tr.keypoints[0, :, 0])
    # with a shorter memory the return is a new, short track and the first one ends
    result = track_people(dets, max_gap=2, max_lost=3)
    assert result.dropped == [2, 3] and result.flags == ["track 1: subject lost in frames 6-11 of 12"]
    nobody = track_people([[] for _ in range(4)])
    assert nobody.tracks == [] and nobody.flags == ["no person found in any frame"]
    with pytest.raises(AmgError):
        track_people([])


def test_one_frame_clip_is_tracked():
    result = track_people([[_person(30, 30)]])
    assert len(result.tracks) == 1 and result.flags == []


def test_assignment_cost_against_a_loop():
    rng = np.random.default_rng(0)
    tk = rng.uniform(0, 100, (3, 33, 3)).astype(np.float32)
    dk = rng.uniform(0, 100, (4, 33, 3)).astype(np.float32)
    tk[..., 2], dk[..., 2] = rng.uniform(0, 1, (3, 33)), rng.uniform(0, 1, (4, 33))
    tb = np.stack([landmark_box(k) for k in tk])
    db = np.stack([landmark_box(k) for k in dk])
    got = assignment_cost(tb, tk, db, dk)
    from reconstruction.pose import box_iou
    for i in range(3):
        diag = np.hypot(tb[i, 2] - tb[i, 0], tb[i, 3] - tb[i, 1])
        for j in range(4):
            num = den = 0.0
            for k in range(33):
                if tk[i, k, 2] >= 0.3 and dk[j, k, 2] >= 0.3:
                    w = tk[i, k, 2] * dk[j, k, 2]
                    num += w * np.linalg.norm(tk[i, k, :2] - dk[j, k, :2])
                    den += w
            d = min((num / den if den else diag) / diag, 2.0)
            assert abs(got[i, j] - ((1 - box_iou(tb[i], db[j])[0, 0]) + d)) < 1e-5
