"""What the diffusion-transformer families (Wan, CogVideoX) share: the widened patch embedding and a fingerprint.

AMG's conditioning carries over to a DiT unchanged: the avatar video's VAE latents are concatenated
with the noisy latents on the channel axis, so the patch embedding (the first layer that sees the
channels) takes twice its channels; the new input channels start at zero so the widened model is
exactly the base model until training moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..adapters import widen_input
from ..model import probe_tensors

__all__ = ["widen_submodule", "dit_fingerprint", "fingerprints_match", "t5_prompt_embeds", "EncodedClip",
           "EncodedClipDataset"]


def widen_submodule(model: torch.nn.Module, name: str, extra_channels: int,
                    config_key: str | None = "in_channels") -> torch.nn.Module:
    """Replace ``model.<name>`` (a Conv or Linear layer) by :func:`finetune.adapters.widen_input` of it.

    ``config_key`` (when given) is re-registered in the model's diffusers config as the new channel
    count divided by what the layer's input holds per channel (1 for a convolution; the patch area for
    CogVideoX's linear patch projection), so ``save_pretrained``/``from_pretrained`` round-trip.
    """
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    per_channel = 1
    if config_key is not None and isinstance(old, torch.nn.Linear):
        per_channel = old.in_features // int(model.config[config_key])
    setattr(parent, child, widen_input(old, extra_channels * per_channel))
    if config_key is not None:
        model.register_to_config(**{config_key: int(model.config[config_key]) + extra_channels})
    return model


def dit_fingerprint(model: torch.nn.Module, probe: tuple[str, ...], config_keys: tuple[str, ...]) -> dict:
    """Architecture and a probe of frozen weights (tensors ``probe``, which widening/LoRA/training leave alone).

    As :func:`finetune.model.base_fingerprint`: mean, std and first values of each probed tensor, so a
    dtype cast still matches and another base does not.
    """
    config = {k: (list(v) if isinstance(v, (tuple, list)) else v) for k in config_keys
              if (v := model.config.get(k)) is not None}
    return {"version": 2, "class": type(model).__name__, "config": config,
            "probe": probe_tensors(model.state_dict(), probe)}


@torch.no_grad()
def t5_prompt_embeds(pipeline_cls, text_encoder, tokenizer, prompts: list[str],
                     max_sequence_length: int) -> torch.Tensor:
    """Text embeddings ``(B, L, D)`` computed by ``pipeline_cls._get_t5_prompt_embeds`` itself (Wan and
    CogVideoX pipelines), without building the pipeline: training sees exactly what sampling sees."""
    import types

    device = next(text_encoder.parameters()).device
    holder = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, _execution_device=device)
    return pipeline_cls._get_t5_prompt_embeds(holder, prompt=prompts, max_sequence_length=max_sequence_length,
                                              device=device, dtype=text_encoder.dtype)


def fingerprints_match(a: dict, b: dict, rtol: float = 2e-2, atol: float = 2e-3) -> bool:
    """Whether two :func:`dit_fingerprint` results describe the same base weights (up to a dtype cast)."""
    if a.get("class") != b.get("class") or a.get("config") != b.get("config"):
        return False
    pa, pb = a.get("probe", []), b.get("probe", [])
    if len(pa) != len(pb) or not pa:
        return False
    return bool(torch.allclose(torch.tensor(pa, dtype=torch.float64), torch.tensor(pb, dtype=torch.float64),
                               rtol=rtol, atol=atol))


@dataclass
class EncodedClip:
    """An encoded training clip: ``video`` and ``avatar`` latents (the family's layout), caption embedding
    ``text`` ``(L, D)``."""

    video: torch.Tensor
    avatar: torch.Tensor
    text: torch.Tensor


class EncodedClipDataset(torch.utils.data.Dataset):
    """A :class:`finetune.data.ClipDataset` through a family's VAE and text encoder (each clip once, kept in memory).

    ``encode_video`` maps ``(1, 3, F, H, W)`` in [-1, 1] to latents with a batch axis; ``encode_text``
    maps a list of one caption to ``(1, L, D)``. ``F`` must be ``4n + 1`` (the causal video VAEs).
    """

    def __init__(self, clips, encode_video: Callable, encode_text: Callable, temporal_factor: int = 4):
        from render.errors import AmgError

        if (clips.num_frames - 1) % temporal_factor:
            raise AmgError(f"num_frames={clips.num_frames}: this backbone needs {temporal_factor}n + 1 frames")
        self.clips, self.encode_video, self.encode_text = clips, encode_video, encode_text
        self._cache: dict[int, EncodedClip] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> EncodedClip:
        if i not in self._cache:
            c = self.clips[i]
            self._cache[i] = EncodedClip(video=self.encode_video(c.video[None])[0].cpu(),
                                         avatar=self.encode_video(c.avatar[None])[0].cpu(),
                                         text=self.encode_text([c.caption])[0].cpu())
        return self._cache[i]

    @staticmethod
    def collate(samples: list[EncodedClip]) -> EncodedClip:
        """Stack samples into a batch."""
        return EncodedClip(*(torch.stack([getattr(s, k) for s in samples]) for k in ("video", "avatar", "text")))
