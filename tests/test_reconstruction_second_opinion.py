"""Further readings of the people fitted: mirrored reads, a second landmark model, their average.

The heavy landmark model is not part of the test environment (it is built on request from an npm package);
the embedded full model stands in as the second opinion, which exercises the same code.
"""

import io
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from reconstruction.landmark_tracking import DEFAULT_MODEL, HEAVY_MODEL, LANDMARK_NAMES, LandmarkModel, Roi, roi_from_landmarks
from reconstruction.pose import PoseEstimator
from render.errors import AmgError

# left and right exchanged, from the names alone (independent of the module's own pair table)
_SWAP = [LANDMARK_NAMES.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
         for n in LANDMARK_NAMES]


def _mirrored_region(roi: Roi, W: int) -> Roi:
    """The region of a left-right flipped frame (pixel x -> W-1-x) whose crop is ``roi``'s crop flipped
    (input column u -> 255-u), from the affine map of the region written out here."""
    k, c, s = roi.size / 256, np.cos(roi.rotation), np.sin(roi.rotation)
    A = np.array([[c, -s], [s, c]]) * k
    t = np.array([roi.cx, roi.cy]) - A @ [128, 128]
    flip = np.diag([-1.0, 1.0])
    t2 = flip @ (A @ [255, 0] + t) + [W - 1, 0]
    centre = t2 + flip @ A @ flip @ [128, 128]
    return Roi(float(centre[0]), float(centre[1]), roi.size, -roi.rotation)


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def walker(body):
    """Three 256x256 frames of the default-body avatar walking (the closed-loop front camera)."""
    from reconstruction_helpers import closed_loop_camera, closed_loop_motions, closed_loop_render

    motions = closed_loop_motions("walk", frames=3)
    frames, _ = closed_loop_render(body, motions, closed_loop_camera(motions, "front", frames=3), num_gaussians=4000)
    return frames


def test_a_mirrored_read_is_the_reading_of_the_mirrored_frame(astronaut):
    """Reading a region mirrored equals reading the left-right flipped photograph at the matching region and
    mapping that reading back by hand (x flipped, left and right names exchanged, world x negated): within
    a pixel (the two paths count pixel positions from different edges: at most the region's scale, 1.6 px
    here, less a pixel); the mirrored reading's left shoulder is the plain reading's left shoulder."""
    H, W = astronaut.shape[:2]
    model = LandmarkModel()
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    for roi in (Roi(240.0, 300.0, 420.0, 0.0), Roi(250.0, 280.0, 380.0, 0.2)):
        got = model.read(astronaut, [roi], mirrored=True)[0]
        ref = model.read(flipped, [_mirrored_region(roi, W)])[0]
        kp = ref.keypoints[_SWAP].copy()
        kp[:, 0] = W - kp[:, 0]
        world = ref.world[_SWAP].copy()
        world[:, 0] = -world[:, 0]
        assert np.abs(got.keypoints[:, :2] - kp[:, :2]).max() < 1.0
        assert np.abs(got.keypoints[:, 2] - kp[:, 2]).max() < 1e-3 and abs(got.presence - ref.presence) < 1e-3
        assert np.abs(got.world - world).max() < 1e-3
        assert np.abs(got.mask - ref.mask[:, ::-1]).mean() < 1e-3
    plain = model.read(astronaut, [Roi(240.0, 300.0, 420.0, 0.0)])[0]
    mirrored = model.read(astronaut, [Roi(240.0, 300.0, 420.0, 0.0)], mirrored=True)[0]
    ls, rs = LANDMARK_NAMES.index("left_shoulder"), LANDMARK_NAMES.index("right_shoulder")
    width = abs(plain.keypoints[ls, 0] - plain.keypoints[rs, 0])
    assert abs(mirrored.keypoints[ls, 0] - plain.keypoints[ls, 0]) < 0.25 * width
    assert np.sign(mirrored.world[ls, 0] - mirrored.world[rs, 0]) == np.sign(plain.world[ls, 0] - plain.world[rs, 0])


