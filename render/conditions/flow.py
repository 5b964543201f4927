"""Trajectory flow maps for Image Conductor, MotionCtrl and DragNUWA, and the sparse-track sampler.

References:
- Image Conductor (``ImageConductor_app.py``: ``points_to_flows`` and the ``cv2.filter2D`` loop in
  ``ImageConductor.run``; ``utils/utils.py``: ``interpolate_trajectory``, ``bivariate_Gaussian``,
  ``mesh_grid``, ``pdf2``): kernel 99x99, sigma 10, normalised to sum 1, border ``BORDER_REFLECT_101``
  (OpenCV's default), float64 maps cast to float32. MotionCtrl's object-motion maps use the same
  recipe.
- DragNUWA (``DragNUWA_demo.py``: ``Drag.run``; ``DragNUWA_net.py``: ``get_gaussian_kernel``,
  ``apply_gaussian_filter_on_drag``): kernel 199x199, sigma 20, *not* normalised (peak 1), applied by a
  grouped ``Conv2d`` with zero padding 99, float32.
- Sparse sampling: Image Conductor's paper (``n`` in [1, 8] tracks, drawn with probability proportional
  to normalised motion) with the filtering steps of ``sample_trajectories`` in the LeviTor /
  DragAnything ``cotracker/predictor.py``.

Both variants: frame 0 is zero; frame ``f >= 1`` holds at pixel ``(int(y_{f-1}), int(x_{f-1}))`` the
displacement ``(x_f - x_{f-1}, y_f - y_{f-1})`` of each track, later tracks overwriting earlier ones
at the same pixel, then the Gaussian filter. Channel 0 is dx, channel 1 is dy.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..errors import AmgError

__all__ = ["VARIANTS", "resample_track", "gaussian_kernel", "sparse_flow", "filter_flow",
           "trajectory_flow", "sample_tracks"]

#: variant -> (kernel size, sigma, normalised, border)
VARIANTS = {
    "imageconductor": (99, 10.0, True, "reflect101"),
    "motionctrl": (99, 10.0, True, "reflect101"),
    "dragnuwa": (199, 20.0, False, "zeros"),
}


def resample_track(points, num_frames: int) -> np.ndarray:
    """Drawn points ``(N,2)`` (or ``(N,D)``) -> ``float64 (num_frames, D)`` by PCHIP over
    ``t = linspace(0, 1, N)`` sampled at ``linspace(0, 1, num_frames)``, each coordinate separately.

    As ``interpolate_trajectory`` of Image Conductor, DragNUWA and LeviTor. A single point becomes the
    two-point track ``[p, p + 1]`` first (their "stationary point" rule, which adds 1 to x and y and
    keeps further coordinates), so it drifts by one pixel over the clip exactly as in the references.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise AmgError(f"resample_track: expected (N,2) points with N >= 1, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise AmgError("resample_track: points must be finite")
    if int(num_frames) < 1:
        raise AmgError(f"resample_track: num_frames must be >= 1, got {num_frames}")
    if len(p) == 1:
        q = p[0].copy()
        q[:2] += 1
        p = np.stack([p[0], q])
    from scipy.interpolate import PchipInterpolator

    t = np.linspace(0, 1, len(p))
    new_t = np.linspace(0, 1, int(num_frames))
    return np.stack([PchipInterpolator(t, p[:, c])(new_t) for c in range(p.shape[1])], axis=1)


@functools.lru_cache(maxsize=8)
def _kernel_1d(size: int, sigma: float, variant_dragnuwa: bool) -> np.ndarray:
    if variant_dragnuwa:
        x = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2.0)
        return np.exp(-(x * x) / np.float32(2 * sigma ** 2)).astype(np.float64)
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    return np.exp(-0.5 * ax * ax / sigma ** 2)


