"""The AMG video model: a diffusers text-to-video base, a widened first convolution and LoRA.

AMG conditions ModelScope's text-to-video UNet on an avatar video by concatenating the avatar's VAE
latents with the noisy latents on the channel axis. The first convolution grows from 4 to 8 input
channels (old weights and bias copied, new channels zero, so the widened model starts as the base
model), and rank-4 LoRA goes on the query/key/value/output projections of every spatial and temporal
attention. Only LoRA and the first convolution train; an adapter file holds exactly those weights.

``UNet3DConditionModel`` has no diffusers adapter mixin, so LoRA is injected with
``peft.inject_adapter_in_model``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from render.errors import AmgError
from render.io import atomic_path, read_json, write_json

__all__ = [
    "LORA_TARGETS", "ADAPTER_NAME", "VideoModel", "load_base", "widen_conv_in", "add_lora",
    "mark_trainable", "trainable_state_dict", "base_fingerprint", "fingerprints_match", "save_adapter",
    "load_adapter", "lora_scale", "move", "encode_prompt", "encode_video", "decode_latents", "prepare_unet",
]

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "amg"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
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

    ``fingerprint`` identifies the base weights (see :func:`base_fingerprint`), taken before any
    widening or LoRA so adapters can check they are loaded onto the model they were trained on.
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


def widen_conv_in(unet: torch.nn.Module, extra_channels: int = 4) -> torch.nn.Module:
    """Give ``unet.conv_in`` ``extra_channels`` more input channels, zero-initialised, in place.

    The old kernel and bias are copied, so for any input whose extra channels are ignored (their weights
    are zero) the output is exactly the base model's. The registered config's ``in_channels`` is
    updated, so ``save_pretrained``/``from_pretrained`` round-trip the widened model.
    """
    if extra_channels < 0:
        raise AmgError(f"extra_channels={extra_channels}: expected a non-negative channel count")
    old = unet.conv_in
    new = torch.nn.Conv2d(old.in_channels + extra_channels, old.out_channels, kernel_size=old.kernel_size,
                          stride=old.stride, padding=old.padding, dilation=old.dilation, groups=old.groups,
                          bias=old.bias is not None, padding_mode=old.padding_mode,
                          device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    new.weight.requires_grad_(old.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(old.bias.requires_grad)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet


def add_lora(unet: torch.nn.Module, rank: int = 4, alpha: float | None = None,
             targets: tuple[str, ...] = LORA_TARGETS, dropout: float = 0.0, seed: int = 0) -> torch.nn.Module:
    """Inject LoRA of ``rank`` into every module whose name ends in one of ``targets``, in place.

    In ``UNet3DConditionModel`` these are the projections of every spatial and temporal attention
    (``attentions``, ``temp_attentions`` and ``transformer_in``). ``alpha`` defaults to ``rank`` (scale
    1). LoRA's B matrices start at zero, so a fresh adapter leaves the output exactly unchanged; the A
    matrices are drawn (Kaiming-uniform, peft's default) from ``seed``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise AmgError(f"rank={rank}: expected a LoRA rank >= 1")
    config = LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, lora_dropout=dropout,
                        target_modules=list(targets), init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)
    unet._amg_lora = {"rank": rank, "alpha": float(rank if alpha is None else alpha), "targets": list(targets)}
    return unet


def _lora_layers(unet: torch.nn.Module) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in unet.modules() if isinstance(m, LoraLayer)]


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
    """The weights an adapter file holds: every LoRA matrix and the widened ``conv_in``, as float32 copies."""
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in unet.state_dict().items()
            if "lora_" in k or k.startswith("conv_in.")}


_PROBE_TENSORS = ("time_embedding.linear_1.weight", "conv_out.weight", "conv_norm_out.weight")
_PROBE_CONFIG = ("block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
                 "down_block_types", "up_block_types", "out_channels")


def base_fingerprint(unet: torch.nn.Module) -> dict:
    """A small description of the base UNet: its architecture and a probe of its frozen weights.

    The probe (mean, standard deviation and the first four values of a few tensors that neither
    widening nor LoRA touch, plus the original ``conv_in`` channels) survives a cast to fp16/bf16 within
    :func:`fingerprints_match`'s tolerance, while two differently trained bases differ far beyond it.
    """
    sd = unet.state_dict()
    probe = []
    base_in = int(getattr(unet, "_amg_base_in_channels", unet.config.in_channels))
    conv_in = sd["conv_in.weight"][:, :base_in]
    for t in [conv_in] + [sd[k] for k in _PROBE_TENSORS if k in sd]:
        t = t.detach().float().flatten()
        probe += [t.mean().item(), t.std().item()] + t[:4].tolist()
    config = {k: _jsonable(unet.config[k]) for k in _PROBE_CONFIG if k in unet.config}
    config["in_channels"] = base_in
    return {"config": config, "probe": probe}


