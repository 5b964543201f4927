"""Reading other code bases' checkpoint files and loading them into a module exactly (shared by the importers)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from render.errors import AmgError

__all__ = ["load_checkpoint", "unwrap_state", "load_exact"]

# wrappers training scripts put around a state dict
_WRAPPERS = ("state_dict", "model", "module", "controlnet")


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.ckpt``/``.bin`` (optionally ``{'state_dict': ...}`` or another wrapper) or
    ``.safetensors`` checkpoint; a diffusers model folder reads its ``diffusion_pytorch_model`` file.

    Tensors only (``weights_only``): no code in the file runs. Anything unreadable is one :class:`AmgError`
    naming the file.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise AmgError(f"{path}: no diffusion_pytorch_model.safetensors/.bin in the model folder")
    if not path.is_file():
        raise AmgError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with objects, a truncated file, or not a checkpoint at all
        raise AmgError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    return unwrap_state(sd, str(path))


def unwrap_state(sd, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint's wrappers (``{'state_dict': ...}``, ``model``, ``module``,
    ``controlnet``); anything but a mapping of tensors is one :class:`AmgError` naming ``where``."""
    for key in _WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise AmgError(f"{where}: expected a state dict of tensors (optionally under 'state_dict')")
    return dict(sd)


def load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Load ``state`` into ``module`` when it holds exactly the module's tensors with their shapes (cast to
    the module's dtypes); otherwise one :class:`AmgError` counting missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        first = (missing or unexpected or bad)[0]
        raise AmgError(f"{what} does not fit: {len(missing)} missing, {len(unexpected)} unexpected, "
                       f"{len(bad)} mis-shaped tensors (first: {first})")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return module
