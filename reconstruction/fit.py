"""SMPL fitting per track: body parameters from 2D landmarks, 3D world landmarks and priors.

For one tracked person over ``F`` frames the fit optimises shared ``betas`` and per-frame
``global_orient (F,3)``, ``body_pose (F,23,3)`` and ``transl (F,3)`` (world metres, Y-up) against

- the confidence-weighted reprojection of BlazePose landmarks: each landmark corresponds to a body joint
  or a keypoint vertex (:data:`LANDMARK_TARGETS`), projected through the clip's camera path;
- MediaPipe's world landmarks, compared after a per-frame similarity (rotation and scale) alignment,
  so only their 3D shape counts, not their scale or orientation;
- a pose prior (anatomical bend directions of knees and elbows, the joint ranges of
  ``avatars.motion_library.JOINT_LIMITS``, closeness to the rest pose, more for joints no landmark
  observes), temporal smoothness (joint accelerations) and a shape prior;
- foot contact: heels and toes that stand still in the image of a static camera stand still in the world
  (and, when the floor is known, the lowest of them touches it).

Landmarks the estimator marks occluded keep a small weight (its guess at a hidden limb), and after the
first solve the landmarks are reweighted robustly by their reprojection error and the fit refined, so a
frame whose landmarks sit on the wrong limb or person stops pulling. The world landmarks weigh most in
the initialisation (limb directions, torso orientation): on rendered and low-resolution people their
depth is often no better than a guess, so their term in the loss is kept light.

The loss is one pure function, :func:`fit_losses`, of the parameters (:class:`FitParams`) and the prepared
observations (:class:`FitData`); :func:`fit_track` is a short sequence of steps around it. Only the joints
and ~20 keypoint vertices are evaluated in the loop (:class:`reconstruction.keypoints.BodyKeypoints`, checked
against the full body forward), so a 16-frame clip takes a few seconds on a CPU. Initialisation is
analytic: torso orientation from the world landmarks, depth from a weak-perspective fit of the world
landmarks to the 2D ones.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from avatars.motion_library import JOINT_LIMITS
from render.camera import Camera, CameraPath
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from .align import mpjpe, procrustes
from .keypoints import LANDMARK_TARGETS, BodyKeypoints, body_keypoints_reference
from .pose import LANDMARK_INDEX, NUM_LANDMARKS, torso_axes

__all__ = [
    "LANDMARK_TARGETS", "BodyKeypoints", "FitConfig", "FitData", "FitParams", "TrackFit", "fit_track",
    "fit_losses", "prepare_observations", "initial_parameters", "robust_weights", "fit_residuals",
    "single_thread", "procrustes", "mpjpe", "body_keypoints_reference", "joint_limit_penalty",
    "foot_stillness",
]

_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = (LANDMARK_INDEX[n] for n in ("left_shoulder", "right_shoulder",
                                                                          "left_hip", "right_hip"))
#: metres; 3D residuals are measured in body heights, like 2D ones in the person's size in pixels
_BODY_HEIGHT = 1.7

#: (body_pose index, axis, sign): a rotation ``sign * pose[idx, axis] < 0`` bends the joint the wrong way
#: (SMPL: knees flex about +x; the left elbow about -y, the right about +y).
_BEND_LIMITS = ((3, 0, 1.0), (4, 0, 1.0), (17, 1, -1.0), (18, 1, 1.0))
_BEND_INDEX = torch.tensor([[i, a] for i, a, _ in _BEND_LIMITS])
_BEND_SIGN = torch.tensor([s for *_, s in _BEND_LIMITS])
#: ``(2,23,3)`` lower and upper Euler XYZ angles (radians) of each body_pose row's local rotation: the
#: anatomical ranges of ``avatars.motion_library.JOINT_LIMITS``. Shoulders and elbows are left free: how an
#: arm's twist splits between them is barely observed, and their ranges (written for the library's own
#: split) pulled fitted arms into worse minima on the closed loop; the elbows' bend direction is kept by
#: the ``bend`` prior.
_FREE = {16, 17, 18, 19}
_LIMITS = torch.tensor([[(JOINT_LIMITS[j][k] if j in JOINT_LIMITS and j not in _FREE else (sign * math.pi,) * 3)
                         for j in range(1, 24)] for k, sign in ((0, -1.0), (1, 1.0))])
#: BlazePose heels and foot indices: their body targets are vertices on the sole
_SOLE_LANDMARKS = (29, 30, 31, 32)
#: body_pose rows (joint - 1) no landmark observes directly: spine, neck, collars, head, feet, hands.
_UNOBSERVED = (2, 5, 8, 9, 10, 11, 12, 13, 14, 21, 22)


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
    #: joint limits: squared radians by which each joint's Euler XYZ angles leave its anatomical range
    #: (:func:`joint_limit_penalty`), mean over frames
    w_limits: float = 1.0
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
    #: foot contact with a known floor (``fit_track(..., floor=...)``): the lowest heel or toe of each frame
    #: is pulled onto the floor and no foot point may sink below it (squared, in body heights)
    w_floor: float = 1.0
    #: softness of "the lowest foot point" in metres (a soft minimum over the heels and toes)
    floor_softness: float = 0.02
    #: feet that stand still in the image stand still in the world: between two frames of a static camera,
    #: each heel or toe whose landmark moves less than ``contact_px`` (in person sizes) is held in place
    #: (squared velocity in body heights, weighted by how still its landmark is)
    w_contact: float = 1.0
    contact_px: float = 0.02


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


@dataclass
class FitParams:
    """The optimised body parameters of one track.

    Attributes:
        betas: ``(NB,)``; global_orient: ``(F,3)`` axis-angle; body_pose: ``(F,23,3)``; transl: ``(F,3)`` metres.
    """

    betas: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    transl: torch.Tensor

    def tensors(self, names: tuple[str, ...]) -> list[torch.Tensor]:
        return [getattr(self, n) for n in names]


@dataclass
class FitData:
    """One track's observations prepared for :func:`fit_losses` (``K`` landmarks with a body target).

    Attributes:
        obs: ``(F,K,3)`` pixels and confidence; obs_world: ``(F,K,3)`` world landmarks, metres.
        w2d, w3d: ``(F,K)`` weights of the reprojection and world terms (w3d zero without world landmarks).
        w_report: ``(F,K)`` weights of the reported residuals (confident landmarks only).
        scale: ``(F,)`` person size in pixels (normalises the reprojection term).
        K, R, t: ``(F,3,3)``, ``(F,3,3)``, ``(F,3)`` the cameras of the pixels (float32).
        has_world: whether world landmarks were given.
        floor: ``(4,)`` unit normal and offset of a known floor (``normal . p = offset``), or None.
        feet: ``(k,)`` indices into the K landmark targets of the heel and toe points (sole contacts).
        contact: ``(F-1,k)`` in [0, 1], how still each foot point's landmark stays between frames ``f`` and
            ``f+1`` of a static camera (0 where the camera moves or the landmark is unseen), or None.
    """

    obs: torch.Tensor
    obs_world: torch.Tensor
    w2d: torch.Tensor
    w3d: torch.Tensor
    w_report: torch.Tensor
    scale: torch.Tensor
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    has_world: bool
    floor: torch.Tensor | None = None
    feet: torch.Tensor | None = None
    contact: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.obs.shape[0])


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op torch thread and restore the caller's setting afterwards.

    The fit's tensors are tiny: intra-op threads only add synchronisation (10x slower on a busy machine).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def prepare_observations(keypoints, world, cameras: Camera | CameraPath | None, body_keypoints: BodyKeypoints,
                         config: FitConfig) -> tuple[FitData, CameraPath, np.ndarray, np.ndarray | None]:
    """Validate one track's landmarks and turn them into :class:`FitData`.

    Args:
        keypoints: ``(F,33,3)`` pixels and confidence; world: ``(F,33,3)`` metres or None.
        cameras: a static :class:`Camera` or a ``CameraPath`` of ``F`` frames.
    Returns:
        the data, the camera path, and the validated ``keypoints`` / ``world`` arrays (float32).
    Raises:
        AmgError: wrong shapes, non-finite values, no camera.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_LANDMARKS, 3) or kp.shape[0] < 1:
        raise AmgError(f"keypoints: expected (F,{NUM_LANDMARKS},3) pixels and confidence, got shape {kp.shape}")
    if not np.isfinite(kp).all():
        raise AmgError("keypoints: expected finite values, got NaN or inf")
    F = kp.shape[0]
    wl = None if world is None else np.asarray(world, dtype=np.float32)
    if wl is not None and (wl.shape != kp.shape or not np.isfinite(wl).all()):
        raise AmgError(f"world: expected finite (F,{NUM_LANDMARKS},3) metres like keypoints, got shape {wl.shape}")
    if cameras is None:
        raise AmgError("cameras: expected the camera of the keypoints' pixels, got None")
    path = _as_path(cameras, F)
    cfg = config
    lm = body_keypoints.landmark_index
    obs = torch.as_tensor(kp)[:, lm]  # (F,K,3)
    conf = obs[..., 2] * (obs[..., 2] >= cfg.min_confidence)
    detected = (torch.as_tensor(kp[..., 2]).max(-1).values > 0)[:, None]
    w_data = torch.where(detected, conf.clamp_min(cfg.occluded_weight), conf) * body_keypoints.landmark_weight
    obs_world = torch.as_tensor(wl if wl is not None else np.zeros_like(kp))[:, lm]
    seen = conf > 0
    scale = torch.full((F,), float(path.height) / 2)
    for f in range(F):
        if seen[f].sum() >= 2:
            p = obs[f, seen[f], :2]
            scale[f] = (p.max(0).values - p.min(0).values).norm().clamp_min(8.0)
    data = FitData(obs=obs, obs_world=obs_world, w2d=w_data, w3d=w_data if wl is not None else torch.zeros_like(w_data),
                   w_report=conf * body_keypoints.landmark_weight, scale=scale, K=path.K.float(), R=path.R.float(),
                   t=path.t.float(), has_world=wl is not None)
    return data, path, kp, wl


