"""Person proposals that do not start from the face-based detector: two people pressed side by side are read
apart (``reconstruction.proposals``) and followed apart (``PoseEstimator``), checked against the true joints
of the rendered ``hug`` hard case (``reconstruction_helpers.hard_case``)."""

import numpy as np
import pytest
import torch
from reconstruction_helpers import hard_case

from reconstruction.pose import Detection, PoseEstimator, landmark_box
from reconstruction.proposals import half_plane, split_reading
from reconstruction.track import track_people
from render.errors import AmgError

#: the limb joints (shoulders, elbows, wrists, hips, knees, ankles) and their SMPL joints
_LANDMARKS = [11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
_JOINTS = [16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8]


@pytest.fixture(scope="module")
def hug():
    from avatars.body import BodyModel

    body = BodyModel.load("default")
    case = hard_case("hug", body, frames=16, num_gaussians=3000)
    case["uv"] = [case["cameras"].project(torch.as_tensor(j, dtype=torch.float64))[0].numpy()[:, _JOINTS]
                  for j in case["people"]]
    return case


@pytest.fixture(scope="module")
def estimator():
    with PoseEstimator() as est:
        yield est


def _shares(keypoints, uv, f):
    """Share of a reading's confident limb joints nearest to each true person's joints in frame ``f``."""
    ok = keypoints[_LANDMARKS, 2] >= 0.5
    d = np.stack([np.linalg.norm(keypoints[_LANDMARKS, :2][ok] - p[f][ok], axis=-1) for p in uv])
    return np.bincount(d.argmin(0), minlength=len(uv)) / max(int(ok.sum()), 1), int(ok.sum())


def test_half_plane_against_a_loop():
    rng = np.random.default_rng(0)
    for _ in range(5):
        point, normal = rng.uniform(0, 20, 2), rng.normal(size=2)
        got = half_plane(12, 17, point, normal)
        want = np.array([[(x + 0.5 - point[0]) * normal[0] + (y + 0.5 - point[1]) * normal[1] > 0
                          for x in range(17)] for y in range(12)])
        assert got.shape == (12, 17) and np.array_equal(got, want)
    with pytest.raises(AmgError, match="normal"):
        half_plane(4, 4, (1, 1), (0, 0))
    with pytest.raises(AmgError, match="frame size"):
        half_plane(0, 4, (1, 1), (1, 0))


def test_a_reading_over_the_hugging_pair_is_read_as_its_two_people(hug, estimator):
    """The detector's one reading in the first frame straddles both people; split along a line across its
    mask, each side read with the other hidden lies on one person (at most a fifth of its limb joints nearest
    the other), the two on different people."""
    frame = hug["frames"][0]
    fused = max(estimator.detect_tiled(frame, estimator.tile_scales) + estimator(frame),
                key=lambda d: float(np.ptp(d.keypoints[:, 1])))
    H, W = frame.shape[:2]
    height = float(np.ptp(fused.keypoints[:, 1]))
    estimator.reads = {"split": 0, "follow": 0}
    split = split_reading(frame, fused.keypoints, fused.mask, estimator._landmark_model,
                          lambda r, side: estimator._follower().whole(r, W, H, height))
    assert split is not None and split.reads >= 2
    owners = []
    for r in (split.first, split.second):
        share, seen = _shares(r.keypoints, hug["uv"], 0)
        assert seen >= 6 and share.max() >= 0.8, share
        owners.append(int(share.argmax()))
    assert sorted(owners) == [0, 1]
    # the first is on the image's left of the line, the second on its right
    assert (0.5 * (split.first.keypoints[23, 0] + split.first.keypoints[24, 0]) < split.line[0]
            < 0.5 * (split.second.keypoints[23, 0] + split.second.keypoints[24, 0]))
    with pytest.raises(AmgError, match="mask"):
        split_reading(frame, fused.keypoints, fused.mask[:10], estimator._landmark_model, lambda r, s: True)


def test_one_person_is_not_split(estimator):
    """The astronaut alone: no line gives two people far enough apart and looking different."""
    import skimage.data

    image = skimage.data.astronaut()
    people = estimator._follower().split_pairs(image, estimator(image))
    assert len(people) == 1 and people[0].apart is None


def test_the_hugging_pair_is_followed_apart_and_tracked_as_two(hug, estimator):
    """Over the whole clip (the detector finds nobody in nine frames and only readings over both elsewhere)
    both people are read in at least 13 of 16 frames, every reading tracking keeps lies on one person, and
    the two tracks are the two people."""
    dets = estimator.video(hug["frames"])
    assert estimator.reads["split"] > 0
    result = track_people(dets, frame_height=hug["frames"].shape[1])
    assert not result.flags and len(result.subjects) == 2
    owners = []
    for t in result.subjects:
        people = []
        for f in np.nonzero(t.detected)[0]:
            share, seen = _shares(dets[f][t.detection_index[f]].keypoints, hug["uv"], f)
            assert share.min() < 0.3, (f, share)  # not a reading over both
            people.append(int(share.argmax()))
        assert len(people) >= 13 and len(set(people)) == 1, people  # one person throughout: no id switch
        owners.append(people[0])
    assert sorted(owners) == [0, 1]


def test_readings_made_alone_are_not_taken_for_fused_ones():
    """Two people shoulder to shoulder, one's hands and face reaching over to the other: tracking's fused-
    reading test would reject the reading, unless the pose estimator read it with its neighbour hidden
    (followed, or read apart)."""
    def person(cx, seed):
        kp = np.zeros((33, 3), np.float32)
        r = np.random.default_rng(seed)
        kp[:, 0] = cx + r.uniform(-6, 6, 33)
        kp[:, 1] = np.linspace(40, 140, 33)
        kp[:, 2] = 1.0
        return Detection(kp, r.normal(0, 0.3, (33, 3)).astype(np.float32), landmark_box(kp), 1.0)

    F = 8
    frames = [[person(100, 1), person(130, 2)] for _ in range(F)]
    reach = frames[5][0].keypoints.copy()
    reach[:11, 0] += 30  # the face over the other's
    reach[15:23, 0] += 30  # the hands over the other's
    for followed in (False, True):
        dets = [list(fr) for fr in frames]
        d = Detection(reach, dets[5][0].world, landmark_box(reach), 1.0, followed=followed)
        dets[5][0] = d
        result = track_people(dets, max_gap=2)
        assert result.merged == ([] if followed else [(5, 0)])
