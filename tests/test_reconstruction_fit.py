import numpy as np
import pytest
import torch
from reconstruction_helpers import stick_body, synthetic_observations, walking_pose

from avatars.lbs import batch_rigid_transform
from reconstruction.fit import (BodyKeypoints, FitConfig, body_keypoints_reference, fit_track, mpjpe,
                                procrustes)
from reconstruction.video import default_camera
from render.camera import CameraPath
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def body():
    return stick_body(posedirs=True)


def test_body_keypoints_match_full_body_forward(body):
    bk = BodyKeypoints(body)
    g = torch.Generator().manual_seed(3)
    betas = torch.randn(4, generator=g)
    go, pose, tr = torch.randn(5, 3, generator=g), 0.6 * torch.randn(5, 23, 3, generator=g), torch.randn(5, 3, generator=g)
    j_fast, p_fast = bk(betas, go, pose, tr)
    j_ref, p_ref = body_keypoints_reference(body, bk, betas, go, pose, tr)
    assert torch.allclose(j_fast, j_ref, atol=1e-5)
    assert torch.allclose(p_fast, p_ref, atol=1e-5)
    assert len(bk.landmark_index) == 25  # every target the stick body names


def test_level_kinematics_match_joint_by_joint_chain(body):
    bk = BodyKeypoints(body)
    g = torch.Generator().manual_seed(4)
    rot = axis_angle_to_matrix(torch.randn(7, 24, 3, generator=g))
    joints = torch.randn(7, 24, 3, generator=g)
    posed, _, skin = batch_rigid_transform(rot, joints, body.parents)
    posed2, skin2 = bk.kinematics(rot, joints)
    assert torch.allclose(posed, posed2, atol=1e-5) and torch.allclose(skin, skin2, atol=1e-5)


def test_procrustes_recovers_similarity():
    g = torch.Generator().manual_seed(5)
    src = torch.randn(3, 20, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64))
    s = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    t = torch.randn(3, 3, generator=g, dtype=torch.float64)
    dst = s[:, None, None] * src @ R.transpose(-1, -2) + t[:, None]
    s2, R2, t2 = procrustes(src, dst)
    assert torch.allclose(s2, s) and torch.allclose(R2, R, atol=1e-9) and torch.allclose(t2, t, atol=1e-9)
    assert mpjpe(src, dst).max() < 1e-9 and mpjpe(src, dst, align=False).min() > 0.1


def test_fit_recovers_known_walk_from_2d_and_3d_landmarks(body):
    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(16)
    betas = torch.tensor([0.5, -0.3, 0.2, 0.0])
    cam = default_camera(256, 256)
    path = CameraPath.static(cam, 16)
    kp, world, joints = synthetic_observations(bk, betas, go, pose, tr, path)
    rng = np.random.default_rng(0)
    kp[..., :2] += rng.normal(0, 1.0, kp[..., :2].shape).astype(np.float32)
    world += rng.normal(0, 0.01, world.shape).astype(np.float32)
    fit = fit_track(body, kp, world, cam, body_keypoints=bk)
    pa = 1000 * mpjpe(fit.joints, joints).mean().item()
    assert pa < 30, f"PA-MPJPE {pa:.1f} mm"
    assert fit.residuals["reprojection_px"] < 3
    assert fit.body_pose.shape == (16, 23, 3) and fit.transl.shape == (16, 3)
    # the fit is better than the analytic starting point it refines
    start = fit_track(body, kp, world, cam, body_keypoints=bk, config=FitConfig(iterations=0, orient_iterations=0))
    assert 1000 * mpjpe(start.joints, joints).mean().item() > pa


def test_warm_start_carries_shape_and_refines_from_a_fixed_point(body):
    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(16)
    betas = torch.tensor([0.3, 0.0, 0.0, 0.0])
    cam = default_camera(256, 256)
    kp, world, joints = synthetic_observations(bk, betas, go, pose, tr, CameraPath.static(cam, 16))
    first = fit_track(body, kp[:8], world[:8], cam, body_keypoints=bk)
    start = fit_track(body, kp[8:], world[8:], cam, body_keypoints=bk, init=first,
                      config=FitConfig(iterations=0, orient_iterations=0))
    assert torch.equal(start.betas, first.betas)
    warm = fit_track(body, kp[8:], world[8:], cam, body_keypoints=bk, init=first)
    assert 1000 * mpjpe(warm.joints, joints[8:]).mean().item() < 30
    truth = type(first)(betas, go[8:], pose[8:], tr[8:], joints[8:])
    exact = fit_track(body, kp[8:], world[8:], cam, body_keypoints=bk, init=truth)
    # only the shape of the stick body drifts, towards the shape prior (its overall size trades against
    # depth, which the light world term leaves loose: ~6 mm); the pose stays
    assert 1000 * mpjpe(exact.joints, joints[8:]).mean().item() < 8