def fit_losses(params: FitParams, data: FitData, body_keypoints: BodyKeypoints, config: FitConfig,
               full: bool = True) -> dict[str, torch.Tensor]:
    """The fit's loss terms (scalars) for ``params`` against ``data``; a pure function of its inputs.

    Terms: ``reproj`` (landmark reprojection, in person sizes squared), ``world`` (world landmarks after a
    per-frame similarity alignment, in body heights squared), with ``full`` also the priors ``bend``
    (knees and elbows bent the wrong way), ``limits`` (:func:`joint_limit_penalty`), ``rest`` (distance
    from the rest pose, more for unobserved joints) and ``shape`` (betas); ``smooth`` (joint accelerations)
    when there are 3 or more frames; ``floor`` with ``data.floor``; ``contact`` (velocity of the heels and
    toes, weighted by ``data.contact``) with ``data.contact``.
    """
    cfg = config
    F = data.num_frames
    joints, pts = body_keypoints(params.betas, params.global_orient, params.body_pose, params.transl)
    uv, pc = _project(pts, data.K, data.R, data.t)
    r2d = ((uv - data.obs[..., :2]).norm(dim=-1) / data.scale[:, None]) ** 2
    out = {"reproj": cfg.w_reproj * (data.w2d * r2d).sum() / data.w2d.sum().clamp_min(1e-6)}
    if data.has_world and float(data.w3d.sum()) > 0:
        with torch.no_grad():  # alignment from the current estimate; gradients flow through pc
            s, Rp, tp = procrustes(data.obs_world.double(), pc.detach().double(), data.w3d.double() + 1e-9)
        aligned = (s[:, None, None] * data.obs_world.double() @ Rp.transpose(-1, -2) + tp[:, None]).float()
        r3d = ((pc - aligned).norm(dim=-1) / _BODY_HEIGHT) ** 2
        out["world"] = cfg.w_world * (data.w3d * r3d).sum() / data.w3d.sum().clamp_min(1e-6)
    if full:
        pose = params.body_pose
        rest_w = torch.full((23,), cfg.w_rest)
        rest_w[list(_UNOBSERVED)] = cfg.w_rest_unobserved
        out["bend"] = cfg.w_bend * torch.relu(-_BEND_SIGN * pose[:, _BEND_INDEX[:, 0], _BEND_INDEX[:, 1]]).pow(2).mean()
        out["rest"] = (rest_w[:, None] * pose.pow(2)).sum(-1).mean()
        out["shape"] = cfg.w_shape * params.betas.pow(2).sum()
        if cfg.w_limits > 0:
            out["limits"] = cfg.w_limits * joint_limit_penalty(pose).mean()
    if F >= 3:
        acc = (joints[2:] - 2 * joints[1:-1] + joints[:-2]) / _BODY_HEIGHT
        out["smooth"] = cfg.w_smooth * acc.pow(2).sum(-1).mean()
    if data.floor is not None and data.feet is not None and len(data.feet) and cfg.w_floor > 0:
        h = pts[:, data.feet] @ data.floor[:3] - data.floor[3]  # (F,k) metres above the floor
        tau = cfg.floor_softness
        lowest = -tau * torch.logsumexp(-h / tau, dim=-1)
        out["floor"] = cfg.w_floor * (((lowest / _BODY_HEIGHT) ** 2).mean()
                                      + ((torch.relu(-h) / _BODY_HEIGHT) ** 2).mean())
    if data.contact is not None and data.feet is not None and cfg.w_contact > 0:
        v = (pts[1:, data.feet] - pts[:-1, data.feet]).pow(2).sum(-1) / _BODY_HEIGHT ** 2  # (F-1,k)
        out["contact"] = cfg.w_contact * (data.contact * v).sum() / data.contact.sum().clamp_min(1.0)
    return out


