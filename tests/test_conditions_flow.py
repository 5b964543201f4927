"""Flow maps against Image Conductor's points_to_flows + cv2.filter2D and DragNUWA's Conv2d filter."""

import cv2
import numpy as np
import pytest
import torch
from scipy.interpolate import PchipInterpolator

from render.conditions import flow as fl
from render.errors import AmgError


def ref_points_to_flows(tracks, F, H, W):
    drag = np.zeros((F - 1, H, W, 2))
    for tr in tracks:
        for i in range(F - 1):
            s, e = tr[i], tr[i + 1]
            drag[i][int(s[1])][int(s[0])][0] = e[0] - s[0]
            drag[i][int(s[1])][int(s[0])][1] = e[1] - s[1]
    return drag


def random_tracks(rng, T, F, H, W):
    return np.stack([fl.resample_track(rng.uniform(0, [W - 1, H - 1], (rng.integers(1, 5), 2)), F)
                     for _ in range(T)])


def test_kernels():
    k = fl.gaussian_kernel("imageconductor")
    assert k.shape == (99, 99) and np.isclose(k.sum(), 1.0) and np.unravel_index(k.argmax(), k.shape) == (49, 49)
    ax = np.arange(-49, 50)
    g = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / 200.0)
    np.testing.assert_allclose(k, g / g.sum(), rtol=1e-12)
    d = fl.gaussian_kernel("dragnuwa")
    assert d.shape == (199, 199) and d.max() == 1.0 and d[99, 99] == 1.0
    np.testing.assert_allclose(d[99, 119], np.exp(-400 / 800), rtol=1e-6)
    with pytest.raises(AmgError):
        fl.gaussian_kernel("nope")


def test_resample_track_is_pchip_and_one_point_rule(rng):
    p = rng.uniform(0, 50, (5, 2))
    out = fl.resample_track(p, 14)
    t = np.linspace(0, 1, 5)
    for c in range(2):
        np.testing.assert_allclose(out[:, c], PchipInterpolator(t, p[:, c])(np.linspace(0, 1, 14)))
    np.testing.assert_allclose(out[[0, -1]], p[[0, -1]])
    one = fl.resample_track([[3.0, 4.0, 0.5]], 4)  # stationary point: p -> [p, p + (1, 1)]
    np.testing.assert_allclose(one[-1], [4.0, 5.0, 0.5])
    with pytest.raises(AmgError):
        fl.resample_track(np.zeros((0, 2)), 4)
    with pytest.raises(AmgError):
        fl.resample_track([[np.nan, 1.0]], 4)


def test_sparse_flow_matches_points_to_flows(rng):
    H, W, F = 23, 31, 6
    tr = random_tracks(rng, 4, F, H, W)
    tr[3] = tr[1]  # a later track at the same pixels overwrites
    tr[3, -1] += 5
    sp = fl.sparse_flow(tr, H, W)
    assert np.all(sp[0] == 0)
    np.testing.assert_array_equal(sp[1:], ref_points_to_flows(tr, F, H, W))
    with pytest.raises(AmgError):
        fl.sparse_flow(np.array([[[-1.5, 3.0], [2.0, 3.0]]]), H, W)
    with pytest.raises(AmgError):
        fl.sparse_flow(np.array([[[W + 0.0, 3.0], [2.0, 3.0]]]), H, W)


def test_imageconductor_filter_matches_cv2(rng):
    H, W, F = 30, 120, 5   # narrower than the kernel on one side: reflections wrap
    tr = random_tracks(rng, 3, F, H, W)
    sp = fl.sparse_flow(tr, H, W)
    k = fl.gaussian_kernel("imageconductor")
    ref = np.concatenate([np.zeros_like(sp[:1]), np.stack([cv2.filter2D(sp[i], -1, k) for i in range(1, F)])])
    out = fl.trajectory_flow(tr, H, W, "imageconductor")
    assert out.shape == (2, F, H, W) and out.dtype == np.float32 and np.all(out[:, 0] == 0)
    np.testing.assert_allclose(out, ref.transpose(3, 0, 1, 2).astype(np.float32), rtol=1e-5, atol=1e-9)


def test_dragnuwa_filter_matches_conv2d(rng):
    H, W, F = 26, 33, 4
    tr = random_tracks(rng, 3, F, H, W)
    sp = torch.from_numpy(fl.sparse_flow(tr, H, W)[1:]).float()
    conv = torch.nn.Conv2d(2, 2, 199, groups=2, bias=False, padding=99)
    conv.weight.data = torch.from_numpy(fl.gaussian_kernel("dragnuwa")).view(1, 1, 199, 199).repeat(2, 1, 1, 1)
    with torch.no_grad():
        ref = conv(sp.permute(0, 3, 1, 2)).permute(1, 0, 2, 3).numpy()
    out = fl.trajectory_flow(tr, H, W, "dragnuwa")
    np.testing.assert_allclose(out[:, 1:], ref, rtol=1e-5, atol=1e-5)


def test_flow_peaks():
    H, W = 120, 120
    tr = np.array([[[60.7, 50.2], [63.7, 46.2]]])  # one step (+3, -4) written at (row 50, col 60)
    ic = fl.trajectory_flow(tr, H, W, "imageconductor")
    assert np.unravel_index(np.abs(ic[0, 1]).argmax(), (H, W)) == (50, 60)
    k = fl.gaussian_kernel("imageconductor")
    np.testing.assert_allclose(ic[:, 1, 50, 60], [3 * k[49, 49], -4 * k[49, 49]], rtol=1e-5)
    dn = fl.trajectory_flow(tr, H, W, "dragnuwa")
    np.testing.assert_allclose(dn[:, 1, 50, 60], [3.0, -4.0], rtol=1e-6)  # unnormalised: peak = step
    np.testing.assert_allclose(dn[0, 1, 50, 80], 3 * np.exp(-400 / 800), rtol=1e-5)


def test_sample_tracks(rng):
    M, F = 40, 8
    dense = np.repeat(rng.uniform(0, 50, (M, 1, 2)), F, axis=1)
    movers = [3, 17, 25]
    for i in movers:
        dense[i] += np.linspace(0, 20 * (i + 1) / 26, F)[:, None]
    tr, idx = fl.sample_tracks(dense, num_tracks=2, seed=1)
    assert tr.shape == (2, F, 2) and set(idx) <= set(movers)
    np.testing.assert_array_equal(tr, dense[idx])
    tr2, idx2 = fl.sample_tracks(dense, num_tracks=2, seed=1)
    np.testing.assert_array_equal(idx, idx2)
    for s in range(10):
        t, i = fl.sample_tracks(dense, seed=s)
        assert 1 <= len(i) <= 3 and set(i) <= set(movers)
    # the fastest mover is drawn most often as the single track
    counts = np.bincount([fl.sample_tracks(dense, num_tracks=1, seed=s)[1][0] for s in range(200)], minlength=M)
    assert counts[25] > counts[17] > counts[3]
    vis = np.ones((M, F), bool)
    vis[25] = False
    assert 25 not in fl.sample_tracks(dense, num_tracks=3, seed=0, visibility=vis)[1]
    with pytest.raises(AmgError):
        fl.sample_tracks(dense[:, :1])
