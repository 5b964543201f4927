"""SMPL fitting per track: body parameters from 2D landmarks, 3D world landmarks and priors.

For one tracked person over ``F`` frames the fit optimises shared ``betas`` and per-frame
``global_orient (F,3)``, ``body_pose (F,23,3)`` and ``transl (F,3)`` (world metres, Y-up) against

- the confidence-weighted reprojection of BlazePose landmarks: each landmark corresponds to a body joint
  or a keypoint vertex (:data:`LANDMARK_TARGETS`), projected through the clip's camera path;
- MediaPipe's world landmarks, compared after a per-frame similarity (rotation and scale) alignment,
  so only their 3D shape counts, not their scale or orientation;
- a pose prior (anatomical bend directions of knees and elbows, closeness to the rest pose, more for
  joints no landmark observes), temporal smoothness (joint accelerations) and a shape prior.

Landmarks the estimator marks occluded keep a small weight (its guess at a hidden limb), and after the
first solve the landmarks are reweighted robustly by their reprojection error and the fit refined, so a
frame whose landmarks sit on the wrong limb or person stops pulling. The world landmarks weigh most in
the initialisation (limb directions, torso orientation): on rendered and low-resolution people their
depth is often no better than a guess, so their term in the loss is kept light.

Only the joints and ~20 keypoint vertices are evaluated in the loop (:class:`BodyKeypoints`, checked
against the full body forward), so a 16-frame clip takes a few seconds on a CPU. Initialisation is
analytic: torso orientation from the world landmarks, depth from a weak-perspective fit of the world
landmarks to the 2D ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from render.camera import Camera, CameraPath
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from .pose import LANDMARK_INDEX, NUM_LANDMARKS, torso_axes

__all__ = [
    "LANDMARK_TARGETS", "BodyKeypoints", "FitConfig", "TrackFit", "fit_track", "procrustes", "mpjpe",
    "body_keypoints_reference",
]

#: BlazePose landmark index -> (``"joint"``, SMPL joint index) or (``"vertex"``, body vertex-id name), weight.
#: MediaPipe's pinky/index landmarks bracket the hand, so both pull on the SMPL hand joint at half weight.
LANDMARK_TARGETS: dict[int, tuple[str, int | str, float]] = {
    0: ("vertex", "nose", 1.0),
    2: ("vertex", "leye", 0.5), 5: ("vertex", "reye", 0.5),
    7: ("vertex", "lear", 0.5), 8: ("vertex", "rear", 0.5),
    11: ("joint", 16, 1.0), 12: ("joint", 17, 1.0),
    13: ("joint", 18, 1.0), 14: ("joint", 19, 1.0),
    15: ("joint", 20, 1.0), 16: ("joint", 21, 1.0),
    17: ("joint", 22, 0.5), 18: ("joint", 23, 0.5), 19: ("joint", 22, 0.5), 20: ("joint", 23, 0.5),
    23: ("joint", 1, 1.0), 24: ("joint", 2, 1.0),
    25: ("joint", 4, 1.0), 26: ("joint", 5, 1.0),
    27: ("joint", 7, 1.0), 28: ("joint", 8, 1.0),
    29: ("vertex", "LHeel", 0.7), 30: ("vertex", "RHeel", 0.7),
    31: ("vertex", "LBigToe", 0.7), 32: ("vertex", "RBigToe", 0.7),
}
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = (LANDMARK_INDEX[n] for n in ("left_shoulder", "right_shoulder",
                                                                          "left_hip", "right_hip"))
#: metres; 3D residuals are measured in body heights, like 2D ones in the person's size in pixels
_BODY_HEIGHT = 1.7

#: (body_pose index, axis, sign): a rotation ``sign * pose[idx, axis] < 0`` bends the joint the wrong way
#: (SMPL: knees flex about +x; the left elbow about -y, the right about +y).
_BEND_LIMITS = ((3, 0, 1.0), (4, 0, 1.0), (17, 1, -1.0), (18, 1, 1.0))
#: body_pose rows (joint - 1) no landmark observes directly: spine, neck, collars, head, feet, hands.
_UNOBSERVED = (2, 5, 8, 9, 10, 11, 12, 13, 14, 21, 22)


class BodyKeypoints(torch.nn.Module):
    """Fast evaluation of a body's 24 joints and the keypoint vertices the landmark targets name.

    Args:
        body: an ``avatars.body.BodyModel`` (SMPL layout); its ``vertex_ids`` name the keypoint vertices.
    Attributes:
        landmark_index: ``(K,)`` BlazePose indices that have a body target on this body.
        landmark_weight: ``(K,)`` their weights.
    """

    def __init__(self, body) -> None:
        super().__init__()
        lm_idx, weights, joint_of, vert_names = [], [], [], []
        for lm, (kind, target, w) in LANDMARK_TARGETS.items():
            if kind == "vertex" and target not in body.vertex_ids:
                continue  # bodies without keypoint vertex ids still fit on the joints
            lm_idx.append(lm)
            weights.append(w)
            if kind == "joint":
                joint_of.append(int(target))
            else:
                joint_of.append(-1 - len(vert_names))
                vert_names.append(target)
        vids = [int(body.vertex_ids[n]) for n in vert_names]
        self.parents = list(body.parents)
        self._plan_levels()
        self.num_betas = body.num_betas
        self.register_buffer("landmark_index", torch.tensor(lm_idx, dtype=torch.long))
        self.register_buffer("landmark_weight", torch.tensor(weights, dtype=torch.float32))
        # source row of each landmark in cat([joints (24), vertices (Nv)])
        src = [j if j >= 0 else 24 + (-1 - j) for j in joint_of]
        self.register_buffer("source", torch.tensor(src, dtype=torch.long))
        idx = torch.tensor(vids, dtype=torch.long)
        self.register_buffer("v_template", body.v_template[idx].clone())
        self.register_buffer("shapedirs", body.shapedirs[idx].clone())
        self.register_buffer("weights", body.weights[idx].clone())
        self.register_buffer("J_template", body.J_template.clone())
        self.register_buffer("J_shapedirs", body.J_shapedirs.clone())
        self.has_posedirs = bool(getattr(body, "has_posedirs", False)) and len(vids) > 0
        if self.has_posedirs:
            pd = body.posedirs.reshape(body.posedirs.shape[0], -1, 3)[:, idx]
            self.register_buffer("posedirs", pd.reshape(pd.shape[0], -1).clone())

    def _plan_levels(self) -> None:
        depth = []
        for j, p in enumerate(self.parents):
            depth.append(0 if p < 0 else depth[p] + 1)
        self._levels = [torch.tensor([j for j in range(len(depth)) if depth[j] == d], dtype=torch.long)
                        for d in range(max(depth) + 1)]
        order = torch.cat(self._levels)
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        # parent of each level member as a position in the concatenation of the previous levels
        self._parent_pos = [None] + [position[torch.tensor([self.parents[j] for j in lv.tolist()])]
                                     for lv in self._levels[1:]]
        self._inverse_order = position
        self._parent_of = torch.tensor([max(p, 0) for p in self.parents], dtype=torch.long)

    def kinematics(self, rot: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward kinematics one tree level at a time (9 batched steps instead of 23 joint steps).

        Args:
            rot: ``(F,24,3,3)`` local rotations; joints: ``(F,24,3)`` rest joints.
        Returns:
            posed joints ``(F,24,3)`` and skinning transforms ``(F,24,4,4)`` as
            ``avatars.lbs.batch_rigid_transform`` computes them.
        """
        F = rot.shape[0]
        rel = joints - torch.cat([torch.zeros_like(joints[:, :1]), joints[:, self._parent_of[1:]]], dim=1)
        R_levels, t_levels = [rot[:, :1]], [rel[:, :1]]
        for members, parent_pos in zip(self._levels[1:], self._parent_pos[1:]):
            R_prev = torch.cat(R_levels, dim=1)
            t_prev = torch.cat(t_levels, dim=1)
            Rp, tp = R_prev[:, parent_pos], t_prev[:, parent_pos]
            R_levels.append(Rp @ rot[:, members])
            t_levels.append(tp + (Rp @ rel[:, members, :, None])[..., 0])
        R = torch.cat(R_levels, dim=1)[:, self._inverse_order]
        t = torch.cat(t_levels, dim=1)[:, self._inverse_order]
        top = torch.cat([R, (t - (R @ joints[..., None])[..., 0])[..., None]], dim=-1)
        bottom = torch.zeros(F, R.shape[1], 1, 4, dtype=R.dtype, device=R.device)
        bottom[..., 3] = 1
        return t, torch.cat([top, bottom], dim=-2)

    def forward(self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor,
                transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joints ``(F,24,3)`` and landmark targets ``(F,K,3)`` in world metres.

        Args:
            betas: ``(NB,)`` shared shape; global_orient ``(F,3)``; body_pose ``(F,23,3)``; transl ``(F,3)``.
        """
        from avatars.lbs import blend_shapes, pose_features, skin_vertices

        F = global_orient.shape[0]
        b = betas.reshape(1, -1).expand(F, -1)
        rot = axis_angle_to_matrix(torch.cat([global_orient[:, None], body_pose], dim=1))
        J = self.J_template + blend_shapes(b[:1], self.J_shapedirs)
        joints, skin = self.kinematics(rot, J.expand(F, -1, -1))
        v = self.v_template + blend_shapes(b[:1], self.shapedirs)
        v = v.expand(F, -1, -1)
        if self.has_posedirs:
            v = v + (pose_features(rot) @ self.posedirs).view(F, -1, 3)
        verts = skin_vertices(v, self.weights, skin)
        joints = joints + transl[:, None]
        pts = torch.cat([joints, verts + transl[:, None]], dim=1)
        return joints, pts[:, self.source]


def body_keypoints_reference(body, keypoints: BodyKeypoints, betas, global_orient, body_pose, transl):
    """The slow obvious twin of :class:`BodyKeypoints`: full body forward, then gather joints/vertices."""
    F = global_orient.shape[0]
    out = body(betas=betas.reshape(1, -1).expand(F, -1), global_orient=global_orient, body_pose=body_pose,
               transl=transl)
    rows = []
    for lm in keypoints.landmark_index.tolist():
        kind, target, _ = LANDMARK_TARGETS[lm]
        rows.append(out.joints[:, target] if kind == "joint" else out.vertices[:, body.vertex_ids[target]])
    return out.joints, torch.stack(rows, dim=1)


def procrustes(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None,
               scale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted similarity alignment of point sets (no reflection).

    Args:
        src, dst: ``(B,N,3)``; weights: ``(B,N)`` non-negative (default ones).
    Returns:
        ``s (B,)``, ``R (B,3,3)``, ``t (B,3)`` minimising ``sum w |s R src + t - dst|^2``.
    """
    if weights is None:
        weights = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    w = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    mu_s = (w[..., None] * src).sum(1)
    mu_d = (w[..., None] * dst).sum(1)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, xd, xs)
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.ones_like(S)
    D[:, -1] = d
    R = U @ torch.diag_embed(D) @ Vh
    if scale:
        var = (w * (xs ** 2).sum(-1)).sum(-1).clamp_min(1e-12)
        s = (S * D).sum(-1) / var
    else:
        s = torch.ones(src.shape[0], dtype=src.dtype, device=src.device)
    t = mu_d - s[:, None] * (mu_s[:, None] @ R.transpose(-1, -2))[:, 0]
    return s, R, t