def foot_stillness(data: FitData, feet: torch.Tensor, config: FitConfig) -> torch.Tensor:
    """How still each foot landmark stays between consecutive frames: the weights of the ``contact`` term.

    Args:
        data: the prepared observations (pixels ``obs``, confident weights ``w_report``, cameras ``R, t``).
        feet: ``(k,)`` indices into the K landmark targets (the heels and toes).
    Returns:
        ``(F-1,k)`` in [0, 1]: ``exp(-(d / (contact_px * size))^2)`` of the landmark's motion ``d`` in pixels
        (``size`` the person's size in pixels); 0 where either frame's landmark is unconfident or the camera
        moves between the two frames (a still foot then moves in the image).
    """
    obs = data.obs[:, feet]
    d = (obs[1:, :, :2] - obs[:-1, :, :2]).norm(dim=-1)
    size = torch.minimum(data.scale[1:], data.scale[:-1])[:, None]
    still = torch.exp(-(d / (config.contact_px * size)) ** 2)
    seen = (data.w_report[1:, feet] > 0) & (data.w_report[:-1, feet] > 0)
    static = (((data.R[1:] - data.R[:-1]).abs().amax((-1, -2)) < 1e-6)
              & ((data.t[1:] - data.t[:-1]).abs().amax(-1) < 1e-6))
    return still * seen * static[:, None]


