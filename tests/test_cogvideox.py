"""AMG on CogVideoX: widening, the loop against diffusers' stock and Fun-control pipelines, adapters, loss."""

import numpy as np
import pytest
import torch

from finetune.backbones.cogvideox import load_cogvideox, widen_patch_embed
from finetune.methods.amg_cogvideox import prepare_cogvideox, v_prediction_loss
from finetune.pipelines.amg_cogvideox import AMGCogVideoXPipeline
from dit_helpers import randomise, stock_and_ours
from finetune.testing_dit import build_tiny_cogvideox


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_cogvideox(tmp_path_factory.mktemp("cogvideox"))


@pytest.fixture(scope="module")
def base15(tmp_path_factory):
    return build_tiny_cogvideox(tmp_path_factory.mktemp("cogvideox15"), version="1.5")


def _run(transformer, x, e, t=500):
    with torch.no_grad():
        return transformer(hidden_states=x, encoder_hidden_states=e, timestep=torch.tensor([t]), return_dict=False)[0]


def _inputs(channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, channels, 2, 2, generator=g), torch.randn(1, 16, 32, generator=g)


def _randomise(transformer, seed=2, avatar=True):
    randomise(transformer, lambda t: t.patch_embed.proj.weight, 4, seed=seed, avatar=avatar)


def _avatar(frames=9, side=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (frames, side, side, 3)).astype(np.uint8)


def test_widening_and_fresh_lora_leave_the_output_exactly_unchanged(base):
    ref = load_cogvideox(base).transformer
    amg = prepare_cogvideox(load_cogvideox(base).transformer)
    assert amg.patch_embed.proj.in_channels == 8 and amg.config.in_channels == 8
    x, e = _inputs(4)
    avatar = 3 * torch.randn_like(x)
    assert (_run(amg, torch.cat([x, avatar], 2), e) - _run(ref, x, e)).abs().max().item() == 0.0
    _randomise(amg)
    assert (_run(amg, torch.cat([x, avatar], 2), e) - _run(ref, x, e)).abs().max().item() > 1e-3


