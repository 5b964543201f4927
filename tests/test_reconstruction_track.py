import numpy as np
import pytest

from reconstruction.pose import Detection, landmark_box
from reconstruction.track import (SIDE_PAIRS, assignment_cost, facing_directions, mirror_landmarks, resolve_sides,
                                  track_people)
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
    assert result.flags == ["track 1: subject lost in frames 6-10 of 12 (longest usable run 6 frames, "
                            "expected at least 9)"]
    tr = result.tracks[0]
    assert tr.detected.sum() == 7 and not tr.bridged.any() and tr.lost[6:11].all()
    assert (tr.keypoints[6:11, :, 2] == 0).all() and np.allclose(tr.keypoints[6:11, :, 0], tr.keypoints[0, :, 0])
    # with a shorter memory the return is a new, short track and the first one ends
    result = track_people(dets, max_gap=2, max_lost=3)
    assert result.dropped == [2, 3] and len(result.flags) == 1
    assert result.flags[0].startswith("track 1: subject lost in frames 6-11 of 12")
    nobody = track_people([[] for _ in range(4)])
    assert nobody.tracks == [] and nobody.flags == ["no person found in any frame"]
    with pytest.raises(AmgError):
        track_people([])


def test_bystanders_entering_and_leaving_never_drop_the_clip():
    """A walker present all along is the subject; passers-by who enter, leave or are missed for frames
    are bystanders and flag nothing; the choice and its reasons are recorded."""
    F = 16
    dets = []
    for f in range(F):
        frame = [_person(60 + 4 * f, 120, h=120, seed=1)]  # the walker
        if 3 <= f < 9:
            frame.append(_person(250, 60, h=50, seed=2))  # enters at 3, leaves after 8
        if f >= 10:
            frame.append(_person(20 + 2 * f, 40, h=40, seed=3))  # enters at 10, stays
        if f % 3 == 0:
            frame.append(_person(200, 150, h=110, seed=4))  # a large person, missed every other frame
        dets.append(frame)
    result = track_people(dets, max_gap=1, max_lost=1)
    assert result.flags == [] and result.kept == (0, F) and result.valid.all()
    walker = [t for t in result.tracks if t.detected.all()][0]
    assert [t.track_id for t in result.subjects] == [walker.track_id]
    assert all(t.role == "bystander" and "bystander (" in t.reason for t in result.bystanders)
    assert len(result.bystanders) >= 2 and walker.reason.startswith("subject 1 of 1: detected in 16 of 16")
    people = result.people()
    assert people[str(walker.track_id)]["role"] == "subject" and len(people) == len(result.tracks)
    # entering is not lost
    late = [t for t in result.tracks if t.detected[10:].all() and not t.detected[:10].any()][0]
    assert not late.lost.any() and not late.present[:10].any() and (late.confidence[:10] == 0).all()


def test_two_subjects_and_a_subject_leaving_cuts_the_clip():
    F = 16
    dets = [[_person(60, 100, h=100, seed=1)] + ([_person(160, 100, h=95, seed=2)] if f < 13 else [])
            for f in range(F)]
    result = track_people(dets, max_gap=1, max_subjects=2)
    assert len(result.subjects) == 2 and result.flags == []
    assert result.kept == (0, 13) and result.valid[:13].all() and not result.valid[13:].any()
    assert track_people(dets, max_gap=1, max_subjects=2, min_valid_fraction=1.0).flags[0].startswith(
        "track 2: subject lost in frames 13-15 of 16")
    one = track_people(dets, max_gap=1, max_subjects=1)
    assert len(one.subjects) == 1 and one.flags == [] and one.kept == (0, F)


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


def _walker_track(F=12):
    """Landmarks of the stick body walking and turning in front of a static camera."""
    import torch
    from reconstruction_helpers import stick_body, synthetic_observations, walking_pose

    from reconstruction.fit import BodyKeypoints
    from reconstruction.video import default_camera
    from render.camera import CameraPath

    body = stick_body()
    go, pose, tr = walking_pose(F)
    return synthetic_observations(BodyKeypoints(body), torch.zeros(4), go, pose, tr,
                                  CameraPath.static(default_camera(256, 256), F))[:2]


def test_mirror_swaps_sides_and_is_its_own_inverse():
    kp, world = _walker_track(4)
    mkp, mw = mirror_landmarks(kp, world)
    for left, right in SIDE_PAIRS:
        assert np.array_equal(mkp[:, left], kp[:, right]) and np.array_equal(mw[:, left, :2], world[:, right, :2])
    assert np.array_equal(mw[:, 0, 2], -world[:, 0, 2])
    back = mirror_landmarks(mkp, mw)
    assert np.array_equal(back[0], kp) and np.array_equal(back[1], world)
    # the mirrored reading faces the other way in depth
    a, b = facing_directions(world, kp[..., 2]), facing_directions(mw, mkp[..., 2])
    assert np.allclose(b[:, 2], -a[:, 2], atol=1e-6)


def test_resolve_sides_undoes_frames_read_back_to_front():
    kp, world = _walker_track(12)
    bad_kp, bad_world = kp.copy(), world.copy()
    flipped = [4, 5, 9]
    bad_kp[flipped], bad_world[flipped] = mirror_landmarks(kp[flipped], world[flipped])
    fixed_kp, fixed_world, swapped = resolve_sides(bad_kp, bad_world)
    assert np.nonzero(swapped)[0].tolist() == flipped
    assert np.allclose(fixed_kp, kp) and np.allclose(fixed_world, world)
    # a consistent track is left alone, and tracking applies the same step to detections
    assert not resolve_sides(kp, world)[2].any()
    dets = [[Detection(k, w, landmark_box(k), 1.0)] for k, w in zip(bad_kp, bad_world)]
    (track,) = track_people(dets).tracks
    assert np.allclose(track.keypoints, kp) and np.allclose(track.world, world)
    (raw,) = track_people(dets, side_swap_cost=None).tracks
    assert np.allclose(raw.keypoints, bad_kp)


