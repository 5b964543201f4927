"""Import UNet checkpoints in the ModelScope / VGen layout (the official AMG release) into diffusers.

ModelScope's text-to-video UNet, and VGen's code base that AMG was trained in, name the UNet in the
original LDM way: ``input_blocks.*``, ``middle_block.*``, ``output_blocks.*``, ``time_embed.*``,
``out.*``. diffusers' ``UNet3DConditionModel`` holds the same tensors under ``conv_in``,
``transformer_in``, ``down_blocks.*``, ``mid_block.*``, ``up_blocks.*`` (the block renames that
diffusers documents in its ModelScope conversion script). Inside the blocks:

- ``input_blocks.0.0`` is ``conv_in`` (8 input channels in AMG: latents + avatar latents) and
  ``input_blocks.0.1`` the first temporal transformer ``transformer_in``;
- each later input block ``i`` is one layer of a down block: ``.0`` the ResNet (``in_layers.0/2``,
  ``emb_layers.1``, ``out_layers.0/3``, ``skip_connection`` -> ``norm1``, ``conv1``, ``time_emb_proj``,
  ``norm2``, ``conv2``, ``conv_shortcut``) with its temporal convolution ``.0.temopral_conv`` (sic) ->
  ``temp_convs``, ``.1`` the spatial transformer -> ``attentions``, ``.2`` the temporal one ->
  ``temp_attentions``; a block of its own ``input_blocks.i.op`` is the downsampler;
- ``middle_block.0..3`` are ResNet, spatial, temporal transformer, ResNet;
- output block ``j`` is one layer of an up block (layers_per_block + 1 per block), with the
  upsampler's ``conv`` as the last entry of the block's last layer.

Temporal transformers project with 1-wide convolutions in that code (kernels ``(C, C, 1)``) where
diffusers has linear layers; the kernels are squeezed. AMG's LoRA is named
``<attention>.to_{q,k,v,out}_lora.{down,up}_linear.weight`` (rank 4, scale 1); it becomes peft's
``lora_A``/``lora_B`` on ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` with alpha = rank.

AMG's released weights are a whole fine-tuned UNet on VGen's base, so they import whole: every
tensor of the UNet must be in the checkpoint, and every checkpoint tensor must land somewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

from ..adapters import ADAPTER_NAME, add_lora, has_lora
from .checkpoint import load_checkpoint

__all__ = ["load_checkpoint", "vgen_to_diffusers_names", "convert_vgen_state_dict", "import_vgen_unet",
           "import_vgen_pipeline"]

_PREFIXES = ("module.", "model.diffusion_model.", "diffusion_model.", "unet.")
_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
           ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut."))
_LORA = {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"}
_LORA_PART = {"down_linear": "lora_A", "up_linear": "lora_B"}


def _strip_prefix(sd: dict) -> dict:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _block_table(config) -> dict[str, tuple[str, str]]:
    """VGen block prefix -> (diffusers prefix, kind), kind in resnet / temp_conv / attention / plain."""
    n = len(config["block_out_channels"])
    layers = int(config["layers_per_block"])
    down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
    table = {"input_blocks.0.0.": ("conv_in.", "plain"), "input_blocks.0.1.": ("transformer_in.", "attention"),
             "time_embed.0.": ("time_embedding.linear_1.", "plain"),
             "time_embed.2.": ("time_embedding.linear_2.", "plain"),
             "out.0.": ("conv_norm_out.", "plain"), "out.2.": ("conv_out.", "plain")}

    def layer(src: str, dst: str, index: int, cross: bool):
        table[f"{src}.0.temopral_conv."] = (f"{dst}.temp_convs.{index}.", "plain")
        table[f"{src}.0."] = (f"{dst}.resnets.{index}.", "resnet")
        if cross:
            table[f"{src}.1."] = (f"{dst}.attentions.{index}.", "attention")
            table[f"{src}.2."] = (f"{dst}.temp_attentions.{index}.", "attention")

    i = 1
    for b in range(n):
        cross = down_types[b].startswith("CrossAttn")
        for k in range(layers):
            layer(f"input_blocks.{i}", f"down_blocks.{b}", k, cross)
            i += 1
        if b < n - 1:
            table[f"input_blocks.{i}.op."] = (f"down_blocks.{b}.downsamplers.0.conv.", "plain")
            i += 1
    table["middle_block.0.temopral_conv."] = ("mid_block.temp_convs.0.", "plain")
    table["middle_block.0."] = ("mid_block.resnets.0.", "resnet")
    table["middle_block.1."] = ("mid_block.attentions.0.", "attention")
    table["middle_block.2."] = ("mid_block.temp_attentions.0.", "attention")
    table["middle_block.3.temopral_conv."] = ("mid_block.temp_convs.1.", "plain")
    table["middle_block.3."] = ("mid_block.resnets.1.", "resnet")
    j = 0
    for b in range(n):
        cross = up_types[b].startswith("CrossAttn")
        for k in range(layers + 1):
            layer(f"output_blocks.{j}", f"up_blocks.{b}", k, cross)
            if k == layers and b < n - 1:
                table[f"output_blocks.{j}.{3 if cross else 1}.conv."] = (f"up_blocks.{b}.upsamplers.0.conv.", "plain")
            j += 1
    return table


def vgen_to_diffusers_names(keys, config) -> dict[str, str]:
    """Map each VGen/ModelScope key to its ``UNet3DConditionModel`` key (LoRA keys to peft's names).

    ``config`` is the UNet's config (``layers_per_block``, ``block_out_channels``, block types). LoRA
    keys map to ``...to_q.lora_A.amg.weight`` (down) / ``lora_B`` (up). Raises :class:`AmgError`
    naming the first key that fits no block of this config.
    """
    table = _block_table(config)
    # longest prefix first, so ``.0.temopral_conv.`` wins over ``.0.``
    prefixes = sorted(table, key=len, reverse=True)
    out = {}
    for key in keys:
        src = next((p for p in prefixes if key.startswith(p)), None)
        if src is None:
            raise AmgError(f"checkpoint key {key!r}: fits no block of a UNet with "
                           f"{len(config['block_out_channels'])} levels and {config['layers_per_block']} layers "
                           f"per block; expected ModelScope/VGen names")
        dst, kind = table[src]
        rest = key[len(src):]
        if kind == "resnet":
            for old, new in _RESNET:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
        elif kind == "attention":
            parts = rest.split(".")
            if len(parts) >= 3 and parts[-3] in _LORA and parts[-2] in _LORA_PART:
                rest = ".".join(parts[:-3] + [_LORA[parts[-3]], _LORA_PART[parts[-2]], ADAPTER_NAME, parts[-1]])
        out[key] = dst + rest
    return out


def convert_vgen_state_dict(state_dict: dict[str, torch.Tensor], config) -> tuple[dict, dict]:
    """``(base, lora)``: the checkpoint's tensors under diffusers' names, LoRA under peft's.

    Shapes are left as saved (:func:`import_vgen_unet` squeezes 1-wide kernels into linear weights).
    A ``module.`` / ``model.diffusion_model.`` prefix on every key is dropped.
    """
    sd = _strip_prefix(dict(state_dict))
    names = vgen_to_diffusers_names(sd, config)
    base, lora = {}, {}
    for k, v in sd.items():
        (lora if ".lora_" in names[k] else base)[names[k]] = v
    return base, lora


def import_vgen_unet(state_dict: dict[str, torch.Tensor], config: dict):
    """Build the ``UNet3DConditionModel`` a VGen/ModelScope checkpoint holds, LoRA included.

    ``config`` is a ``UNet3DConditionModel`` config (e.g. the base folder's ``unet/config.json``; for
    the official AMG release, ModelScope text-to-video-ms-1.7b's); ``in_channels`` is taken from the
    checkpoint's ``input_blocks.0.0`` (8 for AMG). LoRA found in the checkpoint is injected with its
    rank and scale 1 (alpha = rank) and ``conv_in`` recorded as a module to save, so the result is the
    AMG UNet that :class:`~finetune.pipeline.AMGPipeline` samples with. Every UNet tensor must be
    present and every checkpoint tensor used; otherwise :class:`AmgError`.
    """
    from diffusers import UNet3DConditionModel

    from ..model import LORA_TARGETS

    config = dict(config)
    base, lora = convert_vgen_state_dict(state_dict, config)
    if "conv_in.weight" not in base:
        raise AmgError("checkpoint: no input_blocks.0.0.weight (the first convolution); not a VGen UNet")
    config["in_channels"] = int(base["conv_in.weight"].shape[1])
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(config)
    own = unet.state_dict()
    missing = sorted(set(own) - set(base))
    unexpected = sorted(set(base) - set(own))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise AmgError(f"checkpoint: does not fit the UNet config ({len(missing)} missing, {len(unexpected)} "
                       f"unexpected tensors; first: {first})")
    fitted = {}
    for k, v in base.items():
        want = own[k].shape
        if v.shape != want and v.dim() > len(want) and all(s == 1 for s in v.shape[len(want):]):
            v = v.reshape(want)
        if v.shape != want:
            raise AmgError(f"checkpoint: {k} has shape {tuple(v.shape)}, the UNet config expects {tuple(want)}")
        fitted[k] = v.float()
    unet.load_state_dict(fitted, assign=True)
    unet.requires_grad_(False).eval()
    if lora:
        ranks = {v.shape[0] for k, v in lora.items() if ".lora_A." in k}
        if len(ranks) != 1:
            raise AmgError(f"checkpoint: LoRA of several ranks {sorted(ranks)}; expected one rank")
        rank = ranks.pop()
        targets = sorted({t for t in LORA_TARGETS if any(f".{t}.lora_" in k for k in lora)})
        add_lora(unet, targets, rank=rank, alpha=rank, modules_to_save=("conv_in",))
        own = unet.state_dict()
        expected = {k for k in own if ".lora_" in k}
        if set(lora) != expected:
            extra, absent = sorted(set(lora) - expected), sorted(expected - set(lora))
            raise AmgError(f"checkpoint: LoRA does not fit ({len(extra)} unexpected, {len(absent)} missing; first: "
                           f"{(extra or absent)[0]})")
        unet.load_state_dict({k: v.float() for k, v in lora.items()}, strict=False)
    return unet


def import_vgen_pipeline(checkpoint: str | os.PathLike, base_folder: str | os.PathLike,
                         out_folder: str | os.PathLike, merged: bool = False) -> Path:
    """Convert a VGen/ModelScope checkpoint into an AMG pipeline folder (:meth:`AMGPipeline.save_pretrained`).

    ``base_folder`` is a diffusers text-to-video folder that supplies the UNet config and the VAE, text
    encoder, tokenizer and scheduler. The checkpoint's UNet replaces the base UNet whole.
    """
    from ..model import VideoModel, base_fingerprint, load_base
    from ..pipeline import AMGPipeline

    base = load_base(base_folder)
    unet = import_vgen_unet(load_checkpoint(checkpoint), base.unet.config)
    model = VideoModel(unet=unet, vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                       scheduler=base.scheduler, folder=Path(base_folder), fingerprint=base_fingerprint(unet))
    pipe = AMGPipeline(model, device="cpu", dtype=torch.float32)
    # without LoRA in the checkpoint there is no adapter to keep apart
    return pipe.save_pretrained(out_folder, merged=merged or not has_lora(unet))
