"""Closed loop: Gaussian avatars of the default body with known motions, rendered, then extracted again.

16 frames at 256x256 and 8 fps as AMG trains on. ``benchmarks/closed_loop.py`` runs the full table (four
motions, three static cameras and an orbit); here one single-person clip checks the accuracy targets and
the two-person orbit checks identities through a crossing and the colours the captioner names.
"""

import pytest
import torch
from reconstruction_helpers import (
    closed_loop_camera, closed_loop_motions, closed_loop_render, closed_loop_scores,
)

from reconstruction import extract_people
from reconstruction.caption import AttributeCaptioner

MPJPE_MM, REPROJECTION_PX = 80.0, 8.0
GAUSSIANS = 6000  # enough for MediaPipe to see limbs and garments; halves the render time of the default


@pytest.fixture(scope="module")
def estimator():
    from reconstruction.pose import PoseEstimator

    with PoseEstimator(num_poses=2) as est:
        yield est


@pytest.fixture(scope="module")
def crossing(body, estimator):
    """Two dancers facing each other filmed by a half orbit: they pass behind one another mid-clip."""
    motions = closed_loop_motions("dance_pair")
    cams = closed_loop_camera(motions, "orbit")
    frames, truths = closed_loop_render(body, motions, cams, num_gaussians=GAUSSIANS)
    return frames, truths, cams, extract_people(frames, 8, camera=cams, body=body, estimator=estimator)


def test_waving_person_seen_from_45_degrees_with_and_without_the_camera(body, estimator):
    motions = closed_loop_motions("wave")
    cams = closed_loop_camera(motions, "side45")
    frames, truths = closed_loop_render(body, motions, cams, num_gaussians=GAUSSIANS)
    assert frames.shape == (16, 256, 256, 3)
    for camera in (cams, None):
        res = extract_people(frames, 8, camera=camera, body=body, estimator=estimator)
        assert res.track_ids == [1] and res.flags == []
        (score,) = closed_loop_scores(res, truths, cams)
        assert score["pa_mpjpe_mm"] <= MPJPE_MM, score
        assert score["reprojection_px"] <= REPROJECTION_PX, score
        # the fitted joints land on the true ones in the image, through whichever camera was assumed
        assert score["joints_px"] <= REPROJECTION_PX, score
    # without the camera the default one stands in, and the body is placed in front of it
    assert torch.equal(res.cameras.R[0], res.cameras.R[-1])
    assert (res.cameras.project(res.fits[0].joints.double())[1] > 0).all()


def test_two_dancers_keep_their_ids_through_a_crossing(crossing):
    frames, truths, cams, res = crossing
    assert res.track_ids == [1, 2]
    scores = closed_loop_scores(res, truths, cams)
    assert sorted(s["person"] for s in scores) == [0, 1]
    for s in scores:
        assert s["switches"] == 0, s
        assert s["reprojection_px"] <= REPROJECTION_PX, s
        assert s["joints_px"] <= 2 * REPROJECTION_PX, s
    # the one closer to the camera in the middle of the clip hides the other; nobody is lost for long
    assert all(int((kp[..., 2].max(-1) > 0).sum()) >= 12 for kp in res.keypoints)


def test_attribute_captions_name_the_rendered_garment_colours(crossing):
    """Person 0 wears "a red shirt and blue jeans", person 1 "a green shirt and black trousers"."""
    frames, truths, cams, res = crossing
    cap = AttributeCaptioner()
    expected = {0: ("red top", "blue trousers"), 1: ("green top", "black trousers")}
    for s, kp in zip(closed_loop_scores(res, truths, cams), res.keypoints):
        text = cap.appearance(frames, kp, res.masks == s["track_id"])
        for phrase in expected[s["person"]]:
            assert phrase in text, (s["person"], text)
