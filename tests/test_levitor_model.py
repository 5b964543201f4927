"""LeviTor on tiny random SVD models: the ControlNet starts as a no-op, the pipeline is stock SVD when the
control is off, the EDM loss matches diffusers' Euler scheduler, training only moves the ControlNet and
resumes exactly, and LeviTor-layout checkpoints import."""
import functools

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.backbones import load_svd
from finetune.backbones.svd_controlnet import SVDControlNet, svd_unet_forward
from finetune.losses import edm_denoised, edm_sample
from finetune.methods.levitor import SAMPLING, LeviTorMethod, import_levitor_controlnet
from finetune.pipelines.svd_control import SVDControlPipeline
from finetune.testing import build_tiny_svd, write_tiny_render_clips
from finetune.train import train
from render.errors import AmgError
from train_helpers import small_config

EMBED = (16, 32)  # the tiny VAE halves the resolution once, so the conditioning embedding does too


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("levitor")
    base = build_tiny_svd(root / "svd")
    clips = write_tiny_render_clips(root / "clips", frames=2, side=16)
    return base, clips, root


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 16, 16, generator=g)
    t = torch.tensor([0.3, -0.5])
    emb = torch.randn(2, 1, 32, generator=g)
    ids = torch.tensor([[5.0, 100.0, 0.02]] * 2)
    control = torch.rand(2, 4, 3, 32, 32, generator=g) * 255
    return x, t, emb, ids, control


def _perturb_zero_convs(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_fresh_controlnet_leaves_the_unet_output_exactly_unchanged(tiny):
    unet = load_svd(tiny[0]).unet
    net = SVDControlNet.from_unet(unet, conditioning_embedding_out_channels=EMBED)
    x, t, emb, ids, control = _inputs()
    base = unet(x, t, emb, ids).sample
    down, mid = net(x, t, emb, ids, control)
    assert torch.equal(svd_unet_forward(unet, x, t, emb, ids), base)
    assert torch.equal(svd_unet_forward(unet, x, t, emb, ids, down, mid), base)
    # the residuals reach the UNet: once the zero convolutions move, the output moves with the control
    _perturb_zero_convs(net)
    down, mid = net(x, t, emb, ids, control)
    moved = svd_unet_forward(unet, x, t, emb, ids, down, mid)
    assert (moved - base).abs().max() > 1e-3
    down0, mid0 = net(x, t, emb, ids, control, conditioning_scale=0.0)
    assert torch.equal(svd_unet_forward(unet, x, t, emb, ids, down0, mid0), base)


def test_controlnet_layout_and_copied_weights(tiny):
    unet = load_svd(tiny[0]).unet
    net = SVDControlNet.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256))
    sd, usd = net.state_dict(), unet.state_dict()
    # LeviTor's conditioning embedding: 3 -> 16, pairs of convs to 32/96/256 (stride 2), zero conv to c0
    assert sd["controlnet_cond_embedding.conv_in.weight"].shape == (16, 3, 3, 3)
    assert [sd[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0] for i in range(6)] == [16, 32, 32, 96, 96, 256]
    assert sd["controlnet_cond_embedding.conv_out.weight"].shape == (32, 256, 3, 3)
    assert not sd["controlnet_cond_embedding.conv_out.weight"].any()
    assert all(not v.any() for k, v in sd.items() if k.startswith(("controlnet_down_blocks", "controlnet_mid_block")))
    n_skips = 1 + sum(len(b.resnets) + (b.downsamplers is not None) for b in unet.down_blocks)
    assert len(net.controlnet_down_blocks) == n_skips
    for k in usd:
        if k.startswith(("conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block.")):
            assert torch.equal(sd[k], usd[k]), k


def _pil(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_pipeline_reproduces_stock_svd_when_the_control_is_off(tiny):
    from diffusers import StableVideoDiffusionPipeline

    stock = StableVideoDiffusionPipeline.from_pretrained(tiny[0])
    stock.set_progress_bar_config(disable=True)
    kw = dict(height=32, width=32, num_frames=4, num_inference_steps=2, output_type="latent", fps=6,
              motion_bucket_id=100, noise_aug_strength=0.02)
    want = stock(_pil(), generator=torch.Generator().manual_seed(0), **kw).frames
    net = SVDControlNet.from_unet(stock.unet, conditioning_embedding_out_channels=EMBED)
    pipe = SVDControlPipeline(stock.vae, stock.image_encoder, stock.unet, stock.scheduler, stock.feature_extractor, net)
    pipe.set_progress_bar_config(disable=True)
    control = np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32) * 255
    off = pipe(_pil(), generator=torch.Generator().manual_seed(0), **kw).frames
    fresh = pipe(_pil(), control=control, generator=torch.Generator().manual_seed(0), **kw).frames
    assert torch.equal(off, want) and torch.equal(fresh, want)
    _perturb_zero_convs(net)
    on = pipe(_pil(), control=control, generator=torch.Generator().manual_seed(0), **kw).frames
    assert (on - want).abs().max() > 1e-4
    with pytest.raises(AmgError, match="control"):
        pipe(_pil(), control=control[:3], generator=torch.Generator().manual_seed(0), **kw)


