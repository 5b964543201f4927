import numpy as np
import pytest
import torch
from reconstruction_helpers import stick_body

from reconstruction.trace import TRACE_FOCAL, load_trace
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle


def _trace_rows(body, W, H, seed=0):
    """TRACE-style rows for two tracks over 5 frames (track 2 misses frame 2) and their pixel projections."""
    g = torch.Generator().manual_seed(seed)
    rows, pixels = [], {}
    f = TRACE_FOCAL * max(W, H) / 512
    upright = axis_angle_to_matrix(torch.tensor([np.pi, 0.0, 0.0]))  # SMPL's +Y up -> camera's -Y
    for track, x in ((1, -0.6), (2, 0.7)):
        betas = 0.5 * torch.randn(10, generator=g)
        for frame in range(5):
            if track == 2 and frame == 2:
                continue
            yaw = axis_angle_to_matrix(torch.tensor([0.0, 0.3 * frame - 0.5, 0.0]))
            go = matrix_to_axis_angle(upright @ yaw)
            pose = 0.3 * torch.randn(23, 3, generator=g)
            pose[21:] = 0
            cam_trans = torch.tensor([x + 0.05 * frame, 0.2, 5.0 + 0.1 * frame])
            out = body(betas=betas[None, :4], global_orient=go[None], body_pose=pose[None])
            hip = 0.5 * (out.joints[0, 1] + out.joints[0, 2])
            pts = out.joints[0] - hip + cam_trans  # TRACE: root-aligned mesh + cam_trans, camera frame
            uv = pts[:, :2] / pts[:, 2:] * f + torch.tensor([W / 2, H / 2])
            pixels[(track, frame)] = uv
            rows.append((frame, track, torch.cat([go, pose.reshape(-1)]).numpy(), betas.numpy(), cam_trans.numpy()))
    order = np.argsort([r[0] for r in rows], kind="stable")  # TRACE groups rows by frame
    rows = [rows[i] for i in order]
    outputs = {"reorganize_idx": np.array([r[0] for r in rows]), "track_ids": np.array([r[1] for r in rows]),
               "smpl_thetas": np.stack([r[2] for r in rows]), "smpl_betas": np.stack([r[3] for r in rows]),
               "cam_trans": np.stack([r[4] for r in rows]), "pj2d_org": np.zeros((len(rows), 54, 2))}
    return outputs, pixels


def test_trace_import_reprojects_like_trace(tmp_path):
    body = stick_body()
    W, H = 640, 360
    outputs, pixels = _trace_rows(body, W, H)
    path = tmp_path / "video.mp4.npz"
    np.savez(path, outputs=outputs, imgpaths=np.array([f"{i:06d}.jpg" for i in range(5)]))
    imp = load_trace(path, W, H, fps=24, body=body)
    assert imp.track_ids == [1, 2] and imp.start_frames == [0, 0]
    assert len(imp.cameras) == 5 and (imp.cameras.width, imp.cameras.height) == (W, H)
    assert abs(float(imp.cameras.K[0, 0, 0]) - TRACE_FOCAL * 640 / 512) < 1e-6
    for motion, track in zip(imp.motions, imp.track_ids):
        assert len(motion) == 5 and motion.fps == 24
        F = len(motion)
        out = body(betas=motion.betas[None].expand(F, -1), global_orient=motion.global_orient,
                   body_pose=motion.body_pose, transl=motion.transl)
        uv, depth = imp.cameras.project(out.joints.double())
        assert (depth > 0).all()
        for frame in range(5):
            if (track, frame) in pixels:
                assert torch.allclose(uv[frame].float(), pixels[(track, frame)], atol=1e-2)
        # world is Y-up: the head is above the pelvis
        assert (out.joints[:, 15, 1] > out.joints[:, 0, 1]).all()
    # the missing frame of track 2 lies between its neighbours
    m2 = imp.motions[1]
    assert torch.allclose(m2.transl[2], 0.5 * (m2.transl[1] + m2.transl[3]), atol=1e-4)


def test_flat_npz_and_bad_files(tmp_path):
    body = stick_body()
    outputs, _ = _trace_rows(body, 512, 512)
    flat = tmp_path / "flat.npz"
    np.savez(flat, **outputs)
    assert load_trace(flat, 512, 512, fps=8, body=body).track_ids == [1, 2]
    broken = dict(outputs)
    del broken["cam_trans"]
    np.savez(tmp_path / "broken.npz", outputs=broken)
    with pytest.raises(AmgError, match="cam_trans"):
        load_trace(tmp_path / "broken.npz", 512, 512, fps=8, body=body)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(AmgError, match="npz"):
        load_trace(tmp_path / "junk.npz", 512, 512, fps=8, body=body)
    with pytest.raises(AmgError, match="no such"):
        load_trace(tmp_path / "missing.npz", 512, 512, fps=8, body=body)
