"""Shared fixtures of the reconstruction tests: a tiny stick body and synthetic landmark observations."""

import numpy as np
import torch

from avatars.body import BodyModel, SMPL_PARENTS

JOINTS = np.array([
    (0, 0.93, 0), (0.09, 0.85, 0), (-0.09, 0.85, 0), (0, 1.03, -0.01), (0.10, 0.48, 0.01), (-0.10, 0.48, 0.01),
    (0, 1.16, 0), (0.10, 0.08, -0.02), (-0.10, 0.08, -0.02), (0, 1.22, 0.01), (0.11, 0.02, 0.11),
    (-0.11, 0.02, 0.11), (0, 1.45, -0.01), (0.07, 1.37, 0), (-0.07, 1.37, 0), (0, 1.55, 0.02),
    (0.17, 1.40, -0.01), (-0.17, 1.40, -0.01), (0.43, 1.40, -0.02), (-0.43, 1.40, -0.02),
    (0.68, 1.40, -0.01), (-0.68, 1.40, -0.01), (0.76, 1.40, -0.01), (-0.76, 1.40, -0.01)], dtype=np.float64)
MARKERS = {"nose": ((0, 1.58, 0.11), 15), "leye": ((0.03, 1.62, 0.09), 15), "reye": ((-0.03, 1.62, 0.09), 15),
           "lear": ((0.075, 1.58, 0.0), 15), "rear": ((-0.075, 1.58, 0.0), 15),
           "LHeel": ((0.10, 0.02, -0.06), 7), "RHeel": ((-0.10, 0.02, -0.06), 8),
           "LBigToe": ((0.10, 0.01, 0.19), 10), "RBigToe": ((-0.10, 0.01, 0.19), 11)}

def stick_body(num_betas=4, seed=0, posedirs=False):
    """A 33-vertex SMPL-layout body: the 24 joints plus the keypoint vertices the landmark targets name."""
    names = list(MARKERS)
    v = np.concatenate([JOINTS, np.array([MARKERS[n][0] for n in names])])
    V = len(v)
    W = np.zeros((V, 24)); W[np.arange(24), np.arange(24)] = 1
    for i, n in enumerate(names): W[24 + i, MARKERS[n][1]] = 1
    Jr = np.zeros((24, V)); Jr[np.arange(24), np.arange(24)] = 1
    sd = np.zeros((V, 3, num_betas))
    sd[:, :, 0] = 0.05 * v  # overall size
    sd[:, 0, 1] = 0.05 * v[:, 0]  # width
    legs = v[:, 1] < 0.9
    sd[legs, 1, 2] = 0.05 * (v[legs, 1] - 0.9)
    sd[:, :, 3] = np.random.default_rng(seed).normal(0, 0.005, (V, 3))
    faces = np.array([[0, 1, 2], [0, 3, 1]])
    pd = np.random.default_rng(seed + 1).normal(0, 0.002, (207, V * 3)) if posedirs else np.zeros((207, V * 3))
    return BodyModel(v, sd, pd, Jr, W, faces, SMPL_PARENTS,
                     vertex_ids={n: 24 + i for i, n in enumerate(names)}, name="stick")


def walking_pose(F=16):
    """A smooth walk-like motion: swinging hips and knees, arms down with bending elbows, turning."""
    t = torch.linspace(0, 1, F)
    ph = 2 * np.pi * t
    pose = torch.zeros(F, 23, 3)
    pose[:, 0, 0], pose[:, 1, 0] = 0.5 * torch.sin(ph), -0.5 * torch.sin(ph)
    pose[:, 3, 0], pose[:, 4, 0] = 0.3 * (1 + torch.sin(ph)), 0.3 * (1 - torch.sin(ph))
    pose[:, 15, 2], pose[:, 16, 2] = -1.2, 1.2
    pose[:, 17, 1], pose[:, 18, 1] = -0.5 * (1 + torch.cos(ph)), 0.4
    go = torch.zeros(F, 3)
    go[:, 1] = 0.6 + 0.3 * t
    transl = torch.stack([0.3 * t - 0.1, torch.full((F,), -0.9), -3.5 + 0.2 * t], -1)
    return go, pose, transl


def synthetic_observations(body_kp, betas, go, pose, transl, path, conf=0.9):
    """Landmarks ``(F,33,3)`` projected through ``path`` and hip-centred camera-axis world landmarks."""
    F = go.shape[0]
    joints, pts = body_kp(betas, go, pose, transl)
    uv, _ = path.project(pts.double())
    idx = body_kp.landmark_index.numpy()
    kp = np.zeros((F, 33, 3), np.float32)
    kp[:, idx, :2] = uv.numpy()
    kp[:, idx, 2] = conf
    pc = (pts.double() @ path.R.transpose(-1, -2) + path.t[:, None]).numpy()
    world = np.zeros((F, 33, 3), np.float32)
    world[:, idx] = pc
    world -= 0.5 * (world[:, 23:24] + world[:, 24:25])
    return kp, world, joints
