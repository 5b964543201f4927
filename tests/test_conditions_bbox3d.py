"""Oriented 3D boxes: heading from the root yaw, tight extents, projection and drawing."""

import numpy as np
import pytest
import torch

from render.camera import Camera, CameraPath
from render.conditions import bbox3d as bb
from render.errors import AmgError


def cuboid(half, yaw, centre):
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return (bb.CORNER_SIGNS * half) @ R.T + centre


def test_recovers_a_rotated_cuboid(rng):
    F = 4
    yaws = np.array([0.0, 0.7, -2.0, 3.0])
    verts = []
    for f in range(F):
        box = cuboid(np.array([0.2, 0.9, 0.1]), yaws[f], np.array([f, 0.9, -f]))
        inner = rng.uniform(-1, 1, (30, 3)) * [0.2, 0.9, 0.1]
        c, s = np.cos(yaws[f]), np.sin(yaws[f])
        inner = inner @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + [f, 0.9, -f]
        verts.append(np.concatenate([box, inner]))
    verts = np.stack(verts)
    orient = np.zeros((F, 3))
    orient[:, 1] = yaws
    orient_pitch = orient.copy()
    corners = bb.oriented_boxes(verts, orient)
    assert corners.shape == (F, 1, 8, 3)
    for f in range(F):
        np.testing.assert_allclose(corners[f, 0], cuboid(np.array([0.2, 0.9, 0.1]), yaws[f], [f, 0.9, -f]), atol=1e-9)
    np.testing.assert_allclose(bb.heading_yaw(orient), np.arctan2(np.sin(yaws), np.cos(yaws)), atol=1e-12)
    # a lean forward (rotation about the body's x after the yaw) keeps the heading
    lean = torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    Rl = axis_angle_to_matrix(torch.tensor(orient_pitch)) @ axis_angle_to_matrix(lean)
    np.testing.assert_allclose(bb.heading_yaw(matrix_to_axis_angle(Rl).numpy()), bb.heading_yaw(orient), atol=1e-9)


def test_boxes_are_tight_per_person(rng):
    F, P, V = 3, 2, 50
    verts = rng.normal(size=(F, P, V, 3))
    orient = rng.normal(size=(F, P, 3))
    corners = bb.oriented_boxes(verts, orient)
    as_list = bb.oriented_boxes([verts[:, 0], verts[:, 1, :20]], [orient[:, 0], orient[:, 1]])
    np.testing.assert_allclose(as_list[:, 0], corners[:, 0])
    for f in range(F):
        for p in range(P):
            yaw = bb.heading_yaw(orient[f, p])
            c, s = np.cos(yaw), np.sin(yaw)
            R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
            local_v = verts[f, p] @ R
            local_c = corners[f, p] @ R
            np.testing.assert_allclose(local_c.min(0), local_v.min(0), atol=1e-9)
            np.testing.assert_allclose(local_c.max(0), local_v.max(0), atol=1e-9)
    with pytest.raises(AmgError):
        bb.oriented_boxes(verts, orient[:, :1])
    with pytest.raises(AmgError):
        bb.oriented_boxes(np.full((F, 1, V, 3), np.nan), orient[:, :1])


def test_project_and_draw():
    F = 2
    corners = np.stack([cuboid(np.array([0.3, 0.9, 0.2]), 0.4, [0, 0.9, 0])] * F)[:, None]
    cam = Camera.look_at((0, 1, 4), (0, 0.9, 0), width=64, height=48)
    path = CameraPath.static(cam, num_frames=F)
    uv = bb.project_boxes(corners, path)
    ref, _ = cam.project(torch.tensor(corners[0, 0]))
    np.testing.assert_allclose(uv[1, 0], ref.numpy(), atol=1e-9)
    np.testing.assert_allclose(bb.project_boxes(corners, cam), uv)
    img = bb.draw_boxes(uv, 48, 64, colors=[(10, 200, 30)])
    for k in range(8):
        x, y = np.round(uv[0, 0, k]).astype(int)
        if 0 <= x < 64 and 0 <= y < 48:
            assert tuple(img[0, y, x]) == (10, 200, 30)
    assert {tuple(c) for c in img.reshape(-1, 3)} == {(0, 0, 0), (10, 200, 30)}
    base = np.full((F, 48, 64, 3), 77, np.uint8)
    over = bb.draw_boxes(uv, 48, 64, image=base)
    assert base.max() == 77 and (over == 77).all(-1).sum() > 0.5 * F * 48 * 64
    behind = corners.copy()
    behind[:, :, :4, 2] = 10.0  # four corners behind the camera: their edges are skipped
    uvb = bb.project_boxes(behind, path)
    assert np.isnan(uvb[:, 0, :4]).all() and np.isfinite(uvb[:, 0, 4:]).all()
    assert bb.draw_boxes(uvb, 48, 64).shape == (F, 48, 64, 3)
    with pytest.raises(AmgError):
        bb.draw_boxes(uv, 48, 64, image=base[:, :10])


def test_save_boxes(tmp_path):
    """What is written reads back as the boxes: world corners exactly, and the 2D file is their projection."""
    rng = np.random.default_rng(0)
    cams = CameraPath.orbit(3, degrees=60, radius=4.0, width=64, height=48)
    world = np.stack([np.stack([cuboid(rng.uniform(0.1, 0.5, 3), rng.uniform(-3, 3), rng.uniform(-1, 1, 3))
                                for _ in range(2)]) for _ in range(3)])  # (3,2,8,3), every corner distinct
    uv = bb.project_boxes(world, cams)
    path = bb.save_boxes(tmp_path, uv, corners3d=world)
    np.testing.assert_allclose(np.load(path), uv.astype(np.float32))
    saved = np.load(tmp_path / "bbox3d_world.npy")
    np.testing.assert_allclose(saved, world.astype(np.float32), rtol=1e-6, atol=1e-6)
    # the two files agree with each other through an independent projection of the saved world corners
    for f in range(3):
        again, _ = cams[f].project(torch.as_tensor(saved[f].reshape(-1, 3), dtype=torch.float64))
        np.testing.assert_allclose(np.load(path)[f].reshape(-1, 2), again.numpy(), atol=1e-3)
    with pytest.raises(AmgError, match="corners3d"):
        bb.save_boxes(tmp_path, uv, corners3d=world[:, :1])