"""The AMG video model: a diffusers text-to-video base, a widened first convolution and LoRA.

AMG conditions ModelScope's text-to-video UNet on an avatar video by concatenating the avatar's VAE
latents with the noisy latents on the channel axis. The first convolution grows from 4 to 8 input
channels (old weights and bias copied, new channels zero, so the widened model starts as the base
model), and rank-4 LoRA goes on the query/key/value/output projections of every spatial and temporal
attention. Only LoRA and the first convolution train; an adapter folder holds exactly those weights,
in peft's layout with ``conv_in`` as a module to save (see :mod:`finetune.adapters`).

``UNet3DConditionModel`` has no diffusers adapter mixin, so LoRA is injected with
``peft.inject_adapter_in_model``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from render.errors import AmgError

from . import adapters
from .adapters import ADAPTER_NAME, has_lora, scaled_lora

__all__ = [
    "LORA_TARGETS", "ADAPTER_NAME", "AVATAR_CHANNELS", "VideoModel", "load_base", "widen_conv_in", "add_lora",
    "mark_trainable", "trainable_state_dict", "base_fingerprint", "fingerprints_match", "save_adapter",
    "load_adapter", "scaled_lora", "lora_scale", "move", "encode_prompt", "encode_video", "decode_latents",
    "prepare_unet",
]
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# the avatar video's VAE latents: as many channels as the noisy latents
AVATAR_CHANNELS = 4
_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

# The one table of dtype names (amg.generate's model.dtype, amg.train's mixed precision); "auto": the loader
# decides (fp16 on CUDA, fp32 elsewhere).
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None, "fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
    "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def dtype_from_name(name: str, key: str = "dtype") -> torch.dtype | None:
    """The torch dtype called ``name`` in :data:`DTYPES`; an unknown name is an :class:`AmgError` naming ``key``."""
    if str(name) not in DTYPES:
        raise AmgError(f"{key}={name!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[str(name)]


@dataclass
class VideoModel:
    """The five components of a diffusers text-to-video folder (ModelScope text-to-video-ms-1.7b layout).

    ``fingerprint`` identifies the base weights (see :func:`base_fingerprint`), so adapters can check
    they are loaded onto the model they were trained on.
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    folder: Path
    fingerprint: dict


def load_base(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
              device: str | torch.device = "cpu") -> VideoModel:
    """Load ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler`` from a diffusers folder.

    The scheduler is DDIM configured from the folder's scheduler config (AMG samples with 20-step DDIM).
    All modules are frozen and in eval mode. Raises :class:`AmgError` naming the folder when a
    component is missing.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise AmgError(f"{folder}: no such model folder; expected a diffusers text-to-video folder")
    missing = [c for c in _COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise AmgError(f"{folder}: not a diffusers text-to-video folder (missing {', '.join(missing)})")
    unet = UNet3DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
        m.eval()
        m.to(device)
    return VideoModel(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                      folder=folder, fingerprint=base_fingerprint(unet))


def move(module: torch.nn.Module, device: str | torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``module.to(device, dtype)``, passing the dtype only when it changes (diffusers warns on every cast)."""
    current = next(module.parameters()).dtype
    return module.to(device) if current == dtype else module.to(device, dtype)


def widen_conv_in(unet: torch.nn.Module, extra_channels: int = AVATAR_CHANNELS) -> torch.nn.Module:
    """Give ``unet.conv_in`` ``extra_channels`` more input channels, zero-initialised, in place.

    The old kernel and bias are copied, so for any input whose extra channels are ignored (their weights
    are zero) the output is exactly the base model's. The registered config's ``in_channels`` is
    updated, so ``save_pretrained``/``from_pretrained`` round-trip the widened model.
    """
    unet.conv_in = adapters.widen_input(unet.conv_in, extra_channels)
    unet.register_to_config(in_channels=unet.conv_in.in_channels)
    return unet


def is_widened(unet: torch.nn.Module, extra_channels: int = AVATAR_CHANNELS) -> bool:
    """Whether ``unet`` already takes the avatar latents (``in_channels == out_channels + extra``)."""
    return int(unet.config.in_channels) == int(unet.config.out_channels) + extra_channels


