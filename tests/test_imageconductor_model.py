"""Image Conductor on tiny random AnimateDiff models: no-op ControlNets at init, stock AnimateDiff when the
control is off, camera-free guidance equal to the paper's formula over three UNet passes, the orthogonal
loss, the camera -> object curriculum, and the public checkpoint's LoRA names."""
import functools
import warnings

import numpy as np
import pytest
import torch

from finetune.backbones import load_animatediff
from finetune.methods.image_conductor import (CAMERA, OBJECT, ImageConductorMethod, add_lora_sets,
                                              first_frame_condition, flow_condition, flow_controlnet_from_unet,
                                              image_controlnet_from_unet, import_image_conductor, lora_scales,
                                              orthogonal_loss)
from finetune.pipelines.image_conductor import ImageConductorPipeline
from finetune.testing import build_tiny_animatediff, write_tiny_render_clips
from finetune.train import train
from render.errors import AmgError
from train_helpers import small_config

warnings.filterwarnings("ignore", message="Already found a `peft_config`")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ic")
    base = build_tiny_animatediff(root / "sd")
    clips = write_tiny_render_clips(root / "clips", frames=2, side=16, camera_only=(True, False))
    return base, clips, root


def _controls(unet, rank=4):
    flow = add_lora_sets(flow_controlnet_from_unet(unet, 2), rank)
    return flow, image_controlnet_from_unet(unet)


