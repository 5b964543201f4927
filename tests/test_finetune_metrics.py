import numpy as np
import pytest
import torch

from finetune.metrics import (ClipScorer, cammc, cammc_tracks, lk_tracks, motion_fidelity, objmc,
                              tracklet_correlation)
from finetune.tiny import build_tiny_clip
from render.errors import AmgError


def _texture(h, w, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), (5, 5), 1.0)


def _moving(frames=8, side=64, dx=2, dy=1, seed=0):
    """A textured canvas panned by (dx, dy) pixels per frame."""
    big = _texture(side * 2, side * 2, seed)
    out = []
    for k in range(frames):
        x0, y0 = side // 2 + k * dx, side // 2 + k * dy
        out.append(big[y0:y0 + side, x0:x0 + side])
    return np.stack(out)


def test_lk_tracks_follow_a_known_pan():
    v = _moving(dx=2, dy=1)
    tracks, vis = lk_tracks(v, grid_step=8, margin=12)
    good = vis.all(1)
    # the left column (x = 12) leaves the frame after 6 steps of 2 px; every other point stays tracked
    assert good.sum() == len(good) - 5
    # content moves by -(dx, dy) in the image as the window pans by +(dx, dy)
    step = np.diff(tracks[good], axis=1)
    assert np.allclose(np.median(step.reshape(-1, 2), 0), [-2, -1], atol=0.1)


def test_motion_fidelity_identical_is_one_and_reversed_is_negative():
    v = _moving()
    assert motion_fidelity(v, v) == pytest.approx(1.0, abs=1e-6)
    assert motion_fidelity(v, v[::-1].copy()) < -0.9
    perpendicular = _moving(dx=0, dy=2, seed=1)
    s = motion_fidelity(v, perpendicular)
    assert -0.5 < s < 0.9


def test_tracklet_correlation_against_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5, 2)), rng.normal(size=(4, 5, 2))
    got = tracklet_correlation(a, b)
    for i in range(3):
        for j in range(4):
            va, vb = np.diff(a[i], axis=0), np.diff(b[j], axis=0)
            c = [va[k] @ vb[k] / (np.linalg.norm(va[k]) * np.linalg.norm(vb[k])) for k in range(4)]
            assert got[i, j] == pytest.approx(np.mean(c))


def test_motion_fidelity_pluggable_tracker_and_static_video():
    def tracker(video):
        f = len(video)
        t = np.stack([np.stack([np.arange(f) * s, np.zeros(f)], -1) for s in (1.0, 2.0)]).astype(np.float32)
        return (t if video[0, 0, 0, 0] == 0 else -t), np.ones(t.shape[:2], bool)

    a = np.zeros((4, 8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 1
    assert motion_fidelity(a, a, tracker=tracker) == pytest.approx(1.0)
    assert motion_fidelity(a, b, tracker=tracker) == pytest.approx(-1.0)
    with pytest.raises(AmgError, match="no tracked moving points"):
        motion_fidelity(a, a)


def test_objmc_and_cammc_known_values():
    t = np.zeros((2, 3, 2))
    shifted = t + np.array([3.0, 4.0])
    assert objmc(shifted, t) == pytest.approx(5.0)
    vis = np.array([[True, False, False], [False, False, False]])
    assert objmc(shifted, t, visible=vis) == pytest.approx(5.0)
    with pytest.raises(AmgError):
        objmc(t[:1], t)

    from render.rotations import axis_angle_to_matrix

    f = 5
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.1 * k, 0.0] for k in range(f)], dtype=torch.float64))
    tr = torch.tensor([[0.2 * k, 0.0, 1.0] for k in range(f)], dtype=torch.float64)
    assert cammc(R, tr, R, tr) == pytest.approx(0.0, abs=1e-12)
    # a different world frame (rigidly moved scene) gives the same relative path
    G = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    g = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    R2, t2 = R @ G.T, tr + (R @ G.T @ g[:, None])[..., 0]
    assert cammc(R2, t2, R, tr) == pytest.approx(0.0, abs=1e-9)
    # translating every camera after the first by 0.3 m along x costs 0.3 on 4 of 5 frames
    t3 = tr.clone()
    t3[1:, 0] += 0.3
    assert cammc(R, t3, R, tr) == pytest.approx(0.3 * 4 / 5, abs=1e-9)