def add_lora(unet: torch.nn.Module, rank: int = 4, alpha: float | None = None,
             targets: tuple[str, ...] = LORA_TARGETS, dropout: float = 0.0, seed: int = 0) -> torch.nn.Module:
    """Inject LoRA of ``rank`` into every module whose name ends in one of ``targets``, in place.

    In ``UNet3DConditionModel`` these are the projections of every spatial and temporal attention
    (``attentions``, ``temp_attentions`` and ``transformer_in``). ``alpha`` defaults to ``rank`` (scale
    1). LoRA's B matrices start at zero, so a fresh adapter leaves the output exactly unchanged; the A
    matrices are drawn (Kaiming-uniform, peft's default) from ``seed``. ``conv_in`` is recorded as a
    module to save with the adapter.
    """
    return adapters.add_lora(unet, targets, rank=rank, alpha=alpha, dropout=dropout, seed=seed,
                             modules_to_save=("conv_in",))


def mark_trainable(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freeze everything except LoRA weights and ``conv_in``; return the trainable parameters."""
    unet.requires_grad_(False)
    params = []
    for name, p in unet.named_parameters():
        if "lora_" in name or name.startswith("conv_in."):
            p.requires_grad_(True)
            params.append(p)
    return params


def trainable_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every LoRA matrix and the widened ``conv_in`` under the model's own names, as float32 copies.

    (The adapter file holds the same tensors under peft's names: :func:`finetune.adapters.adapter_state_dict`.)
    """
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in unet.state_dict().items()
            if "lora_" in k or k.startswith("conv_in.")}


# Tensors neither widening nor LoRA touch; conv_in is left out as it trains with the adapter.
_PROBE_TENSORS = ("time_embedding.linear_1.weight", "conv_out.weight", "conv_norm_out.weight")
_PROBE_CONFIG = ("block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
                 "down_block_types", "up_block_types", "out_channels")
_FINGERPRINT_VERSION = 2


def base_fingerprint(unet: torch.nn.Module) -> dict:
    """A small description of the base UNet: its architecture and a probe of its frozen weights.

    The probe (mean, standard deviation and the first four values of a few tensors that neither
    widening, LoRA nor training touch) survives a cast to fp16/bf16 within :func:`fingerprints_match`'s
    tolerance, while two differently trained bases differ far beyond it. It is the same for the base,
    the widened base and the AMG model, so an exported folder's UNet matches its adapter.
    """
    config = {k: _jsonable(unet.config[k]) for k in _PROBE_CONFIG if k in unet.config}
    return {"version": _FINGERPRINT_VERSION, "config": config, "probe": probe_tensors(unet.state_dict(), _PROBE_TENSORS)}


def probe_tensors(state_dict: dict, names: tuple[str, ...]) -> list[float]:
    """Mean, standard deviation and the first four values of each tensor ``names`` present in ``state_dict``
    (under a LoRA wrapper's ``base_layer`` name too): a fingerprint's probe."""
    probe = []
    for k in names:
        key = k if k in state_dict else k.replace(".weight", ".base_layer.weight")
        if key in state_dict:
            t = state_dict[key].detach().float().flatten()
            probe += [t.mean().item(), t.std().item()] + t[:4].tolist()
    return probe


