"""Trajectory images against PoseTraj's drawing loop; the region-aware sampler."""

import cv2
import numpy as np
import pytest

from render.conditions import traj_image as ti
from render.errors import AmgError


def ref_frames(tracks, H, W):
    # PoseTraj run_inference_vipseg_json_repro.py, literally (BGR drawing, then RGB)
    trajectory_list = [[[int(p[0]), int(p[1])] for p in tr] for tr in tracks]
    F = len(trajectory_list[0])
    out = []
    for i in range(F - 1):
        img = np.zeros((H, W, 3), dtype=np.uint8)
        for tr in trajectory_list:
            cv2.line(img, (tr[i][0], tr[i][1]), (tr[i + 1][0], tr[i + 1][1]), (0, 0, 255), 3)
            cv2.circle(img, (tr[i + 1][0], tr[i + 1][1]), 3, (0, 255, 0), -1)
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    out.append(np.zeros((H, W, 3), np.uint8))
    return np.stack(out)


def test_frames_match_reference(rng):
    H, W, F = 40, 56, 7
    tracks = rng.uniform(-5, [W + 5, H + 5], (3, F, 2))
    out = ti.trajectory_frames(tracks, H, W)
    assert out.shape == (F, H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref_frames(tracks, H, W))


def test_colours_segment_and_last_frame():
    H, W = 32, 48
    tr = np.array([[[5.9, 10.2], [30.0, 10.0], [30.0, 20.0]]])
    out = ti.trajectory_frames(tr, H, W)
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    assert colours <= {(0, 0, 0), (255, 0, 0), (0, 255, 0)}
    assert tuple(out[0, 10, 15]) == (255, 0, 0)         # mid-segment is red
    assert tuple(out[0, 10, 30]) == (0, 255, 0)         # end point is green
    assert tuple(out[0, 10, 34]) == (0, 0, 0) and tuple(out[0, 10, 33]) == (0, 255, 0)  # radius 3
    assert tuple(out[0, 8, 15]) == (255, 0, 0) and tuple(out[0, 7, 15]) == (0, 0, 0)    # thickness 3
    assert tuple(out[1, 15, 30]) == (255, 0, 0) and out[1, 10, 15].max() == 0           # next step only
    assert out[-1].max() == 0
    assert ti.trajectory_frames(tr[:, :1], H, W).shape == (1, H, W, 3)
    with pytest.raises(AmgError):
        ti.trajectory_frames(np.full((1, 3, 2), np.nan), H, W)
    with pytest.raises(AmgError):
        ti.trajectory_frames(np.zeros((1, 3, 3)), H, W)


def test_region_tracks(rng):
    F = 6
    centre = np.stack([np.linspace(20, 40, F), np.linspace(10, 30, F)], 1)
    corners = centre[:, None] + rng.uniform(-5, 5, (F, 8, 2))
    counts = set()
    for s in range(30):
        tr = ti.region_tracks(corners, centre, seed=s)
        n = len(tr)
        counts.add(n)
        lo, hi = corners[0].min(0), corners[0].max(0)
        assert np.all(tr[:, 0] >= lo) and np.all(tr[:, 0] <= hi)
        np.testing.assert_allclose(tr - tr[:, :1], np.broadcast_to(centre - centre[0], tr.shape))
    assert counts <= set(range(1, 6)) and len(counts) >= 3
    assert ti.region_tracks(corners, num_points=4).shape == (4, F, 2)
    with pytest.raises(AmgError):
        ti.region_tracks(np.zeros((F, 4, 2)))