def test_levitor_sampling_defaults():
    assert SAMPLING == {"num_inference_steps": 25, "min_guidance_scale": 1.0, "max_guidance_scale": 3.0,
                        "noise_aug_strength": 0.02, "fps": 6, "motion_bucket_id": 100,
                        "controlnet_conditioning_scale": 1.0}


def test_edm_parameterisation_matches_the_svd_euler_scheduler():
    from finetune.testing import svd_scheduler

    sched = svd_scheduler()
    sched.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    x0, noise, out = (torch.randn(1, 2, 4, 3, 3, generator=g) for _ in range(3))
    for i in (0, 2, 4):
        sigma = sched.sigmas[i]
        s = edm_sample(x0, noise, ((sigma.log() - 0.7) / 1.6)[None])
        assert torch.allclose(s.sigma, sigma[None].float(), rtol=1e-5)
        sched._step_index = None
        sched._init_step_index(sched.timesteps[i])
        # the UNet input and timestep, and the x0 estimate from a v-prediction, as the scheduler computes them
        assert torch.allclose(sched.scale_model_input(s.x, sched.timesteps[i]), s.c_in * s.x, atol=1e-5)
        assert torch.allclose(sched.timesteps[i].float(), s.c_noise[0], atol=1e-4)
        sched._step_index = i
        pred_x0 = sched.step(out, sched.timesteps[i], s.x).pred_original_sample
        assert torch.allclose(pred_x0, edm_denoised(s, out), atol=1e-4)


_cfg = functools.partial(small_config, steps=3, checkpoint_every=1)


def test_training_moves_only_the_controlnet_and_resumes_exactly(tiny):
    base, clips, root = tiny
    full = train(base, clips, root / "full", _cfg(), method=LeviTorMethod(conditioning_embedding_out_channels=EMBED))
    assert all(np.isfinite(v) for v in full.losses.values())
    part = train(base, clips, root / "part", _cfg(steps=1), method=LeviTorMethod(conditioning_embedding_out_channels=EMBED))
    rest = train(base, clips, root / "part", _cfg(), method=LeviTorMethod(conditioning_embedding_out_channels=EMBED))
    assert rest.start_step == 1
    assert [part.losses[1], rest.losses[2], rest.losses[3]] == [full.losses[s] for s in range(1, 4)]
    # the saved ControlNet differs from a fresh one, loads back into a method and its base is untouched
    m = LeviTorMethod(conditioning_embedding_out_channels=EMBED)
    m.setup(base, "cpu", torch.float32, 0)
    fresh = {k: v.clone() for k, v in m.trained.state_dict().items()}
    m.restore(full.adapter)
    a = m.trained.state_dict()
    b = LeviTorMethod(conditioning_embedding_out_channels=EMBED)
    b.setup(base, "cpu", torch.float32, 0)
    b.restore(root / "part" / "adapter")
    assert all(torch.equal(a[k], b.trained.state_dict()[k]) for k in a)
    assert any(not torch.equal(a[k], fresh[k]) for k in a)
    pristine = load_svd(base).unet.state_dict()
    assert all(torch.equal(v, pristine[k]) for k, v in m.backbone.unet.state_dict().items())


def test_import_levitor_checkpoint_names(tiny, tmp_path):
    unet = load_svd(tiny[0]).unet
    # a synthetic LeviTor ControlNetSVDModel state dict: its names (controlnet_svd.py), random values
    ours = SVDControlNet.from_unet(unet, conditioning_embedding_out_channels=EMBED).state_dict()
    names = ["controlnet_cond_embedding.conv_in.weight", "controlnet_cond_embedding.blocks.0.weight",
             "controlnet_cond_embedding.blocks.1.weight", "controlnet_cond_embedding.conv_out.weight",
             "controlnet_down_blocks.0.weight", "controlnet_mid_block.weight", "conv_in.weight",
             "time_embedding.linear_1.weight", "add_embedding.linear_2.weight",
             "down_blocks.0.attentions.0.proj_in.weight", "mid_block.resnets.0.spatial_res_block.conv1.weight"]
    assert all(n in ours for n in names)
    g = torch.Generator().manual_seed(3)
    levitor = {k: torch.randn(v.shape, generator=g) for k, v in ours.items()}
    from safetensors.torch import save_file

    (tmp_path / "controlnet").mkdir()
    save_file(levitor, str(tmp_path / "controlnet" / "diffusion_pytorch_model.safetensors"))
    net = import_levitor_controlnet(tmp_path / "controlnet", unet)
    assert all(torch.equal(net.state_dict()[k], levitor[k]) for k in levitor)
    assert net.config.conditioning_embedding_out_channels == EMBED
    pref = import_levitor_controlnet({"controlnet." + k: v for k, v in levitor.items()}, unet)
    assert torch.equal(pref.controlnet_mid_block.weight, levitor["controlnet_mid_block.weight"])
    with pytest.raises(AmgError, match="point-feature"):
        import_levitor_controlnet({**levitor, "controlnet_cond_embedding.conv_in_feat.weight": torch.zeros(1)}, unet)
    with pytest.raises(AmgError, match="missing"):
        import_levitor_controlnet({k: v for k, v in levitor.items() if k != "controlnet_mid_block.weight"}, unet)


