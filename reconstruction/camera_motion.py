"""The camera of real footage: per-frame rotation from the background, and the floor from the feet.

Film cameras pan and tilt. Features are tracked between consecutive frames outside the people's masks
(OpenCV Shi-Tomasi corners and pyramidal Lucas-Kanade); for a camera turning about its centre, pixel
rays of frame ``f`` are those of frame ``f-1`` rotated, ``b_f = R b_{f-1}`` with ``b = K^-1 (u, v, 1)``
normalised, so each frame-to-frame rotation is found by RANSAC over two-ray samples with the Kabsch
solution and refined on its inliers (:func:`rotation_from_rays`). Chained, they give every frame's
world-to-camera rotation relative to the first (:func:`estimate_rotations`). Translation is left at zero:
at the distances of people filmed from a few metres, a hand-held camera's parallax is too small to
separate from rotation; the person's own translation absorbs it.

The floor comes from the fitted bodies: the lowest foot point of each subject in each frame is a contact
candidate; a plane through the candidates (when they span the floor) or a horizontal one gives the world
"up" and the floor height; :func:`ground_motions` then moves the world rigidly so the floor is ``y = 0``
with Y up, applying the same transform to the motions and the cameras, so nothing changes in the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from render.camera import CameraPath
from render.errors import AmgError

__all__ = ["track_background", "rotation_from_rays", "frame_rotations", "estimate_rotations", "rotating_path", "floor_plane",
           "floor_transform", "move_body", "move_path", "ground_motions", "rotation_angle_deg"]


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation ``R (3,3)`` minimising ``sum |R a_i - b_i|^2`` for unit rays ``a, b (N,3)``."""
    H = a.T @ b
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    return Vt.T @ np.diag([1.0, 1.0, d]) @ U.T


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle in degrees of rotation matrices ``(...,3,3)``."""
    R = np.asarray(R, dtype=np.float64)
    c = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def rotation_from_rays(a: np.ndarray, b: np.ndarray, threshold_deg: float = 0.3, iterations: int = 200,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC rotation taking unit rays ``a (N,3)`` onto ``b (N,3)`` (``b ~ R a``).

    Two-ray samples give Kabsch hypotheses; the one with most rays within ``threshold_deg`` wins and is
    refined on its inliers. Returns ``R (3,3)`` and the inlier mask ``(N,)``; identity when fewer than 3
    rays are given.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    N = len(a)
    if N < 3:
        return np.eye(3), np.zeros(N, dtype=bool)
    rng = np.random.default_rng(seed)
    cos_t = math.cos(math.radians(threshold_deg))
    best, best_in = np.eye(3), np.zeros(N, dtype=bool)
    for _ in range(iterations):
        i, j = rng.choice(N, 2, replace=False)
        if abs(float(a[i] @ a[j])) > 0.99999:
            continue
        R = _kabsch(a[[i, j]], b[[i, j]])
        inl = (a @ R.T * b).sum(-1) >= cos_t
        if inl.sum() > best_in.sum():
            best, best_in = R, inl
    if best_in.sum() >= 3:
        for _ in range(2):
            best = _kabsch(a[best_in], b[best_in])
            best_in = (a @ best.T * b).sum(-1) >= cos_t
    return best, best_in


def _rays(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    p = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ np.linalg.inv(K).T
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def track_background(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None, max_corners: int = 400,
                     min_distance: int = 4, window: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Background corners of grey image ``a`` tracked into ``b`` (both ``(h,w)`` uint8).

    Corners are taken where ``keep`` ``(h,w)`` (nonzero: background; None: everywhere) allows and tracked by
    pyramidal optical flow, forward and back: a corner is kept when the backward track returns within 0.5
    px and its forward position lies inside ``b``.
    Returns:
        ``(n,2)`` and ``(n,2)`` float64 pixels of the kept corners in ``a`` and in ``b``.
    """
    import cv2

    mask = None if keep is None else (np.asarray(keep) > 0).astype(np.uint8)
    pts = cv2.goodFeaturesToTrack(a, max_corners, 0.01, min_distance, mask=mask)
    if pts is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    win = (window, window)
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, winSize=win, maxLevel=3)
    back, status2, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, winSize=win, maxLevel=3)
    ok = (status[:, 0] == 1) & (status2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=-1)[:, 0] < 0.5)
    p0, p1 = pts[ok, 0].astype(np.float64), nxt[ok, 0].astype(np.float64)
    h, w = b.shape[:2]
    inside = (p1[:, 0] >= 0) & (p1[:, 0] < w) & (p1[:, 1] >= 0) & (p1[:, 1] < h)
    return p0[inside], p1[inside]


