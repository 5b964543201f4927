"""The compiled CPU compositor for :func:`render.gaussian.rasterize` (numba, the optional extra ``fast``).

The same conventions as the PyTorch path of :mod:`render.gaussian` (its module docstring states them), laid
out the way gsplat's CUDA rasterizer is:

1. projection: EWA projection, culling, footprint box and SH colour of each Gaussian, fused in one loop
   parallel over the Gaussians (float32, the arithmetic of ``render.gaussian._project``), written as one
   64-byte record (a cache line) per Gaussian with its depth sort key; the box is cut to the pixels that can
   take alpha >= ALPHA_MIN (the opacity-aware ellipse without whole-pixel rounding, with a margin above the
   float32 rounding of the compositor's test, so the images are the same bit for bit);
2. depth order: one numpy sort of int64 keys packing (frame, camera z, index), the stable depth order of the
   PyTorch path; the visible records are gathered in that order;
3. binning, a counting sort: the sorted Gaussians are split in one chunk per thread; each chunk counts its
   hits per 16x16 tile, prefix sums of the counts give every (chunk, tile) its write position, and each
   chunk copies its Gaussians into the tiles they touch, so a tile's Gaussians lie in one contiguous block,
   in depth order;
4. compositing: one task per (frame, tile), spread over threads with ``prange``, front to back: a Gaussian
   visits only the pixels of its footprint box inside the tile that are still compositing (a bit mask per
   tile row, walked by its set bits), a pixel stops before the Gaussian that would take its transmittance
   to ``T_MIN`` or below, and a tile stops when all its pixels have; each pixel's sums lie in one cache
   line; the background, the clamp and the instance-id vote are applied as each tile is written out.

A whole clip is binned and composited in one call, so the threads share the tiles of all frames.
This path is forward only (no autograd); the PyTorch path stays the differentiable one and the reference
twin it is tested against. When numba is not installed :func:`available` is ``False`` and
:func:`render.gaussian.rasterize` falls back to PyTorch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time

import numpy as np

__all__ = ["available", "TILE", "render", "project", "threads"]

TILE = 16  #: tile side in pixels
# the compositor's boxes cut to the pixels that can take alpha >= ALPHA_MIN (same images; off for the tests
# that show it)
_TIGHT_BOXES = True


_local = threading.local()


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reused per-thread buffer of ``shape``, starting on a 64-byte cache line: its contents are whatever
    the last call left."""
    pool = _local.__dict__.setdefault("pool", {})
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = pool.get(name)
    if raw is None or raw.size < nbytes + 64:
        raw = pool[name] = np.empty(max(nbytes, int(1.25 * (0 if raw is None else raw.size))) + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + nbytes].view(dtype).reshape(shape)


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

    from numba.cpython.unsafe.numbers import trailing_zeros

    from .gaussian import (_EXTEND, _SH_C0, _SH_C1, _SH_C2, _SH_C3, ALPHA_MAX, ALPHA_MIN, EPS2D, ID_ALPHA,
                           NEAR_PLANE, T_MIN)

    alpha_max, alpha_min = np.float32(ALPHA_MAX), np.float32(ALPHA_MIN)
    t_min = T_MIN
    half = np.float32(0.5)
    tile = TILE
    shift = TILE.bit_length() - 1  # pixel -> tile index by a shift
    assert 1 << shift == TILE
    id_alpha = np.float32(ID_ALPHA)
    key_max = np.int64(np.iinfo(np.int64).max)
    sigma_max = np.float32(np.log(255.0) + 1e-3)  # alpha < ALPHA_MIN beyond, for opacities up to 1

    near, eps2d, extend_max = np.float32(NEAR_PLANE), np.float32(EPS2D), np.float32(_EXTEND)
    c0, c1 = np.float32(_SH_C0), np.float32(_SH_C1)
    c2 = np.array(_SH_C2, np.float32)
    c3 = np.array(_SH_C3, np.float32)
    zero, one, two = np.float32(0.0), np.float32(1.0), np.float32(2.0)

    # exp(-sigma) for sigma in [0, sigma_max] as a table at steps of 1/256 times a quadratic for the rest: within
    # 1.5e-7 relative (float32's expf: 2e-7), and cheaper inline than the libm call, which spills registers
    exp_table = np.exp(-np.arange(int(sigma_max * 256) + 2) / 256.0).astype(np.float32)
    exp_step = np.float32(1.0 / 256.0)

    @nb.njit(cache=True, parallel=True, nogil=True)
    def project(means, quats, scales, opac, colors, deg, frame, inst, Ks, Rs, ts, centers, lims, width, height,
                tight, grec, grec_bits, valid, keys):  # pragma: no cover - compiled
        """EWA projection and SH colour of each Gaussian, float32 like render.gaussian._project, into the
        records ``grec`` (see ``_project_records``); ``tight``: boxes cut to the pixels that can take alpha >=
        ALPHA_MIN. When ``keys`` has a row per Gaussian, it receives the depth sort keys of ``depth_keys``
        with the Gaussian's own index as rank (the maximum int64 for culled ones, which sort last)."""
        params, feats, box = grec[:, :6], grec[:, 6:10], grec_bits[:, 12:]
        with_keys = keys.shape[0] == means.shape[0]
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
            log_op = np.log(max(op * np.float32(255.0), one))
            ext_op = np.sqrt(two * log_op)
            ext = min(ext_op, extend_max)
            sa, sc = np.sqrt(max(a, np.float32(0.0))), np.sqrt(max(c, np.float32(0.0)))
            rx = np.ceil(ext * sa)
            ry = np.ceil(ext * sc)
            ok = ok and u + rx > 0 and u - rx < width and v + ry > 0 and v - ry < height and rx > 0 and ry > 0
            valid[g] = ok
            if with_keys:
                keys[g] = key_max
            if not ok:
                continue
            ca, cb, cc = c / det, -b / det, a / det
            params[g, 0], params[g, 1] = u, v
            params[g, 2], params[g, 3], params[g, 4], params[g, 5] = ca, cb, cc, op
            j0 = int(max(np.ceil(u - rx - half), 0))
            j1 = int(min(np.floor(u + rx - half), width - 1))
            i0 = int(max(np.ceil(v - ry - half), 0))
            i1 = int(min(np.floor(v + ry - half), height - 1))
            # ecc: 4 eps ac/det with eps = 1e-5 (ac/det >= 1, large for thin tilted footprints)
            ecc = np.float32(4e-5) * a * ca
            if tight and ext_op <= extend_max and log_op >= np.float32(0.01) and ecc < np.float32(0.25):
                # the bounding box of alpha >= ALPHA_MIN, sigma <= L = log(255 op), without the whole-pixel
                # rounding of rx and ry: half-widths ext sqrt(a) and ext sqrt(c), widened so that no pixel left
                # out passes the compositor's test. Its float32 sigma errs by less than eps (about 170 ulps) of
                # the magnitudes of its terms, which are at most 4 ac/det times sigma for any offset, and its
                # threshold on sigma by less than 1e-5 (1 + L): a pixel beyond level L (1 + p) / (1 - ecc), p =
                # 1e-5 + 1e-3 >= 1e-5 (1 + 1/L), fails it. Half-widths scale with the square root of the level:
                # sqrt((1 + p) / (1 - ecc)) <= 1 + (p + 1.34 ecc (1 + p)) / 2 for ecc < 1/4. The last 4e-3 px
                # (and 1e-6 of the coordinates) cover the float32 rounding of the box's own arithmetic.
                # Opacities above 1 (clamped extent), tiny L and very eccentric footprints keep the rounded box.
                pw = np.float32(1.001e-3)
                wide = one + half * (pw + np.float32(1.34) * ecc * (one + pw))
                ex, ey = ext * sa * wide, ext * sc * wide
                mx_ = np.float32(4e-3) + np.float32(1e-6) * (abs(u) + ex)
                my_ = np.float32(4e-3) + np.float32(1e-6) * (abs(v) + ey)
                j0 = max(j0, int(np.ceil(max(u - ex - half - mx_, np.float32(-1.0)))))
                j1 = min(j1, int(np.floor(min(u + ex - half + mx_, np.float32(width)))))
                i0 = max(i0, int(np.ceil(max(v - ey - half - my_, np.float32(-1.0)))))
                i1 = min(i1, int(np.floor(min(v + ey - half + my_, np.float32(height)))))
                if j0 > j1 or i0 > i1:
                    valid[g] = False
                    continue
            box[g, 0], box[g, 1], box[g, 2], box[g, 3] = j0, j1, i0, i1
            feats[g, 3] = z
            grec[g, 10] = inst[g]  # exact in float32: instance indices stay below 2^24
            grec_bits[g, 11] = f
            if with_keys:
                keys[g] = (np.int64(f) << 58) | (np.int64(grec_bits[g, 9]) << 27) | g
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
    def depth_keys(valid, grec_bits, keys, vis):  # pragma: no cover - compiled
        """The visible Gaussians ``vis[:n]`` and their sort keys ``keys[:n]``: frame, the bits of the camera
        z (positive float32s order like their bits) and the rank, packed in an int64; returns ``n``."""
        n = 0
        for g in range(valid.shape[0]):
            if valid[g]:
                keys[n] = (np.int64(grec_bits[g, 11]) << 58) | (np.int64(grec_bits[g, 9]) << 27) | n
                vis[n] = g
                n += 1
        return n

    @nb.njit(cache=True, parallel=True, nogil=True)
    def gather_count(keys, mask, vis, grec_bits, out_bits, tiles_x, per_frame, counts):  # pragma: no cover
        """``out_bits[k] = grec_bits[vis[keys[k] & mask]]`` (``grec_bits[keys[k] & mask]`` where ``vis`` is
        empty): the records in depth order; and ``counts[c, t]``: how many Gaussians of chunk ``c`` touch tile
        ``t``. Records are copied as int32 words: a float copy could flush the box's denormal bit patterns."""
        n_chunks = counts.shape[0]
        n = keys.shape[0]
        direct = vis.shape[0] == 0
        for c in nb.prange(n_chunks):
            row = counts[c]
            row[:] = 0
            k0, k1 = c * n // n_chunks, (c + 1) * n // n_chunks
            # the copy first, in a loop without data-dependent branches: the misses of many records overlap (a
            # mispredicted tile loop in the same iteration would wait for each in turn)
            for k in range(k0, k1):
                g = keys[k] & mask if direct else vis[keys[k] & mask]
                for q in range(16):
                    out_bits[k, q] = grec_bits[g, q]
            for k in range(k0, k1):
                base = out_bits[k, 11] * per_frame
                # boxes of visible Gaussians are >= 0, so a shift is the floor division
                tx0, tx1 = out_bits[k, 12] >> shift, out_bits[k, 13] >> shift
                ty0, ty1 = out_bits[k, 14] >> shift, out_bits[k, 15] >> shift
                dx, dy = tx1 - tx0, ty1 - ty0
                if dx <= 1 and dy <= 1:  # at most 2x2 tiles (nearly all): four adds without branches
                    t = base + ty0 * tiles_x + tx0
                    row[t] += 1
                    row[t + dx] += dx
                    row[t + dy * tiles_x] += dy
                    row[t + dx + dy * tiles_x] += dx & dy
                    continue
                for ty in range(ty0, ty1 + 1):
                    for tx in range(tx0, tx1 + 1):
                        row[base + ty * tiles_x + tx] += 1

    @nb.njit(cache=True, nogil=True)
    def tile_offsets(counts, offsets, cursor):  # pragma: no cover - compiled
        """Prefix sums: tile ``t`` owns ``[offsets[t], offsets[t+1])``; chunk ``c`` starts writing its part
        of it at ``cursor[c, t]`` (chunks in order, so a tile's list keeps the order it is given)."""
        n_chunks, n = counts.shape
        total = 0
        for t in range(n):
            offsets[t] = total
            for c in range(n_chunks):
                cursor[c, t] = total
                total += counts[c, t]
        offsets[n] = total

    @nb.njit(cache=True, parallel=True, nogil=True)
    def scatter_tiles(grec_bits, tiles_x, per_frame, cursor, rec_bits):  # pragma: no cover - compiled
        """Copy each Gaussian of ``grec_bits`` (in depth order) into every tile it touches, as one 48-byte
        record: its 2D Gaussian, colour, depth and instance index (words 0-10, as projected) and its box
        clipped to the tile (four 4-bit tile coordinates in word 11). A tile then reads one contiguous block,
        in depth order. Words are copied as int32 (see ``gather_count``)."""
        n_chunks = cursor.shape[0]
        n = grec_bits.shape[0]
        for c in nb.prange(n_chunks):
            pos = cursor[c]
            for g in range(c * n // n_chunks, (c + 1) * n // n_chunks):
                base = grec_bits[g, 11] * per_frame
                j0, j1, i0, i1 = grec_bits[g, 12], grec_bits[g, 13], grec_bits[g, 14], grec_bits[g, 15]
                tx0, tx1, ty0, ty1 = j0 >> shift, j1 >> shift, i0 >> shift, i1 >> shift
                for ty in range(ty0, ty1 + 1):
                    ia = max(i0 - ty * tile, 0)
                    ib = min(i1 - ty * tile, tile - 1)
                    for tx in range(tx0, tx1 + 1):
                        t = base + ty * tiles_x + tx
                        p = pos[t]
                        pos[t] = p + 1
                        for q in range(11):
                            rec_bits[p, q] = grec_bits[g, q]
                        ja = max(j0 - tx * tile, 0)
                        jb = min(j1 - tx * tile, tile - 1)
                        rec_bits[p, 11] = ja | (jb << 4) | (ia << 8) | (ib << 12)

    # fastmath: every comparison that decides a contribution stays an exact IEEE one (no "nnan"/"ninf")
    @nb.njit(cache=True, parallel=True, nogil=True, fastmath={"contract", "arcp", "reassoc", "nsz"})
    def composite_tiles(rec, rec_bits, offsets, tiles_x, width, height, num_inst, background, id_table,
                        rgb, depth, alpha, ids):  # pragma: no cover - compiled
        n_tiles = offsets.shape[0] - 1
        per_frame = n_tiles // rgb.shape[0]
        bg0, bg1, bg2 = background[0], background[1], background[2]
        for t in nb.prange(n_tiles):
            f = t // per_frame
            ty = (t % per_frame) // tiles_x
            tx = (t % per_frame) % tiles_x
            x0, y0 = tx * tile, ty * tile
            tw, th = min(tile, width - x0), min(tile, height - y0)
            if offsets[t + 1] == offsets[t]:  # most tiles around a person: straight to the background
                for li in range(th):
                    for lj in range(tw):
                        rgb[f, y0 + li, x0 + lj, 0] = bg0
                        rgb[f, y0 + li, x0 + lj, 1] = bg1
                        rgb[f, y0 + li, x0 + lj, 2] = bg2
                        depth[f, y0 + li, x0 + lj] = 0.0
                        alpha[f, y0 + li, x0 + lj] = 0.0
                        ids[f, y0 + li, x0 + lj] = 0
                continue
            # one cache line of float64 per pixel: the sums of weight times r, g, b and z, of the weights, and
            # the transmittance (separate planes would put the stores of one pixel 4 KiB apart, which the load
            # of the next sum then waits on)
            acc = np.zeros((tile * tile, 8), np.float64)
            for q in range(tile * tile):
                acc[q, 5] = 1.0
            pxc = np.empty(tile, np.float32)
            for lj in range(tile):
                pxc[lj] = np.float32(x0 + lj) + half
            votes = np.zeros((num_inst, tile, tile), np.float64)
            # bit lj of live[li]: pixel (li, lj) still compositing (in the image, transmittance above T_MIN)
            live = np.zeros(tile, np.int64)
            for li in range(th):
                live[li] = (1 << tw) - 1
            left = tw * th
            for p in range(offsets[t], offsets[t + 1]):
                if left == 0:
                    break
                u, v = rec[p, 0], rec[p, 1]
                ca, cb, cc, op = rec[p, 2], rec[p, 3], rec[p, 4], rec[p, 5]
                cr, cg, cbl, cz = (np.float64(rec[p, 6]), np.float64(rec[p, 7]), np.float64(rec[p, 8]),
                                   np.float64(rec[p, 9]))
                m = int(rec[p, 10])
                bits = rec_bits[p, 11]
                ja, jb, ia, ib = bits & 15, (bits >> 4) & 15, (bits >> 8) & 15, (bits >> 12) & 15
                hca, hcc = half * ca, half * cc
                # alpha >= ALPHA_MIN needs sigma <= log(255 op): a cheap test before the exp, with a margin far
                # above float error so that the exact test below still decides every kept pixel
                smax = sigma_max if op <= one else np.float32(np.log(op * np.float32(255.0))) + np.float32(1e-3)
                cols = ((2 << jb) - 1) ^ ((1 << ja) - 1)
                for li in range(ia, ib + 1):
                    todo = live[li] & cols
                    if todo == 0:
                        continue
                    dy = v - (np.float32(y0 + li) + half)
                    sy = hcc * dy * dy
                    while todo != 0:  # the live pixels of the row, by their bits
                        lj = trailing_zeros(todo)
                        todo &= todo - 1
                        dx = u - pxc[lj]
                        pi = li * tile + lj
                        sigma = hca * dx * dx + sy + cb * dx * dy
                        if sigma < 0 or sigma > smax:
                            continue
                        if sigma <= sigma_max:
                            e = int(sigma * np.float32(256.0))
                            r = sigma - np.float32(e) * exp_step
                            a = min(alpha_max, op * (exp_table[e] * (one - r * (one - r * half))))
                        else:  # beyond the table, only for opacities above 1
                            a = min(alpha_max, op * np.exp(-sigma))
                        if a < alpha_min:
                            continue
                        tc = acc[pi, 5]
                        tn = tc * (1.0 - np.float64(a))
                        if tn <= t_min:
                            live[li] &= ~(np.int64(1) << lj)
                            left -= 1
                            continue
                        w = np.float64(a) * tc
                        acc[pi, 0] += w * cr
                        acc[pi, 1] += w * cg
                        acc[pi, 2] += w * cbl
                        acc[pi, 3] += w * cz
                        acc[pi, 4] += w
                        if num_inst > 1:  # one instance: its vote is the alpha, skip the store
                            votes[m, li, lj] += w
                        acc[pi, 5] = tn
            for li in range(th):
                for lj in range(tw):
                    pi = li * tile + lj
                    wsum = acc[pi, 4]
                    a32 = np.float32(wsum)
                    # over the background and clamped in float32, as the PyTorch path does
                    rest = one - a32
                    rgb[f, y0 + li, x0 + lj, 0] = min(max(np.float32(acc[pi, 0]) + rest * bg0, zero), one)
                    rgb[f, y0 + li, x0 + lj, 1] = min(max(np.float32(acc[pi, 1]) + rest * bg1, zero), one)
                    rgb[f, y0 + li, x0 + lj, 2] = min(max(np.float32(acc[pi, 2]) + rest * bg2, zero), one)
                    depth[f, y0 + li, x0 + lj] = acc[pi, 3] / max(wsum, 1e-10)
                    alpha[f, y0 + li, x0 + lj] = a32
                    top, arg = -1.0, 0
                    for q in range(num_inst):  # the first (smallest index) wins ties
                        if votes[q, li, lj] > top:
                            top, arg = votes[q, li, lj], q
                    ids[f, y0 + li, x0 + lj] = id_table[arg] if a32 > id_alpha else 0

    return project, depth_keys, gather_count, tile_offsets, scatter_tiles, composite_tiles


def _depth_order(valid: np.ndarray, grec_bits: np.ndarray, num_frames: int):
    """The visible Gaussians by frame, then camera z, then index (the PyTorch path's stable depth sort), as
    ``(keys, mask, vis)``: the ``k``-th is ``vis[keys[k] & mask]``.

    One numpy sort of int64 keys that pack all three (see ``depth_keys``): numpy's vectorised sort takes
    about 1.5 ms for 100k keys, less than sorting each tile's list on its own in the compositor (about 7 ms
    for the same scene at 512 px) and no more than a counting sort by depth would need in passes.

    Args:
        valid: ``(M,)`` bool.
        grec_bits: ``(M,16)`` int32 view of the projected records (frame in column 11, camera z's bits in 9).
    """
    M = len(valid)
    keys, vis = _scratch("keys", (M,), np.int64), _scratch("vis", (M,), np.int64)
    if num_frames <= 31 and M < (1 << 27):
        n = _kernels()[1](valid, grec_bits, keys, vis)
        keys = keys[:n]
        keys.sort()
        return keys, (1 << 27) - 1, vis[:n]
    vis = np.flatnonzero(valid)
    depth = grec_bits[vis, 9].view(np.float32)
    return np.lexsort((vis, depth, grec_bits[vis, 11])), -1, vis


class _Clock:
    """Adds the process CPU seconds since the previous call to ``timings[stage]`` (nothing when ``None``)."""

    def __init__(self, timings: dict | None):
        self.timings, self.last = timings, time.process_time()

    def __call__(self, stage: str) -> None:
        if self.timings is not None:
            now = time.process_time()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


@contextlib.contextmanager
def _numba_threads(num_threads: int | None):
    """numba's thread count set to :func:`threads` ``(num_threads)`` for the block, then restored."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(threads(num_threads))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def project(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray, colors: np.ndarray,
            sh_degree: int | None, frame: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int,
            height: int, num_threads: int | None = None):
    """Fused EWA projection, culling, footprint box and SH colour of the Gaussians of ``F`` frames.

    Args:
        as :func:`render`.

    Returns:
        ``params (M,6)`` float32: pixel centre ``u, v``, conic ``a, b, c`` (upper triangle of the inverse 2D
        covariance, px^-2), opacity; ``feats (M,4)`` float32: RGB colour in ``[0, inf)`` and camera z in
        metres; ``box (M,4)`` int32 footprint box ``j0, j1, i0, i1`` (inclusive pixel columns and rows, inside
        the image); ``valid (M,)`` bool. Rows of invalid Gaussians are unspecified. The arrays are buffers
        reused by the next call on this thread: copy them to keep them.
    """
    grec, valid, _ = _project_records(means, quats, scales, opacities, colors, sh_degree, frame, K, R, t, width,
                                      height, num_threads)
    return grec[:, :6], grec[:, 6:10], grec.view(np.int32)[:, 12:], valid


def _project_records(means, quats, scales, opacities, colors, sh_degree, frame, K, R, t, width, height,
                     num_threads, tight=False, inst=None, with_keys=False):
    """:func:`project`'s outputs as one ``(M,16)`` float32 record per Gaussian (one cache line): columns 0-5
    ``params``, 6-9 ``feats``, 10 the instance index ``inst`` (0 when None), 11 the frame (int32 bits), 12-15
    ``box`` (int32 bits); ``valid``; and, when ``with_keys``, the unsorted depth keys of all ``M`` Gaussians
    (see ``render``), else None. ``tight``: boxes cut to the pixels that can take alpha >= ALPHA_MIN (the
    compositor's; :func:`project` keeps the PyTorch path's boxes)."""
    kernel = _kernels()[0]
    f32 = np.float32
    M = len(means)
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
    # reused buffers (fresh large arrays cost a page fault per 4 KiB on every call), all outputs in one cache
    # line per Gaussian
    grec = _scratch("grec", (M, 16), f32)
    valid = _scratch("valid", (M,), np.bool_)
    keys = _scratch("depth_keys", (M if with_keys else 0,), np.int64)
    inst = np.zeros(M, np.int32) if inst is None else np.ascontiguousarray(inst, dtype=np.int32)
    with _numba_threads(num_threads):
        kernel(np.ascontiguousarray(means, dtype=f32), np.ascontiguousarray(quats, dtype=f32),
               np.ascontiguousarray(scales, dtype=f32), np.ascontiguousarray(opacities, dtype=f32), cols,
               -1 if sh_degree is None else int(sh_degree), np.ascontiguousarray(frame, dtype=np.int32), inst,
               Kc, Rc, tc, centers, lims, width, height, bool(tight), grec, grec.view(np.int32), valid, keys)
    return grec, valid, (keys if with_keys else None)


def render(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray, colors: np.ndarray,
           sh_degree: int | None, inst: np.ndarray, frame: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
           width: int, height: int, id_table: np.ndarray, background: np.ndarray, num_threads: int | None = None,
           timings: dict | None = None):
    """Project, bin and composite the Gaussians of ``F`` frames given as flat arrays over all frames.

    Args:
        means, quats, scales: ``(M,3)``, ``(M,4)`` wxyz, ``(M,3)`` float32, world metres.
        opacities: ``(M,)`` float32.
        colors: ``(M,3)`` RGB (``sh_degree`` None) or ``(M,K,3)`` SH coefficients of degree ``sh_degree``.
        inst: ``(M,)`` int32 instance index in ``[0, len(id_table))``.
        frame: ``(M,)`` int32 frame of each Gaussian, in ``[0, F)``.
        K, R, t: ``(F,3,3)``, ``(F,3,3)``, ``(F,3)`` float32 OpenCV intrinsics and world-to-camera pose.
        width, height: image size in pixels.
        id_table: ``(I,)`` int64 instance id of each instance index.
        background: ``(3,)`` float32 RGB in ``[0,1]``.
        num_threads: see :func:`threads`.
        timings: when given, receives the process CPU seconds of each stage (``project``, ``sort``,
            ``gather+count``, ``scatter``, ``composite``, ``other``), added to what it holds.

    Returns:
        ``rgb (F,H,W,3)`` (over ``background``, clamped to ``[0,1]``), ``depth (F,H,W)`` (expected camera z,
        0 where empty), ``alpha (F,H,W)`` float32 and ``ids (F,H,W)`` int64: the id of the instance with the
        largest summed blending weight (the smallest index on ties) where ``alpha > ID_ALPHA``, else 0.
    """
    import numba

    clock = _Clock(timings)
    _, depth_keys, gather_count, tile_offsets, scatter_tiles, composite_tiles = _kernels()
    F = len(K)
    f32 = np.float32
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    per_frame = tiles_x * tiles_y
    rgb = np.empty((F, height, width, 3), f32)
    depth = np.empty((F, height, width), f32)
    alpha = np.empty((F, height, width), f32)
    ids = np.empty((F, height, width), np.int64)
    table = np.ascontiguousarray(id_table, dtype=np.int64)
    if len(table) == 0:
        table = np.zeros(1, np.int64)
    if len(table) >= 1 << 24:
        raise ValueError(f"render: at most 2^24 instances, got {len(table)}")
    frame32 = np.ascontiguousarray(frame, dtype=np.int32)
    with _numba_threads(num_threads):
        packed = F <= 31 and len(frame32) < (1 << 27)  # the depth keys fit in an int64 (see depth_keys)
        grec, valid, keys = _project_records(means, quats, scales, opacities, colors, sh_degree, frame32, K, R, t,
                                             width, height, num_threads, tight=_TIGHT_BOXES, inst=inst,
                                             with_keys=packed)
        clock("project")
        grec_bits = grec.view(np.int32)
        if packed:  # keys made by the projection, culled Gaussians last: the rank is the index itself
            keys.sort()
            keys = keys[:int(np.searchsorted(keys, np.iinfo(np.int64).max))]
            mask, vis = (1 << 27) - 1, np.empty(0, np.int64)
        else:
            keys, mask, vis = _depth_order(valid, grec_bits, F)
        clock("sort")
        # counting sort into tiles, in chunks of the depth order (one per thread): the chunks' counts give
        # each chunk its write positions, so every tile's list comes out in depth order; the visible
        # Gaussians are first gathered in that order, so that the binning reads them in sequence
        n_chunks = numba.get_num_threads()
        counts = _scratch("counts", (n_chunks, F * per_frame), np.int64)
        sorted_ = _scratch("grec_sorted", (len(keys), 16), f32)
        sorted_bits = sorted_.view(np.int32)
        gather_count(keys, mask, vis, grec_bits, sorted_bits, tiles_x, per_frame, counts)
        clock("gather+count")
        offsets = _scratch("offsets", (F * per_frame + 1,), np.int64)
        cursor = _scratch("cursor", (n_chunks, F * per_frame), np.int64)
        tile_offsets(counts, offsets, cursor)
        rec = _scratch("rec", (int(offsets[-1]), 12), f32)
        scatter_tiles(sorted_bits, tiles_x, per_frame, cursor, rec.view(np.int32))
        clock("scatter")
        # small chunks: tiles covering a person cost far more than empty ones, static halves would idle a thread
        chunk = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(2)
        try:
            composite_tiles(rec, rec.view(np.int32), offsets, tiles_x, width, height, len(table),
                            np.ascontiguousarray(background, dtype=f32), table, rgb, depth, alpha, ids)
        finally:
            numba.set_parallel_chunksize(chunk)
        clock("composite")
    clock("other")
    return rgb, depth, alpha, ids