def test_cammc_tracks_zero_for_same_video_and_grows_with_motion_error():
    v = _moving(dx=2, dy=0)
    assert cammc_tracks(v, v) == pytest.approx(0.0)
    assert cammc_tracks(v, _moving(dx=0, dy=0)) > 2.0


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip"), seed=0)


def test_clip_score_is_100_cos_averaged_over_frames(clip_folder):
    from transformers import CLIPModel, CLIPTokenizer

    scorer = ClipScorer.from_folder(clip_folder)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 48, 3)).astype(np.uint8)
    score = scorer.score(frames, "a man walks")
    # reference: the same model through transformers' own forward (logits = scale * cos)
    model = CLIPModel.from_pretrained(clip_folder).eval()
    tok = CLIPTokenizer.from_pretrained(clip_folder)
    ids = tok(["a man walks"], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=scorer.preprocess(frames))
    cos = out.logits_per_image[:, 0] / model.logit_scale.exp()
    assert score == pytest.approx(100 * cos.mean().item(), abs=1e-3)
    per = scorer.per_frame(frames, "a man walks")
    assert per.shape == (3,) and np.all(np.abs(per) <= 100)
    assert scorer.score(frames, "a woman runs on the beach") != pytest.approx(score)


def test_template_tracks_follow_a_moving_patch_to_sub_pixel_and_in_latents():
    from finetune.metrics import template_tracks

    rng = np.random.default_rng(0)
    frames, side = 4, 24
    background = rng.normal(size=(side, side, 4)) * 0.2
    patch = rng.normal(size=(4, 4, 4)) + 2.0
    video, truth = np.repeat(background[None], frames, 0), []
    for f in range(frames):
        x, y = 5 + 3 * f, 6 + 2 * f
        video[f, y:y + 4, x:x + 4] = patch
        truth.append((x + 1.5, y + 1.5))  # the patch centre
    truth = np.array(truth)[None]
    tracks = template_tracks(video, truth[:, 0], radius=1)
    assert tracks.shape == (1, frames, 2)
    assert objmc(tracks, truth) < 0.5
    # a static video keeps the point where it started; a different reference frame is used when given
    still = template_tracks(np.repeat(video[:1], frames, 0), truth[:, 0], radius=1)
    assert objmc(still, np.repeat(truth[:, :1], frames, 1)) < 0.5
    assert np.allclose(template_tracks(video, truth[:, 0], reference=video[0], radius=1), tracks)
    with pytest.raises(AmgError, match="reference"):
        template_tracks(video, truth[:, 0], reference=video[0, :5])


def test_tiny_clips_can_share_their_first_frame(tmp_path):
    from finetune.testing import write_tiny_render_clips
    from render.video import read_video

    t = np.linspace(0, 1, 3)[:, None]
    right = np.concatenate([8 + 8 * t, np.full_like(t, 8)], 1)
    down = np.concatenate([np.full_like(t, 8), 8 + 8 * t], 1)
    clips = write_tiny_render_clips(tmp_path, trajectories=[right, down], frames=3, side=32, shared_background=True)
    a, b = (read_video(clips / c / "avatar.mp4")[0] for c in ("clip0", "clip1"))
    assert np.abs(a[0].astype(int) - b[0].astype(int)).max() <= 2  # one first frame (up to the codec)
    assert np.abs(a[-1].astype(int) - b[-1].astype(int)).max() > 100  # then the objects part ways
    ca, cb = (np.load(clips / c / "levitor_control.npy") for c in ("clip0", "clip1"))
    assert np.array_equal(ca[0], cb[0]) and not np.array_equal(ca[-1], cb[-1])
