"""What AMG on a diffusion transformer (Wan, CogVideoX) shares: attach, mark trainables, encode clips, batch.

A subclass names its backbone family, its input layer (``input_module``: trained whole with the
LoRA), how it prepares the transformer, how it encodes a video and a caption, and its loss.
"""

from __future__ import annotations

import abc

import torch

from ..backbones.dit import EncodedClipDataset
from ..data import ClipDataset
from .base import ClipSettings, Method

__all__ = ["AmgDitMethod"]


class AmgDitMethod(Method):
    """Base of :class:`~finetune.methods.amg_wan.AmgWanMethod` and
    :class:`~finetune.methods.amg_cogvideox.AmgCogVideoXMethod`."""

    #: the transformer's input layer, trained whole and saved with the adapter
    input_module: str = ""

    def __init__(self, rank: int = 4, max_sequence_length: int = 512, gradient_checkpointing: bool = False):
        self.rank, self.max_sequence_length = rank, max_sequence_length
        self.gradient_checkpointing = gradient_checkpointing

    def options(self) -> dict:
        return {"rank": self.rank, "max_sequence_length": self.max_sequence_length,
                "gradient_checkpointing": self.gradient_checkpointing}

    @abc.abstractmethod
    def prepare(self, transformer: torch.nn.Module, seed: int) -> torch.nn.Module:
        """Widen the input layer and add fresh LoRA (the family's ``prepare_*``)."""

    @abc.abstractmethod
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Latents (with a batch axis) of ``(1, 3, F, H, W)`` in [-1, 1]."""

    @abc.abstractmethod
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Caption embeddings ``(B, L, D)`` as the family's pipeline computes them."""

    @abc.abstractmethod
    def temporal_factor(self) -> int:
        """The VAE's temporal compression (clips have ``factor * n + 1`` frames)."""

    def setup(self, folder, device, dtype, seed):
        self.backbone = b = self.load_backbone(folder)
        self.trained = self.prepare(b.transformer, seed)
        if self.gradient_checkpointing:  # recompute each block in backward (benchmarks/dit_memory.py)
            self.trained.enable_gradient_checkpointing()
        b.to(device, dtype)

    def trainable_parameters(self):
        m = self.trained
        m.requires_grad_(False)
        params = [p for n, p in m.named_parameters() if "lora_" in n or n.startswith(f"{self.input_module}.")]
        for p in params:
            p.requires_grad_(True)
        return params

    def dataset(self, manifest, clips: ClipSettings):
        data = ClipDataset(manifest, num_frames=clips.num_frames, height=clips.height, width=clips.width,
                           fps=clips.fps)
        return EncodedClipDataset(data, self.encode_video, self.encode_text, temporal_factor=self.temporal_factor())

    def collate(self, samples):
        return EncodedClipDataset.collate(samples)
