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


def test_joint_limit_penalty_is_zero_inside_the_ranges_and_grows_outside():
    """The library's motions (authored inside ``JOINT_LIMITS``, an elbow folded past 90 degrees included)
    cost nothing; a knee bent backwards or a spine twisted past its range costs the squared excess, the
    same as measured with ``render.rotations.matrix_to_euler``; gradients stay finite at the rest pose."""
    import math

    from avatars import motion_library as ml
    from reconstruction.fit import joint_limit_penalty
    from render.rotations import euler_to_matrix, matrix_to_axis_angle

    for name in ("wave", "box", "sit_down", "fence"):
        assert float(joint_limit_penalty(ml.make(name, seconds=2.0, fps=8.0).body_pose).max()) < 1e-6, name
    euler = torch.zeros(3, 23, 3, dtype=torch.float64)
    euler[1, 3, 0] = -0.45  # left knee (joint 4) bent backwards: 0.4 rad past its -0.05 limit
    euler[2, 5, 1] = 0.9  # spine2 (joint 6) twisted 0.4 rad past its 0.5 limit
    euler[2, 17, 1] = -2.0  # the left elbow folded far forward: inside its range
    pose = matrix_to_axis_angle(euler_to_matrix(euler, "XYZ")).requires_grad_(True)
    pen = joint_limit_penalty(pose)
    assert torch.allclose(pen, torch.tensor([0.0, 0.16, 0.16], dtype=torch.float64), atol=1e-6), pen
    pen.sum().backward()
    assert torch.isfinite(pose.grad).all()
    assert math.isclose(float(joint_limit_penalty(torch.zeros(1, 23, 3))), 0.0)


def test_joint_limits_undo_a_sideways_knee_bend_the_image_cannot_see(body):
    """A walker seen from the side, fitted on 2D alone from a start whose knees bend sideways (towards and
    away from the camera: invisible in the image). Without limits the bend stays and grows; with them the
    knees return inside their +-0.3 rad range and the ankles come closer to the truth."""
    from reconstruction.fit import TrackFit

    bk = BodyKeypoints(body)
    F = 6
    go, pose, tr = walking_pose(F)
    go[:, 1] = np.pi / 2
    cam = default_camera(256, 256)
    kp, _, joints = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, F))
    bent = pose.clone()
    bent[:, 3, 2] += 0.8
    bent[:, 4, 2] -= 0.8
    with torch.no_grad():
        start = TrackFit(torch.zeros(4), go.clone(), bent, tr.clone(), bk(torch.zeros(4), go, bent, tr)[0])
    err, side = {}, {}
    for w in (0.0, 1.0):
        fit = fit_track(body, kp, None, cam, body_keypoints=bk, init=start,
                        config=FitConfig(w_limits=w, w_contact=0.0))
        err[w] = 1000 * float((fit.joints[:, [7, 8]] - joints[:, [7, 8]]).norm(dim=-1).mean())
        side[w] = float(fit.body_pose[:, 3:5, 2].abs().max())
    assert side[0.0] > 0.8 and side[1.0] < 0.4, side
    assert err[1.0] < 0.75 * err[0.0], err


def test_foot_stillness_marks_still_feet_of_a_static_camera():
    from reconstruction.fit import FitData, foot_stillness

    F, K = 4, 3
    obs = torch.zeros(F, K, 3)
    obs[..., 2] = 1.0
    obs[:, 1, 0] = torch.arange(F) * 20.0  # point 1 slides 20 px a frame; points 0 and 2 stay
    obs[2:, 2, 2] = 0.0  # point 2 unseen from frame 2 on
    eye = torch.eye(3).expand(F, 3, 3)
    t = torch.zeros(F, 3)
    data = FitData(obs=obs, obs_world=obs, w2d=obs[..., 2], w3d=obs[..., 2], w_report=obs[..., 2],
                   scale=torch.full((F,), 100.0), K=eye, R=eye, t=t, has_world=False)
    still = foot_stillness(data, torch.tensor([0, 1, 2]), FitConfig())
    assert torch.allclose(still[:, 0], torch.ones(3)) and float(still[:, 1].max()) < 1e-6
    assert torch.equal(still[:, 2], torch.tensor([1.0, 0.0, 0.0]))
    moved = t.clone()
    moved[2:, 0] = 0.5  # the camera moves between frames 1 and 2
    assert float(foot_stillness(FitData(**{**vars(data), "t": moved}), torch.tensor([0]), FitConfig())[1, 0]) == 0.0


def test_feet_still_in_the_image_stay_still_in_the_world(body):
    """A person standing still, seen in 2D alone with 2 px of noise per frame: depth wobbles from frame to
    frame, and the feet with it; the contact term holds the feet that do not move in the image in place."""
    bk = BodyKeypoints(body)
    F = 8
    go, pose, tr = walking_pose(F)
    go, pose, tr = go[:1].expand(F, 3).clone(), pose[:1].expand(F, 23, 3).clone(), tr[:1].expand(F, 3).clone()
    cam = default_camera(256, 256)
    kp, _, joints = synthetic_observations(bk, torch.zeros(4), go, pose, tr, CameraPath.static(cam, F))
    noise = np.random.default_rng(2).normal(0, 2.0, kp[..., :2].shape).astype(np.float32)
    noise[:, 27:33] *= 0.1  # the feet's landmarks are steady; the rest of the body's noise moves depth
    kp[..., :2] += noise
    wobble, err = {}, {}
    for w in (0.0, 1.0):
        fit = fit_track(body, kp, None, cam, body_keypoints=bk, config=FitConfig(w_contact=w))
        feet = fit.joints[:, [7, 8, 10, 11]]
        wobble[w] = 1000 * float((feet[1:] - feet[:-1]).norm(dim=-1).mean())
        err[w] = 1000 * float((feet - joints[:, [7, 8, 10, 11]]).norm(dim=-1).mean())
    assert wobble[1.0] < 0.5 * wobble[0.0], wobble
