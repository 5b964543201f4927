"""PA-MPJPE against an independent textbook implementation (Umeyama's similarity in numpy, per frame)."""

import numpy as np
import torch

from reconstruction.align import mpjpe


def _umeyama_pa(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean joint distance after the least-squares similarity (rotation, scale, translation) of pred to truth."""
    mp, mt = pred.mean(0), truth.mean(0)
    P, T = pred - mp, truth - mt
    U, S, Vt = np.linalg.svd(P.T @ T)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    s = np.trace(np.diag(S) @ D) / (P ** 2).sum()
    return float(np.linalg.norm(s * P @ R.T + mt - truth, axis=1).mean())


def test_pa_mpjpe_matches_an_independent_umeyama_alignment():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(6, 24, 3))
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    Q = Q * np.sign(np.linalg.det(Q))  # a rotation
    pred = 0.8 * truth @ Q.T + rng.normal(size=3) + 0.1 * rng.normal(size=truth.shape)
    pred[2] = pred[2, :, ::-1]  # one frame mirrored: the best rotation is then not the best orthogonal map
    ours = mpjpe(torch.as_tensor(pred), torch.as_tensor(truth)).numpy()
    ref = np.array([_umeyama_pa(p, t) for p, t in zip(pred, truth)])
    assert np.allclose(ours, ref, atol=1e-10), (ours, ref)
    assert ours[2] > 5 * ours[0]  # the mirrored frame is not aligned by a reflection