def test_linear_patch_embedding_is_widened_per_patch_position():
    """CogVideoX 1.5 flattens patches channel-major into a Linear: widening keeps its output exactly."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    kw = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
              text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
              patch_size_t=2, temporal_compression_ratio=4, max_text_seq_length=16,
              use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False)
    ref = CogVideoXTransformer3DModel(**kw).eval()
    wide = CogVideoXTransformer3DModel(**kw).eval()
    wide.load_state_dict(ref.state_dict())
    widen_patch_embed(wide, 4)
    assert isinstance(wide.patch_embed.proj, torch.nn.Linear) and wide.config.in_channels == 8
    g = torch.Generator().manual_seed(1)
    x, e = torch.randn(1, 2, 4, 2, 2, generator=g), torch.randn(1, 16, 32, generator=g)
    both = torch.cat([x, 3 * torch.randn(x.shape, generator=g)], 2)
    assert (_run(wide, both, e) - _run(ref, x, e)).abs().max().item() <= 1e-6
    with torch.no_grad():  # the new channels' columns are the second half of each row
        wide.patch_embed.proj.weight[:, 32:].normal_(0, 0.3, generator=g)
    assert (_run(wide, both, e) - _run(ref, x, e)).abs().max().item() > 1e-3


@pytest.mark.parametrize("version,latent_frames", [("1.0", 3), ("1.5", 4)])
def test_lora_off_and_zero_avatar_channels_reproduce_stock_cogvideox(base, base15, version, latent_frames):
    """9 frames -> 3 latent frames; CogVideoX 1.5 groups latent frames in pairs, so its clip (and the stock
    pipeline's) is padded to 4 at the start and the padding dropped before decoding."""
    from diffusers import CogVideoXPipeline

    kw = dict(negative_prompt="", num_inference_steps=3, guidance_scale=6.0, max_sequence_length=16)
    want, got, on, video = stock_and_ours(CogVideoXPipeline, AMGCogVideoXPipeline, base if version == "1.0" else base15,
                                          _randomise, _avatar(), 5, **kw)
    assert got.shape == want.shape == (1, latent_frames, 4, 2, 2)
    assert (got - want).abs().max().item() == 0.0
    assert (on - want).abs().max().item() > 1e-3
    assert video.shape == (9, 16, 16, 3) and video.dtype == np.uint8


def test_fun_control_folder_imports_and_matches_its_stock_pipeline(base, tmp_path):
    from diffusers import CogVideoXFunControlPipeline
    from PIL import Image

    b = load_cogvideox(base)
    widen_patch_embed(b.transformer, 4)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        b.transformer.patch_embed.proj.weight[:, 4:].normal_(0, 0.3, generator=g)
    CogVideoXFunControlPipeline(tokenizer=b.tokenizer, text_encoder=b.text_encoder, vae=b.vae,
                                transformer=b.transformer, scheduler=b.scheduler).save_pretrained(tmp_path / "fun")
    fun = CogVideoXFunControlPipeline.from_pretrained(tmp_path / "fun")
    fun.set_progress_bar_config(disable=True)
    avatar = _avatar()
    kw = dict(negative_prompt="", num_inference_steps=2, guidance_scale=6.0, max_sequence_length=16)
    want = fun("a man walks", control_video=[Image.fromarray(f) for f in avatar], height=16, width=16,
               generator=torch.Generator().manual_seed(4), output_type="latent", **kw).frames
    ours = AMGCogVideoXPipeline.from_base(tmp_path / "fun", device="cpu")
    assert ours.transformer.config.in_channels == 8  # not widened again
    got = ours("a man walks", avatar, generator=torch.Generator().manual_seed(4), output_type="latent",
               progress=False, **kw)
    assert (got - want).abs().max().item() <= 1e-5


def test_adapter_round_trip_and_v_loss(base, tmp_path):
    pipe = AMGCogVideoXPipeline.from_base(base, device="cpu")
    _randomise(pipe.transformer)
    pipe.save_adapter(tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    again = AMGCogVideoXPipeline.from_base(base, adapter=tmp_path / "ad", device="cpu")
    x, e = _inputs(8, seed=1)
    assert (_run(again.transformer, x, e) - _run(pipe.transformer, x, e)).abs().max().item() <= 1e-6
    z0, za = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    loss = v_prediction_loss(pipe.transformer, pipe.scheduler, z0, za, torch.randn(2, 16, 32),
                             torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 1e-3
    a_bar = pipe.scheduler.alphas_cumprod

    class TrueV(torch.nn.Module):
        """Knows z0, so it recovers the noise from z_t and returns the exact velocity."""

        config = pipe.transformer.config

        def forward(self, hidden_states, encoder_hidden_states, timestep, image_rotary_emb=None, return_dict=False):
            a = a_bar[timestep].view(-1, 1, 1, 1, 1)
            zt = hidden_states[:, :, :4]
            noise = (zt - a.sqrt() * z0) / (1 - a).sqrt()
            return (a.sqrt() * noise - (1 - a).sqrt() * z0,)

    oracle = v_prediction_loss(TrueV(), pipe.scheduler, z0, za, torch.randn(2, 16, 32),
                               torch.Generator().manual_seed(0))
    assert oracle.item() < 1e-8


def test_shared_loop_trains_and_resumes_bit_for_bit(base, tmp_path):
    from finetune.methods.amg_cogvideox import AmgCogVideoXMethod, load_cogvideox_adapter
    from finetune.tiny import write_tiny_clips
    from finetune.train import TrainConfig, train

    manifest = write_tiny_clips(tmp_path / "clips", count=2, frames=9, side=16)

    def cfg(steps):
        return TrainConfig(steps=steps, lr=1e-2, num_frames=9, height=16, width=16, fps=8.0, checkpoint_every=3,
                           progress=False, tensorboard=False, seed=0)

    full = train(base, manifest, tmp_path / "full", cfg(6), method=AmgCogVideoXMethod(max_sequence_length=16))
    part = train(base, manifest, tmp_path / "part", cfg(3), method=AmgCogVideoXMethod(max_sequence_length=16))
    rest = train(base, manifest, tmp_path / "part", cfg(6), method=AmgCogVideoXMethod(max_sequence_length=16))
    assert rest.start_step == 3 and all(np.isfinite(v) for v in full.losses.values())
    for s in range(1, 7):
        assert (part.losses[s] if s <= 3 else rest.losses[s]) == full.losses[s], s
    b = load_cogvideox(base)
    load_cogvideox_adapter(b.transformer, full.adapter, b.fingerprint)
    assert b.transformer.patch_embed.proj.weight[:, 4:].abs().max() > 0


def test_cogvideox15_loss_sees_what_sampling_sees(base15):
    """The training loss pads the clip as the stock pipeline does, passes the stock rotary embeddings and
    leaves the padding frame out of the loss: checked against the same computation written out by hand."""
    from diffusers import CogVideoXPipeline

    stock = CogVideoXPipeline.from_pretrained(base15)
    transformer = prepare_cogvideox(load_cogvideox(base15).transformer)
    _randomise(transformer)
    g = torch.Generator().manual_seed(3)
    z0, za, text = (torch.randn(1, 3, 4, 2, 2, generator=g), torch.randn(1, 3, 4, 2, 2, generator=g),
                    torch.randn(1, 16, 32, generator=g))
    with torch.no_grad():
        got = v_prediction_loss(transformer, stock.scheduler, z0, za, text, torch.Generator().manual_seed(7))
        # by hand: 3 latent frames -> 4 with the first frame repeated in front
        g = torch.Generator().manual_seed(7)
        z0p, zap = torch.cat([z0[:, :1], z0], 1), torch.cat([za[:, :1], za], 1)
        noise = torch.randn(z0p.shape, generator=g)
        t = torch.randint(0, 1000, (1,), generator=g)
        a = stock.scheduler.alphas_cumprod[t].float().view(1, 1, 1, 1, 1)
        zt = a.sqrt() * z0p + (1 - a).sqrt() * noise
        rotary = stock._prepare_rotary_positional_embeddings(16, 16, 4, torch.device("cpu"))
        pred = transformer(hidden_states=torch.cat([zt, zap], 2), encoder_hidden_states=text, timestep=t,
                           image_rotary_emb=rotary, return_dict=False)[0]
        v = a.sqrt() * noise - (1 - a).sqrt() * z0p
        want = ((pred[:, 1:] - v[:, 1:]) ** 2).mean()
    assert abs(got.item() - want.item()) <= 1e-6 * max(1.0, want.item())


def test_cogvideox15_trains_in_the_shared_loop(base15, tmp_path):
    from finetune.methods.amg_cogvideox import AmgCogVideoXMethod
    from finetune.tiny import write_tiny_clips
    from finetune.train import TrainConfig, train

    manifest = write_tiny_clips(tmp_path / "clips", count=2, frames=9, side=16)
    cfg = TrainConfig(steps=4, lr=1e-2, num_frames=9, height=16, width=16, fps=8.0, checkpoint_every=4,
                      progress=False, tensorboard=False, seed=0)
    fit = train(base15, manifest, tmp_path / "fit", cfg, method=AmgCogVideoXMethod(max_sequence_length=16))
    assert len(fit.losses) == 4 and all(np.isfinite(v) for v in fit.losses.values())
    b = load_cogvideox(base15)
    from finetune.methods.amg_cogvideox import load_cogvideox_adapter

    load_cogvideox_adapter(b.transformer, fit.adapter, b.fingerprint)
    assert b.transformer.config.in_channels == 8 and b.transformer.patch_embed.proj.weight.abs().sum() > 0