def test_bad_keypoints_raise(body):
    cam = default_camera(64, 64)
    with pytest.raises(AmgError, match="keypoints"):
        fit_track(body, np.zeros((4, 17, 3)), None, cam)
    bad = np.zeros((2, 33, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(AmgError, match="NaN"):
        fit_track(body, bad, None, cam)
    with pytest.raises(AmgError, match="camera path of 2 frames"):
        fit_track(body, np.zeros((2, 33, 3)), None, CameraPath.static(cam, 3))


def test_robust_refinement_stops_landmarks_on_the_wrong_limb_from_pulling(body):
    """Two frames whose left arm landmarks sit 40 px off (an arm of someone else, confidently reported):
    the robust rounds reweight them by their reprojection error and the arm follows the other frames."""
    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(16)
    cam = default_camera(256, 256)
    kp, world, joints = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, 16))
    kp[..., :2] += np.random.default_rng(0).normal(0, 1.0, kp[..., :2].shape).astype(np.float32)
    kp[6:8, [13, 15, 17, 19], 0] += 40  # left elbow, wrist, pinky, index
    wrist = {}
    for rounds in (0, 1, 2):
        fit = fit_track(body, kp, world, cam, body_keypoints=bk, config=FitConfig(robust_rounds=rounds))
        wrist[rounds] = 1000 * float((fit.joints[6:8, 20] - joints[6:8, 20]).norm(dim=-1).mean())
    assert wrist[0] > 300, wrist  # plain least squares follows the stray landmarks
    assert wrist[1] < 0.5 * wrist[0] and wrist[2] < 80, wrist


def test_occluded_landmarks_keep_a_small_weight(body):
    """An arm the estimator marks unseen (confidence 0.05) in every frame still follows its landmarks'
    guess instead of staying in the rest pose (arms out), unless the floor is switched off."""
    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(16)
    cam = default_camera(256, 256)
    kp, world, joints = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, 16))
    kp[:, [13, 15, 17, 19], 2] = 0.05
    err = {}
    for floor in (0.0, 0.1):
        fit = fit_track(body, kp, world, cam, body_keypoints=bk, config=FitConfig(occluded_weight=floor))
        err[floor] = 1000 * float((fit.joints[:, 20] - joints[:, 20]).norm(dim=-1).mean())
    assert err[0.1] < 25 and err[0.1] < 0.8 * err[0.0], err


def test_split_modules_keep_the_old_import_paths():
    from reconstruction import align, fit, keypoints

    assert fit.BodyKeypoints is keypoints.BodyKeypoints and fit.LANDMARK_TARGETS is keypoints.LANDMARK_TARGETS
    assert fit.procrustes is align.procrustes and fit.mpjpe is align.mpjpe


def test_fit_losses_is_pure_and_the_fit_keeps_the_thread_setting(body):
    from reconstruction.fit import fit_losses, initial_parameters, prepare_observations

    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(4)
    cam = default_camera(128, 128)
    kp, world, _ = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, 4))
    cfg = FitConfig(iterations=3, orient_iterations=2)
    data, path, kp32, wl = prepare_observations(kp, world, cam, bk, cfg)
    params = initial_parameters(kp32, wl, path, bk)
    before = {k: v.detach().clone() for k, v in vars(params).items()}
    a = fit_losses(params, data, bk, cfg)
    b = fit_losses(params, data, bk, cfg)
    assert a.keys() == b.keys() and {"reproj", "world", "bend", "rest", "shape", "smooth"} <= a.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(before[k], getattr(params, k)) for k in before)
    # the exact parameters explain exact data: no reprojection or world error left
    exact = type(params)(torch.zeros(4), go, pose, tr)
    ex = fit_losses(exact, data, bk, cfg)
    assert float(ex["reproj"]) < 1e-8 and float(ex["world"]) < 1e-8 and float(ex["reproj"]) < a["reproj"].detach().item()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit_track(body, kp, world, cam, config=cfg, body_keypoints=bk)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_known_floor_keeps_the_standing_foot_on_it(body):
    """2D-only landmarks leave depth (and so foot height) loosely determined; with the floor given, the
    lowest heel or toe of every frame sits on it and none sinks below."""
    from reconstruction.keypoints import LANDMARK_TARGETS

    bk = BodyKeypoints(body)
    go, pose, tr = walking_pose(8)
    cam = default_camera(256, 256)
    kp, world, _ = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, 8))
    _, pts = bk(torch.zeros(4), go, pose, tr)
    sole = [i for i, lm in enumerate(bk.landmark_index.tolist()) if lm in (29, 30, 31, 32)]
    floor_y = float(pts[:, sole, 1].min())
    rng = np.random.default_rng(1)
    kp[..., :2] += rng.normal(0, 2.0, kp[..., :2].shape).astype(np.float32)
    cfg = FitConfig(iterations=30)
    free = fit_track(body, kp, None, cam, config=cfg, body_keypoints=bk)
    held = fit_track(body, kp, None, cam, config=cfg, body_keypoints=bk, floor=(0.0, 1.0, 0.0, floor_y))

    def lowest(fit):
        _, p = bk(fit.betas, fit.global_orient, fit.body_pose, fit.transl)
        return p[:, sole, 1].min(-1).values - floor_y

    assert lowest(held).abs().max() < 0.03
    assert lowest(held).abs().max() < lowest(free).abs().max()
    assert all(LANDMARK_TARGETS[lm][0] == "vertex" for lm in (29, 30, 31, 32))
