"""The compiled CPU compositor for :func:`render.gaussian.rasterize` (numba, the optional extra ``fast``).

The same conventions as the PyTorch path of :mod:`render.gaussian` (its module docstring states them), laid
out the way gsplat's CUDA rasterizer is:

1. projection (EWA, culling, SH colours) stays in PyTorch, batched per frame, and is shared with the
   differentiable path, so both see bit-identical 2D Gaussians;
2. binning: every visible Gaussian is listed in each 16x16 tile its footprint box touches, in camera-z order
   (Gaussians are visited near to far, so each tile's list comes out depth-sorted without a per-tile sort);
3. compositing: one task per (frame, tile), spread over threads with ``prange``; a Gaussian visits only the
   pixels of its footprint box inside the tile, a pixel stops before the Gaussian that would take its
   transmittance to ``T_MIN`` or below, and a tile stops when all its pixels have.

A whole clip is binned and composited in one call, so the threads share the tiles of all frames.
This path is forward only (no autograd); the PyTorch path stays the differentiable one and the reference
twin it is tested against. When numba is not installed :func:`available` is ``False`` and
:func:`render.gaussian.rasterize` falls back to PyTorch.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

__all__ = ["available", "TILE", "render", "composite", "threads"]

TILE = 16  #: tile side in pixels


_local = threading.local()


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reused per-thread buffer of ``shape``: its contents are whatever the last call left."""
    pool = _local.__dict__.setdefault("pool", {})
    n = int(np.prod(shape))
    buf = pool.get(name)
    if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
        buf = pool[name] = np.empty(max(n, int(1.25 * (0 if buf is None else buf.size))), dtype)
    return buf[:n].reshape(shape)


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether numba imports here (the ``fast`` extra is installed)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def threads(requested: int | None = None) -> int:
    """Threads the compositor uses: ``requested``, else ``AMG_RENDER_THREADS``, else torch's thread count;
    capped at numba's pool size."""
    import numba
    import torch

    n = requested or int(os.environ.get("AMG_RENDER_THREADS", "0") or 0) or torch.get_num_threads()
    return max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