def _perturb(net, seed=1, lora=None):
    """Give the zero-initialised outputs (and optionally one LoRA set's B) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            zero_out = name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding"))
            if (zero_out and "lora_" not in name) or (lora is not None and f"lora_B.{lora}." in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, 2, 8, 8, generator=g)
    text = torch.randn(2, 16, 32, generator=g)
    flow = flow_condition(torch.randn(1, 2, 2, 16, 16, generator=g), 2)
    first = first_frame_condition(torch.randn(1, 4, 8, 8, generator=g), 2)
    return z, torch.tensor([400]), text, flow, first


def test_fresh_controlnets_leave_the_unet_output_exactly_unchanged(tiny):
    unet = load_animatediff(tiny[0]).unet
    flow_net, image_net = _controls(unet)
    z, t, text, flow, (cond, mask) = _inputs()
    base = unet(z, t, encoder_hidden_states=text).sample
    d1, m1 = flow_net(z, t, encoder_hidden_states=text, controlnet_cond=flow, return_dict=False)
    d2, m2 = image_net(z, t, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=mask,
                       return_dict=False)
    out = unet(z, t, encoder_hidden_states=text, down_block_additional_residuals=[a + b for a, b in zip(d1, d2)],
               mid_block_additional_residual=m1 + m2).sample
    assert torch.equal(out, base)
    _perturb(flow_net)
    d1, m1 = flow_net(z, t, encoder_hidden_states=text, controlnet_cond=flow, return_dict=False)
    moved = unet(z, t, encoder_hidden_states=text, down_block_additional_residuals=d1,
                 mid_block_additional_residual=m1).sample
    assert (moved - base).abs().max() > 1e-4
    # a LoRA set scaled to 0 is exactly off
    _perturb(flow_net, seed=2, lora=OBJECT)
    with lora_scales(flow_net, camera=0.0, obj=0.0):
        m1 = flow_net(z, t, encoder_hidden_states=text, controlnet_cond=flow, return_dict=False)[1]
    with lora_scales(flow_net, camera=1.0, obj=0.0):
        off = flow_net(z, t, encoder_hidden_states=text, controlnet_cond=flow, return_dict=False)[1]
    with lora_scales(flow_net, camera=1.0, obj=1.0):
        on = flow_net(z, t, encoder_hidden_states=text, controlnet_cond=flow, return_dict=False)[1]
    assert torch.equal(off, m1) and not torch.equal(on, m1)


def _pipes(base):
    from diffusers import AnimateDiffPipeline, MotionAdapter

    stock = AnimateDiffPipeline.from_pretrained(base, motion_adapter=MotionAdapter.from_pretrained(base / "motion_adapter"))
    stock.set_progress_bar_config(disable=True)
    flow_net, image_net = _controls(stock.unet)
    ours = ImageConductorPipeline(stock.vae, stock.text_encoder, stock.tokenizer, stock.unet, stock.scheduler,
                                  flow_controlnet=flow_net, image_controlnet=image_net)
    ours.set_progress_bar_config(disable=True)
    return stock, ours


def test_pipeline_reproduces_stock_animatediff_when_the_control_is_off(tiny):
    stock, ours = _pipes(tiny[0])
    kw = dict(num_frames=2, height=16, width=16, num_inference_steps=2, guidance_scale=3.0, output_type="latent")
    want = stock("a man walks", generator=torch.Generator().manual_seed(0), **kw).frames
    got = ours("a man walks", generator=torch.Generator().manual_seed(0), **kw).frames
    flow = np.random.default_rng(0).normal(size=(2, 2, 16, 16)).astype(np.float32)
    image = torch.rand(3, 16, 16) * 2 - 1
    fresh = ours("a man walks", image=image, flow=flow, generator=torch.Generator().manual_seed(0), **kw).frames
    assert torch.equal(got, want) and torch.equal(fresh, want)


def test_camera_free_guidance_is_the_formula_over_three_unet_passes(tiny):
    _, pipe = _pipes(tiny[0])
    _perturb(pipe.flow_controlnet, lora=OBJECT)
    _perturb(pipe.flow_controlnet, seed=3, lora=CAMERA)
    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 4, 2, 8, 8, generator=g)
    flow = torch.randn(2, 2, 16, 16, generator=g)
    l_cfg, l_traj = 2.5, 1.7
    got = pipe("a man walks", flow=flow, num_frames=2, height=16, width=16, num_inference_steps=1,
               guidance_scale=l_cfg, trajectory_guidance_scale=l_traj, camera_lora_scale=0.5, latents=latents.clone(),
               output_type="latent").frames
    # by hand: three separate passes, the formula, one DDIM step
    pos, neg = pipe.encode_prompt("a man walks", "cpu", 1, True, None)
    pos, neg = pos.repeat_interleave(2, 0), neg.repeat_interleave(2, 0)
    pipe.scheduler.set_timesteps(1)
    t = pipe.scheduler.timesteps[0]
    cond = flow_condition(flow[None], 2)
    net, unet = pipe.flow_controlnet, pipe.unet

    def eps(text, obj):
        with lora_scales(net, camera=0.5, obj=obj):
            down, mid = net(latents, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        return unet(latents, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample

    with torch.no_grad():
        e_u, e_c, e_obj = eps(neg, 0.0), eps(pos, 0.0), eps(pos, 1.0)
    assert (e_obj - e_c).abs().max() > 1e-5  # the object LoRA matters, so the check below can fail
    hand = e_u + l_cfg * (e_c - e_u) + l_traj * (e_obj - e_c)
    want = pipe.scheduler.step(hand, t, latents).prev_sample
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(AmgError, match="camera-free"):
        pipe("a man walks", num_frames=2, height=16, width=16, num_inference_steps=1, trajectory_guidance_scale=1.0)


def test_orthogonal_loss_zero_for_orthonormal_factors_and_its_gradient(tiny):
    unet = load_animatediff(tiny[0]).unet
    net = add_lora_sets(flow_controlnet_from_unet(unet, 2), rank=3)
    layers = [m for m in net.modules() if hasattr(m, "lora_A") and CAMERA in m.lora_A]
    with torch.no_grad():
        for m in layers:
            w = m.lora_A[CAMERA].weight
            q, _ = torch.linalg.qr(torch.randn(w[0].numel(), w.shape[0], dtype=torch.float64))
            m.lora_A[CAMERA].weight.copy_(q.T.reshape(w.shape))
            m.lora_A[OBJECT].weight.copy_(q.T.reshape(w.shape))
    assert orthogonal_loss(net).item() < 1e-4
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in layers:
            for name in (CAMERA, OBJECT):
                m.lora_A[name].weight.copy_(torch.randn(m.lora_A[name].weight.shape, generator=g) * 0.3)
    loss = orthogonal_loss(net)
    loss.backward()
    total = 0.0
    for m in layers:
        c = m.lora_A[CAMERA].weight.detach().reshape(3, -1).double()
        o = m.lora_A[OBJECT].weight.detach().reshape(3, -1).double()
        r = torch.eye(3, dtype=torch.float64) - c @ o.T
        total += (r ** 2).sum().item()
        # d/dO ||I - C O^T||^2 = -2 R^T C,  d/dC = -2 R O
        assert torch.allclose(m.lora_A[OBJECT].weight.grad.reshape(3, -1).double(), -2 * r.T @ c, rtol=1e-3, atol=1e-5)
        assert torch.allclose(m.lora_A[CAMERA].weight.grad.reshape(3, -1).double(), -2 * r @ o, rtol=1e-3, atol=1e-5)
    assert loss.item() == pytest.approx(total, rel=1e-4)


_cfg = functools.partial(small_config, steps=2, checkpoint_every=2)


def test_camera_then_object_stage_curriculum(tiny):
    base, clips, root = tiny
    cam = train(base, clips, root / "camera", _cfg(), method=ImageConductorMethod(stage="camera", rank=4))
    assert all(np.isfinite(v) for v in cam.losses.values())
    m = ImageConductorMethod(stage="object", rank=4, init_from=str(cam.adapter))
    m.setup(base, "cpu", torch.float32, 0)
    from safetensors.torch import load_file

    saved = load_file(str(cam.adapter / "flow_controlnet.safetensors"))
    start = m.trained.flow.state_dict()
    assert all(torch.equal(start[k], saved[k]) for k in saved)  # stage 2 starts from stage 1 bit for bit
    assert any(f"lora_B.{CAMERA}." in k and saved[k].abs().max() > 0 for k in saved)
    params = m.trainable_parameters()
    names = {id(p): n for n, p in m.trained.flow.named_parameters()}
    assert params and all(f".{OBJECT}." in names[id(p)] for p in params)
    obj = train(base, clips, root / "object", _cfg(), method=ImageConductorMethod(stage="object", rank=4,
                                                                                  init_from=str(cam.adapter)))
    after = load_file(str(obj.adapter / "flow_controlnet.safetensors"))
    for k, v in saved.items():
        if f".{OBJECT}." in k and "lora_B" in k:
            continue
        if f".{OBJECT}." not in k:
            assert torch.equal(after[k], v), k  # the camera LoRA and the ControlNet stay frozen
    assert any(not torch.equal(after[k], saved[k]) for k in saved if f"lora_B.{OBJECT}." in k)
    with pytest.raises(AmgError, match="stage"):
        ImageConductorMethod(stage="both")


def test_import_image_conductor_names(tiny):
    unet = load_animatediff(tiny[0]).unet
    net = add_lora_sets(flow_controlnet_from_unet(unet, 2), rank=4)
    keys = list(net.state_dict())
    # the public flow_controlnet.ckpt stores peft names for both sets
    assert any(k.endswith("lora_A.omcm_weights.weight") for k in keys)
    assert any(k.endswith("lora_A.cmcm_weights.weight") for k in keys)
    assert any(k.endswith("base_layer.weight") for k in keys)
    g = torch.Generator().manual_seed(0)
    ckpt = {"state_dict": {"module." + k: torch.randn(v.shape, generator=g) for k, v in net.state_dict().items()}}
    fresh = add_lora_sets(flow_controlnet_from_unet(unet, 2), rank=4)
    import_image_conductor(ckpt, fresh)
    want = {k[len("module."):]: v for k, v in ckpt["state_dict"].items()}
    assert all(torch.equal(fresh.state_dict()[k], want[k]) for k in want)
    with pytest.raises(AmgError, match="missing"):
        import_image_conductor({k: v for k, v in want.items() if "omcm" not in k}, fresh)
