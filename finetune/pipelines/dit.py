"""What the diffusion-transformer pipelines share: saving in diffusers' layout with the LoRA kept apart or merged."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.video import read_video

from ..adapters import has_lora, unload_lora

__all__ = ["AdapterFolders"]


class AdapterFolders:
    """Mixin for a diffusers pipeline whose ``transformer`` carries a LoRA adapter.

    A subclass sets ``family``: its backbone's ``(load, prepare, load_adapter, save_adapter)`` functions;
    :meth:`from_base` and :meth:`save_adapter` are the same for every family.

    ``save_pretrained`` writes diffusers' folder layout with a plain widened transformer (a LoRA-injected
    model saved as is would not load back), the LoRA merged into it (``merged``, as peft's
    ``merge_and_unload``) or kept in ``adapter/`` in peft's layout.
    """

    family: tuple = ()
    base_fingerprint: dict = {}

    @classmethod
    def from_base(cls, folder: str | os.PathLike, adapter: str | os.PathLike | None = None, rank: int = 4,
                  device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        """Load a diffusers folder of the family and an adapter folder (peft layout); without one, fresh LoRA
        of ``rank`` and, for a plain base, zero avatar channels (the base model's output). ``dtype``
        defaults to bf16 on CUDA, float32 elsewhere."""
        load, prepare, load_adapter, _ = cls.family
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        b = load(folder, dtype=dtype)
        if adapter is None:
            prepare(b.transformer, rank=rank)
        else:
            load_adapter(b.transformer, adapter, b.fingerprint)
        pipe = cls(tokenizer=b.tokenizer, text_encoder=b.text_encoder, vae=b.vae, scheduler=b.scheduler,
                   transformer=b.transformer.to(dtype))
        pipe.base_fingerprint = b.fingerprint
        return pipe.to(device)

    def save_adapter(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the adapter (LoRA + the widened input layer) in peft's layout."""
        return self.family[3](self.transformer, directory, self.base_fingerprint, extra=extra)

    def save_pretrained(self, folder: str | os.PathLike, merged: bool = False, **kw) -> None:
        live = self.transformer
        self.register_modules(transformer=unload_lora(copy.deepcopy(live), merge=merged))
        try:
            super().save_pretrained(folder, **kw)
        finally:
            self.register_modules(transformer=live)
        if not merged and has_lora(live):
            self.save_adapter(Path(folder) / "adapter")

    def avatar_frames(self, avatar_video, family: str, example: int) -> np.ndarray:
        """The avatar video as uint8 ``(F, H, W, 3)`` from an array, tensor or path, with ``F = 4n + 1``
        (the VAE's temporal compression); :class:`AmgError` naming ``family`` and its ``example`` length."""
        if isinstance(avatar_video, (str, os.PathLike)):
            avatar_video = read_video(avatar_video)[0]
        frames = np.asarray(avatar_video.cpu() if torch.is_tensor(avatar_video) else avatar_video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise AmgError(f"avatar_video {frames.shape} {frames.dtype}: expected uint8 (F, H, W, 3)")
        if (frames.shape[0] - 1) % self.vae_scale_factor_temporal:
            raise AmgError(f"avatar_video has {frames.shape[0]} frames: {family} needs 4n + 1 (e.g. {example})")
        return frames