def joint_limit_penalty(body_pose: torch.Tensor, limits: torch.Tensor = _LIMITS) -> torch.Tensor:
    """How far each frame's joints leave their ranges: ``(F,)`` summed squared radians.

    Args:
        body_pose: ``(F,23,3)`` axis-angle local rotations of joints 1..23.
        limits: ``(2,23,3)`` lower and upper intrinsic Euler XYZ angles in radians (default: the
            anatomical ranges of ``avatars.motion_library.JOINT_LIMITS``).
    """
    R = axis_angle_to_matrix(body_pose)
    # intrinsic XYZ (render.rotations.matrix_to_euler) with asin kept off +-1, where its gradient is
    # infinite (the Y limits beyond 1.526 rad, the shoulders', cannot bind anyway)
    a, b, c = (torch.atan2(-R[..., 1, 2], R[..., 2, 2]), torch.asin(R[..., 0, 2].clamp(-0.999, 0.999)),
               torch.atan2(-R[..., 0, 1], R[..., 0, 0]))
    # (a, b, c) and (a + pi, pi - b, c + pi) are the same rotation (an elbow folded past 90 degrees reads
    # as the second); a joint is as far out as the nearer of the two
    wrap = lambda x: torch.remainder(x + math.pi, 2 * math.pi) - math.pi  # noqa: E731
    lo, hi = limits[0].to(R), limits[1].to(R)
    other = torch.stack([wrap(a + math.pi), wrap(math.pi - b), wrap(c + math.pi)], -1)
    out = [(torch.relu(lo - e) + torch.relu(e - hi)).pow(2).sum(-1) for e in (torch.stack([a, b, c], -1), other)]
    return torch.minimum(*out).sum(-1)


