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
    """Mixin for a diffusers pipeline whose ``transformer`` carries a LoRA adapter (and defines ``save_adapter``).

    ``save_pretrained`` writes diffusers' folder layout with a plain widened transformer (a LoRA-injected
    model saved as is would not load back), the LoRA merged into it (``merged``, as peft's
    ``merge_and_unload``) or kept in ``adapter/`` in peft's layout.
    """

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
