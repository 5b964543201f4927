import pytest
import torch

from finetune.model import (LORA_TARGETS, add_lora, base_fingerprint, fingerprints_match, load_adapter,
                            load_base, lora_scale, mark_trainable, prepare_unet, save_adapter, widen_conv_in)
from finetune.tiny import build_tiny_text_to_video
from render.errors import AmgError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_text_to_video(tmp_path_factory.mktemp("t2v"), seed=0)


def _inputs(channels=4, frames=3, side=8):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, channels, frames, side, side, generator=g)
    e = torch.randn(1, 16, 32, generator=g)
    return x, e


def _run(unet, x, e, t=500):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=e).sample


def test_widened_conv_in_and_fresh_lora_reproduce_base_exactly(base):
    ref = load_base(base).unet
    amg = prepare_unet(load_base(base).unet, rank=4)
    x, e = _inputs()
    avatar = torch.randn_like(x) * 3
    out_ref = _run(ref, x, e)
    out = _run(amg, torch.cat([x, avatar], 1), e)
    assert amg.conv_in.in_channels == 8
    assert (out - out_ref).abs().max().item() == 0.0
    # the avatar channels only stop being ignored once their weights move
    with torch.no_grad():
        amg.conv_in.weight[:, 4:] += 0.1
    assert (_run(amg, torch.cat([x, avatar], 1), e) - out_ref).abs().max() > 1e-3


def test_widen_copies_weights_and_round_trips_config(base, tmp_path):
    unet = load_base(base).unet
    w, b = unet.conv_in.weight.clone(), unet.conv_in.bias.clone()
    widen_conv_in(unet, 4)
    assert torch.equal(unet.conv_in.weight[:, :4], w) and torch.equal(unet.conv_in.bias, b)
    assert unet.conv_in.weight[:, 4:].abs().max() == 0
    unet.save_pretrained(tmp_path / "wide")
    from diffusers import UNet3DConditionModel

    back = UNet3DConditionModel.from_pretrained(tmp_path / "wide")
    assert back.config.in_channels == 8 and torch.equal(back.conv_in.weight, unet.conv_in.weight)


def test_lora_on_every_spatial_and_temporal_attention(base):
    unet = load_base(base).unet
    targets = [n for n, _ in unet.named_modules() if n.endswith(LORA_TARGETS)]
    add_lora(unet, rank=4)
    from peft.tuners.lora import LoraLayer

    wrapped = {n for n, m in unet.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == set(targets)
    assert any("temp_attentions" in n for n in wrapped) and any(".attentions." in n for n in wrapped)
    assert any(n.startswith("transformer_in") for n in wrapped)
    assert all(m.r["amg"] == 4 for m in unet.modules() if isinstance(m, LoraLayer))


def test_only_lora_and_conv_in_are_trainable(base):
    unet = prepare_unet(load_base(base).unet)
    params = mark_trainable(unet)
    names = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert len(params) == len(names) > 0
    assert all("lora_" in n or n.startswith("conv_in.") for n in names)
    assert "conv_in.weight" in names and "conv_in.bias" in names
    total = sum(p.numel() for p in unet.parameters())
    assert sum(p.numel() for p in params) < 0.2 * total


def _randomise_adapter(unet, seed=3, conv_in=True):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_" in n or (conv_in and n.startswith("conv_in.")):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_adapter_round_trip_gives_identical_output(base, tmp_path):
    model = load_base(base)
    prepare_unet(model.unet)
    _randomise_adapter(model.unet)
    save_adapter(model.unet, tmp_path / "ad", model.fingerprint)
    fresh = load_base(base)
    load_adapter(fresh.unet, tmp_path / "ad", fresh.fingerprint)
    x, e = _inputs(8)
    a, b = _run(model.unet, x, e), _run(fresh.unet, x, e)
    assert torch.equal(a, b)
    assert (a - _run(load_base(base).unet, x[:, :4], e)).abs().max() > 1e-3


def test_adapter_refuses_a_different_base(base, tmp_path):
    model = load_base(base)
    prepare_unet(model.unet)
    save_adapter(model.unet, tmp_path / "ad", model.fingerprint)
    other = load_base(build_tiny_text_to_video(tmp_path / "other", seed=1))
    with pytest.raises(AmgError, match="different base model"):
        load_adapter(other.unet, tmp_path / "ad", other.fingerprint)
    with pytest.raises(AmgError, match="not an AMG adapter"):
        load_adapter(other.unet, tmp_path / "nothing", other.fingerprint)


def test_fingerprint_survives_half_precision_and_widening(base):
    model = load_base(base)
    half = base_fingerprint(load_base(base, dtype=torch.float16).unet)
    assert fingerprints_match(model.fingerprint, half)
    prepare_unet(model.unet)
    assert fingerprints_match(base_fingerprint(model.unet), model.fingerprint)


def test_lora_scale_zero_is_the_base_and_flags_are_kept(base):
    model = load_base(base)
    ref = load_base(base).unet
    prepare_unet(model.unet)
    mark_trainable(model.unet)
    _randomise_adapter(model.unet, conv_in=False)
    x, e = _inputs()
    xin = torch.cat([x, torch.randn_like(x)], 1)
    with lora_scale(model.unet, 0.0):
        off = _run(model.unet, xin, e)
    on = _run(model.unet, xin, e)
    assert (off - _run(ref, x, e)).abs().max() < 1e-6
    assert (on - off).abs().max() > 1e-3
    with lora_scale(model.unet, 0.5):
        half = _run(model.unet, xin, e)
    assert 0 < (half - off).abs().max() < (on - off).abs().max()
    assert all(p.requires_grad for n, p in model.unet.named_parameters() if "lora_" in n)


def test_missing_model_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(AmgError, match="no such model folder"):
        load_base(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(AmgError, match="missing vae"):
        load_base(tmp_path / "half")
