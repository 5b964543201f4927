"""Camera rotation from background features and the floor from foot contacts, on synthetic truth."""

import math

import cv2
import numpy as np
import pytest
import torch

from reconstruction.camera_motion import (estimate_rotations, floor_plane, ground_motions, rotating_path,
                                          rotation_angle_deg, rotation_from_rays)
from render.rotations import axis_angle_to_matrix, euler_to_matrix


def _pan_tilt(F, pan_deg, tilt_deg):
    """World-to-camera rotations relative to the first frame: a pan about camera y, then a tilt about x."""
    t = np.linspace(0, 1, F)
    ang = torch.as_tensor(np.stack([np.radians(tilt_deg) * t, np.radians(pan_deg) * t, 0 * t], -1))
    return euler_to_matrix(ang, "XYZ").numpy()


def _panning_video(rotations, W=160, H=120, f=150.0, person=True):
    """Frames of a photograph seen by a camera turning in place (each frame an exact homography of it),
    with a moving dark blob standing in for a person; returns frames, K and person masks."""
    import skimage.data

    photo = cv2.resize(skimage.data.coffee(), (520, 400))
    Kp = np.array([[f, 0, 260], [0, f, 200], [0, 0, 1.0]])
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    frames, masks = [], []
    for i, R in enumerate(rotations):
        Hm = K @ R @ np.linalg.inv(Kp)  # photo pixel -> frame pixel
        img = cv2.warpPerspective(photo, Hm, (W, H), flags=cv2.INTER_LINEAR)
        m = np.zeros((H, W), np.int32)
        if person:
            x = 30 + 8 * i
            cv2.rectangle(img, (x, 20), (x + 25, 110), (20, 20, 20), -1)
            m[20:111, x:x + 26] = 1
        frames.append(img)
        masks.append(m)
    return np.stack(frames), K, np.stack(masks)


def test_rotation_from_rays_ignores_outliers():
    rng = np.random.default_rng(0)
    R = axis_angle_to_matrix(torch.tensor([0.02, -0.05, 0.01], dtype=torch.float64)).numpy()
    a = rng.normal(size=(200, 3))
    a[:, 2] = np.abs(a[:, 2]) + 2
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a @ R.T
    b[:60] = rng.normal(size=(60, 3))  # a third of the tracks sit on a moving object
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    est, inliers = rotation_from_rays(a, b)
    assert rotation_angle_deg(est.T @ R) < 1e-6 and inliers[60:].all() and inliers[:60].sum() < 5


@pytest.mark.parametrize("pan,tilt", [(6.0, 0.0), (-4.0, 3.0)])
def test_known_pan_and_tilt_are_recovered_within_a_degree(pan, tilt):
    truth = _pan_tilt(6, pan, tilt)
    frames, K, masks = _panning_video(truth)
    est = estimate_rotations(frames, K, masks)
    err = rotation_angle_deg(np.einsum("fji,fjk->fik", est, truth))
    assert err.max() < 1.0, err
    assert rotation_angle_deg(truth[-1]) > 3  # the camera really turned


def test_rotating_path_and_ground_keep_projections_and_put_feet_on_the_floor():
    """Ground a walker whose world is tilted and offset: feet end at y = 0, projections do not change."""
    from reconstruction_helpers import stick_body, walking_pose

    from avatars.motion import Motion
    from render.camera import Camera, CameraPath

    body = stick_body()
    go, pose, tr = walking_pose(8)
    pose[:] = 0  # standing: both feet on the floor in every frame
    u = torch.linspace(-1, 1, 8)
    tr = torch.stack([1.2 * u, torch.full((8,), -0.9), -4.0 + 1.2 * (1 - u ** 2)], -1)  # a curve spans the floor
    truth = Motion(fps=8, betas=torch.zeros(4), global_orient=go, body_pose=pose, transl=tr)
    tilt = axis_angle_to_matrix(torch.tensor([0.15, 0.0, 0.05]))
    moved_go = matrix_to_aa(tilt @ axis_angle_to_matrix(go))
    J0 = body(betas=torch.zeros(1, 4)).joints[0, 0]
    shift = torch.tensor([0.0, 0.4, 0.0])
    moved = Motion(fps=8, betas=torch.zeros(4), global_orient=moved_go, body_pose=pose,
                   transl=(tr + J0) @ tilt.T + shift - J0)
    cam = CameraPath.static(Camera.look_at((0, 1.0, 0.5), (0, 0.5, -3.5), width=96, height=96), 8)
    path = rotating_path(cam, _pan_tilt(8, 5.0, 2.0))
    assert torch.allclose(path.centers, cam.centers.expand(8, 3)) and rotation_angle_deg(
        (path.R[-1] @ cam.R[0].T).numpy()) > 4
    out, new_path, info = ground_motions([moved], path, body)
    posed = lambda m: body(betas=m.betas[None].expand(8, -1), global_orient=m.global_orient,  # noqa: E731
                           body_pose=m.body_pose, transl=m.transl)
    before, after = posed(moved), posed(out[0])
    uv0, _ = path.project(before.joints.double())
    uv1, _ = new_path.project(after.joints.double())
    assert torch.allclose(uv0, uv1, atol=1e-3)
    soles = after.vertices[..., 1].min(-1).values
    assert soles.abs().max() < 0.01 and float(soles.max() - soles.min()) < 0.01
    assert abs(info["tilt_deg"] - math.degrees(0.158)) < 1.0


def matrix_to_aa(R):
    from render.rotations import matrix_to_axis_angle

    return matrix_to_axis_angle(R)


def test_floor_plane_falls_back_to_level_when_the_feet_do_not_span_it():
    pts = np.array([[0.0, 0.1, 0.0], [0.05, 0.12, 0.02], [0.02, 0.09, 0.01]] * 3)
    n, off = floor_plane(pts)
    assert np.allclose(n, [0, 1, 0]) and abs(off - 0.1) < 0.02


def test_rotations_tracked_at_a_working_size_match_the_full_size():
    """Features tracked on frames scaled down to ``max_side`` (K scaled with them) give the same rotation as
    at full size: the 1280x720 speed-up costs no accuracy."""
    from reconstruction.camera_motion import frame_rotations

    truth = _pan_tilt(4, 5.0, 2.0)
    frames, K, masks = _panning_video(truth, W=640, H=480, f=600.0)
    full, n_full = frame_rotations(frames, K, masks, max_side=None)
    small, n_small = frame_rotations(frames, K, masks, max_side=160)
    assert (n_small > 0).all() and (n_full > 0).all()
    rel = [truth[f + 1] @ truth[f].T for f in range(3)]
    for R, S, T in zip(full, small, rel):
        assert rotation_angle_deg(R.T @ T) < 0.3 and rotation_angle_deg(S.T @ T) < 0.3