def gaussian_kernel(variant: str = "imageconductor") -> np.ndarray:
    """The 2D filter kernel of a variant, built as its reference builds it.

    Image Conductor / MotionCtrl: ``bivariate_Gaussian(99, 10, 10, 0, isotropic=True)``: grid
    ``-49..49``, ``exp(-0.5 * [x y] Sigma^-1 [x y]^T)`` divided by its sum (``float64``).
    DragNUWA: ``get_gaussian_kernel(199, 20)``: ``exp(-|xy - 99|^2 / (2 * 400))`` in ``float32``, peak 1.
    """
    size, sigma, normalised, _ = _variant(variant)
    if normalised:
        ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
        xx, yy = np.meshgrid(ax, ax)
        grid = np.stack([xx, yy], axis=-1)
        inv = np.linalg.inv(np.array([[sigma ** 2, 0], [0, sigma ** 2]]))
        k = np.exp(-0.5 * np.sum(np.dot(grid, inv) * grid, 2))
        return k / np.sum(k)
    c = torch.arange(size)
    xg = c.repeat(size).view(size, size)
    xy = torch.stack([xg, xg.t()], dim=-1).float()
    mean = (size - 1) / 2.0
    return torch.exp(-torch.sum((xy - mean) ** 2.0, dim=-1) / (2 * sigma ** 2.0)).numpy()


def _variant(variant: str):
    try:
        return VARIANTS[variant]
    except KeyError:
        raise AmgError(f"trajectory_flow: unknown variant {variant!r}; expected one of {sorted(VARIANTS)}") from None


