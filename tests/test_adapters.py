"""Adapters in peft's layout, checked against peft itself (its writer, its loader, in a fresh process)."""

import json
import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from finetune import adapters
from finetune.model import LORA_TARGETS, load_adapter, load_base, prepare_unet, save_adapter
from finetune.tiny import build_tiny_text_to_video
from render.errors import AmgError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_text_to_video(tmp_path_factory.mktemp("t2v"), seed=0)


def _randomise(unet, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_" in n or n.startswith("conv_in."):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _inputs(channels=8, frames=3, side=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, channels, frames, side, side, generator=g), torch.randn(1, 16, 32, generator=g)


def _run(unet, x, e, t=500):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=e).sample


def _trained(base):
    model = load_base(base)
    prepare_unet(model.unet)
    _randomise(model.unet)
    return model


def _widened_base(base):
    """The widened base built by hand, as a peft user would (new channels zero)."""
    from diffusers import UNet3DConditionModel

    unet = UNet3DConditionModel.from_pretrained(base / "unet")
    old = unet.conv_in
    new = torch.nn.Conv2d(8, old.out_channels, old.kernel_size, padding=old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :4] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    return unet


def test_files_have_peft_names_and_config(base, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = _trained(base)
    save_adapter(model.unet, tmp_path / "ours", model.fingerprint)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "amg_adapter.json"]
    # what peft itself writes for the same adapter on the same widened base
    config = LoraConfig(r=4, lora_alpha=4, target_modules=list(LORA_TARGETS), modules_to_save=["conv_in"])
    peft_model = get_peft_model(_widened_base(base), config)
    peft_model.save_pretrained(tmp_path / "peft")
    from safetensors.torch import load_file

    ours = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    assert set(ours) == set(theirs) and len(ours) > 10
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    ours_cfg = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    theirs_cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    for key in ("peft_type", "r", "lora_alpha", "modules_to_save"):
        assert ours_cfg[key] == theirs_cfg[key], key
    assert sorted(ours_cfg["target_modules"]) == sorted(theirs_cfg["target_modules"])
    side = json.loads((tmp_path / "ours" / "amg_adapter.json").read_text())
    assert side["conv_in"]["in_channels"] == 8 and side["base"] == model.fingerprint


def test_no_hidden_attributes_on_the_unet(base):
    unet = prepare_unet(load_base(base).unet)
    assert not [k for k in vars(unet) if k.startswith("_amg")]
    assert adapters.lora_config(unet).modules_to_save == ["conv_in"]


_PEFT_ONLY = textwrap.dedent("""
    import sys
    import torch
    from diffusers import DDIMScheduler, UNet3DConditionModel
    from peft import PeftModel

    base, adapter, data, out = sys.argv[1:5]
    unet = UNet3DConditionModel.from_pretrained(base + "/unet")
    old = unet.conv_in
    wide = torch.nn.Conv2d(old.in_channels + 4, old.out_channels, old.kernel_size, padding=old.padding)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, :old.in_channels] = old.weight
        wide.bias.copy_(old.bias)
    unet.conv_in = wide
    model = PeftModel.from_pretrained(unet, adapter).eval()
    d = torch.load(data)
    scheduler = DDIMScheduler.from_pretrained(base + "/scheduler")
    scheduler.set_timesteps(d["steps"])
    latents, texts = d["noise"] * scheduler.init_noise_sigma, torch.cat([d["uncond"], d["text"]])
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = torch.cat([latents, d["avatar"]], dim=1)
            uncond, text = model(torch.cat([x, x]), t, encoder_hidden_states=texts).sample.chunk(2)
            eps = uncond + d["cfg"] * (text - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample
    torch.save(latents, out)
""")


def test_plain_peft_process_reproduces_our_pipeline(base, tmp_path):
    from finetune.model import encode_prompt
    from finetune.pipeline import AMGPipeline

    pipe = AMGPipeline.from_pretrained(base, device="cpu")
    _randomise(pipe.model.unet)
    save_adapter(pipe.model.unet, tmp_path / "ad", pipe.model.fingerprint)
    avatar = torch.randint(0, 256, (3, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    noise = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    ours = pipe("a man walks", avatar.numpy(), num_inference_steps=3, guidance_scale=3.0, latents=noise,
                output_type="latent", progress=False)
    m = pipe.model
    data = {"noise": noise, "avatar": pipe.encode_avatar(avatar.numpy(), 16, 16), "steps": 3, "cfg": 3.0,
            "text": encode_prompt(m.text_encoder, m.tokenizer, ["a man walks"]),
            "uncond": encode_prompt(m.text_encoder, m.tokenizer, [""])}
    torch.save(data, tmp_path / "data.pt")
    (tmp_path / "peft_only.py").write_text(_PEFT_ONLY)
    # a fresh interpreter that imports only torch, diffusers and peft (not this project)
    subprocess.run([sys.executable, str(tmp_path / "peft_only.py"), str(base), str(tmp_path / "ad"),
                    str(tmp_path / "data.pt"), str(tmp_path / "out.pt")], check=True, cwd=tmp_path,
                   env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                        "HOME": str(tmp_path)})
    theirs = torch.load(tmp_path / "out.pt")
    assert (ours - theirs).abs().max().item() <= 1e-6
    # the adapter matters: the untrained model gives another video
    plain = AMGPipeline.from_pretrained(base, device="cpu")
    other = plain("a man walks", avatar.numpy(), num_inference_steps=3, guidance_scale=3.0, latents=noise,
                  output_type="latent", progress=False)
    assert (other - theirs).abs().max().item() > 1e-3


def test_we_load_what_peft_writes(base, tmp_path):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(LORA_TARGETS), modules_to_save=["conv_in"])
    peft_model = get_peft_model(_widened_base(base), config)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n or "modules_to_save" in n:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    peft_model.save_pretrained(tmp_path / "peft")
    x, e = _inputs()
    want = _run(peft_model.eval(), x, e)
    model = load_base(base)
    load_adapter(model.unet, tmp_path / "peft", model.fingerprint)
    assert (_run(model.unet, x, e) - want).abs().max().item() <= 1e-6


