"""Tiny random diffusion-transformer video models (Wan 2.x, Wan VACE, CogVideoX) in diffusers' folder layouts.

No model hub is reachable, so tests and benchmarks build these at run time with the stock pipelines'
own ``save_pretrained`` (``model_index.json`` + one folder per component), so that the stock pipelines
and this package's loaders read the same folders. The text side is a tiny T5 encoder (UMT5 for Wan, T5
for CogVideoX, as the real models) over the byte-level tokenizer of :func:`finetune.tiny.tiny_tokenizer`
(no tokenizer file is needed). Weights are random but seeded.

Shapes: Wan's VAE compresses 8x in space and 4x in time (``4n + 1`` frames -> ``n + 1`` latent frames,
16 channels) as the real one; CogVideoX's the same with 4 latent channels here (16 in the real model).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["build_tiny_wan", "build_tiny_cogvideox", "TINY_TEXT_LENGTH"]

# prompt length in tokens for the tiny models (the real ones use 512 (Wan) and 226 (CogVideoX))
TINY_TEXT_LENGTH = 16
_TEXT_DIM = 32


def _tiny_t5(tokenizer, umt5: bool):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    cls, config_cls = (UMT5EncoderModel, UMT5Config) if umt5 else (T5EncoderModel, T5Config)
    config = config_cls(vocab_size=len(tokenizer), d_model=_TEXT_DIM, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return cls(config)


def build_tiny_wan(folder: str | os.PathLike, seed: int = 0, vace: bool = False, num_layers: int = 2) -> Path:
    """Write a random Wan 2.1 text-to-video model (``WanPipeline`` layout) to ``folder``; ``vace`` writes
    a Wan VACE model (``WanVACEPipeline`` layout, VACE blocks after transformer layers 0 and 2).

    Transformer: 2 heads of 12, ``patch_size (1, 2, 2)``, 16 latent channels; VAE: 8x spatial, 4x
    temporal compression; scheduler: flow-matching Euler (``shift`` 7, as diffusers' tests); UMT5 text
    encoder of width 32.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    from .tiny import tiny_tokenizer

    folder = Path(folder)
    kw = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
              text_dim=_TEXT_DIM, freq_dim=256, ffn_dim=32, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
              rope_max_seq_len=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vace:
            transformer = WanVACETransformer3DModel(num_layers=max(num_layers, 3), vace_layers=[0, 2],
                                                    vace_in_channels=96, **kw)
        else:
            transformer = WanTransformer3DModel(num_layers=num_layers, **kw)
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        tokenizer = tiny_tokenizer(TINY_TEXT_LENGTH)
        text_encoder = _tiny_t5(tokenizer, umt5=True)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    cls = WanVACEPipeline if vace else WanPipeline
    cls(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        transformer=transformer).save_pretrained(folder)
    return folder


def build_tiny_cogvideox(folder: str | os.PathLike, seed: int = 0, version: str = "1.0") -> Path:
    """Write a random CogVideoX text-to-video model (``CogVideoXPipeline`` layout) to ``folder``.

    Transformer: 4 heads of 8, patch 2, 4 latent channels, one layer; VAE: 8x spatial, 4x temporal
    compression; scheduler: ``CogVideoXDDIMScheduler`` (v-prediction); T5 text encoder of width 32.
    ``version="1.5"``: CogVideoX 1.5's transformer (temporal patches of 2 latent frames, a linear patch
    embedding, 3D rotary position embeddings instead of learned ones).
    """
    if version not in ("1.0", "1.5"):
        raise ValueError(f"version={version!r}: expected '1.0' or '1.5'")
    # 1.5: the rotary embedding splits a head 1/4 time, 3/8 height, 3/8 width, so heads of 16
    shape = dict(num_attention_heads=4, attention_head_dim=8)
    if version == "1.5":
        shape.update(patch_size_t=2, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False,
                     attention_head_dim=16)
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, \
        CogVideoXTransformer3DModel

    from .tiny import tiny_tokenizer

    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = CogVideoXTransformer3DModel(
            **shape, in_channels=4, out_channels=4, time_embed_dim=2,
            text_embed_dim=_TEXT_DIM, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
            temporal_compression_ratio=4, max_text_seq_length=TINY_TEXT_LENGTH)
        vae = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
            layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
        tokenizer = tiny_tokenizer(TINY_TEXT_LENGTH)
        text_encoder = _tiny_t5(tokenizer, umt5=False)
    scheduler = CogVideoXDDIMScheduler()
    CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                      scheduler=scheduler).save_pretrained(folder)
    return folder