def _check_tracks(tracks, where: str) -> np.ndarray:
    t = np.asarray(tracks, dtype=np.float64)
    if t.ndim == 2 and t.shape[-1] == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[-1] != 2:
        raise AmgError(f"{where}: expected tracks (T,F,2) of (x, y) pixels, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise AmgError(f"{where}: tracks must be finite")
    return t


def sparse_flow(tracks, height: int, width: int) -> np.ndarray:
    """Unfiltered flow ``float64 (F,H,W,2)``: frame 0 zero, frame ``f`` the step ``f-1 -> f`` of every
    track written at ``(int(y_{f-1}), int(x_{f-1}))`` (truncation toward zero), later tracks winning.

    As ``points_to_flows`` (whose drag index ``i`` is our frame ``i + 1``). A start pixel outside the
    image raises :class:`AmgError` (the reference indexes out of bounds or wraps negative indices).
    """
    t = _check_tracks(tracks, "sparse_flow")
    T, F, _ = t.shape
    H, W = int(height), int(width)
    out = np.zeros((F, H, W, 2), np.float64)
    if F < 2:
        return out
    start = t[:, :-1]
    cols = np.trunc(start[..., 0]).astype(np.int64)
    rows = np.trunc(start[..., 1]).astype(np.int64)
    bad = (cols < 0) | (cols >= W) | (rows < 0) | (rows >= H)
    if bad.any():
        k, f = np.argwhere(bad)[0]
        raise AmgError(f"sparse_flow: track {k} at frame {f} starts at ({start[k, f, 0]:.2f}, "
                       f"{start[k, f, 1]:.2f}), outside the {W}x{H} image")
    step = t[:, 1:] - t[:, :-1]
    for k in range(T):  # in order, so later tracks overwrite
        out[np.arange(1, F), rows[k], cols[k]] = step[k]
    return out


def _operator(n: int, size: int, k1: np.ndarray, border: str) -> np.ndarray:
    # M[y, y'] = sum of k1[d] over taps d whose (border-mapped) source row y + d - r is y'.
    r = size // 2
    src = np.arange(n)[:, None] + np.arange(size)[None, :] - r
    if border == "reflect101":
        if n == 1:
            src = np.zeros_like(src)
        else:
            period = 2 * (n - 1)
            src = np.abs(np.mod(src, period))
            src = np.where(src >= n, period - src, src)
        valid = np.ones_like(src, bool)
    else:
        valid = (src >= 0) & (src < n)
        src = np.clip(src, 0, n - 1)
    M = np.zeros((n, n))
    rows = np.broadcast_to(np.arange(n)[:, None], src.shape)
    np.add.at(M, (rows[valid], src[valid]), np.broadcast_to(k1, src.shape)[valid])
    return M


def filter_flow(flow: np.ndarray, variant: str = "imageconductor") -> np.ndarray:
    """Gaussian-filter flow maps ``(F,H,W,2)`` with a variant's kernel, separably: ``float64``.

    The 2D kernels are outer products of a 1D Gaussian, so ``M_y @ map @ M_x^T`` with 1D operators
    that fold the border rule (reflect-101 or zeros) into the matrix equals the 2D correlation up to
    float rounding (tested against ``cv2.filter2D`` and ``torch.nn.functional.conv2d``).
    """
    size, sigma, normalised, border = _variant(variant)
    fl = np.asarray(flow, dtype=np.float64)
    F, H, W, C = fl.shape
    k1 = _kernel_1d(size, float(sigma), not normalised)
    My, Mx = _operator(H, size, k1, border), _operator(W, size, k1, border)
    if normalised:
        s = k1.sum()
        My, Mx = My / s, Mx / s
    return np.einsum("yv,fvuc,xu->fyxc", My, fl, Mx, optimize=True)


def trajectory_flow(tracks, height: int, width: int, variant: str = "imageconductor") -> np.ndarray:
    """Gaussian-filtered sparse trajectory flow: ``float32 (2,F,H,W)`` (channels dx, dy).

    Args:
        tracks: ``(T,F,2)`` per-frame ``(x, y)`` pixel positions, already resampled to the clip
            (:func:`resample_track`); ``(F,2)`` is one track.
        variant: ``"imageconductor"`` / ``"motionctrl"`` (99x99, sigma 10, normalised, reflect-101
            border) or ``"dragnuwa"`` (199x199, sigma 20, peak-1, zero border). DragNUWA's model reads
            the same maps as ``(F,2,H,W)``.
    """
    _variant(variant)
    if int(height) < 1 or int(width) < 1:
        raise AmgError(f"trajectory_flow: image size must be positive, got {height}x{width}")
    flow = filter_flow(sparse_flow(tracks, height, width), variant)
    return np.ascontiguousarray(flow.transpose(3, 0, 1, 2)).astype(np.float32)


def sample_tracks(dense_tracks, num_tracks: int | None = None, seed: int = 0, visibility=None,
                  max_tracks: int = 8, motion_threshold: float = 1.0, vis_threshold: int = 5):
    """Draw sparse tracks from dense ones with probability proportional to motion.

    Image Conductor samples ``n`` in ``[1, 8]`` (uniform, from ``seed``) and draws ``n`` tracks without
    replacement with probability proportional to each track's normalised motion. The steps follow
    ``sample_trajectories``: drop tracks visible in ``vis_threshold`` frames or fewer (when
    ``visibility (M,F)`` is given); motion = mean per-step displacement norm; keep tracks moving more
    than ``motion_threshold`` pixels per frame, or the ``n`` fastest when fewer remain; draw with
    ``torch.multinomial(motion / motion.max() / sum, n, replacement=False)`` under a seeded generator.

    Args:
        dense_tracks: ``(M,F,2)`` projected body-surface points ``(x, y)``.
        num_tracks: how many to draw; None draws it uniformly from ``1..max_tracks``.

    Returns:
        ``(tracks (n,F,2) float64, indices (n,) int64)`` into ``dense_tracks``; ``n`` may be smaller
        than asked when fewer tracks survive, and 0 when none moves at all.
    """
    d = np.asarray(dense_tracks, dtype=np.float64)
    if d.ndim != 3 or d.shape[-1] != 2 or d.shape[1] < 2:
        raise AmgError(f"sample_tracks: expected dense tracks (M,F,2) with F >= 2, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise AmgError("sample_tracks: dense tracks must be finite")
    g = torch.Generator().manual_seed(int(seed))
    if num_tracks is None:
        num_tracks = int(torch.randint(1, max_tracks + 1, (1,), generator=g))
    if num_tracks < 1:
        raise AmgError(f"sample_tracks: num_tracks must be >= 1, got {num_tracks}")
    idx = np.arange(len(d))
    if visibility is not None:
        vis = np.asarray(visibility, dtype=bool)
        if vis.shape != d.shape[:2]:
            raise AmgError(f"sample_tracks: visibility shape {vis.shape} differs from tracks {d.shape[:2]}")
        idx = idx[vis.sum(axis=1) > vis_threshold]
    motion = np.linalg.norm(np.diff(d[idx], axis=1), axis=-1).mean(axis=1)
    keep = motion > motion_threshold
    if keep.sum() < num_tracks:
        keep = np.zeros_like(keep)
        keep[np.argsort(-motion, kind="stable")[:num_tracks]] = True
    idx, motion = idx[keep], motion[keep]
    n = min(num_tracks, len(idx))
    if n == 0 or motion.max() <= 0:
        return np.zeros((0, d.shape[1], 2)), np.zeros(0, np.int64)
    prob = torch.as_tensor(motion / motion.max())
    prob = prob / prob.sum()
    n = min(n, int((prob > 0).sum()))
    pick = torch.multinomial(prob, n, replacement=False, generator=g).numpy()
    return d[idx[pick]], idx[pick].astype(np.int64)