def _legacy_folder(model, folder):
    """An adapter in the first AMG format, written as that format's code wrote it."""
    from safetensors.torch import save_file

    folder.mkdir()
    sd = {k: v.contiguous() for k, v in model.unet.state_dict().items() if "lora_" in k or k.startswith("conv_in.")}
    save_file(sd, str(folder / "adapter.safetensors"))
    conv = model.unet.conv_in.weight[:, :4].flatten()
    old_probe = [conv.mean().item(), conv.std().item()] + conv[:4].tolist() + model.fingerprint["probe"]
    old_config = dict(model.fingerprint["config"], in_channels=4)
    (folder / "adapter.json").write_text(json.dumps({
        "format": "amg-adapter/1", "rank": 4, "alpha": 4.0, "targets": list(LORA_TARGETS),
        "conv_in": {"base_in_channels": 4, "in_channels": 8},
        "base": {"config": old_config, "probe": old_probe}, "step": 7}))


def test_old_format_loads_with_a_one_line_notice(base, tmp_path, caplog):
    model = _trained(base)
    _legacy_folder(model, tmp_path / "old")
    fresh = load_base(base)
    with caplog.at_level(logging.WARNING, logger="finetune.adapters"):
        load_adapter(fresh.unet, tmp_path / "old", fresh.fingerprint)
    notes = [r.getMessage() for r in caplog.records if r.name == "finetune.adapters"]
    assert len(notes) == 1 and "\n" not in notes[0] and "first AMG format" in notes[0]
    x, e = _inputs()
    assert (_run(fresh.unet, x, e) - _run(model.unet, x, e)).abs().max().item() <= 1e-6
    # re-saved, it is in peft's layout
    save_adapter(fresh.unet, tmp_path / "new", fresh.fingerprint)
    assert (tmp_path / "new" / "adapter_config.json").is_file()


def test_keys_that_match_nothing_are_an_error(base, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _trained(base)
    save_adapter(model.unet, tmp_path / "ad", model.fingerprint)
    sd = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    renamed = {k.replace("to_q.lora_A", "to_query.lora_A"): v for k, v in sd.items()}
    save_file(renamed, str(tmp_path / "ad" / "adapter_model.safetensors"))
    fresh = load_base(base)
    with pytest.raises(AmgError, match=r"unexpected.*missing"):
        load_adapter(fresh.unet, tmp_path / "ad", fresh.fingerprint)
    # a dropped tensor too
    save_file({k: v for i, (k, v) in enumerate(sd.items()) if i}, str(tmp_path / "ad" / "adapter_model.safetensors"))
    with pytest.raises(AmgError, match="1 missing"):
        load_adapter(load_base(base).unet, tmp_path / "ad", fresh.fingerprint)


def test_merge_equals_the_unmerged_model(base):
    import copy

    model = _trained(base)
    merged = adapters.merge_lora(copy.deepcopy(model.unet))
    assert not adapters.lora_layers(merged) and not adapters.has_lora(merged)
    x, e = _inputs()
    assert (_run(merged, x, e) - _run(model.unet, x, e)).abs().max().item() < 1e-5


def test_widen_input_keeps_outputs_for_conv_and_linear():
    g = torch.Generator().manual_seed(0)
    for layer, x in ((torch.nn.Conv3d(3, 5, (1, 2, 2), stride=(1, 2, 2)), torch.randn(2, 3, 2, 4, 4, generator=g)),
                     (torch.nn.Linear(3, 5), torch.randn(2, 3, generator=g))):
        wide = adapters.widen_input(layer, 2)
        extra = torch.randn(x.shape[0], 2, *x.shape[2:], generator=g)
        assert torch.equal(wide(torch.cat([x, extra], 1)), layer(x))
    with pytest.raises(AmgError, match="non-negative"):
        adapters.widen_input(torch.nn.Linear(2, 2), -1)
