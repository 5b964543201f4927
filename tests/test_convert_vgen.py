"""The VGen / ModelScope checkpoint importer on synthetic checkpoints written with VGen's key names."""

import re

import pytest
import torch

from finetune.importers.vgen import import_vgen_unet, load_checkpoint
from finetune.model import load_base, prepare_unet
from finetune.tiny import build_tiny_text_to_video
from render.errors import AmgError

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_TOP = {"conv_in": "input_blocks.0.0", "transformer_in": "input_blocks.0.1", "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
_MID = {"resnets.0": "middle_block.0", "resnets.1": "middle_block.3", "temp_convs.0": "middle_block.0.temopral_conv",
        "temp_convs.1": "middle_block.3.temopral_conv", "attentions.0": "middle_block.1",
        "temp_attentions.0": "middle_block.2"}


def _vgen_name(key: str, layers: int, up_types) -> str:
    """A diffusers UNet3D key written as VGen's UNet names it (the layout the official AMG checkpoint uses)."""
    key = key.replace(".base_layer.", ".")
    lora = re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.lora_(A|B)\.amg\.weight$", key)
    if lora:
        proj = "to_out" if lora.group(1) == "to_out.0" else lora.group(1)
        part = "down_linear" if lora.group(2) == "A" else "up_linear"
        key = key[:lora.start()] + f".{proj}_lora.{part}.weight"
    for new, old in _TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    m = re.match(r"mid_block\.(\w+\.\d+)\.(.*)", key)
    if m:
        rest = m.group(2)
        if m.group(1).startswith("resnets"):
            head, _, tail = rest.partition(".")
            rest = f"{_RESNET.get(head, head)}.{tail}"
        return f"{_MID[m.group(1)]}.{rest}"
    m = re.match(r"(down|up)_blocks\.(\d+)\.(\w+)\.(\d+)\.(.*)", key)
    kind, b, what, k, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    per_block = layers + 1  # down: layers + a downsampler block; up: layers + 1 layers
    blocks = "input_blocks" if kind == "down" else "output_blocks"
    index = (1 + b * per_block + k) if kind == "down" else (b * per_block + k)
    if what == "downsamplers":
        return f"input_blocks.{1 + b * per_block + layers}.op.{rest.removeprefix('conv.')}"
    if what == "upsamplers":
        slot = 3 if up_types[b].startswith("CrossAttn") else 1
        return f"output_blocks.{b * per_block + layers}.{slot}.{rest}"
    if what == "resnets":
        head, _, tail = rest.partition(".")
        return f"{blocks}.{index}.0.{_RESNET.get(head, head)}.{tail}"
    sub = {"temp_convs": "0.temopral_conv", "attentions": "1", "temp_attentions": "2"}[what]
    return f"{blocks}.{index}.{sub}.{rest}"


def _vgen_checkpoint(unet) -> dict:
    """The UNet's tensors under VGen names; temporal projections as 1-wide Conv1d kernels, as in VGen."""
    cfg = unet.config
    out = {}
    for k, v in unet.state_dict().items():
        name = _vgen_name(k, cfg.layers_per_block, cfg.up_block_types)
        temporal = k.startswith("transformer_in.") or ".temp_attentions." in k
        if temporal and re.search(r"\.proj_(in|out)\.(base_layer\.)?weight$", k):
            v = v[..., None]
        out[name] = v.clone()
    assert len(out) == len(unet.state_dict())
    return {"state_dict": out}


def _amg_unet(folder, seed=5):
    unet = prepare_unet(load_base(folder).unet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n or n.startswith("conv_in."):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return unet


def _run(unet, x, e, t=400):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=e).sample


@pytest.mark.parametrize("layers", [1, 2])
def test_vgen_checkpoint_imports_to_the_same_unet(tmp_path, layers):
    folder = build_tiny_text_to_video(tmp_path / "t2v", layers_per_block=layers)
    native = _amg_unet(folder)
    ckpt = _vgen_checkpoint(native)
    assert ckpt["state_dict"]["input_blocks.0.0.weight"].shape[1] == 8
    assert any(k.endswith("attn1.to_q_lora.down_linear.weight") for k in ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "amg.pth")
    imported = import_vgen_unet(load_checkpoint(tmp_path / "amg.pth"), load_base(folder).unet.config)
    assert imported.config.in_channels == 8
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(1, 8, 3, 8, 8, generator=g), torch.randn(1, 16, 32, generator=g)
    # the same tensors bit for bit; outputs agree to float rounding (oneDNN's CPU kernels depend on memory
    # alignment: even a deepcopy of one model differs from it by ~1e-6)
    mine, theirs = imported.state_dict(), native.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert (_run(imported, x, e) - _run(native, x, e)).abs().max().item() <= 1e-5


def test_mismatched_checkpoints_are_one_line_errors(tmp_path):
    folder = build_tiny_text_to_video(tmp_path / "t2v")
    config = load_base(folder).unet.config
    sd = _vgen_checkpoint(_amg_unet(folder))["state_dict"]
    with pytest.raises(AmgError, match="fits no block"):
        import_vgen_unet({**sd, "output_blocks.9.0.in_layers.0.weight": torch.zeros(3)}, config)
    dropped = dict(sd)
    del dropped["middle_block.1.proj_in.weight"]
    with pytest.raises(AmgError, match="1 missing"):
        import_vgen_unet(dropped, config)
    no_lora = {k: v for k, v in sd.items() if "to_k_lora.up_linear" not in k}
    with pytest.raises(AmgError, match="LoRA does not fit"):
        import_vgen_unet(no_lora, config)
    torch.save({"state_dict": {"a": 1}, "optimizer": object()}, tmp_path / "bad.pth")
    with pytest.raises(AmgError, match="bad.pth"):
        load_checkpoint(tmp_path / "bad.pth")


def _convert_cfg(overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base=None):
        return compose(config_name="convert", overrides=overrides)


def test_convert_app_converts_and_samples_identically(tmp_path, capsys):
    from amg.build import report_errors
    from amg.convert import run
    from finetune.pipeline import AMGPipeline

    folder = build_tiny_text_to_video(tmp_path / "t2v")
    native = AMGPipeline.from_pretrained(folder, device="cpu")
    with torch.no_grad():
        native.model.unet.load_state_dict(_amg_unet(folder).state_dict())
    torch.save(_vgen_checkpoint(native.model.unet), tmp_path / "amg.pth")
    run(_convert_cfg(["format=vgen", f"checkpoint={tmp_path / 'amg.pth'}", f"base={folder}",
                      f"out={tmp_path / 'converted'}"]), tmp_path / "run")
    assert (tmp_path / "run" / "meta.json").is_file()
    converted = AMGPipeline.from_pretrained(tmp_path / "converted", device="cpu")
    avatar = torch.randint(0, 256, (3, 16, 16, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    kw = dict(num_inference_steps=2, guidance_scale=3.0, seed=3, output_type="latent", progress=False)
    got, want = converted("a man walks", avatar.numpy(), **kw), native("a man walks", avatar.numpy(), **kw)
    assert (got - want).abs().max().item() <= 1e-5
    mine, theirs = converted.model.unet.state_dict(), native.model.unet.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # a user error is one line on stderr and exit status 2 (the app's report_errors)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        report_errors(run)(_convert_cfg(["format=vgen", f"checkpoint={tmp_path / 'no.pth'}", f"base={folder}",
                                         f"out={tmp_path / 'x'}"]), tmp_path / "run2")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(lines) == 1 and "no such checkpoint" in lines[0]
    assert "Traceback" not in err