def _square_mask(side=48, x0=10, y0=18, size=10):
    mask = np.zeros((side, side), np.int64)
    mask[y0:y0 + size, x0:x0 + size] = 1
    return mask


def test_clicks_with_depth_make_the_control_follow_the_drag():
    from finetune.methods.levitor import clicks_control, read_clicks

    mask = _square_mask()
    clicks = read_clicks([{"id": 1, "points": [[15, 23], [35, 23]]}])
    control, moved = clicks_control(mask, clicks, num_frames=4)
    assert control.shape == (4, 3, 48, 48) and control.dtype == np.float32
    # the object's pixels travel with the clicks: its mask centre moves 20 px right, 0 down
    cx = [np.nonzero(m == 1)[1].mean() for m in moved.masks]
    cy = [np.nonzero(m == 1)[0].mean() for m in moved.masks]
    assert cx[-1] - cx[0] == pytest.approx(20, abs=1.5) and abs(cy[-1] - cy[0]) < 1
    assert np.all(np.diff(cx) > 0)
    # the heat channel follows: its weighted centre moves right too, and the id channel names the object
    heat_x = [(c[0] * np.arange(48)).sum() / c[0].sum() for c in control]
    assert heat_x[-1] - heat_x[0] > 10
    assert set(np.unique(control[:, 1])) <= {0.0, 1.0}
    # relative depth 0.5: the object comes closer, so it grows; its depth channel says nearer (larger disparity)
    near, moved_near = clicks_control(mask, read_clicks([{"id": 1, "points": [[15, 23, 1.0], [15, 23, 0.5]]}]), 4)
    area = [(m == 1).sum() for m in moved_near.masks]
    assert area[-1] > 1.5 * area[0]
    assert near[-1, 2][near[-1, 1] == 1].max() > near[0, 2][near[0, 1] == 1].max()


def test_read_clicks_rejects_bad_input(tmp_path):
    from finetune.methods.levitor import clicks_control, read_clicks

    with pytest.raises(AmgError, match="no control point"):  # LeviTor's rule gives tiny images no points
        clicks_control(_square_mask(side=16, x0=4, y0=6, size=4), read_clicks([{"id": 1, "points": [[6, 8], [12, 8]]}]), 2)

    path = tmp_path / "clicks.json"
    path.write_text('{"objects": [{"id": 2, "points": [[1, 2, 0.5], [3, 4, 1.0]]}]}')
    (c,) = read_clicks(path)
    assert c.object_id == 2 and c.points.shape == (2, 3)
    with pytest.raises(AmgError, match="no such file"):
        read_clicks(tmp_path / "missing.json")
    with pytest.raises(AmgError, match="relative depth"):
        read_clicks([{"id": 1, "points": [[1, 2, -1]]}])
    with pytest.raises(AmgError, match="integer id"):
        read_clicks([{"points": [[1, 2]]}])
    path.write_text("{not json")
    with pytest.raises(AmgError, match="not JSON"):
        read_clicks(path)
    from amg.animate import _read_array

    (tmp_path / "ids.npy").write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(AmgError, match="mask=.*ids.npy: not a readable"):
        _read_array(str(tmp_path / "ids.npy"), "mask")
    with pytest.raises(AmgError, match="object id 3 is not in the mask"):
        clicks_control(_square_mask(side=32, x0=4, y0=6, size=12), read_clicks([{"id": 3, "points": [[6, 8]]}]), 2)


def test_animate_app_from_clicks_with_depth(tiny, tmp_path):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from amg.animate import run as animate
    from render.video import read_video

    base = tiny[0]
    _pil(3).save(tmp_path / "first.png")  # 32x32: LeviTor's K-means rule needs images of about 500 pixels
    np.save(tmp_path / "ids.npy", _square_mask(side=32, x0=8, y0=10, size=10))
    conf = str((Path(__file__).parents[1] / "conf").resolve())
    small = ["method.conditioning_embedding_out_channels=[16,32]", "data.num_frames=2", "data.height=32",
             "data.width=32", "+sampling.num_inference_steps=2"]
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose("animate", overrides=["method=levitor", f"backbone.path={base}", f"image={tmp_path / 'first.png'}",
                                            f"mask={tmp_path / 'ids.npy'}",
                                            "trajectories=[{id:1,points:[[12,14,1.0],[22,14,0.8]]}]"] + small)
        video = animate(cfg, tmp_path / "out")
        with pytest.raises(AmgError, match="mask="):
            animate(compose("animate", overrides=["method=levitor", f"backbone.path={base}",
                                                  f"image={tmp_path / 'first.png'}",
                                                  "trajectories=[{id:1,points:[[12,14]]}]"] + small), tmp_path / "bad")
    assert read_video(video)[0].shape == (2, 32, 32, 3)
    control = np.load(tmp_path / "out" / "levitor_control.npy")
    assert control.shape == (2, 3, 32, 32) and control[:, 0].max() > 0 and control[:, 1].max() == 1
