"""LeviTor conditions against the public LeviTor code's few lines, re-derived here as slow references."""

import math

import cv2
import numpy as np
import pytest
from sklearn.cluster import KMeans

from render.camera import Camera
from render.conditions import levitor as lv
from render.errors import AmgError


def ref_template(n=200):
    # gen_gaussian_heatmap, literally
    circle_mask = cv2.circle(np.zeros((n, n), np.float32), (n // 2, n // 2), n // 2, 1, -1)
    g = np.zeros((n, n), np.float32)
    for i in range(n):
        for j in range(n):
            g[i, j] = 1 / 2 / np.pi / (40 ** 2) * np.exp(
                -1 / 2 * ((i - n / 2) ** 2 / (40 ** 2) + (j - n / 2) ** 2 / (40 ** 2)))
    g = g * circle_mask
    g = (g / np.max(g)).astype(np.float32)
    return (g / np.max(g) * 255).astype(np.uint8)


def ref_control(points_per_frame, height, width, side=10):
    # generate_gassian_heatmap + draw_heatmap, literally (ids and depths as Python ints)
    tmpl = ref_template()
    frames = []
    for pts in points_per_frame:
        img = np.zeros((height, width), np.float32)
        img_id = np.zeros((height, width), np.float32)
        img_depth = np.zeros((height, width), np.float32)
        for py, px, id_obj, d in [list(map(int, p)) for p in pts]:
            if px < 0 or py < 0 or px >= width or py >= height:
                continue
            x1 = max(px - side, 1); x2 = min(px + side, width - 1)
            y1 = max(py - side, 1); y2 = min(py + side, height - 1)
            need_map = cv2.resize(tmpl, (x2 - x1, y2 - y1))
            img[y1:y2, x1:x2] = need_map
            id_map = np.ones_like(need_map); id_map *= id_obj; id_map *= (need_map != 0)
            d_map = np.ones_like(need_map); d_map *= d; d_map *= (need_map != 0)
            img_id[y1:y2, x1:x2] = id_map
            img_depth[y1:y2, x1:x2] = d_map
        frames.append(np.stack([img, img_id, img_depth]))
    return np.stack(frames)


def test_template_matches_reference_and_shape():
    t = lv.heatmap_template()
    assert t.dtype == np.uint8 and t.shape == (200, 200)
    np.testing.assert_array_equal(t, ref_template())
    assert t[100, 100] == 255 and t.max() == 255
    assert t[100, 0] == int(math.exp(-100 ** 2 / (2 * 40 ** 2)) * 255)  # on the disc's edge
    assert t[0, 0] == 0 and t[199, 199] == 0 and t[3, 3] == 0          # outside the disc
    i, j = np.mgrid[:200, :200]
    assert np.all(t[(i - 100) ** 2 + (j - 100) ** 2 > 101 ** 2] == 0)
    t[0, 0] = 7  # the returned copy is the caller's
    assert lv.heatmap_template()[0, 0] == 0


def test_control_tensor_matches_reference_on_random_points(rng):
    H, W = 37, 45
    pts = []
    for _ in range(4):
        k = rng.integers(0, 9)
        p = np.stack([rng.integers(-5, H + 5, k), rng.integers(-5, W + 5, k),
                      rng.integers(0, 256, k), rng.integers(0, 256, k)], 1)
        pts.append(p)
    out = lv.control_tensor(pts, H, W)
    assert out.dtype == np.float32 and out.shape == (4, 3, H, W)
    np.testing.assert_array_equal(out, ref_control(pts, H, W))


def test_control_footprint_plateau_border_and_overwrite():
    H, W = 64, 64
    out = lv.control_tensor([[[30, 20, 5, 77]]], H, W)[0]
    ys, xs = np.nonzero(out[0])
    assert ys.min() >= 20 and ys.max() < 40 and xs.min() >= 10 and xs.max() < 30  # box [c-10, c+10)
    assert out[0].max() == out[0, 29:31, 19:21].max() >= 250                       # plateau at the centre
    np.testing.assert_array_equal(out[1] != 0, out[0] != 0)
    assert set(np.unique(out[1])) == {0, 5} and set(np.unique(out[2])) == {0, 77}
    # border: the box is clamped to [1, W-1) so row/column 0 and the last ones stay empty
    b = lv.control_tensor([[[0, 0, 1, 1], [H - 1, W - 1, 2, 2]]], H, W)[0]
    assert b[:, 0].max() == 0 and b[:, :, 0].max() == 0 and b[:, -1].max() == 0 and b[:, :, -1].max() == 0
    assert b[1, 5, 5] == 1 and b[1, H - 6, W - 6] == 2 and b[0, 1:10, 1:10].min() == 0  # template corners are 0
    # later points overwrite their whole box, zeros of the template corners included
    a = lv.control_tensor([[[30, 20, 1, 9]]], H, W)[0]
    two = lv.control_tensor([[[30, 20, 1, 9], [30, 29, 2, 8]]], H, W)[0]
    assert two[1, 30, 20] == 2 and two[2, 30, 20] == 8
    corner = (20, 19)  # inside both boxes, a zero corner of the second template
    assert a[0][corner] > 0 and two[0][corner] == 0 and two[1][corner] == 0


def test_control_bad_inputs():
    with pytest.raises(AmgError):
        lv.control_tensor([[[3, 3, 300, 0]]], 16, 16)
    with pytest.raises(AmgError):
        lv.control_tensor([[[3, 3, 1.5, 0]]], 16, 16)
    with pytest.raises(AmgError):
        lv.control_tensor([[[3, 3, 1]]], 16, 16)
    with pytest.raises(AmgError):
        lv.control_tensor([[[1, 1, 1, 1]]], 2, 2)
    assert lv.control_tensor([[]], 8, 8).sum() == 0


@pytest.mark.parametrize("amax,amin,H,W,moved,ratio,k", [
    (10, 10, 20, 50, False, 1.0, 1),    # 0.5 rounds half to even -> 0 -> clamped to 1
    (30, 30, 20, 50, False, 1.0, 2),    # 1.5 -> 2
    (50, 50, 20, 50, False, 1.0, 2),    # 2.5 -> 2 (banker's rounding, as Python's round)
    (70, 70, 20, 50, False, 1.0, 4),    # 3.5 -> 4
    (1000, 1000, 20, 50, False, 1.0, 8),  # capped at 8
    (10, 10, 20, 50, True, 1.0, 3),     # moved -> at least 3
    (10, 0, 20, 50, False, 1.0, 3),     # area hits 0
    (100, 10, 20, 50, False, 1.0, 5),   # max/min == 10 is not > 10
    (110, 10, 20, 50, False, 1.0, 6),   # 5.5 -> 6, already >= 3
    (22, 2, 20, 50, False, 1.0, 3),     # max/min = 11 > 10
    (1000, 1000, 20, 50, False, 0.5, 4),  # ratio after the cap
    (1000, 1000, 20, 50, False, 2.0, 16),
    (10, 10, 20, 50, False, 0.1, 1),    # at least one
    (0, 0, 20, 50, True, 1.0, 0),       # never appears: skipped
])
def test_k_rule(amax, amin, H, W, moved, ratio, k):
    assert lv.num_clusters(amax, amin, H, W, moved=moved, ratio=ratio) == k


def ref_kmeans_points(masks, disparity, num_moving=0, points_num=1.0):
    # Drag.run's clustering loop, literally (ids 1..max, moved ids are 1..num_moving)
    F, H, W = masks.shape
    with np.errstate(divide="ignore"):
        inv = 1.0 / disparity.astype(np.uint8)
    inv[inv == np.inf] = 1.0
    depth_output = inv.astype(np.float32)
    nmax = int(masks.max())
    amax = [0] * nmax
    amin = [math.inf] * nmax
    for m in masks:
        for j in range(nmax):
            a = (m == j + 1).sum()
            amax[j] = max(amax[j], a)
            amin[j] = min(amin[j], a)
    pos_array = np.zeros((H, W, 2), np.float32)
    for i in range(H):
        for j in range(W):
            pos_array[i, j] = (i, j)
    init = {}
    out = []
    for f, mask in enumerate(masks):
        clusters = []
        for i in range(mask.max()):
            p = pos_array[mask == i + 1]
            if amax[i] == 0:
                continue
            k = min(max(round(amax[i] * 50 / (H * W)), 1), 8)
            if i < num_moving or amin[i] == 0 or amax[i] / amin[i] > 10:
                k = max(k, 3)
            p = p[::10]
            if len(p) < k or k == 0:
                continue
            k = max(1, int(k * points_num))
            if i + 1 not in init:
                lpl = len(p) // k
                ids = [lpl // 2]
                for _ in range(k - 1):
                    ids.append(ids[-1] + lpl)
                init[i + 1] = KMeans(n_clusters=k, init=p[ids]).fit(p).cluster_centers_
            else:
                for point in init[i + 1]:
                    if point not in p:
                        lpl = len(p) // k
                        ids = [lpl // 2]
                        for _ in range(k - 1):
                            ids.append(ids[-1] + lpl)
                        init[i + 1] = p[ids]
                        break
            for c in KMeans(n_clusters=k, init=init[i + 1]).fit(p).cluster_centers_:
                d = round(1.0 / float(depth_output[f][int(c[0])][int(c[1])]))
                clusters.append([int(c[0]), int(c[1]), i + 1, 0 if d == 1 else d])
        out.append(clusters)
    return out


def test_kmeans_points_match_reference_on_random_masks(rng):
    F, H, W = 3, 30, 40
    masks = np.zeros((F, H, W), np.int64)
    for f in range(F):
        for obj, (r, c) in enumerate([(4, 5), (15, 20), (8, 28)], start=1):
            r0, c0 = r + rng.integers(-2, 3), c + rng.integers(-2, 3)
            h, w = rng.integers(5, 12, 2)
            masks[f, r0:r0 + h, c0:c0 + w] = obj
    masks[2][masks[2] == 3] = 0  # object 3 vanishes: area hits 0
    disp = rng.integers(0, 256, (F, H, W)).astype(np.uint8)
    for moved, ratio in [((), 1.0), ((1,), 1.0), ((1, 2), 0.5)]:
        ours = lv.kmeans_points(masks, disp, moved=moved, ratio=ratio)
        ref = ref_kmeans_points(masks, disp, num_moving=len(moved), points_num=ratio)
        assert [o.tolist() for o in ours] == ref


def test_kmeans_centres_and_order_on_constructed_masks():
    H, W = 40, 50
    m = np.zeros((2, H, W), np.int64)
    m[0, 2:7, 2:12] = 1      # samples (every 10th in raster order) are (2..6, 2)
    m[0, 30:35, 35:45] = 1   # and (30..34, 35): k = round(100*50/2000 = 2.5) = 2
    m[1, 3:8, 2:12] = 1      # next frame: both parts one row lower
    m[1, 31:36, 35:45] = 1
    pts = lv.kmeans_points(m)
    assert pts[0].tolist() == [[4, 2, 1, 0], [32, 35, 1, 0]]
    assert pts[1].tolist() == [[5, 2, 1, 0], [33, 35, 1, 0]]  # same order: clusters follow the parts
    d = np.full((2, H, W), 40, np.uint8)
    assert lv.kmeans_points(m, d)[0][:, 3].tolist() == [40, 40]


def test_kmeans_bad_and_empty_inputs():
    assert [p.shape for p in lv.kmeans_points(np.zeros((2, 8, 8), int))] == [(0, 4), (0, 4)]
    with pytest.raises(AmgError):
        lv.kmeans_points(np.full((1, 8, 8), 1.5))
    with pytest.raises(AmgError):
        lv.kmeans_points(-np.ones((1, 8, 8), int))
    with pytest.raises(AmgError):
        lv.kmeans_points(np.ones((8, 8), int))
    with pytest.raises(AmgError):
        lv.kmeans_points(np.ones((1, 20, 20), int), ratio=100.0)  # more clusters than samples
    # float masks holding integers are accepted as ids
    assert lv.kmeans_points(np.ones((1, 20, 20)))[0].shape == (8, 4)
    assert lv.kmeans_points(np.ones((1, 8, 8), int))[0].shape == (0, 4)  # 7 samples < k = 8: skipped


def test_depth_encoding():
    d = np.arange(256, dtype=np.uint8)
    enc = lv.encode_depth(d)
    assert enc[0] == 0 and enc[1] == 0
    np.testing.assert_array_equal(enc[2:], np.arange(2, 256))
    inv = lv.inverse_disparity(d)
    assert inv.dtype == np.float32 and inv[0] == 1.0 and inv[4] == np.float32(0.25)
    z = np.array([[[0.0, 1.0], [2.0, 4.0]]])
    disp = lv.disparity_from_depth(z)
    assert disp.dtype == np.uint8 and disp[0, 0, 0] == 0 and disp[0, 0, 1] == 255 and disp[0, 1, 1] == 0
    assert disp[0, 1, 0] == int((0.5 - 0.25) / 0.75 * 255)
    with pytest.raises(AmgError):
        lv.disparity_from_depth(np.array([[[-1.0]]]))
    with pytest.raises(AmgError):
        lv.inverse_disparity(np.array([1.5]))


def test_reproject_round_trip_and_pinhole(rng):
    W, H = 64, 48
    x, y = rng.uniform(0, W, 20), rng.uniform(0, H, 20)
    d, dd = rng.uniform(0.5, 2, 20), rng.uniform(-0.4, 1, 20)
    dx, dy = rng.uniform(-5, 5, 20), rng.uniform(-5, 5, 20)
    x1, y1 = lv.reproject(x, y, d, dx, dy, dd, H, W)
    s = d / (d + dd)
    x0, y0 = lv.reproject(x1, y1, d + dd, -dx * s, -dy * s, -dd, H, W)
    np.testing.assert_allclose(x0, x, atol=1e-9)
    np.testing.assert_allclose(y0, y, atol=1e-9)
    # any pinhole with the principal point at the image centre gives the same pixels
    import torch

    cam = Camera(torch.tensor([[300.0, 0, W / 2], [0, 300.0, H / 2], [0, 0, 1]]), torch.eye(3), torch.zeros(3), W, H)
    P = cam.unproject(torch.tensor(np.stack([x + dx, y + dy], 1)), torch.tensor(d))
    P[:, 2] += torch.tensor(dd)
    uv, _ = cam.project(P)
    np.testing.assert_allclose(uv[:, 0].numpy(), x1, atol=1e-9)
    np.testing.assert_allclose(uv[:, 1].numpy(), y1, atol=1e-9)
    with pytest.raises(AmgError):
        lv.reproject(1, 1, 1.0, 0, 0, -2.0, H, W)


def ref_splat(u, v, z, H, W, r_ndc, value, k=10):
    r = r_ndc * min(H, W) / 2
    out = np.zeros((H, W), bool)
    for i in range(H):
        for j in range(W):
            d2 = (j + 0.5 - u) ** 2 + (i + 0.5 - v) ** 2
            hit = np.flatnonzero((d2 < r * r) & (z > 0))
            hit = hit[np.argsort(z[hit], kind="stable")][:k]
            a = 1 - d2[hit] / (r * r)
            acc = 0.0
            trans = 1.0
            for al in a:
                acc += value * al * trans
                trans *= 1 - al
            out[i, j] = round(acc) != 0
    return out


def test_splat_matches_compositing_reference(rng):
    H, W = 20, 24
    u, v = rng.uniform(-2, W + 2, 60), rng.uniform(-2, H + 2, 60)
    z = rng.uniform(-0.2, 2, 60)
    for value in (1.0, 3.0):
        np.testing.assert_array_equal(lv.splat_points(u, v, z, H, W, 0.15, value), ref_splat(u, v, z, H, W, 0.15, value))


def test_move_object_shift_scale_and_occlusion():
    H, W = 160, 160
    m = np.zeros((H, W), np.int64)
    m[60:80, 40:60] = 1       # the moved object
    m[50:110, 100:130] = 2    # a nearer object on its path
    disp = np.full((H, W), 50, np.uint8)
    disp[m == 1] = 100
    disp[m == 2] = 200
    F = 4
    d0 = 1 / 100
    traj = np.stack([np.linspace(50, 110, F), np.full(F, 70.0), np.full(F, d0)], 1)
    res = lv.move_object(m, disp, [lv.ObjectMove(1, traj)])
    assert res.masks.shape == (F, H, W) and res.inv_depth.shape == (F, H, W) and len(res.points) == F
    area0 = (res.masks[0] == 1).sum()
    assert area0 >= 400                                          # identity move keeps the object
    cols = np.nonzero(res.masks[1] == 1)[1]
    assert abs(cols.mean() - (50 + 20 - 0.5)) < 2                # shifted right by 20 pixels
    assert np.all(res.masks[3][m == 2] == 2)                     # behind the nearer object: hidden
    assert np.isclose(res.inv_depth[0][70, 50], d0)
    # the same move nearer than object 2 passes in front of it
    front = traj.copy()
    front[:, 2] = 1 / 250
    res2 = lv.move_object(m, disp, [lv.ObjectMove(1, front)])
    assert (res2.masks[3][m == 2] == 1).sum() > 100
    # moving away (depth doubles) shrinks it about four times
    away = np.stack([np.full(F, 50.0), np.full(F, 70.0), np.linspace(d0, 2 * d0, F)], 1)
    res3 = lv.move_object(m, disp, [lv.ObjectMove(1, away)])
    ratio = (res3.masks[-1] == 1).sum() / area0
    assert 0.15 < ratio < 0.4
    for p in res.points[:3]:
        assert 1 in p[:, 2]                                       # visible moved object has points
    assert 1 not in res.points[3][:, 2]                           # fully hidden in the last frame
    assert (res.points[0][:, 2] == 1).sum() >= 3                  # k >= 3 when moved
    with pytest.raises(AmgError):
        lv.move_object(m, disp, [lv.ObjectMove(7, traj)])
