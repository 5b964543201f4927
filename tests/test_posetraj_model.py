"""The 3D-box trajectory model (PoseTraj / the thesis) on tiny random SVD models: stage targets, the
spatial-enhancement loss, the region-aware control, and stage 2 starting from stage 1 bit for bit."""
import numpy as np
import pytest
import torch

from finetune.methods.box3d import PoseTrajMethod, region_control
from finetune.render_clips import RenderClipDataset, collate_render
from finetune.testing import build_tiny_svd, write_tiny_render_clips
from finetune.train import TrainConfig, train
from render.errors import AmgError
from render.video import read_video

EMBED = (16, 32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("posetraj")
    return build_tiny_svd(root / "svd"), write_tiny_render_clips(root / "clips", frames=2, side=16), root


def test_stage_targets_are_the_box_frames_then_the_clean_frames(tiny):
    _, clips, _ = tiny
    one = RenderClipDataset(clips, "traj", 2, 16, 16, target=PoseTrajMethod(stage=1).target)[0]
    two = RenderClipDataset(clips, "traj", 2, 16, 16, target=PoseTrajMethod(stage=2).target)[0]
    boxes = read_video(clips / "clip0" / "bbox3d.mp4")[0][:2]
    clean = read_video(clips / "clip0" / "avatar.mp4")[0][:2]
    assert np.abs(one.video.permute(0, 2, 3, 1).numpy() * 127.5 + 127.5 - boxes).max() < 1
    assert np.abs(two.video.permute(0, 2, 3, 1).numpy() * 127.5 + 127.5 - clean).max() < 1
    assert torch.equal(one.first, two.first)  # both stages condition on the clean first frame
    # trajectory images: red segment and green end disc on frame 0, the last frame black
    assert one.control[0, 0].max() == 1 and one.control[0, 1].max() == 1 and not one.control[-1].any()
    with pytest.raises(AmgError, match="stage"):
        PoseTrajMethod(stage=3)


def test_spatial_loss_adds_alpha_times_the_one_frame_loss(tiny):
    base, clips, _ = tiny
    m = PoseTrajMethod(stage=2, conditioning_embedding_out_channels=EMBED)
    m.setup(base, "cpu", torch.float32, 0)
    data = m.dataset(clips, TrainConfig(num_frames=2, height=16, width=16).clips())
    batch = collate_render([data[0]])

    def loss(alpha):
        m.spatial_loss_alpha = alpha
        with torch.no_grad():
            return m.loss(batch, torch.Generator().manual_seed(4), "cpu", torch.float32).item()

    l0, l1, l2 = loss(0.0), loss(0.5), loss(1.0)
    assert l1 > l0 and l2 - l0 == pytest.approx(2 * (l1 - l0), rel=1e-4)


def test_region_control_draws_points_inside_the_box(tiny):
    _, clips, _ = tiny
    boxes = np.load(clips / "clip0" / "bbox3d.npy")
    c = region_control(boxes, 16, 16, seed=3)
    assert c.shape == (2, 3, 16, 16) and not c[-1].any()
    green = np.argwhere(c[0, 1].numpy() == 1)  # end discs of the step 0 -> 1, centred inside frame 1's box
    lo, hi = boxes[1, 0].min(0), boxes[1, 0].max(0)
    centre = green.mean(0)[::-1]
    assert np.all(centre >= lo - 3) and np.all(centre <= hi + 3)
    assert len(green) > 0 and not torch.equal(c, region_control(boxes, 16, 16, seed=4))


def test_stage_two_starts_from_stage_one_bit_for_bit(tiny):
    base, clips, root = tiny
    cfg = TrainConfig(steps=2, lr=1e-3, num_frames=2, height=16, width=16, checkpoint_every=2, progress=False,
                      tensorboard=False)
    one = train(base, clips, root / "stage1", cfg, method=PoseTrajMethod(
        stage=1, spatial_loss_alpha=0.5, region_points=True, conditioning_embedding_out_channels=EMBED))
    assert all(np.isfinite(v) for v in one.losses.values())
    two = PoseTrajMethod(stage=2, init_from=str(one.adapter), conditioning_embedding_out_channels=EMBED)
    two.setup(base, "cpu", torch.float32, 0)
    from safetensors.torch import load_file

    saved = load_file(str(one.adapter / "controlnet" / "diffusion_pytorch_model.safetensors"))
    start = two.trained.state_dict()
    assert set(saved) == set(start) and all(torch.equal(start[k], saved[k]) for k in saved)
    fresh = PoseTrajMethod(stage=2, conditioning_embedding_out_channels=EMBED)
    fresh.setup(base, "cpu", torch.float32, 0)
    assert any(not torch.equal(fresh.trained.state_dict()[k], saved[k]) for k in saved)