@functools.lru_cache(maxsize=1)
def _kernels():
    import numba as nb

    if "NUMBA_THREADING_LAYER" not in os.environ and nb.config.THREADING_LAYER == "default":
        # numba's OpenMP layer shares libgomp's thread count with torch: set_num_threads here would
        # silently make every later torch op multithreaded; numba's own pool leaves torch alone
        nb.config.THREADING_LAYER = "workqueue"

    from .gaussian import (_EXTEND, _SH_C0, _SH_C1, _SH_C2, _SH_C3, ALPHA_MAX, ALPHA_MIN, EPS2D, NEAR_PLANE,
                           T_MIN)

    alpha_max, alpha_min = np.float32(ALPHA_MAX), np.float32(ALPHA_MIN)
    t_min = T_MIN
    half = np.float32(0.5)
    tile = TILE

    near, eps2d, extend_max = np.float32(NEAR_PLANE), np.float32(EPS2D), np.float32(_EXTEND)
    c0, c1 = np.float32(_SH_C0), np.float32(_SH_C1)
    c2 = np.array(_SH_C2, np.float32)
    c3 = np.array(_SH_C3, np.float32)
    one, two = np.float32(1.0), np.float32(2.0)

    @nb.njit(cache=True, parallel=True, nogil=True)
    def project(means, quats, scales, opac, colors, deg, frame, Ks, Rs, ts, centers, lims, width, height,
                params, feats, box, valid):  # pragma: no cover - compiled
        """EWA projection and SH colour of each Gaussian, float32 like render.gaussian._project."""
        for g in nb.prange(means.shape[0]):
            f = frame[g]
            K, R, t = Ks[f], Rs[f], ts[f]
            fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
            mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
            x = R[0, 0] * mx + R[0, 1] * my + R[0, 2] * mz + t[0]
            y = R[1, 0] * mx + R[1, 1] * my + R[1, 2] * mz + t[1]
            z = R[2, 0] * mx + R[2, 1] * my + R[2, 2] * mz + t[2]
            qn = np.sqrt(quats[g, 0] ** 2 + quats[g, 1] ** 2 + quats[g, 2] ** 2 + quats[g, 3] ** 2)
            qw, qx, qy, qz = quats[g, 0] / qn, quats[g, 1] / qn, quats[g, 2] / qn, quats[g, 3] / qn
            # rotation of the quaternion, then M = R_cam R_q S (scalars: no per-Gaussian allocations)
            q00, q01, q02 = one - two * (qy * qy + qz * qz), two * (qx * qy - qz * qw), two * (qx * qz + qy * qw)
            q10, q11, q12 = two * (qx * qy + qz * qw), one - two * (qx * qx + qz * qz), two * (qy * qz - qx * qw)
            q20, q21, q22 = two * (qx * qz - qy * qw), two * (qy * qz + qx * qw), one - two * (qx * qx + qy * qy)
            s0, s1, s2 = scales[g, 0], scales[g, 1], scales[g, 2]
            m00 = (R[0, 0] * q00 + R[0, 1] * q10 + R[0, 2] * q20) * s0
            m01 = (R[0, 0] * q01 + R[0, 1] * q11 + R[0, 2] * q21) * s1
            m02 = (R[0, 0] * q02 + R[0, 1] * q12 + R[0, 2] * q22) * s2
            m10 = (R[1, 0] * q00 + R[1, 1] * q10 + R[1, 2] * q20) * s0
            m11 = (R[1, 0] * q01 + R[1, 1] * q11 + R[1, 2] * q21) * s1
            m12 = (R[1, 0] * q02 + R[1, 1] * q12 + R[1, 2] * q22) * s2
            m20 = (R[2, 0] * q00 + R[2, 1] * q10 + R[2, 2] * q20) * s0
            m21 = (R[2, 0] * q01 + R[2, 1] * q11 + R[2, 2] * q21) * s1
            m22 = (R[2, 0] * q02 + R[2, 1] * q12 + R[2, 2] * q22) * s2
            zs = max(z, near)
            rz = one / zs
            tx = zs * min(max(x * rz, -lims[f, 1]), lims[f, 0])
            ty = zs * min(max(y * rz, -lims[f, 3]), lims[f, 2])
            # rows of J M with J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
            jx, jxz = fx * rz, fx * tx * rz * rz
            jy, jyz = fy * rz, fy * ty * rz * rz
            r00, r01, r02 = jx * m00 - jxz * m20, jx * m01 - jxz * m21, jx * m02 - jxz * m22
            r10, r11, r12 = jy * m10 - jyz * m20, jy * m11 - jyz * m21, jy * m12 - jyz * m22
            a = r00 * r00 + r01 * r01 + r02 * r02 + eps2d
            b = r00 * r10 + r01 * r11 + r02 * r12
            c = r10 * r10 + r11 * r11 + r12 * r12 + eps2d
            det = a * c - b * b
            u = fx * x * rz + cx
            v = fy * y * rz + cy
            op = opac[g]
            ok = z > near and det > 0 and op >= alpha_min
            ext = min(np.sqrt(two * np.log(max(op * np.float32(255.0), one))), extend_max)
            rx = np.ceil(ext * np.sqrt(max(a, np.float32(0.0))))
            ry = np.ceil(ext * np.sqrt(max(c, np.float32(0.0))))
            ok = ok and u + rx > 0 and u - rx < width and v + ry > 0 and v - ry < height and rx > 0 and ry > 0
            valid[g] = ok
            if not ok:
                continue
            params[g, 0], params[g, 1] = u, v
            params[g, 2], params[g, 3], params[g, 4], params[g, 5] = c / det, -b / det, a / det, op
            box[g, 0] = int(max(np.ceil(u - rx - half), 0))
            box[g, 1] = int(min(np.floor(u + rx - half), width - 1))
            box[g, 2] = int(max(np.ceil(v - ry - half), 0))
            box[g, 3] = int(min(np.floor(v + ry - half), height - 1))
            feats[g, 3] = z
            if deg < 0:
                for ch in range(3):
                    feats[g, ch] = colors[g, 0, ch]
                continue
            dx, dy, dz = mx - centers[f, 0], my - centers[f, 1], mz - centers[f, 2]
            dn = max(np.sqrt(dx * dx + dy * dy + dz * dz), np.float32(1e-12))
            dx, dy, dz = dx / dn, dy / dn, dz / dn
            for ch in range(3):
                sh = colors[g, :, ch]
                o = c0 * sh[0]
                if deg >= 1:
                    o = o - c1 * dy * sh[1] + c1 * dz * sh[2] - c1 * dx * sh[3]
                if deg >= 2:
                    xx, yy, zz, xy, yz, xz = dx * dx, dy * dy, dz * dz, dx * dy, dy * dz, dx * dz
                    o = (o + c2[0] * xy * sh[4] + c2[1] * yz * sh[5] + c2[2] * (two * zz - xx - yy) * sh[6]
                         + c2[3] * xz * sh[7] + c2[4] * (xx - yy) * sh[8])
                    if deg >= 3:
                        o = (o + c3[0] * dy * (np.float32(3) * xx - yy) * sh[9] + c3[1] * xy * dz * sh[10]
                             + c3[2] * dy * (np.float32(4) * zz - xx - yy) * sh[11]
                             + c3[3] * dz * (two * zz - np.float32(3) * xx - np.float32(3) * yy) * sh[12]
                             + c3[4] * dx * (np.float32(4) * zz - xx - yy) * sh[13] + c3[5] * dz * (xx - yy) * sh[14]
                             + c3[6] * dx * (xx - np.float32(3) * yy) * sh[15])
                feats[g, ch] = max(o + half, np.float32(0.0))

    @nb.njit(cache=True, nogil=True)
    def bin_tiles(box, frame, tiles_x, tiles_y, num_frames):  # pragma: no cover - compiled
        """Tile lists: ``offsets (F*tiles+1,)`` and ``items`` so that tile ``t`` holds
        ``items[offsets[t]:offsets[t+1]]``, in the order the Gaussians are given (near to far)."""
        n_tiles = tiles_x * tiles_y
        counts = np.zeros(num_frames * n_tiles + 1, np.int64)
        for g in range(box.shape[0]):
            base = frame[g] * n_tiles
            for ty in range(box[g, 2] // tile, box[g, 3] // tile + 1):
                for tx in range(box[g, 0] // tile, box[g, 1] // tile + 1):
                    counts[base + ty * tiles_x + tx + 1] += 1
        offsets = np.cumsum(counts)
        fill = offsets[:-1].copy()
        items = np.empty(offsets[-1], np.int32)
        for g in range(box.shape[0]):
            base = frame[g] * n_tiles
            for ty in range(box[g, 2] // tile, box[g, 3] // tile + 1):
                for tx in range(box[g, 0] // tile, box[g, 1] // tile + 1):
                    t = base + ty * tiles_x + tx
                    items[fill[t]] = g
                    fill[t] += 1
        return offsets, items

    # fastmath: about 15% here; every comparison that decides a contribution stays an exact IEEE one
    @nb.njit(cache=True, parallel=True, nogil=True, fastmath={"contract", "arcp", "reassoc", "nsz"})
    def composite_tiles(params, feats, inst, box, offsets, items, tiles_x, width, height, num_inst,
                        rgb, depth, alpha, best):  # pragma: no cover - compiled
        n_tiles = offsets.shape[0] - 1
        per_frame = n_tiles // rgb.shape[0]
        for t in nb.prange(n_tiles):
            f = t // per_frame
            ty = (t % per_frame) // tiles_x
            tx = (t % per_frame) % tiles_x
            x0, y0 = tx * tile, ty * tile
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            tw, th = x1 - x0, y1 - y0
            trans = np.ones((th, tw), np.float64)
            acc = np.zeros((th, tw, 5), np.float64)
            votes = np.zeros((th, tw, num_inst), np.float64)
            done = np.zeros((th, tw), np.bool_)
            left = tw * th
            for k in range(offsets[t], offsets[t + 1]):
                if left == 0:
                    break
                g = items[k]
                u, v = params[g, 0], params[g, 1]
                ca, cb, cc, op = params[g, 2], params[g, 3], params[g, 4], params[g, 5]
                # Outside the ellipse sigma <= log(255 op) alpha is below ALPHA_MIN: each row visits only
                # the columns of that ellipse (widened by a margin far above float error), so skipped
                # pixels are exactly those the exact test below would reject anyway.
                smax = np.log(max(np.float64(op) * 255.0, 1.0)) + 1e-3
                ja, jb = max(box[g, 0], x0), min(box[g, 1], x1 - 1)
                for i in range(max(box[g, 2], y0), min(box[g, 3], y1 - 1) + 1):
                    dy = v - (np.float32(i) + half)
                    dy64 = np.float64(dy)
                    disc = (np.float64(cb) * dy64) ** 2 - np.float64(ca) * (np.float64(cc) * dy64 * dy64 - 2.0 * smax)
                    if disc < 0.0:
                        continue
                    root = np.sqrt(disc)
                    lo = (-np.float64(cb) * dy64 - root) / np.float64(ca) - 1e-3
                    hi = (-np.float64(cb) * dy64 + root) / np.float64(ca) + 1e-3
                    # dx = u - (j + 0.5) in [lo, hi]  <=>  j in [u - 0.5 - hi, u - 0.5 - lo]
                    jlo = max(ja, int(np.ceil(np.float64(u) - 0.5 - hi)))
                    jhi = min(jb, int(np.floor(np.float64(u) - 0.5 - lo)))
                    for j in range(jlo, jhi + 1):
                        li, lj = i - y0, j - x0
                        if done[li, lj]:
                            continue
                        dx = u - (np.float32(j) + half)
                        sigma = half * ca * dx * dx + half * cc * dy * dy + cb * dx * dy
                        if sigma < 0:
                            continue
                        a = min(alpha_max, op * np.exp(-sigma))
                        if a < alpha_min:
                            continue
                        tc = trans[li, lj]
                        tn = tc * (1.0 - np.float64(a))
                        if tn <= t_min:
                            done[li, lj] = True
                            left -= 1
                            continue
                        w = np.float64(a) * tc
                        for c in range(4):
                            acc[li, lj, c] += w * feats[g, c]
                        acc[li, lj, 4] += w
                        votes[li, lj, inst[g]] += w
                        trans[li, lj] = tn
            for li in range(th):
                for lj in range(tw):
                    wsum = acc[li, lj, 4]
                    for c in range(3):
                        rgb[f, y0 + li, x0 + lj, c] = acc[li, lj, c]
                    depth[f, y0 + li, x0 + lj] = acc[li, lj, 3] / max(wsum, 1e-10)
                    alpha[f, y0 + li, x0 + lj] = wsum
                    top, arg = -1.0, 0
                    for n in range(num_inst):  # the first (smallest id) wins ties
                        if votes[li, lj, n] > top:
                            top, arg = votes[li, lj, n], n
                    best[f, y0 + li, x0 + lj] = arg

    return project, bin_tiles, composite_tiles


def render(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray, colors: np.ndarray,
           sh_degree: int | None, inst: np.ndarray, frame: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
           width: int, height: int, num_inst: int, num_threads: int | None = None):
    """Project, bin and composite the Gaussians of ``F`` frames given as flat arrays over all frames.

    Args:
        means, quats, scales: ``(M,3)``, ``(M,4)`` wxyz, ``(M,3)`` float32, world metres.
        opacities: ``(M,)`` float32.
        colors: ``(M,3)`` RGB (``sh_degree`` None) or ``(M,K,3)`` SH coefficients of degree ``sh_degree``.
        inst: ``(M,)`` int32 instance index in ``[0, num_inst)`` (the caller maps ids to indices).
        frame: ``(M,)`` int32 frame of each Gaussian, in ``[0, F)``.
        K, R, t: ``(F,3,3)``, ``(F,3,3)``, ``(F,3)`` float32 OpenCV intrinsics and world-to-camera pose.
        num_threads: see :func:`threads`.

    Returns:
        ``rgb (F,H,W,3)`` (premultiplied, no background), ``depth (F,H,W)`` (expected camera z, 0 where
        empty), ``alpha (F,H,W)`` float32 and ``best (F,H,W)`` int32, each pixel's instance index with the
        largest summed blending weight (the smallest index on ties).
    """
    import numba

    project, _, _ = _kernels()
    F = len(K)
    M = len(means)
    f32 = np.float32
    Kc, Rc, tc = (np.ascontiguousarray(x, dtype=f32) for x in (K, R, t))
    centers = -np.einsum("fji,fj->fi", Rc.astype(np.float64), tc.astype(np.float64)).astype(f32)
    fx, fy, cx, cy = (Kc[:, 0, 0].astype(np.float64), Kc[:, 1, 1].astype(np.float64),
                      Kc[:, 0, 2].astype(np.float64), Kc[:, 1, 2].astype(np.float64))
    # the Jacobian's clamp to 1.3x the field of view, as gsplat (and render.gaussian._project) do
    lims = np.stack([(width - cx) / fx + 0.15 * width / fx, cx / fx + 0.15 * width / fx,
                     (height - cy) / fy + 0.15 * height / fy, cy / fy + 0.15 * height / fy], 1).astype(f32)
    cols = np.ascontiguousarray(colors, dtype=f32)
    if cols.ndim == 2:
        cols = cols[:, None, :]
    params, feats = _scratch("params", (M, 6), f32), _scratch("feats", (M, 4), f32)
    box, valid = _scratch("box", (M, 4), np.int32), _scratch("valid", (M,), np.bool_)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads(num_threads))
    try:
        project(np.ascontiguousarray(means, dtype=f32), np.ascontiguousarray(quats, dtype=f32),
                np.ascontiguousarray(scales, dtype=f32), np.ascontiguousarray(opacities, dtype=f32), cols,
                -1 if sh_degree is None else int(sh_degree), np.ascontiguousarray(frame, dtype=np.int32),
                Kc, Rc, tc, centers, lims, width, height, params, feats, box, valid)
        order = _depth_order(valid, feats[:, 3], frame, F)
        n = len(order)
        # gathered into reused buffers: fresh large arrays cost a page fault per 4 KiB on every call
        sorted_ = [np.take(a, order, axis=0, out=_scratch(name, (n, *a.shape[1:]), a.dtype))
                   for name, a in (("params_s", params), ("feats_s", feats), ("inst_s", np.asarray(inst, np.int32)),
                                   ("box_s", box), ("frame_s", np.asarray(frame, np.int32)))]
        return composite(*sorted_, F, width, height, num_inst, None)
    finally:
        numba.set_num_threads(previous)


def _depth_order(valid: np.ndarray, depth: np.ndarray, frame: np.ndarray, num_frames: int) -> np.ndarray:
    """Indices of the ``valid`` Gaussians by frame, then camera z, then index (a stable depth sort).

    One int64 sort of packed keys (frame, the bits of the positive float32 depth, which order like the
    values, and the rank in memory): faster than a lexsort and than gathering the arrays into that order.
    """
    vis = np.flatnonzero(valid)
    if num_frames > 31 or len(vis) >= (1 << 27):
        return vis[np.lexsort((depth[vis], frame[vis]))]
    key = _scratch("key", (len(vis),), np.int64)
    np.left_shift(frame[vis], 58, out=key, dtype=np.int64)
    key |= depth[vis].view(np.int32).astype(np.int64) << 27
    key |= np.arange(len(vis), dtype=np.int64)
    key.sort()
    return vis[key & ((1 << 27) - 1)]


def composite(params: np.ndarray, feats: np.ndarray, inst: np.ndarray, box: np.ndarray, frame: np.ndarray,
              num_frames: int, width: int, height: int, num_inst: int, num_threads: int | None = None):
    """Bin and composite projected Gaussians of ``num_frames`` frames (flat arrays over all frames).

    Args:
        params: ``(M,6)`` float32 per Gaussian: pixel centre ``u, v``, conic ``a, b, c`` (upper triangle of the
            inverse 2D covariance, px^-2), opacity.
        feats: ``(M,4)`` float32: RGB colour in ``[0,1]`` and camera z in metres.
        inst: ``(M,)`` int32 instance index in ``[0, num_inst)``.
        box: ``(M,4)`` int32 footprint box ``j0, j1, i0, i1`` (inclusive pixel columns and rows, inside the
            image).
        frame: ``(M,)`` int32 frame of each Gaussian, non-decreasing; within a frame near to far.
        num_threads: see :func:`threads`; ``None`` keeps numba's current setting.

    Returns:
        as :func:`render`.
    """
    import numba

    _, bin_tiles, composite_tiles = _kernels()
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    rgb = np.zeros((num_frames, height, width, 3), np.float32)
    depth = np.zeros((num_frames, height, width), np.float32)
    alpha = np.zeros((num_frames, height, width), np.float32)
    best = np.zeros((num_frames, height, width), np.int32)
    if len(params) == 0:
        return rgb, depth, alpha, best
    offsets, items = bin_tiles(box, frame, tiles_x, tiles_y, num_frames)
    previous = numba.get_num_threads()
    if num_threads is not None:
        numba.set_num_threads(threads(num_threads))
    # small chunks: tiles covering a person cost far more than empty ones, static halves would idle a thread
    chunk = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(2)
    try:
        composite_tiles(params, feats, inst, box, offsets, items, tiles_x, width, height, max(num_inst, 1),
                        rgb, depth, alpha, best)
    finally:
        numba.set_parallel_chunksize(chunk)
        numba.set_num_threads(previous)
    return rgb, depth, alpha, best