def _optimise(params: FitParams, names: tuple[str, ...], data: FitData, body_keypoints: BodyKeypoints,
              config: FitConfig, iterations: int) -> None:
    """Minimise :func:`fit_losses` over the tensors ``names`` of ``params`` (updated in place)."""
    tensors = params.tensors(names)
    full = len(names) > 2

    def loss() -> torch.Tensor:
        return sum(fit_losses(params, data, body_keypoints, config, full).values())

    if iterations <= 0:
        return
    if config.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(tensors, lr=1.0, max_iter=iterations, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad(set_to_none=True)
            value = loss()
            value.backward()
            return value

        opt.step(closure)
        return
    opt = torch.optim.Adam(tensors, lr=config.lr)
    for _ in range(iterations):
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()


def robust_weights(params: FitParams, data: FitData, base: torch.Tensor, body_keypoints: BodyKeypoints,
                   config: FitConfig) -> FitData:
    """``data`` with its weights ``base (F,K)`` times the Cauchy weight of each landmark's current error."""
    with torch.no_grad():
        _, pts = body_keypoints(params.betas, params.global_orient, params.body_pose, params.transl)
        r = (_project(pts, data.K, data.R, data.t)[0] - data.obs[..., :2]).norm(dim=-1) / data.scale[:, None]
        # the typical error, at least 1% of the person's size: exact data stays fully weighted
        typical = r[base > 0].median().clamp_min(0.01)
        w2d = base * (1.0 / (1.0 + (r / (config.robust_scale * typical)) ** 2))
    return replace(data, w2d=w2d, w3d=w2d if data.has_world else data.w3d)


def fit_residuals(params: FitParams, data: FitData, body_keypoints: BodyKeypoints) -> tuple[torch.Tensor, dict]:
    """Posed joints ``(F,24,3)`` and the residuals on confident landmarks (``reprojection_px``, ``world_mm``)."""
    w = data.w_report
    with torch.no_grad():
        joints, pts = body_keypoints(params.betas, params.global_orient, params.body_pose, params.transl)
        uv, pc = _project(pts, data.K, data.R, data.t)
        err = (uv - data.obs[..., :2]).norm(dim=-1)
        res = {"reprojection_px": float((w * err).sum() / w.sum().clamp_min(1e-6)), "frames": data.num_frames}
        if data.has_world and float(w.sum()) > 0:
            s, Rp, tp = procrustes(data.obs_world.double(), pc.double(), w.double() + 1e-9)
            aligned = s[:, None, None] * data.obs_world.double() @ Rp.transpose(-1, -2) + tp[:, None]
            e3 = (pc.double() - aligned).norm(dim=-1)
            res["world_mm"] = float(1000 * (w * e3).sum() / w.sum())
    return joints, {k: v for k, v in res.items() if not (isinstance(v, float) and math.isnan(v))}


def initial_parameters(kp: np.ndarray, world: np.ndarray | None, path: CameraPath, body_keypoints: BodyKeypoints,
                       init: "TrackFit | None" = None) -> FitParams:
    """The starting point: analytic (torso orientation, limb directions, weak-perspective depth) or ``init``.

    A previous fit of the same length is taken whole (a refinement); one of another length (the previous
    window) gives its betas, and its last pose where no world landmarks are given.
    """
    F = kp.shape[0]
    nb = body_keypoints.num_betas
    if init is not None:
        betas0 = init.betas.detach().float().reshape(-1)[:nb]
        same = init.global_orient.shape[0] == F
        pose0 = init.body_pose.detach().float()[slice(None) if same else slice(-1, None)].expand(F, -1, -1).clone()
    else:
        betas0 = torch.zeros(nb)
        pose0 = torch.zeros(F, 23, 3)
    go0, pose_init, tr0 = _initialise(kp, world if world is not None else _flat_world(kp), path, body_keypoints,
                                      betas0, pose0)
    if world is not None:
        pose0 = pose_init  # the landmarks' limb directions beat a previous window's last pose
    if init is not None and init.global_orient.shape[0] == F:
        go0, tr0 = init.global_orient.detach().float().clone(), init.transl.detach().float().clone()
    return FitParams(betas0.clone().requires_grad_(True), go0.clone().requires_grad_(True),
                     pose0.clone().requires_grad_(True), tr0.clone().requires_grad_(True))


def fit_track(body, keypoints, world=None, cameras: Camera | CameraPath | None = None,
              config: FitConfig | None = None, init: TrackFit | None = None,
              body_keypoints: BodyKeypoints | None = None, floor=None) -> TrackFit:
    """Fit body parameters to one person's landmarks.

    Args:
        body: ``avatars.body.BodyModel``.
        keypoints: ``(F,33,3)`` pixels (x, y) and confidence in [0, 1] (0: unknown in that frame).
        world: ``(F,33,3)`` MediaPipe world landmarks in metres, or None to fit on 2D alone.
        cameras: a static :class:`Camera` or a :class:`CameraPath` of ``F`` frames (pixels of ``keypoints``).
        init: a previous fit to warm-start from. Same length: all its parameters (a refinement). Other
            lengths (the previous window): its betas, and its last pose where no world landmarks are given.
        body_keypoints: reuse a :class:`BodyKeypoints` of ``body`` across calls.
        floor: ``(4,)`` unit normal and offset (``normal . p = offset``, world metres) of the floor the
            person stands on, or None: with it the heels and toes touch it (``FitConfig.w_floor``).
    Returns:
        :class:`TrackFit`.
    """
    start = time.perf_counter()
    cfg = config or FitConfig()
    bk = body_keypoints or BodyKeypoints(body)
    data, path, kp, wl = prepare_observations(keypoints, world, cameras, bk, cfg)
    sole = torch.tensor([i for i, lm in enumerate(bk.landmark_index.tolist()) if lm in _SOLE_LANDMARKS],
                        dtype=torch.long)
    if floor is not None:
        data = replace(data, floor=torch.as_tensor(np.asarray(floor, np.float32)).reshape(4), feet=sole)
    if cfg.w_contact > 0 and data.num_frames > 1 and len(sole):
        data = replace(data, feet=sole, contact=foot_stillness(data, sole, cfg))
    params = initial_parameters(kp, wl, path, bk, init)
    everything = ("global_orient", "transl", "body_pose", "betas")
    base = data.w2d
    with single_thread():
        if init is None or init.global_orient.shape[0] != data.num_frames:
            _optimise(params, ("global_orient", "transl"), data, bk, cfg, cfg.orient_iterations)
        _optimise(params, everything, data, bk, cfg, cfg.iterations)
        for _ in range(cfg.robust_rounds if bool((base > 0).any()) else 0):
            data = robust_weights(params, data, base, bk, cfg)
            _optimise(params, everything, data, bk, cfg, cfg.iterations)
        joints, res = fit_residuals(params, data, bk)
    res["seconds"] = time.perf_counter() - start
    return TrackFit(params.betas.detach().clone(), params.global_orient.detach().clone(),
                    params.body_pose.detach().clone(), params.transl.detach().clone(), joints.detach().clone(), res)


def _flat_world(kp: np.ndarray) -> np.ndarray:
    """Stand-in world landmarks when none are given: the 2D layout at unit depth (orientation only)."""
    w = np.zeros_like(kp)
    for f in range(kp.shape[0]):
        p = kp[f, :, :2]
        c = 0.5 * (p[_L_HIP] + p[_R_HIP])
        h = max(float(np.linalg.norm(0.5 * (p[_L_SHOULDER] + p[_R_SHOULDER]) - c)), 1e-3)
        w[f, :, :2] = (p - c) / h * 0.5
    return w