def mpjpe(pred: torch.Tensor, target: torch.Tensor, align: bool = True) -> torch.Tensor:
    """Mean per-joint position error ``(B,)`` in the units of the inputs ``(B,J,3)``.

    With ``align`` the prediction is first similarity-aligned to the target per frame (PA-MPJPE).
    """
    pred, target = pred.double(), target.double()
    if align:
        s, R, t = procrustes(pred, target)
        pred = s[:, None, None] * pred @ R.transpose(-1, -2) + t[:, None]
    return (pred - target).norm(dim=-1).mean(-1)


@dataclass
class FitConfig:
    """Weights and schedule of :func:`fit_track`.

    Data terms are squared errors in units of the person's size (pixels over the landmark extent, metres
    over a 1.7 m body), averaged over confident landmarks, so the weights do not depend on resolution.
    """

    optimizer: str = "lbfgs"
    iterations: int = 60
    orient_iterations: int = 10
    lr: float = 0.04  # Adam only
    w_reproj: float = 1.0
    w_world: float = 0.1
    w_bend: float = 1.0
    w_rest: float = 1e-5
    w_rest_unobserved: float = 1e-3
    w_smooth: float = 0.2
    w_shape: float = 1e-4
    min_confidence: float = 0.2
    #: confidence floor for the landmarks of a detected person that the estimator marks unseen: its
    #: guess at an occluded limb still beats the rest pose
    occluded_weight: float = 0.1
    #: robust refinement: after the fit, each landmark's weight is multiplied by the Cauchy weight
    #: ``1 / (1 + (r / (robust_scale * median r))^2)`` of its reprojection error ``r`` and the fit refined,
    #: (``median r`` at least 1% of the person's size) so landmarks on the wrong limb or person (crossings,
    #: left/right confusions) stop pulling
    robust_rounds: int = 1
    robust_scale: float = 3.0


