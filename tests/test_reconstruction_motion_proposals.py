import numpy as np
import pytest

from reconstruction.motion_proposals import moving_regions, proposal_rois
from render.errors import AmgError


def test_bad_inputs_are_refused_in_one_line():
    with pytest.raises(AmgError, match="frames: expected"):
        moving_regions(np.zeros((1, 8, 8, 3), np.uint8), [[]])
    with pytest.raises(AmgError, match="frames: expected"):
        moving_regions(np.zeros((3, 8, 8), np.uint8), [[], [], []])
    with pytest.raises(AmgError, match="people: expected one list"):
        moving_regions(np.zeros((3, 8, 8, 3), np.uint8), [[]])


def test_a_static_background_under_a_turning_camera_gives_no_proposals():
    """A photograph seen by a panning and tilting camera (an exact homography per frame) has no moving blobs."""
    from reconstruction_helpers import photo_background, relative_rotations
    from render.camera import Camera, CameraPath

    F, W, H = 6, 320, 180
    cam = Camera.look_at((0.0, 1.1, 5.0), (0.0, 0.9, 0.0), fov_deg=30.0, width=W, height=H)
    rel = relative_rotations(F, 4.0, 2.0)
    R = rel @ cam.R
    path = CameraPath(cam.K.expand(F, 3, 3), R, -(R @ cam.center[:, None])[..., 0], W, H, 8.0)
    frames = photo_background(path, rel, "coffee").astype(np.uint8)
    assert all(boxes == [] for boxes in moving_regions(frames, [[] for _ in range(F)]))


def test_a_walker_the_detector_misses_is_proposed_and_read(body):
    """On an independently rendered bystanders clip, the readings of moving blobs (``motion_proposals``) find
    true people that detection and following miss, each lying on one true person; regions are upright squares
    around the blob."""
    from reconstruction.pose import PoseEstimator
    from reconstruction_helpers import hard_case

    roi = proposal_rois(np.array([10, 20, 30, 120]))
    assert (roi.cx, roi.cy, roi.size, roi.rotation) == (20.0, 70.0, 140.0, 0.0)
    case = hard_case("bystanders", body, frames=16, num_gaussians=1500, seed=0)
    truth = case["masks"]
    with PoseEstimator(motion_proposals=False) as est:
        before = est.video(case["frames"])
    with PoseEstimator() as est:
        after = est.video(case["frames"])
        assert est.reads["motion"] > 0

    def hit(d, t):
        m = d.mask > 0.5
        return (m & t).sum() >= 0.3 * (m | t).sum()

    new = 0
    for f in range(len(truth)):
        added = after[f][len(before[f]):]
        for d in added:
            m = d.mask > 0.5
            shares = sorted(((m & (truth[f] == i)).sum() / max(m.sum(), 1) for i in range(1, int(truth.max()) + 1)),
                            reverse=True)
            assert shares[0] > 0.5 and shares[1] < 0.25
        for i in range(2, int(truth.max()) + 1):
            t = truth[f] == i
            if t.sum() >= 20 and not any(hit(d, t) for d in before[f]):
                new += any(hit(d, t) for d in added)
    assert new >= 2
