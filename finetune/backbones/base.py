"""What every backbone family shares: the loaded components, freezing, moving, VAE encode/decode, fingerprint.

A :class:`Backbone` holds a diffusers model folder's components in the libraries' own classes; the
family loaders (``modelscope``, ``svd``, ``animatediff``) fill it. VAE latents are per frame here:
``(N, 4, h, w)`` for ``N`` frames; each family's method arranges them as its UNet wants (ModelScope and
AnimateDiff ``(B, C, F, h, w)``, SVD ``(B, F, C, h, w)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from render.errors import AmgError

from ..model import base_fingerprint, move

__all__ = ["BackboneSpec", "Backbone", "freeze", "move", "encode_frames", "decode_frames", "base_fingerprint", "require_folders",
           "MODULES"]

# the components a backbone may hold that are torch modules (moved, cast and frozen together)
MODULES = ("unet", "transformer", "vae", "text_encoder", "image_encoder")


@dataclass
class Backbone:
    """A diffusers base model: ``family`` names the loader; components absent in a family are None.

    ``fingerprint`` identifies the base UNet's weights (:func:`finetune.model.base_fingerprint`), taken
    at load time before any method attaches to it.
    """

    family: str
    folder: Path
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    text_encoder: torch.nn.Module | None = None
    tokenizer: object | None = None
    image_encoder: torch.nn.Module | None = None
    feature_extractor: object | None = None
    fingerprint: dict = field(default_factory=dict)
    #: the denoiser of diffusion-transformer families (Wan, CogVideoX), whose ``unet`` is None
    transformer: torch.nn.Module | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch modules present, by component name."""
        return {k: getattr(self, k) for k in MODULES if getattr(self, k) is not None}

    def to(self, device: str | torch.device, dtype: torch.dtype) -> "Backbone":
        """Move (and cast) every module; returns self."""
        for m in self.modules().values():
            move(m, device, dtype)
        return self


@dataclass
class BackboneSpec:
    """Which base model to load: the loader ``family`` (``modelscope``, ``svd``, ``animatediff``), the
    diffusers folder ``path`` and the loader's extra keyword ``options`` (e.g. AnimateDiff's
    ``motion_adapter`` folder). ``conf/backbone/*.yaml`` build one with ``_target_``.
    """

    family: str
    path: str
    options: dict = field(default_factory=dict)

    def load(self, **kw) -> "Backbone":
        """Load the folder with the family's loader (``kw``: ``dtype``, ``device``)."""
        from . import LOADERS

        if self.family not in LOADERS:
            raise AmgError(f"backbone family {self.family!r}: expected one of {', '.join(LOADERS)}")
        return LOADERS[self.family](self.path, **dict(self.options), **kw)


def freeze(*modules: torch.nn.Module, device: str | torch.device | None = None) -> None:
    """No gradients and eval mode for each module (a frozen base), moved to ``device`` when given."""
    for m in modules:
        if m is not None:
            m.requires_grad_(False)
            m.eval()
            if device is not None:
                m.to(device)


def require_folders(folder: str | os.PathLike, names: tuple[str, ...], what: str) -> Path:
    """``folder`` as a Path after checking it holds every sub-folder in ``names``; AmgError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AmgError(f"{folder}: no such model folder; expected a {what} folder (diffusers layout)")
    missing = [c for c in names if not (folder / c).is_dir()]
    if missing:
        raise AmgError(f"{folder}: not a {what} folder (missing {', '.join(missing)})")
    return folder


@torch.no_grad()
def encode_frames(vae: torch.nn.Module, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Scaled VAE latents ``(N, 4, H/s, W/s)`` (posterior mode) of frames ``(N, 3, H, W)`` in [-1, 1]."""
    p = next(vae.parameters())
    frames = frames.to(p.device, p.dtype)
    lat = torch.cat([vae.encode(frames[i:i + chunk]).latent_dist.mode() for i in range(0, len(frames), chunk)])
    return lat * vae.config.scaling_factor


@torch.no_grad()
def decode_frames(vae: torch.nn.Module, latents: torch.Tensor, chunk: int = 8,
                  num_frames: int | None = None) -> torch.Tensor:
    """Frames ``(N, 3, H, W)`` in [-1, 1] (float32, unclamped) from scaled latents ``(N, 4, h, w)``.

    A temporal decoder (SVD's ``AutoencoderKLTemporalDecoder``) mixes the frames of one chunk, so it is
    given ``num_frames`` = the chunk length, as diffusers' SVD pipeline does.
    """
    import inspect

    p = next(vae.parameters())
    flat = (latents / vae.config.scaling_factor).to(p.device, p.dtype)
    temporal = "num_frames" in inspect.signature(vae.decode).parameters
    out = []
    for i in range(0, len(flat), chunk):
        part = flat[i:i + chunk]
        kw = {"num_frames": len(part)} if temporal else {}
        out.append(vae.decode(part, **kw).sample)
    return torch.cat(out).float()