def _jsonable(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def fingerprints_match(a: dict, b: dict, rtol: float = 2e-2, atol: float = 2e-3) -> bool:
    """Whether two :func:`base_fingerprint` results describe the same base weights (up to a dtype cast)."""
    if a.get("config") != b.get("config") or len(a.get("probe", [])) != len(b.get("probe", [])):
        return False
    pa, pb = torch.tensor(a["probe"], dtype=torch.float64), torch.tensor(b["probe"], dtype=torch.float64)
    return bool(torch.allclose(pa, pb, rtol=rtol, atol=atol))


def prepare_unet(unet: torch.nn.Module, extra_channels: int = 4, rank: int = 4,
                 targets: tuple[str, ...] = LORA_TARGETS, alpha: float | None = None,
                 seed: int = 0) -> torch.nn.Module:
    """Widen ``conv_in`` and add fresh LoRA: the AMG model before training (output equal to the base's)."""
    unet._amg_base_in_channels = int(unet.config.in_channels)
    widen_conv_in(unet, extra_channels)
    add_lora(unet, rank=rank, alpha=alpha, targets=targets, seed=seed)
    return unet



def save_adapter(unet: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict,
                 extra: dict | None = None) -> Path:
    """Write ``adapter.safetensors`` (LoRA + ``conv_in``) and ``adapter.json`` into ``directory``.

    ``adapter.json`` records the LoRA rank, alpha and targets, the base and widened ``conv_in``
    channel counts and the base model's fingerprint; ``extra`` is stored alongside (e.g. the step).
    """
    from safetensors.torch import save_file

    lora = getattr(unet, "_amg_lora", None)
    if lora is None:
        raise AmgError("save_adapter: the UNet has no AMG LoRA; call prepare_unet or load_adapter first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / ADAPTER_WEIGHTS) as tmp:
        save_file(trainable_state_dict(unet), str(tmp))
    config = {
        "format": "amg-adapter/1",
        "rank": lora["rank"], "alpha": lora["alpha"], "targets": lora["targets"],
        "conv_in": {"base_in_channels": int(getattr(unet, "_amg_base_in_channels", 4)),
                    "in_channels": int(unet.conv_in.in_channels)},
        "base": fingerprint,
        **(extra or {}),
    }
    write_json(directory / ADAPTER_CONFIG, config)
    return directory


def load_adapter(unet: torch.nn.Module, directory: str | os.PathLike, fingerprint: dict) -> torch.nn.Module:
    """Turn a base UNet into the trained AMG UNet stored in ``directory``, in place.

    ``fingerprint`` is the base model's (:attr:`VideoModel.fingerprint`); an adapter trained on another
    base raises :class:`AmgError`. The UNet may be the plain base (it is widened and given LoRA here) or
    one already prepared with the same shapes.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path, weights_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not cfg_path.is_file() or not weights_path.is_file():
        raise AmgError(f"{directory}: not an AMG adapter (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    config = read_json(cfg_path)
    try:
        shape = {"rank": int(config["rank"]), "alpha": float(config["alpha"]), "targets": tuple(config["targets"]),
                 "in_channels": int(config["conv_in"]["in_channels"])}
        if not isinstance(config.get("base"), dict):
            raise KeyError("base")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AmgError(f"{cfg_path}: not an AMG adapter config ({type(e).__name__}: {e}); expected rank, alpha, "
                       "targets, conv_in and base") from None
    if not fingerprints_match(config["base"], fingerprint):
        raise AmgError(f"{directory}: adapter was trained on a different base model than the one loaded")
    if getattr(unet, "_amg_lora", None) is None:
        unet._amg_base_in_channels = int(unet.config.in_channels)
        widen_conv_in(unet, shape["in_channels"] - unet.conv_in.in_channels)
        add_lora(unet, rank=shape["rank"], alpha=shape["alpha"], targets=shape["targets"])
    try:
        state = load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise AmgError(f"{weights_path}: not a readable safetensors file ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else 'empty'})") from None
    own = unet.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in trainable_state_dict(unet) if k not in state]
    if bad or missing:
        raise AmgError(f"{weights_path}: weights do not fit this UNet ({len(bad)} unexpected, "
                       f"{len(missing)} missing tensors)")
    unet.load_state_dict(state, strict=False)
    return unet


@contextlib.contextmanager
def lora_scale(unet: torch.nn.Module, scale: float) -> Iterator[None]:
    """Run the block with every LoRA layer scaled by ``scale`` (0 disables LoRA: the base model's output).

    The ``requires_grad`` flags of the LoRA weights are left as they were.
    """
    layers = _lora_layers(unet)
    flags = [(p, p.requires_grad) for m in layers for n, p in m.named_parameters() if "lora_" in n]
    try:
        for m in layers:
            if scale == 0:
                m.enable_adapters(False)
            else:
                m.enable_adapters(True)
                m.set_scale(ADAPTER_NAME, scale)
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
            m.set_scale(ADAPTER_NAME, 1.0)
        for p, flag in flags:
            p.requires_grad_(flag)


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