def frame_rotations(frames: np.ndarray, K, masks: np.ndarray | None = None, max_corners: int = 400,
                    threshold_deg: float = 0.3, min_inliers: int = 12,
                    max_side: int | None = 640) -> tuple[np.ndarray, np.ndarray]:
    """Camera rotations between consecutive frames from background features.

    Args:
        frames: ``(F,H,W,3)`` uint8 RGB; K: ``(3,3)`` or ``(F,3,3)`` intrinsics in pixels.
        masks: ``(F,H,W)`` person ids or probabilities; features on people (dilated) are not used.
        max_side: frames (and masks, and K) are scaled down so that their long side is at most this many
            pixels before features are tracked (a rotation does not depend on the image's scale; tracking
            at 1280x720 takes four times as long for no better angle); None: as given.
    Returns:
        ``(F-1,3,3)`` rotations ``R`` with ``ray_{f+1} = R ray_f`` in camera axes (identity where too few
        background features were tracked) and ``(F-1,)`` inlier counts.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise AmgError(f"frames: expected (F,H,W,3) uint8 RGB, got {frames.dtype} {frames.shape}")
    F, H, W = frames.shape[:3]
    Ks = np.asarray(K, np.float64)
    Ks = np.broadcast_to(Ks, (F, 3, 3)) if Ks.ndim == 2 else Ks
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    m = None if masks is None else (np.asarray(masks) > 0).astype(np.uint8)
    if max_side is not None and max(H, W) > max_side:
        s = max_side / float(max(H, W))
        size = (max(1, round(W * s)), max(1, round(H * s)))
        grey = [cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in grey]
        if m is not None:
            m = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_NEAREST) for x in m])
        Ks = np.diag([size[0] / W, size[1] / H, 1.0]) @ Ks
        W, H = size
    keep = np.ones((F, H, W), np.uint8)
    if m is not None:
        r = max(2, int(0.02 * max(H, W)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        keep = np.stack([1 - cv2.dilate(x, kernel) for x in m]).astype(np.uint8)
    rel = np.tile(np.eye(3), (max(F - 1, 0), 1, 1))
    counts = np.zeros(max(F - 1, 0), dtype=np.int64)
    for f in range(F - 1):
        p0, p1 = track_background(grey[f], grey[f + 1], keep[f], max_corners, max(4, min(H, W) // 60))
        if masks is not None and len(p1):
            xi, yi = np.clip(p1[:, 0].astype(int), 0, W - 1), np.clip(p1[:, 1].astype(int), 0, H - 1)
            on_bg = keep[f + 1][yi, xi] > 0  # a person walked onto the feature
            p0, p1 = p0[on_bg], p1[on_bg]
        if len(p0) < min_inliers:
            continue
        R, inl = rotation_from_rays(_rays(p0, Ks[f]), _rays(p1, Ks[f + 1]), threshold_deg)
        if inl.sum() >= min_inliers:
            rel[f], counts[f] = R, int(inl.sum())
    return rel, counts


def estimate_rotations(frames: np.ndarray, K, masks: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """World-to-camera rotations of every frame relative to the first: ``(F,3,3)``, ``R_0 = I``.

    With ``R_f`` so that ``x_cam_f = R_f x_cam_0``: chain of :func:`frame_rotations`.
    """
    rel, _ = frame_rotations(frames, K, masks, **kwargs)
    out = [np.eye(3)]
    for R in rel:
        out.append(R @ out[-1])
    return np.stack(out)


def rotating_path(path: CameraPath, rotations: np.ndarray) -> CameraPath:
    """``path``'s first camera turning in place by ``rotations (F,3,3)`` (:func:`estimate_rotations`)."""
    Rr = torch.as_tensor(np.asarray(rotations), dtype=torch.float64)
    if Rr.shape != (len(path), 3, 3):
        raise AmgError(f"rotations: expected ({len(path)},3,3), got {tuple(Rr.shape)}")
    R0, c0 = path.R[0], path.centers[0]
    R = Rr @ R0
    t = -(R @ c0[:, None])[..., 0].expand(len(path), 3)
    return CameraPath(path.K, R, t.clone(), path.width, path.height, path.fps)