@dataclass
class TrackFit:
    """One track's fitted parameters and how well they explain the observations.

    Attributes:
        betas: ``(NB,)``; global_orient: ``(F,3)``; body_pose: ``(F,23,3)``; transl: ``(F,3)`` (float32).
        joints: ``(F,24,3)`` posed joints in world metres.
        residuals: ``reprojection_px`` (mean confidence-weighted landmark error in pixels),
            ``world_mm`` (mean landmark error after similarity alignment, millimetres), ``seconds``.
    """

    betas: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    transl: torch.Tensor
    joints: torch.Tensor
    residuals: dict = field(default_factory=dict)

    def motion(self, fps: float):
        """The fit as an ``avatars.motion.Motion``."""
        from avatars.motion import Motion

        return Motion(fps=fps, betas=self.betas, global_orient=self.global_orient, body_pose=self.body_pose,
                      transl=self.transl)


def _as_path(cameras: Camera | CameraPath, F: int) -> CameraPath:
    if isinstance(cameras, Camera):
        return CameraPath.static(cameras, F)
    if len(cameras) != F:
        raise AmgError(f"cameras: expected a camera path of {F} frames, got {len(cameras)}")
    return cameras


def _project(points: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pc = points @ R.transpose(-1, -2) + t[:, None]
    z = pc[..., 2].clamp_min(1e-3)
    uv = pc[..., :2] / z[..., None] * torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None] + K[:, None, :2, 2]
    return uv, pc