def test_second_reading_averages_the_readings_it_keeps(walker):
    """``second_reading`` is the mean of the given landmarks and the second model's plain and both models'
    mirrored readings of the region the landmarks give (here the second model is the first); two readings
    without ``mirror_reads``; a reading half a torso away from the given one is left out (None when none is
    kept); None where the landmarks give no region; refused without a second model."""
    image = walker[0]
    with PoseEstimator(num_poses=1, second_opinion=DEFAULT_MODEL) as est:
        d = est(image)[0]
        got_kp, got_w = est.second_reading(image, d.keypoints, d.world)
        est.mirror_reads = False
        two_kp, two_w = est.second_reading(image, d.keypoints, d.world)
        first = est.second_opinion

        class Drifted:  # a second model whose reading lies on someone half a torso away
            def read(self, frame, rois, **kw):
                r = first.read(frame, rois, **kw)[0]
                hips, shoulders = d.keypoints[[23, 24], :2].mean(0), d.keypoints[[11, 12], :2].mean(0)
                r.keypoints[:, 0] += 0.5 * np.linalg.norm(shoulders - hips)
                return [r]

        est.second_opinion = Drifted()
        assert est.second_reading(image, d.keypoints, d.world) is None
        est.second_opinion = first
        unseen = d.keypoints.copy()
        unseen[:, 2] = 0.0
        assert est.second_reading(image, unseen, d.world) is None
        with pytest.raises(AmgError, match="keypoints, world"):
            est.second_reading(image, d.keypoints[:17], d.world)
    model = LandmarkModel()
    roi = roi_from_landmarks(d.keypoints)
    plain = model.read(image, [roi], masks=False)[0]
    mirrored = model.read(image, [roi], masks=False, mirrored=True)[0]
    want_kp = (d.keypoints + plain.keypoints + 2 * mirrored.keypoints) / 4
    want_w = (d.world + plain.world + 2 * mirrored.world) / 4
    assert np.abs(got_kp - want_kp).max() < 1e-3 and np.abs(got_w - want_w).max() < 1e-5
    assert np.abs(two_kp - (d.keypoints + plain.keypoints) / 2).max() < 1e-3
    assert np.abs(two_w - (d.world + plain.world) / 2).max() < 1e-5
    with PoseEstimator(num_poses=1) as est:
        with pytest.raises(AmgError, match="no second_opinion"):
            est.second_reading(image, d.keypoints, d.world)
    with pytest.raises(AmgError, match="second_opinion: .*not found"):
        PoseEstimator(second_opinion="/nonexistent/heavy.task")


def test_the_tracks_take_the_second_reading_mirrored_as_they_mirrored_the_detection():
    """Each fitted track's detected frame gets the second reading of the detection it matched, mirrored
    where side resolution mirrored that frame; a frame whose landmarks are neither the detection's nor its
    mirror is left alone, and frames without a detection are not read."""
    from reconstruction.extract import _second_opinion
    from reconstruction.pose import Detection
    from reconstruction.track import Track, mirror_landmarks

    rng = np.random.default_rng(0)
    F = 4
    dets = []
    for f in range(F):
        kp = np.concatenate([rng.uniform(0, 60, (33, 2)), np.ones((33, 1))], 1).astype(np.float32)
        dets.append([Detection(kp, rng.normal(size=(33, 3)).astype(np.float32), np.array([0, 0, 60, 60], np.float32),
                               1.0), Detection(kp + 5, kp * 0, np.array([5, 5, 65, 65], np.float32), 1.0)])
    kp = np.stack([d[0].keypoints for d in dets])
    world = np.stack([d[0].world for d in dets])
    kp[1], world[1] = mirror_landmarks(kp[1], world[1])
    kp[2, 0, 0] += 3.0  # smoothed or changed: not the detection's reading
    track = Track(1, kp.copy(), world.copy(), np.zeros((F, 4), np.float32), np.array([1, 1, 1, 0], bool),
                  np.zeros(F, bool), np.array([0, 0, 0, -1]), np.zeros(F, bool))
    calls = []

    def second_reading(frame, keypoints, world, hide=None):
        calls.append(hide)
        return keypoints + 1.0, world + 2.0

    _second_opinion(SimpleNamespace(second_reading=second_reading), np.zeros((F, 64, 64, 3), np.uint8), dets, [track])
    d0, d1 = dets[0][0], dets[1][0]
    assert np.array_equal(track.keypoints[0], d0.keypoints + 1.0) and np.array_equal(track.world[0], d0.world + 2.0)
    mk, mw = mirror_landmarks(d1.keypoints + 1.0, d1.world + 2.0)
    assert np.array_equal(track.keypoints[1], mk) and np.array_equal(track.world[1], mw)
    assert np.array_equal(track.keypoints[2], kp[2]) and np.array_equal(track.keypoints[3], kp[3])
    assert len(calls) == 2 and all(h is not None and h[10, 10] and not h[2, 2] for h in calls)  # the other hidden