def floor_plane(points: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0]), min_spread: float = 1.0,
                max_tilt_deg: float = 30.0) -> tuple[np.ndarray, float]:
    """The floor through foot contact points ``(N,3)`` (world metres): unit normal ``(3,)`` and offset.

    Points ``p`` on the floor satisfy ``normal . p = offset``. A plane is fitted (least squares, then
    trimmed of the highest 20% of residuals: feet in the air) only when the points span at least
    ``min_spread`` metres in two directions and the plane is within ``max_tilt_deg`` of ``up``;
    otherwise the floor is horizontal (normal ``up``) at the median contact height.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    if len(p) == 0:
        raise AmgError("floor: expected foot contact points, got none")
    normal = up
    if len(p) >= 6:
        c = p.mean(0)
        _, S, Vt = np.linalg.svd(p - c)
        spread = 2 * S[:2] / math.sqrt(len(p))
        if spread[1] >= min_spread / 2:
            n = Vt[2] * np.sign(Vt[2] @ up)
            r = np.abs((p - c) @ n)
            keep = r <= np.quantile(r, 0.8)
            if keep.sum() >= 4:
                c = p[keep].mean(0)
                _, _, Vt = np.linalg.svd(p[keep] - c)
                n = Vt[2] * np.sign(Vt[2] @ up)
            if math.degrees(math.acos(np.clip(n @ up, -1, 1))) <= max_tilt_deg:
                normal = n
    heights = p @ normal
    return normal, float(np.median(heights))


def _rotation_onto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest rotation ``(3,3)`` taking unit ``a`` onto unit ``b``."""
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def floor_transform(motions: list, body, valid: list[np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The rigid world move ``p' = G p + d`` that puts the floor under the people's feet at ``y = 0``, Y up.

    Contact candidates: in each valid frame, each person's lowest foot joint (ankles, toes), the standing
    foot; the plane fit (:func:`floor_plane`) trims the candidates far above it (jumps). SMPL's foot joints
    sit above the sole, so the floor is lowered by the rest body's sole-to-joint height.

    Args:
        motions: ``avatars.motion.Motion`` per person (world metres); body: their body model.
        valid: per motion ``(F,)`` bool frames to take contacts from (default all).
    Returns:
        ``G (3,3)``, ``d (3,)`` and ``{"normal", "offset", "tilt_deg"}``; None without any contact.
    """
    feet = (7, 8, 10, 11)  # ankles and feet (toe joints) of SMPL
    contacts = []
    for i, m in enumerate(motions):
        F = len(m.transl)
        with torch.no_grad():
            out = body(betas=m.betas[: body.num_betas][None].expand(F, -1), global_orient=m.global_orient,
                       body_pose=m.body_pose, transl=m.transl)
        j = out.joints[:, list(feet)].double().numpy()  # (F,4,3)
        low = j[np.arange(F), j[..., 1].argmin(1)]  # (F,3) lowest foot joint in the current world
        ok = np.ones(F, bool) if valid is None else np.asarray(valid[i], bool)
        if ok.any():
            contacts.append(low[ok])
    if not contacts:
        return None
    normal, offset = floor_plane(np.concatenate(contacts))
    with torch.no_grad():
        rest = body(betas=motions[0].betas[: body.num_betas][None])
    sole = float(rest.joints[0, list(feet), 1].min() - rest.vertices[0, :, 1].min())
    G = _rotation_onto(normal, np.array([0.0, 1.0, 0.0]))
    d = np.array([0.0, sole - offset, 0.0])
    tilt = float(np.degrees(np.arccos(np.clip(normal[1], -1, 1))))
    return G, d, {"normal": normal.tolist(), "offset": offset, "tilt_deg": tilt}


def move_body(global_orient: torch.Tensor, transl: torch.Tensor, root: torch.Tensor, G: np.ndarray,
              d: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Root orientation ``(F,3)`` and translation ``(F,3)`` of a body moved rigidly by ``p' = G p + d``.

    ``root (3,)`` is the body's rest root joint (SMPL rotates about it, not about the origin).
    """
    from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    Gt = torch.as_tensor(G, dtype=torch.float32)
    dt = torch.as_tensor(d, dtype=torch.float32)
    R = Gt @ axis_angle_to_matrix(global_orient.float())
    return matrix_to_axis_angle(R), (transl.float() + root.float()) @ Gt.T + dt - root.float()


def move_path(cameras: CameraPath, G: np.ndarray, d: np.ndarray) -> CameraPath:
    """The cameras of a world moved by ``p' = G p + d``: every projection unchanged."""
    G64, d64 = torch.as_tensor(G, dtype=torch.float64), torch.as_tensor(d, dtype=torch.float64)
    R = cameras.R @ G64.T
    t = cameras.t - (R @ d64[:, None])[..., 0]
    return CameraPath(cameras.K, R, t, cameras.width, cameras.height, cameras.fps)


def ground_motions(motions: list, cameras: CameraPath, body, valid: list[np.ndarray] | None = None):
    """Move motions and cameras so the floor under the feet is ``y = 0`` with Y up (:func:`floor_transform`).

    Returns:
        ``(motions, cameras, info)``: the moved motions, their cameras, and the floor found (``{}`` and the
        inputs unchanged when there is no contact).
    """
    from avatars.motion import Motion

    found = floor_transform(motions, body, valid) if motions else None
    if found is None:
        return motions, cameras, {}
    G, d, info = found
    moved = []
    for m in motions:
        with torch.no_grad():
            root = body(betas=m.betas[: body.num_betas][None]).joints[0, 0]
        go, tr = move_body(m.global_orient, m.transl, root, G, d)
        moved.append(Motion(fps=m.fps, betas=m.betas, global_orient=go, body_pose=m.body_pose, transl=tr,
                            name=m.name))
    return moved, move_path(cameras, G, d), info
