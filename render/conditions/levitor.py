"""LeviTor conditions: K-means control points with instance ids and depth, their heatmap control tensor,
and the 3D object move that produces them from a user's 3D trajectory.

Reference: the public LeviTor code (``gradio_demo/gradio_run.py``: ``gen_gaussian_heatmap``,
``Drag.run``; ``cotracker/predictor.py``: ``draw_heatmap``, ``generate_gassian_heatmap``). Each function
below names the lines it follows; where that code has a quirk that changes outputs, the quirk is kept and
documented, because the trained ControlNet saw those outputs.

Units: pixels are ``(row, col)`` integer indices (``x = col``, ``y = row``); "LeviTor depth" is the
reciprocal of the 8-bit disparity (``1 / disparity``, 1.0 where the disparity is 0), the unit of the
demo's ``depth_for_3D`` maps and of the depth a user types for a trajectory point.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..errors import AmgError

__all__ = [
    "TEMPLATE_SIZE", "TEMPLATE_SIGMA", "HALF_SIZE", "MAX_CLUSTERS", "SAMPLE_STEP",
    "heatmap_template", "num_clusters", "kmeans_points", "control_tensor", "encode_depth",
    "disparity_from_depth", "inverse_disparity", "reproject", "splat_points", "ObjectMove",
    "move_object", "MoveResult",
]

TEMPLATE_SIZE = 200   # gen_gaussian_heatmap(imgSize=200)
TEMPLATE_SIGMA = 40   # the literal 40 in its Gaussian
HALF_SIZE = 10        # --gaussian_r default, passed as ``side`` to generate_gassian_heatmap
MAX_CLUSTERS = 8      # k = min(k, 8)
SAMPLE_STEP = 10      # pos_array_i[::10]
POINT_RADIUS_NDC = 0.011  # PointsRasterizationSettings(radius=max(0.011 - ddepth, 0.011))
POINTS_PER_PIXEL = 10     # PointsRasterizationSettings(points_per_pixel=10)


# ---------------------------------------------------------------------------------------------------
# heatmap template and control tensor
# ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _template() -> np.ndarray:
    n = TEMPLATE_SIZE
    circle = cv2.circle(np.zeros((n, n), np.float32), (n // 2, n // 2), n // 2, 1, -1)
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :]
    s2 = TEMPLATE_SIGMA ** 2
    # Same operation order as the reference's double loop, so float64 values agree bit for bit.
    g = 1 / 2 / np.pi / s2 * np.exp(-1 / 2 * ((i - n / 2) ** 2 / s2 + (j - n / 2) ** 2 / s2))
    g = g.astype(np.float32) * circle
    g = (g / np.max(g)).astype(np.float32)
    out = (g / np.max(g) * 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def heatmap_template() -> np.ndarray:
    """The LeviTor point template: ``uint8 (200,200)``.

    Follows ``gen_gaussian_heatmap``: an isotropic Gaussian with sigma 40 centred at ``(100, 100)``
    (``i - imgSize/2``, so not at the geometric centre 99.5), multiplied by a filled radius-100 disc
    drawn by ``cv2.circle``, normalised to a maximum of 1, scaled by 255 and truncated to ``uint8``.
    Returns a fresh writable copy.
    """
    return _template().copy()


@functools.lru_cache(maxsize=256)
def _resized_template(w: int, h: int) -> np.ndarray:
    out = cv2.resize(_template(), (w, h))  # default INTER_LINEAR, as draw_heatmap
    out.setflags(write=False)
    return out


def _as_points(points, where: str) -> np.ndarray:
    p = np.asarray(points)
    if p.size == 0:
        return np.zeros((0, 4), np.int64)
    if p.ndim != 2 or p.shape[1] != 4:
        raise AmgError(f"{where}: expected (K,4) [row, col, id, depth] points, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or not np.all(np.isfinite(p.astype(np.float64))):
        raise AmgError(f"{where}: points must be finite numbers")
    ids_depth = p[:, 2:].astype(np.float64)
    if np.any(ids_depth != np.round(ids_depth)):
        raise AmgError(f"{where}: instance ids and depths must be integers")
    if np.any(ids_depth < 0) or np.any(ids_depth > 255):
        raise AmgError(f"{where}: instance ids and depths must lie in [0, 255] (uint8 channels)")
    return p


def control_tensor(points_per_frame: Sequence, height: int, width: int,
                   half_size: int = HALF_SIZE) -> np.ndarray:
    """LeviTor's ControlNet input from per-frame control points: ``float32 (F,3,H,W)``.

    Channels are ``[heat, instance id, depth]``, unnormalised (0-255 values). Follows
    ``generate_gassian_heatmap`` / ``draw_heatmap``: a point ``[row, col, id, depth]`` outside
    ``[0,W) x [0,H)`` is skipped; otherwise its box is ``x1 = max(col - s, 1)``, ``x2 = min(col + s,
    W - 1)`` (rows alike, ``s = half_size``), truncated to int; the template is resized with
    ``cv2.resize`` (bilinear) to the box and assigned to the whole box in all three channels (id and
    depth only where the resized heat is non-zero, 0 elsewhere in the box), so later points overwrite
    earlier ones, zeros included.

    Args:
        points_per_frame: ``F`` arrays ``(K,4)`` as returned by :func:`kmeans_points`; ``K`` may vary
            and be 0. Ids and depths must be integers in ``[0, 255]`` (the reference multiplies
            ``uint8`` maps by them).
        height, width: image size; at least 3 so every in-image point has a non-empty box.
    """
    if int(height) < 3 or int(width) < 3:
        raise AmgError(f"control_tensor: image must be at least 3x3 pixels, got {height}x{width}")
    H, W, s = int(height), int(width), int(half_size)
    out = np.zeros((len(points_per_frame), 3, H, W), np.float32)
    for f, pts in enumerate(points_per_frame):
        p = _as_points(pts, f"control_tensor frame {f}")
        heat, ids, dep = out[f, 0], out[f, 1], out[f, 2]
        for py, px, obj, d in p.tolist():
            if px < 0 or py < 0 or px >= W or py >= H:
                continue
            x1, x2 = int(max(px - s, 1)), int(min(px + s, W - 1))
            y1, y2 = int(max(py - s, 1)), int(min(py + s, H - 1))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            m = _resized_template(x2 - x1, y2 - y1)
            nz = m != 0
            heat[y1:y2, x1:x2] = m
            ids[y1:y2, x1:x2] = nz * np.uint8(obj)
            dep[y1:y2, x1:x2] = nz * np.uint8(d)
    return out


# ---------------------------------------------------------------------------------------------------
# depth encoding
# ---------------------------------------------------------------------------------------------------
def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
    """8-bit disparity from metric depth ``(..., H, W)`` (camera z in metres, 0 where empty) -> ``uint8``.

    LeviTor feeds Depth-Anything's relative disparity min-max normalised to 0-255 per image
    (``(d - d.min()) / (d.max() - d.min()) * 255``, truncated). Our renders have metric depth, so the
    disparity is ``1/z`` over the non-empty pixels of each frame, normalised the same way; empty
    pixels get 0 (the farthest value, which the control encodes as "no depth"). A frame whose
    non-empty disparities are all equal maps them to 255.
    """
    z = np.asarray(depth, dtype=np.float64)
    if z.ndim < 2:
        raise AmgError(f"disparity_from_depth: expected (..., H, W) depth, got shape {z.shape}")
    if not np.all(np.isfinite(z)) or np.any(z < 0):
        raise AmgError("disparity_from_depth: depth must be finite and >= 0 (0 where empty)")
    frames = z.reshape(-1, *z.shape[-2:])
    out = np.zeros(frames.shape, np.uint8)
    for f, zf in enumerate(frames):
        valid = zf > 0
        if not valid.any():
            continue
        disp = 1.0 / zf[valid]
        lo, hi = disp.min(), disp.max()
        if hi - lo <= 0:
            out[f][valid] = 255
            continue
        out[f][valid] = ((disp - lo) / (hi - lo) * 255.0).astype(np.uint8)
    return out.reshape(z.shape)


def inverse_disparity(disparity: np.ndarray) -> np.ndarray:
    """LeviTor depth from 8-bit disparity: ``float32 1/disparity``, 1.0 where the disparity is 0.

    As ``preprocess_image`` (``depth_for_3D_initial = 1.0 / depth`` with ``inf -> 1``) followed by the
    ``float32`` tensor the demo stores per frame.
    """
    d = np.asarray(disparity)
    if not np.issubdtype(d.dtype, np.integer) or d.min(initial=0) < 0 or d.max(initial=0) > 255:
        raise AmgError("inverse_disparity: expected 8-bit integer disparity values in [0, 255]")
    with np.errstate(divide="ignore"):
        inv = 1.0 / d.astype(np.float64)
    inv[np.isinf(inv)] = 1.0
    return inv.astype(np.float32)


def _depth_value(inv_depth: float) -> int:
    # Drag.run: depth = round(1. / float(depth_output[...])); if depth == 1: depth = 0
    v = round(1.0 / float(inv_depth))
    return 0 if v == 1 else int(v)


def encode_depth(disparity: np.ndarray) -> np.ndarray:
    """The control's depth value for each 8-bit disparity: ``int64`` array of the same shape.

    ``round(1 / float32(1 / d))`` with ``1/0 -> 1``, and 1 mapped to 0 (as ``Drag.run``), so the
    result equals the disparity except that 0 and 1 both encode as 0 ("no depth").
    """
    inv = inverse_disparity(disparity)
    v = np.round(1.0 / inv.astype(np.float64)).astype(np.int64)
    v[v == 1] = 0
    return v


# ---------------------------------------------------------------------------------------------------
# K-means control points
# ---------------------------------------------------------------------------------------------------
def _base_clusters(area_max: int, area_min: int, height: int, width: int, moved: bool) -> int:
    if area_max == 0:
        return 0
    k = round(area_max * 50 / (height * width))  # Python round: half to even, as the reference
    k = min(max(k, 1), MAX_CLUSTERS)
    if moved or area_min == 0 or area_max / area_min > 10:
        k = max(k, 3)
    return k


def num_clusters(area_max: int, area_min: int, height: int, width: int, moved: bool = False,
                 ratio: float = 1.0) -> int:
    """LeviTor's number of K-means clusters for one object (``Drag.run``).

    ``k = clamp(round(area_max * 50 / (H*W)), 1, 8)`` (round half to even); ``k = max(k, 3)`` when the
    object is moved, its minimum area over the frames is 0 or ``area_max / area_min > 10``; then the
    user's ratio (the demo's "number of points" box) after the cap: ``k = max(1, int(k * ratio))``.
    Returns 0 for an object that never appears (``area_max == 0``, skipped by the reference).
    :func:`kmeans_points` also skips an object in a frame with fewer sampled pixels than the
    pre-ratio ``k``.
    """
    if area_max < 0 or area_min < 0 or height <= 0 or width <= 0:
        raise AmgError("num_clusters: areas must be >= 0 and the image size positive")
    k = _base_clusters(int(area_max), int(area_min), int(height), int(width), bool(moved))
    if k == 0:
        return 0
    return max(1, int(k * ratio))


def _even_init(pos: np.ndarray, k: int) -> np.ndarray:
    step = len(pos) // k
    idx = [step // 2]
    for _ in range(k - 1):
        idx.append(idx[-1] + step)
    return pos[idx]


def _check_masks(masks) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim != 3:
        raise AmgError(f"masks: expected (F,H,W) integer instance ids, got shape {m.shape}")
    if m.dtype == bool:
        return m.astype(np.int64)
    if not np.issubdtype(m.dtype, np.integer):
        if not np.issubdtype(m.dtype, np.floating) or np.any(m != np.round(m)) or not np.all(np.isfinite(m)):
            raise AmgError("masks: instance ids must be integers (0 for background)")
        m = m.astype(np.int64)
    if m.size and m.min() < 0:
        raise AmgError("masks: instance ids must be >= 0 (0 for background)")
    return m


def _kmeans_points(masks: np.ndarray, inv_depth: np.ndarray | None, moved: Iterable[int],
                   ratio: float) -> list[np.ndarray]:
    from sklearn.cluster import KMeans

    F, H, W = masks.shape
    moved = {int(i) for i in moved}
    ids = [int(i) for i in np.unique(masks) if i != 0]
    areas = np.array([[int((m == i).sum()) for i in ids] for m in masks], dtype=np.int64).reshape(F, len(ids))
    area_max = areas.max(axis=0) if F else np.zeros(len(ids), np.int64)
    area_min = areas.min(axis=0) if F else np.zeros(len(ids), np.int64)
    centres: dict[int, np.ndarray] = {}
    out = []
    for f in range(F):
        clusters = []
        for n, i in enumerate(ids):
            k = _base_clusters(int(area_max[n]), int(area_min[n]), H, W, i in moved)
            if k == 0:
                continue
            pos = np.argwhere(masks[f] == i).astype(np.float32)[::SAMPLE_STEP]
            if len(pos) < k:
                continue
            k = max(1, int(k * ratio))
            if len(pos) < k:
                raise AmgError(f"kmeans_points: ratio {ratio} asks {k} clusters of object {i} in frame {f} "
                               f"but only {len(pos)} pixels are sampled")
            if i not in centres:
                centres[i] = KMeans(n_clusters=k, init=_even_init(pos, k)).fit(pos).cluster_centers_
            else:
                # ``point not in pos`` on arrays is ``not (pos == point).any()``: a centre counts as
                # present when any sampled pixel shares its row or its column. Kept as the reference.
                for c in centres[i]:
                    if c not in pos:
                        centres[i] = _even_init(pos, k)
                        break
            cc = KMeans(n_clusters=k, init=centres[i]).fit(pos).cluster_centers_
            for c in cc:
                r, col = int(c[0]), int(c[1])
                d = 0 if inv_depth is None else _depth_value(inv_depth[f, r, col])
                clusters.append([r, col, i, d])
        out.append(np.asarray(clusters, dtype=np.int64).reshape(-1, 4))
    return out


def kmeans_points(masks, depth=None, moved: Iterable[int] = (), ratio: float = 1.0) -> list[np.ndarray]:
    """LeviTor control points per frame by K-means on each object's mask pixels (``Drag.run``).

    For each frame and each instance id in increasing order: the id's pixels ``(row, col)`` in raster
    order (``float32``), every 10th kept; ``k`` from :func:`num_clusters` with areas taken over all
    frames; the object is skipped in a frame with fewer samples than the pre-ratio ``k``. The first
    frame an object is clustered, sklearn ``KMeans(n_clusters=k, init=samples[[s//2, s//2+s, ...]])``
    (``s = len // k``, one Lloyd run) gives its centres, and a second ``KMeans`` initialised from those
    centres gives the frame's points. In later frames the stored centres initialise K-means, so the
    cluster order follows the object; when one stored centre shares neither a row nor a column with
    the frame's samples they are replaced by the frame's evenly spaced samples (the reference's
    array ``in`` test). Centres are truncated to int.

    Args:
        masks: ``(F,H,W)`` integer instance ids, 0 background.
        depth: optional ``(F,H,W)`` 8-bit disparity (``uint8``, 0 empty); the point's depth is
            :func:`encode_depth` at its pixel. None gives depth 0 (the demo's ``if_depth=0``).
        moved: ids of objects the user moves (``k >= 3`` for them).
        ratio: the demo's "number of points" multiplier applied after the cap.

    Returns:
        ``F`` arrays ``int64 (K,4)`` of ``[row, col, id, depth]``.
    """
    m = _check_masks(masks)
    inv = None
    if depth is not None:
        d = np.asarray(depth)
        if d.shape != m.shape:
            raise AmgError(f"kmeans_points: depth shape {d.shape} differs from masks {m.shape}")
        inv = inverse_disparity(d)
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise AmgError(f"kmeans_points: ratio must be a positive number, got {ratio!r}")
    return _kmeans_points(m, inv, moved, float(ratio))


# ---------------------------------------------------------------------------------------------------
# 3D move: back-project, offset, re-project, splat with a depth test
# ---------------------------------------------------------------------------------------------------
def reproject(x, y, depth, dx, dy, ddepth, height: int, width: int):
    """Move pixels in 3D and project them again: ``(x', y')``.

    As ``Drag.run``: the pixel shifted by the user's 2D offset is back-projected with its own depth
    through a pinhole with principal point ``(W/2, H/2)`` (``X = (x + dx - W/2) * d / f``), the depth
    offset is added (``Z = d + ddepth``) and the point is projected again. The focal length cancels:
    ``x' = (x + dx - W/2) * d / (d + ddepth) + W/2`` (rows alike), so moving away shrinks the object
    towards the image centre. Works elementwise on numbers or arrays; ``d + ddepth`` must be > 0.
    Image size as everywhere in ``render.conditions`` and ``render.image``: ``height, width`` (the array
    shape's order).
    """
    x, y, d = (np.asarray(v, dtype=np.float64) for v in (x, y, depth))
    dx, dy, dd = (np.asarray(v, dtype=np.float64) for v in (dx, dy, ddepth))
    z = d + dd
    if np.any(z <= 0):
        raise AmgError("reproject: depth + ddepth must be > 0 (the point would be behind the camera)")
    s = d / z
    return (x + dx - width / 2) * s + width / 2, (y + dy - height / 2) * s + height / 2


def splat_points(u, v, z, height: int, width: int, radius_ndc: float = POINT_RADIUS_NDC,
                 value: float = 1.0, points_per_pixel: int = POINTS_PER_PIXEL) -> np.ndarray:
    """Coverage of screen points splatted as PyTorch3D points: ``bool (H,W)``.

    Emulates the demo's ``PointsRenderer(PointsRasterizer, AlphaCompositor)`` with features equal to
    ``value`` followed by ``image.round() != 0``: each point ``(u, v)`` (pixel column ``j`` has its
    centre at ``u = j + 0.5``) covers pixel centres closer than the radius (``radius_ndc`` in
    PyTorch3D NDC, where the shorter image side spans 2); the ``points_per_pixel`` nearest points in
    ``z`` composite front to back with alpha ``1 - dist^2 / r^2``, giving ``value * (1 - prod(1 -
    alpha))``; a pixel is covered when that rounds to non-zero. Points with ``z <= 0`` are culled.
    """
    u, v, z = (np.asarray(a, dtype=np.float64).ravel() for a in (u, v, z))
    keep = (z > 0) & np.isfinite(u) & np.isfinite(v)
    u, v, z = u[keep], v[keep], z[keep]
    H, W = int(height), int(width)
    r = radius_ndc * min(H, W) / 2.0  # pixels
    cover = np.zeros((H, W), bool)
    if len(u) == 0:
        return cover
    reach = int(math.ceil(r)) + 1
    offs = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(offs, offs, indexing="ij")
    j = np.floor(u)[:, None] + ox.ravel()[None]
    i = np.floor(v)[:, None] + oy.ravel()[None]
    d2 = (j + 0.5 - u[:, None]) ** 2 + (i + 0.5 - v[:, None]) ** 2
    ok = (d2 < r * r) & (j >= 0) & (j < W) & (i >= 0) & (i < H)
    pid = np.broadcast_to(np.arange(len(u))[:, None], ok.shape)[ok]
    pix = (i[ok] * W + j[ok]).astype(np.int64)
    alpha = 1.0 - d2[ok] / (r * r)
    order = np.lexsort((z[pid], pix))
    pix, alpha = pix[order], alpha[order]
    start = np.r_[0, np.flatnonzero(np.diff(pix)) + 1]
    rank = np.arange(len(pix)) - np.repeat(start, np.diff(np.r_[start, len(pix)]))
    sel = rank < points_per_pixel
    log_t = np.zeros(H * W)
    np.add.at(log_t, pix[sel], np.log1p(-np.minimum(alpha[sel], 1.0 - 1e-12)))
    acc = value * (1.0 - np.exp(log_t))
    cover.ravel()[:] = np.round(acc) != 0
    return cover


@dataclass
class ObjectMove:
    """One object's user trajectory for :func:`move_object`.

    Attributes:
        object_id: the instance id in the first frame's mask.
        trajectory: ``(F,3)`` per-frame ``[x, y, depth]`` of the dragged point (pixels and LeviTor
            depth ``1/disparity``), e.g. :func:`~render.conditions.flow.resample_track` of the clicks;
            row 0 is where the drag starts. The object's pixels move by ``trajectory[f] -
            trajectory[0]``; ``trajectory[f, 2]`` is the depth the object is tested at.
    """

    object_id: int
    trajectory: np.ndarray


@dataclass
class MoveResult:
    """Output of :func:`move_object`: ``masks (F,H,W) int64``, ``inv_depth (F,H,W) float32`` (LeviTor
    depth, 1.0 empty), and ``points``: per-frame ``(K,4)`` control points for :func:`control_tensor`."""

    masks: np.ndarray
    inv_depth: np.ndarray
    points: list


def _column_mode(window: np.ndarray) -> int:
    if window.size == 0:
        return 0
    vals, counts = np.unique(window[:, 0], return_counts=True)
    return int(vals[np.argmax(counts)])


def move_object(mask, disparity, moves: Sequence[ObjectMove], ratio: float = 1.0,
                radius_ndc: float = POINT_RADIUS_NDC) -> MoveResult:
    """LeviTor's 3D object move (``Drag.run``): re-rendered masks, depth and control points per frame.

    Every pixel of a moved object is shifted by the trajectory's 2D offset, back-projected with its own
    LeviTor depth, pushed by the depth offset and projected again (:func:`reproject`), then splatted
    (:func:`splat_points`, radius ``max(0.011 - ddepth, 0.011)`` NDC so approaching objects fatten).
    A splatted pixel takes the object's id when the scene there is farther than the trajectory's depth
    for the frame (the depth test that lets it pass in front of or behind other objects) and gets that
    depth. Background and the moved objects' original pixels count as depth 1.0 (farthest) and are
    filled with the id found above the object's first pixel (the mode of the left column of the
    5-row window above it, as ``stats.mode(...).mode[0]``), the demo's cheap in-painting. Moves are
    applied in order, each seeing the depth written by the previous ones. Finally
    :func:`kmeans_points` rules run on the re-rendered masks with the moved ids forced to ``k >= 3``.

    Args:
        mask: ``(H,W)`` integer instance ids of the first frame.
        disparity: ``(H,W)`` 8-bit disparity of the first frame.
        moves: the objects to move; all trajectories must have the same number of frames.
        ratio: K-means points multiplier.
        radius_ndc: the splat radius at rest (0.011 in the demo, which renders 288x512). The radius
            scales with the shorter image side, so below about 130 pixels it is smaller than half a
            pixel diagonal and the splat leaves holes; pass a larger one for small images.
    """
    m0 = _check_masks(np.asarray(mask)[None])[0]
    H, W = m0.shape
    inv0 = inverse_disparity(np.asarray(disparity)).astype(np.float64)
    if inv0.shape != m0.shape:
        raise AmgError(f"move_object: disparity shape {inv0.shape} differs from mask {m0.shape}")
    if not moves:
        raise AmgError("move_object: no object to move")
    trajs = [np.asarray(mv.trajectory, dtype=np.float64) for mv in moves]
    F = len(trajs[0])
    for mv, t in zip(moves, trajs):
        if t.ndim != 2 or t.shape != (F, 3) or not np.all(np.isfinite(t)):
            raise AmgError(f"move_object: trajectory of object {mv.object_id} must be finite (F,3) "
                           f"[x, y, depth] with the same F for every object, got {t.shape}")
        if not (m0 == mv.object_id).any():
            raise AmgError(f"move_object: object {mv.object_id} is not in the mask")
        if np.any(t[:, 2] <= 0):
            raise AmgError(f"move_object: trajectory depth of object {mv.object_id} must be > 0")
    moved_ids = [int(mv.object_id) for mv in moves]
    vacated = (m0 == 0) | np.isin(m0, moved_ids)
    initial = np.where(vacated, 0, m0)
    base_inv = inv0.copy()
    base_inv[vacated] = 1.0
    fills = []
    pixels = []
    for mv in moves:
        rows, cols = np.nonzero(m0 == mv.object_id)
        pixels.append((cols.astype(np.float64), rows.astype(np.float64), inv0[rows, cols]))
        r0, c0 = int(rows[0]), int(cols[0])
        fills.append(_column_mode(initial[max(r0 - 5, 0):r0, max(c0 - 5, 0):min(c0 + 5, W)]))
    masks = np.zeros((F, H, W), np.int64)
    inv_out = np.zeros((F, H, W), np.float32)
    filled = initial.copy()
    for f in range(F):
        cur = filled.copy()
        inv = base_inv.copy()
        covers = []
        for k, (mv, t) in enumerate(zip(moves, trajs)):
            dx, dy, dd = t[f] - t[0]
            x, y, d = pixels[k]
            z = d + dd
            front = z > 0
            s = np.where(front, d / np.where(front, z, 1.0), 0.0)
            u = (x + dx - W / 2) * s + W / 2
            v = (y + dy - H / 2) * s + H / 2
            cover = splat_points(u, v, np.where(front, z, -1.0), H, W,
                                 radius_ndc=max(radius_ndc - dd, radius_ndc),
                                 value=float(mv.object_id))
            covers.append(cover)
            claim = cover & (inv > t[f, 2])
            cur[claim] = mv.object_id
            inv[claim] = t[f, 2]
            cur[vacated & (cur == 0)] = fills[k]
        masks[f] = cur
        inv_out[f] = inv
        # The next frame starts from this one with the splatted pixels restored to the first frame's
        # (object-removed) ids; the fill of vacated pixels persists.
        filled = cur.copy()
        for cover in covers:
            filled[cover] = initial[cover]
    points = _kmeans_points(masks, inv_out, moved_ids, float(ratio))
    return MoveResult(masks=masks, inv_depth=inv_out, points=points)