def test_extract_people_reads_the_fitted_people_again(walker):
    """With a second opinion, ``extract_people`` spends its time on it (``seconds``) and the fitted track's
    landmarks move by less than a tenth of the person's height, but move."""
    from reconstruction import extract_people

    frames = walker
    fit = {"iterations": 5, "orient_iterations": 5, "robust_rounds": 0}
    with PoseEstimator(num_poses=1) as est:
        plain = extract_people(frames, 8.0, estimator=est, fit=fit, ground=False)
    with PoseEstimator(num_poses=1, second_opinion=DEFAULT_MODEL) as est:
        again = extract_people(frames, 8.0, estimator=est, fit=fit, ground=False)
    assert "second_opinion" in again.seconds and "second_opinion" not in plain.seconds
    moved = np.abs(again.keypoints[0][..., :2] - plain.keypoints[0][..., :2]).max()
    assert 0.0 < moved < 0.1 * 256


def test_the_heavy_bundle_is_built_only_from_the_pinned_tarball(tmp_path, monkeypatch):
    """The build tool takes the heavy model from the npm tarball only when its sha512 integrity (npm's
    ``sha512-`` base64 form) is the pinned one, and names the tarball when it is not."""
    import base64
    import hashlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "build_pose_model", Path(__file__).resolve().parents[1] / "tools" / "build_pose_model.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    payload = b"TFL3 not really a model"
    tarball = tmp_path / "mediapipe-pose.tgz"
    with tarfile.open(tarball, "w:gz") as tf:
        info = tarfile.TarInfo(tool.HEAVY_MEMBER)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    assert tool.npm_integrity(tarball) == digest
    with pytest.raises(SystemExit, match="mediapipe-pose.tgz: expected @mediapipe/pose@"):
        tool.heavy_landmarker(tarball)
    monkeypatch.setattr(tool, "NPM_INTEGRITY", digest)
    assert tool.heavy_landmarker(tarball) == payload
    with pytest.raises(SystemExit, match="variant"):
        tool.build(tmp_path / "x.task", variant="huge")


@pytest.mark.skipif(not HEAVY_MODEL.is_file(), reason="the heavy bundle is built on request "
                    "(tools/build_pose_model.py --variant heavy)")
def test_the_built_heavy_bundle_is_read_by_mediapipe_and_finds_the_walker(walker):
    """Where the heavy bundle was built, MediaPipe's own Tasks API (its real consumer) loads it and finds the
    walker where the full bundle does: the confident landmarks within a twentieth of the frame."""
    with PoseEstimator(num_poses=1, follow=False, split_pairs=False, motion_proposals=False) as full, \
            PoseEstimator(model_path=HEAVY_MODEL, num_poses=1, follow=False, split_pairs=False,
                          motion_proposals=False) as heavy:
        a, b = full(walker[1]), heavy(walker[1])
    assert len(a) == len(b) == 1
    seen = (a[0].keypoints[:, 2] > 0.8) & (b[0].keypoints[:, 2] > 0.8)
    assert seen.sum() >= 12
    assert np.abs(a[0].keypoints[seen, :2] - b[0].keypoints[seen, :2]).max() < 256 / 20