def _weak_perspective(kp: np.ndarray, world: np.ndarray, conf: np.ndarray, K: np.ndarray):
    """Depth ``Z`` and camera-frame hip centre from ``uv - c = (f / Z) * X_xy + d``; None when unseen."""
    m = conf >= 0.3
    if m.sum() < 3:
        return None
    X = world[m, :2].astype(np.float64)
    uv = kp[m, :2].astype(np.float64)
    f = 0.5 * (K[0, 0] + K[1, 1])
    # unknowns s, dx, dy: u = s X + dx, v = s Y + dy
    A = np.zeros((2 * len(X), 3))
    A[0::2, 0], A[0::2, 1] = X[:, 0], 1.0
    A[1::2, 0], A[1::2, 2] = X[:, 1], 1.0
    sol, *_ = np.linalg.lstsq(A, uv.reshape(-1), rcond=None)
    s = sol[0]
    if not np.isfinite(s) or s <= 1e-6:
        return None
    Z = f / s
    hip_uv = sol[1:]
    hip_cam = np.array([(hip_uv[0] - K[0, 2]) / K[0, 0] * Z, (hip_uv[1] - K[1, 2]) / K[1, 1] * Z, Z])
    return hip_cam


def _fill(values: list, F: int, default):
    """Replace None entries by the nearest known one (or ``default`` when none is known)."""
    known = [i for i, v in enumerate(values) if v is not None]
    if not known:
        return [default] * F
    return [values[min(known, key=lambda k: abs(k - i))] for i in range(F)]


