"""Tiny random text-to-video and CLIP models saved in the libraries' own folder layouts.

No model hub is reachable, so tests, benchmarks and the apps' tests build these at run time. The
text-to-video folder has the layout of ModelScope's text-to-video-ms-1.7b in diffusers
(``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), so
everything that loads the real model loads these, and diffusers' own ``TextToVideoSDPipeline`` can load
them too. Weights are random but seeded: the same seed gives the same weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["build_tiny_text_to_video", "build_tiny_clip", "tiny_tokenizer", "write_tiny_clips", "TINY_MAX_TOKENS",
           "unit_scaling_factor"]

TINY_MAX_TOKENS = 16
_TINY_TEXT_DIM = 32


def save_components(folder: str | os.PathLike, **components) -> Path:
    """Save each component (a diffusers/transformers object) into ``folder/<name>`` with its own
    ``save_pretrained``: a pipeline folder's layout without the pipeline class."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, component in components.items():
        component.save_pretrained(folder / name)
    return folder


@torch.no_grad()
def unit_scaling_factor(vae, side: int = 32, count: int = 8, seed: int = 0) -> float:
    """The ``scaling_factor`` that gives ``vae``'s latents unit standard deviation on image-like inputs.

    Stable Diffusion's 0.18215 was chosen the same way for its trained VAE. A random VAE's latents are far
    smaller (a tiny SVD VAE's scaled latents had std 0.06), so under a diffusion schedule made for unit
    latents every noise level drowns the signal and a tiny model cannot learn what its conditioning says.
    The inputs are ``count`` smooth random colour fields ``(3, side, side)`` in [-1, 1] (random 4x4 grids
    upsampled bilinearly) with a bright square each, rendered from ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=gen) * 2 - 1
    images = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    corner = torch.randint(0, side - side // 4, (count, 2), generator=gen)
    for i, (y, x) in enumerate(corner.tolist()):
        images[i, :, y:y + side // 4, x:x + side // 4] = 0.9
    p = next(vae.parameters())
    latents = vae.encode(images.to(p.device, p.dtype)).latent_dist.mode()
    return float(f"{1.0 / float(latents.float().std()):.4g}")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE vocabularies (CLIP, GPT-2) are written in."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
                 + list(range(ord("\xae"), ord("\xff") + 1)))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_tokenizer(max_length: int = TINY_MAX_TOKENS):
    """A CLIP BPE tokenizer over single bytes plus a few merged words, built without any file.

    Every text tokenizes (unknown words fall back to bytes); ``max_length`` is the padded length.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = []
    # a handful of merges so that common words become single tokens, as in a real vocabulary
    for word in ("a", "man", "woman", "walks", "runs", "dances", "park", "beach", "street"):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merged = left + right
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((left, right))
            pieces = [merged] + pieces[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def _text_config(vocab_size: int, max_length: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=_TINY_TEXT_DIM, intermediate_size=37,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=max_length,
                          projection_dim=16, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                          pad_token_id=vocab_size - 1)


def build_tiny_text_to_video(folder: str | os.PathLike, seed: int = 0, sample_size: int = 16,
                             block_out_channels: tuple[int, ...] = (32, 64), layers_per_block: int = 1,
                             in_channels: int = 4) -> Path:
    """Write a random text-to-video model in diffusers layout to ``folder`` and return the path.

    The UNet is a ``UNet3DConditionModel`` with cross-attention down/up blocks and the same spatial and
    temporal attention structure as ModelScope's; the VAE halves the resolution once (a 32x32 video has
    16x16 latents); the text encoder has width 32 and ``TINY_MAX_TOKENS`` positions; the scheduler is
    DDIM with ModelScope's betas. ``sample_size`` is the latent side the UNet advertises.
    """
    from diffusers import DDIMScheduler

    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae, tokenizer, text_encoder = _random_video_components(
            sample_size, tuple(block_out_channels), layers_per_block, in_channels)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              num_train_timesteps=1000, prediction_type="epsilon")
    save_components(folder, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    import diffusers

    index = {
        "_class_name": "TextToVideoSDPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def _random_video_components(sample_size, block_out_channels, layers_per_block, in_channels):
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel

    n = len(block_out_channels)
    unet = UNet3DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        cross_attention_dim=_TINY_TEXT_DIM, attention_head_dim=4, norm_num_groups=32)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32),
                        layers_per_block=1, latent_channels=4, norm_num_groups=16,
                        sample_size=sample_size * 2)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), TINY_MAX_TOKENS))
    return unet, vae, tokenizer, text_encoder


def build_tiny_clip(folder: str | os.PathLike, seed: int = 0, image_size: int = 32) -> Path:
    """Write a random ``CLIPModel`` (text and vision towers, projection 16) plus its tokenizer to ``folder``.

    The image side is ``image_size`` with 8-pixel patches; ``preprocessor_config.json`` records the
    crop size and the CLIP normalisation so the metrics read them from the folder as for a real model.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    text = _text_config(len(tokenizer), TINY_MAX_TOKENS)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=image_size, patch_size=8, projection_dim=16)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    pre = {
        "crop_size": {"height": image_size, "width": image_size},
        "size": {"shortest_edge": image_size},
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "CLIPImageProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    return folder


def write_tiny_clips(folder: str | os.PathLike, count: int = 4, frames: int = 6, side: int = 16,
                     fps: float | None = None, seed: int = 0) -> Path:
    """Write ``count`` small training clips and their avatar videos plus ``manifest.jsonl``; return its path.

    Each clip shows a coloured block sliding over a tinted background and its avatar video the same
    block in white on black (frame-aligned, as a rendered avatar is), so a model can learn to place
    the content where the avatar is. Paths in the manifest are relative to ``folder``.
    """
    import numpy as np

    from render.video import write_video

    from .data import AMG_FPS, ClipRecord, write_manifest

    fps = AMG_FPS if fps is None else fps
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    captions = ["a man walks in a park", "a woman runs on a beach", "a man dances on a street"]
    records = []
    for i in range(count):
        video = np.zeros((frames, side, side, 3), np.uint8)
        video[..., :] = rng.integers(30, 120, 3)
        avatar = np.zeros_like(video)
        colour = rng.integers(150, 256, 3)
        y0, speed = int(rng.integers(0, side // 2)), int(rng.integers(1, 3))
        for f in range(frames):
            x0 = (f * speed + 2 * i) % (side - side // 4)
            rows, cols = slice(y0, y0 + side // 2), slice(x0, x0 + side // 4)
            video[f, rows, cols] = colour
            avatar[f, rows, cols] = 255
        write_video(folder / f"clip{i}.mp4", video, fps)
        write_video(folder / f"avatar{i}.mp4", avatar, fps)
        records.append(ClipRecord(video=f"clip{i}.mp4", avatar=f"avatar{i}.mp4", caption=captions[i % 3],
                                  frames=(0, frames), fps=fps))
    return write_manifest(folder / "manifest.jsonl", records)