def test_resolve_sides_dynamic_programme_matches_brute_force():
    """The Viterbi choice against trying all 2^F readings on random facing directions."""
    import itertools

    rng = np.random.default_rng(7)
    F, cost = 7, 0.5
    for trial in range(20):
        world = rng.normal(0, 0.3, (F, 33, 3)).astype(np.float32)
        kp = np.concatenate([rng.uniform(0, 64, (F, 33, 2)), np.ones((F, 33, 1))], -1).astype(np.float32)
        _, _, swapped = resolve_sides(kp, world, swap_cost=cost)
        mkp, mw = mirror_landmarks(kp, world)
        dirs = np.stack([facing_directions(world, kp[..., 2]), facing_directions(mw, mkp[..., 2])], 1)

        def total(choice):
            d = dirs[np.arange(F), list(choice)]
            turns = np.arccos(np.clip((d[:-1] * d[1:]).sum(-1), -1, 1)).sum()
            return turns + cost * sum(choice)

        best = min(total(c) for c in itertools.product((0, 1), repeat=F))
        assert total(swapped.astype(int)) == pytest.approx(best, abs=1e-9), trial


def test_torso_axes_recover_a_known_rotation():
    """Shoulders and hips of a body whose left, up and forward axes are the columns of a random rotation."""
    from scipy.spatial.transform import Rotation

    from reconstruction.pose import LANDMARK_INDEX, torso_axes

    R = Rotation.random(5, random_state=3).as_matrix()
    body = {"left_shoulder": (0.18, 0.5, 0.0), "right_shoulder": (-0.18, 0.5, 0.0),
            "left_hip": (0.1, 0.0, 0.0), "right_hip": (-0.1, 0.0, 0.0)}
    world = np.zeros((5, 33, 3))
    conf = np.ones((5, 33))
    for name, p in body.items():
        world[:, LANDMARK_INDEX[name]] = R @ np.asarray(p)
    assert np.allclose(torso_axes(world, conf), R, atol=1e-12)
    conf[2, LANDMARK_INDEX["left_hip"]] = 0.05
    axes = torso_axes(world, conf)
    assert np.isnan(axes[2]).all() and np.isfinite(axes[[0, 1, 3, 4]]).all()


def test_appearance_keeps_ids_when_motion_would_swap_them():
    """Two people walk towards each other, are hidden for three frames where they meet, and turn back:
    a constant-velocity prediction says they passed each other; their colours say they did not."""
    from reconstruction.pose import appearance_descriptor, appearance_distance

    red = np.zeros((40, 40, 3), np.uint8)
    red[:] = (200, 30, 30)
    blue = red[..., ::-1].copy()
    F = 14

    def at(x, colour, seed):
        d = _person(x, 100, seed=seed)
        frame = np.zeros((200, 300, 3), np.uint8)
        frame[:, :] = colour[0, 0]
        d.appearance = appearance_descriptor(frame, d.keypoints)
        return d

    dets = []
    for f in range(F):
        step = f if f <= 7 else 14 - f  # forwards until frame 7, then back
        a, b = at(60 + 12 * step, red, 1), at(220 - 12 * step, blue, 2)
        dets.append([] if 6 <= f <= 8 else [b, a] if f % 2 else [a, b])
    assert appearance_distance(dets[0][0].appearance, dets[0][1].appearance) > 0.9
    assert appearance_distance(dets[0][0].appearance, dets[12][0].appearance) < 1e-6

    def colours(result):
        out = []
        for t in result.tracks:
            x = t.keypoints[t.detected, 0, 0]
            out.append((np.sign(x[:4].mean() - 140), np.sign(x[-4:].mean() - 140)))
        return out

    kept = track_people(dets, max_gap=3, max_lost=4)
    assert len(kept.tracks) == 2 and sorted(colours(kept)) == [(-1, -1), (1, 1)]  # each stays on its side
    swapped = track_people(dets, max_gap=3, max_lost=4, appearance_weight=0.0)
    assert sorted(colours(swapped)) != [(-1, -1), (1, 1)]  # motion alone swaps them


def test_a_reading_fused_from_two_people_crossing_goes_to_neither():
    """At a crossing the detector reads one body from two people: the upper half on the one walking right,
    the legs on the one walking left. Its landmarks lie half on each person's predicted landmarks, so neither
    track takes it (both are bridged over the frame) and it starts no track; without the check the walker
    it is matched to gets landmarks on the other person."""
    F = 12
    dets, fused = [], None
    for f in range(F):
        a = _person(40 + 8 * f, 100, seed=1)
        b = _person(120 - 8 * f, 100, seed=2)  # 16 px apart at frame 4, crossing at frame 5
        if f == 4:
            kp = a.keypoints.copy()
            kp[17:] = b.keypoints[17:]  # legs from the other walker
            fused = Detection(kp, a.world, landmark_box(kp), 1.0)
            dets.append([fused])
        else:
            dets.append([a, b])
    result = track_people(dets, max_gap=2)
    assert result.merged == [(4, 0)]
    assert len(result.tracks) == 2 and all(t.bridged[4] and not t.detected[4] for t in result.tracks)
    assert result.flags == []
    kept = track_people(dets, max_gap=2, merge_share=None)
    assert kept.merged == [] and sum(t.detected[4] for t in kept.tracks) == 1