def _jsonable(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def _comparable(fp: dict) -> tuple[dict, list]:
    """Config and probe of a fingerprint; the first format also probed conv_in (6 values) and in_channels."""
    config, probe = dict(fp.get("config", {})), list(fp.get("probe", []))
    if "version" not in fp:
        config.pop("in_channels", None)
        probe = probe[6:]
    return config, probe


def fingerprints_match(a: dict, b: dict, rtol: float = 2e-2, atol: float = 2e-3) -> bool:
    """Whether two :func:`base_fingerprint` results describe the same base weights (up to a dtype cast)."""
    (ca, pa), (cb, pb) = _comparable(a), _comparable(b)
    if ca != cb or len(pa) != len(pb) or not pa:
        return False
    pa, pb = torch.tensor(pa, dtype=torch.float64), torch.tensor(pb, dtype=torch.float64)
    return bool(torch.allclose(pa, pb, rtol=rtol, atol=atol))


def prepare_unet(unet: torch.nn.Module, extra_channels: int = AVATAR_CHANNELS, rank: int = 4,
                 targets: tuple[str, ...] = LORA_TARGETS, alpha: float | None = None,
                 seed: int = 0) -> torch.nn.Module:
    """Widen ``conv_in`` and add fresh LoRA: the AMG model before training (output equal to the base's).

    A UNet that already takes the avatar latents (an exported AMG UNet) is not widened again.
    """
    if not is_widened(unet, extra_channels):
        widen_conv_in(unet, extra_channels)
    add_lora(unet, rank=rank, alpha=alpha, targets=targets, seed=seed)
    return unet


def save_adapter(unet: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict,
                 extra: dict | None = None, base_model_name_or_path: str | None = None) -> Path:
    """Write the AMG adapter (LoRA + ``conv_in``) into ``directory`` in peft's layout.

    ``adapter_config.json`` + ``adapter_model.safetensors`` are what ``PeftModel.save_pretrained``
    writes (``conv_in`` as a module to save); ``amg_adapter.json`` records the base model's fingerprint,
    ``conv_in``'s channel count and ``extra`` (e.g. the step).
    """
    if not has_lora(unet):
        raise AmgError("save_adapter: the UNet has no AMG LoRA; call prepare_unet or load_adapter first")
    info = {"base": fingerprint, "conv_in": {"in_channels": int(unet.conv_in.in_channels)}, **(extra or {})}
    return adapters.save_adapter(unet, directory, info=info, base_model_name_or_path=base_model_name_or_path)


def load_adapter(unet: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict) -> torch.nn.Module:
    """Turn a base UNet into the trained AMG UNet stored in ``directory``, in place.

    ``directory`` is an adapter folder in peft's layout (or the first AMG format, loaded with a notice).
    ``fingerprint`` is the base model's (:attr:`VideoModel.fingerprint`); an adapter trained on another
    base raises :class:`AmgError`. The UNet may be the plain base (it is widened to the saved ``conv_in``
    and given LoRA here) or one already prepared with the same shapes.
    """
    config, tensors, info = adapters.read_adapter(directory)
    base = info.get("base")
    if base is not None and not fingerprints_match(base, fingerprint):
        raise AmgError(f"{directory}: adapter was trained on a different base model than the one loaded")
    saved_conv = tensors.get("conv_in.weight")
    if saved_conv is not None and saved_conv.shape[1] > unet.conv_in.in_channels and not has_lora(unet):
        widen_conv_in(unet, saved_conv.shape[1] - unet.conv_in.in_channels)
    adapters.apply_adapter(unet, config, tensors, source=str(directory))
    return unet


# The context manager's first name; "lora_scale" also names the pipeline's LoRA strength.
lora_scale = scaled_lora


@torch.no_grad()
def encode_prompt(text_encoder: torch.nn.Module, tokenizer, prompts: list[str]) -> torch.Tensor:
    """Text embeddings ``(B, L, D)`` as the stock text-to-video pipeline computes them (padded, truncated)."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    device = next(text_encoder.parameters()).device
    return text_encoder(ids.to(device))[0]


@torch.no_grad()
def encode_video(vae: torch.nn.Module, video: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """VAE latents ``(B, 4, F, H/s, W/s)`` of ``video`` ``(B, 3, F, H, W)`` in [-1, 1], scaled for the UNet.

    Uses the posterior mean, so the same video always gives the same latents (a latent cache stays
    valid). Frames are encoded ``chunk`` at a time to bound memory.
    """
    b, c, f, h, w = video.shape
    p = next(vae.parameters())
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(p.device, p.dtype)
    lat = torch.cat([vae.encode(frames[i:i + chunk]).latent_dist.mode() for i in range(0, b * f, chunk)])
    lat = lat * vae.config.scaling_factor
    return lat.reshape(b, f, *lat.shape[1:]).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def decode_latents(vae: torch.nn.Module, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Video ``(B, 3, F, H, W)`` in [-1, 1] (float32, unclamped) from UNet latents ``(B, 4, F, h, w)``.

    Decodes ``chunk`` frames at a time: the VAE decodes frames independently, and the full 16x256x256
    batch does not fit in small GPUs.
    """
    b, c, f, h, w = latents.shape
    p = next(vae.parameters())
    flat = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(p.dtype)
    frames = torch.cat([vae.decode(flat[i:i + chunk]).sample for i in range(0, b * f, chunk)]).float()
    return frames.reshape(b, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4)