#: (joint, child joint, landmark at the joint, landmark at the child) for the limb directions of the
#: analytic initialisation: hips, knees, ankles, shoulders and elbows.
_LIMBS = ((1, 4, 23, 25), (4, 7, 25, 27), (7, 10, 27, 31), (2, 5, 24, 26), (5, 8, 26, 28), (8, 11, 28, 32),
          (16, 18, 11, 13), (18, 20, 13, 15), (17, 19, 12, 14), (19, 21, 14, 16))


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``(...,3)`` of the shortest rotation taking unit vectors ``a`` to ``b``."""
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    return torch.where(sin > 1e-8, axis / sin.clamp_min(1e-12) * angle, torch.zeros_like(axis))


def _limb_pose(world_w: torch.Tensor, conf: torch.Tensor, global_rot: torch.Tensor, rest_joints: torch.Tensor,
               parents: list[int], body_pose: torch.Tensor) -> torch.Tensor:
    """Swing rotations that point each limb along the observed landmark directions.

    Args:
        world_w: ``(F,33,3)`` landmarks rotated into world axes; conf ``(F,33)``; global_rot ``(F,3,3)``;
        rest_joints ``(24,3)``; body_pose ``(F,23,3)`` the pose of the joints no limb sets.
    """
    F = world_w.shape[0]
    local = axis_angle_to_matrix(torch.cat([torch.zeros(F, 1, 3, dtype=body_pose.dtype), body_pose], 1))
    local = local.to(world_w.dtype)
    limbs = {j: (c, a, b) for j, c, a, b in _LIMBS}
    G = [global_rot]
    out = body_pose.clone().to(world_w.dtype)
    for j in range(1, len(parents)):
        Gp = G[parents[j]]
        Rj = local[:, j]
        if j in limbs:
            c, a, b = limbs[j]
            d = world_w[:, b] - world_w[:, a]
            ok = (torch.minimum(conf[:, a], conf[:, b]) > 0) & (d.norm(dim=-1) > 1e-6)
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            rest = rest_joints[c] - rest_joints[j]
            rest = (rest / rest.norm().clamp_min(1e-9)).to(world_w.dtype).expand(F, 3)
            target = (Gp.transpose(-1, -2) @ d[..., None])[..., 0]
            aa = _rotation_between(rest, target)
            out[:, j - 1] = torch.where(ok[:, None], aa, out[:, j - 1])
            Rj = axis_angle_to_matrix(out[:, j - 1])
        G.append(Gp @ Rj)
    return out.to(body_pose.dtype)


def _initialise(kp: np.ndarray, world: np.ndarray, path: CameraPath, body_kp: BodyKeypoints,
                betas: torch.Tensor, body_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    F = kp.shape[0]
    axes = torso_axes(world, kp[..., 2])  # body-to-camera rotations, NaN where the torso is unseen
    rots = [a if np.isfinite(a).all() else None for a in axes]
    hips = [_weak_perspective(kp[f], world[f], kp[f, :, 2], path.K[f].numpy()) for f in range(F)]
    rots = _fill(rots, F, np.diag([1.0, -1.0, -1.0]))  # facing the camera
    hips = _fill(hips, F, np.array([0.0, 0.0, 3.0]))
    R_cw = path.R.transpose(-1, -2)  # camera-to-world rotation
    go = matrix_to_axis_angle(R_cw @ torch.as_tensor(np.stack(rots), dtype=torch.float64))
    hip_world = ((torch.as_tensor(np.stack(hips), dtype=torch.float64) - path.t)[:, None] @ path.R)[:, 0]
    rest = (body_kp.J_template + torch.einsum("l,jkl->jk", betas, body_kp.J_shapedirs)).double()
    world_w = torch.as_tensor(world, dtype=torch.float64) @ R_cw.transpose(-1, -2)
    body_pose = _limb_pose(world_w, torch.as_tensor(kp[..., 2], dtype=torch.float64),
                           axis_angle_to_matrix(go), rest, body_kp.parents, body_pose)
    with torch.no_grad():
        joints, _ = body_kp(betas, go.float(), body_pose, torch.zeros(F, 3))
    hip_mid = 0.5 * (joints[:, 1] + joints[:, 2])
    return go.float(), body_pose, (hip_world.float() - hip_mid)


def fit_track(body, keypoints, world=None, cameras: Camera | CameraPath | None = None,
              config: FitConfig | None = None, init: TrackFit | None = None,
              body_keypoints: BodyKeypoints | None = None) -> TrackFit:
    """Fit body parameters to one person's landmarks.

    Args:
        body: ``avatars.body.BodyModel``.
        keypoints: ``(F,33,3)`` pixels (x, y) and confidence in [0, 1] (0: unknown in that frame).
        world: ``(F,33,3)`` MediaPipe world landmarks in metres, or None to fit on 2D alone.
        cameras: a static :class:`Camera` or a :class:`CameraPath` of ``F`` frames (pixels of ``keypoints``).
        init: a previous fit to warm-start from. Same length: all its parameters (a refinement). Other
            lengths (the previous window): its betas, and its last pose where no world landmarks are given.
        body_keypoints: reuse a :class:`BodyKeypoints` of ``body`` across calls.
    Returns:
        :class:`TrackFit`.
    """
    import time

    start = time.perf_counter()
    cfg = config or FitConfig()
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_LANDMARKS, 3) or kp.shape[0] < 1:
        raise AmgError(f"keypoints: expected (F,{NUM_LANDMARKS},3) pixels and confidence, got shape {kp.shape}")
    if not np.isfinite(kp).all():
        raise AmgError("keypoints: expected finite values, got NaN or inf")
    F = kp.shape[0]
    wl = np.zeros_like(kp) if world is None else np.asarray(world, dtype=np.float32)
    if wl.shape != kp.shape or not np.isfinite(wl).all():
        raise AmgError(f"world: expected finite (F,{NUM_LANDMARKS},3) metres like keypoints, got shape {wl.shape}")
    if cameras is None:
        raise AmgError("cameras: expected the camera of the keypoints' pixels, got None")
    path = _as_path(cameras, F)
    bk = body_keypoints or BodyKeypoints(body)
    K, R, t = (path.K.float(), path.R.float(), path.t.float())

    lm = bk.landmark_index
    obs = torch.as_tensor(kp)[:, lm]  # (F,K,3)
    conf = obs[..., 2] * (obs[..., 2] >= cfg.min_confidence)
    detected = (torch.as_tensor(kp[..., 2]).max(-1).values > 0)[:, None]
    w_data = torch.where(detected, conf.clamp_min(cfg.occluded_weight), conf) * bk.landmark_weight
    w_report = conf * bk.landmark_weight  # residuals are reported on the confident landmarks
    obs_world = torch.as_tensor(wl)[:, lm]
    w2d = w_data  # the robust rounds reweight these (new tensors, w_data stays)
    w3d = w_data if world is not None else torch.zeros_like(w_data)
    # person size in pixels per frame: normalises the reprojection term across resolutions and distances
    seen = conf > 0
    scale = torch.ones(F)
    for f in range(F):
        if seen[f].sum() >= 2:
            p = obs[f, seen[f], :2]
            scale[f] = (p.max(0).values - p.min(0).values).norm().clamp_min(8.0)
        else:
            scale[f] = float(path.height) / 2

    nb = bk.num_betas
    if init is not None:
        betas0 = init.betas.detach().float().reshape(-1)[:nb]
        same = init.global_orient.shape[0] == F
        pick = slice(None) if same else slice(-1, None)
        pose0 = init.body_pose.detach().float()[pick].expand(F, -1, -1).clone()
    else:
        betas0 = torch.zeros(nb)
        pose0 = torch.zeros(F, 23, 3)
    go0, pose_init, tr0 = _initialise(kp, wl if world is not None else _flat_world(kp), path, bk, betas0, pose0)
    if world is not None:
        pose0 = pose_init  # the landmarks' limb directions beat a previous window's last pose
    if init is not None and init.global_orient.shape[0] == F:
        go0, tr0 = init.global_orient.detach().float().clone(), init.transl.detach().float().clone()

    betas = betas0.clone().requires_grad_(True)
    go = go0.clone().requires_grad_(True)
    pose = pose0.clone().requires_grad_(True)
    tr = tr0.clone().requires_grad_(True)

    rest_w = torch.full((23,), cfg.w_rest)
    rest_w[list(_UNOBSERVED)] = cfg.w_rest_unobserved
    bend = torch.tensor([[i, a] for i, a, _ in _BEND_LIMITS])
    bend_sign = torch.tensor([s for *_, s in _BEND_LIMITS])

    def losses(full: bool) -> dict[str, torch.Tensor]:
        joints, pts = bk(betas, go, pose, tr)
        uv, pc = _project(pts, K, R, t)
        r2d = ((uv - obs[..., :2]).norm(dim=-1) / scale[:, None]) ** 2
        out = {"reproj": cfg.w_reproj * (w2d * r2d).sum() / w2d.sum().clamp_min(1e-6)}
        if world is not None and float(w3d.sum()) > 0:
            with torch.no_grad():  # alignment from the current estimate; gradients flow through pc
                s, Rp, tp = procrustes(obs_world.double(), pc.detach().double(), w3d.double() + 1e-9)
            aligned = (s[:, None, None] * obs_world.double() @ Rp.transpose(-1, -2) + tp[:, None]).float()
            r3d = ((pc - aligned).norm(dim=-1) / _BODY_HEIGHT) ** 2
            out["world"] = cfg.w_world * (w3d * r3d).sum() / w3d.sum().clamp_min(1e-6)
        if full:
            out["bend"] = cfg.w_bend * torch.relu(-bend_sign * pose[:, bend[:, 0], bend[:, 1]]).pow(2).mean()
            out["rest"] = (rest_w[:, None] * pose.pow(2)).sum(-1).mean()
            out["shape"] = cfg.w_shape * betas.pow(2).sum()
        if F >= 3:
            acc = (joints[2:] - 2 * joints[1:-1] + joints[:-2]) / _BODY_HEIGHT
            out["smooth"] = cfg.w_smooth * acc.pow(2).sum(-1).mean()
        return out

    def run(params, iterations):
        full = len(params) > 2
        if cfg.optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=20,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = sum(losses(full).values())
                loss.backward()
                return loss

            opt.step(closure)
            return
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            loss = sum(losses(full).values())
            loss.backward()
            opt.step()

    threads = torch.get_num_threads()
    # the tensors are tiny: intra-op threads only add synchronisation (10x slower on a busy machine)
    torch.set_num_threads(1)
    try:
        if init is None or init.global_orient.shape[0] != F:
            run([go, tr], cfg.orient_iterations)
        run([go, tr, pose, betas], cfg.iterations)
        for _ in range(cfg.robust_rounds if bool((w_data > 0).any()) else 0):
            with torch.no_grad():
                _, pts = bk(betas, go, pose, tr)
                r = (_project(pts, K, R, t)[0] - obs[..., :2]).norm(dim=-1) / scale[:, None]
                # the typical error, at least 1% of the person's size: exact data stays fully weighted
                typical = r[w_data > 0].median().clamp_min(0.01)
                robust = 1.0 / (1.0 + (r / (cfg.robust_scale * typical)) ** 2)
                w2d = w_data * robust
                w3d = w2d if world is not None else w3d
            run([go, tr, pose, betas], cfg.iterations)
    finally:
        torch.set_num_threads(threads)

    with torch.no_grad():
        joints, pts = bk(betas, go, pose, tr)
        uv, pc = _project(pts, K, R, t)
        err = (uv - obs[..., :2]).norm(dim=-1)
        reproj = float((w_report * err).sum() / w_report.sum().clamp_min(1e-6))
        res = {"reprojection_px": reproj, "frames": F, "seconds": 0.0}
        if world is not None and float(w_report.sum()) > 0:
            s, Rp, tp = procrustes(obs_world.double(), pc.double(), w_report.double() + 1e-9)
            aligned = s[:, None, None] * obs_world.double() @ Rp.transpose(-1, -2) + tp[:, None]
            e3 = (pc.double() - aligned).norm(dim=-1)
            res["world_mm"] = float(1000 * (w_report * e3).sum() / w_report.sum())
        res = {k: v for k, v in res.items() if not (isinstance(v, float) and math.isnan(v))}
    res["seconds"] = time.perf_counter() - start
    return TrackFit(betas.detach().clone(), go.detach().clone(), pose.detach().clone(), tr.detach().clone(),
                    joints.detach().clone(), res)


def _flat_world(kp: np.ndarray) -> np.ndarray:
    """Stand-in world landmarks when none are given: the 2D layout at unit depth (orientation only)."""
    w = np.zeros_like(kp)
    for f in range(kp.shape[0]):
        p = kp[f, :, :2]
        c = 0.5 * (p[_L_HIP] + p[_R_HIP])
        h = max(float(np.linalg.norm(0.5 * (p[_L_SHOULDER] + p[_R_SHOULDER]) - c)), 1e-3)
        w[f, :, :2] = (p - c) / h * 0.5
    return w
