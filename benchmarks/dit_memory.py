"""Training memory of AMG on the released Wan and CogVideoX sizes, estimated on the meta device.

For each published transformer config (values from the released ``transformer/config.json``), the
model is built on the meta device (no weights are allocated), widened and given LoRA exactly as
training does, and one forward pass at the backbone's native clip size runs on meta tensors while
``torch.autograd.graph.saved_tensors_hooks`` adds up the bytes autograd keeps for the backward pass
(the activation memory), with and without gradient checkpointing. The estimate of peak training
memory is

    frozen weights (bf16) + trainable weights, gradients and AdamW moments (fp32) + saved activations

(plus the recomputed block under checkpointing, bounded here by one block's activations). The same
count on a tiny model with real tensors equals the meta count (printed as a check), and on CUDA the
tiny model's measured peak is printed beside it.

    python benchmarks/dit_memory.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.methods.amg_cogvideox import prepare_cogvideox  # noqa: E402
from finetune.methods.amg_wan import prepare_wan  # noqa: E402

GIB = 1024 ** 3

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN_14B = dict(WAN_1_3B, num_attention_heads=40, ffn_dim=13824, num_layers=40)
COG_2B = dict(num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
              text_embed_dim=4096, num_layers=30, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
              temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=False)
COG_5B = dict(COG_2B, num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True)


class _FlashLikeAttention(torch.autograd.Function):
    """SDPA that keeps only q, k, v and the output for backward, as flash / memory-efficient attention do
    on CUDA (CPU and meta fall back to the math kernel, which would keep the full attention matrix)."""

    @staticmethod
    def forward(ctx, q, k, v, kwargs):
        with torch.no_grad():
            out = _SDPA(q, k, v, **kwargs)
        ctx.save_for_backward(q, k, v, out)
        ctx.kwargs = kwargs
        return out

    @staticmethod
    def backward(ctx, grad):
        # as flash attention does: recompute the attention from q, k, v instead of having stored it
        q, k, v, _ = ctx.saved_tensors
        with torch.enable_grad():
            qkv = [t.detach().requires_grad_() for t in (q, k, v)]
            out = _SDPA(*qkv, **ctx.kwargs)
            dq, dk, dv = torch.autograd.grad(out, qkv, grad)
        return dq, dk, dv, None


_SDPA = torch.nn.functional.scaled_dot_product_attention


def _flash_like(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    return _FlashLikeAttention.apply(query, key, value, dict(attn_mask=attn_mask, dropout_p=dropout_p,
                                                            is_causal=is_causal, scale=scale))


def saved_bytes(run) -> int:
    """Bytes of the tensors autograd saves for backward while ``run()`` executes (activation memory),
    attention counted as flash attention keeps it."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    torch.nn.functional.scaled_dot_product_attention = _flash_like
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
    finally:
        torch.nn.functional.scaled_dot_product_attention = _SDPA
    return total


def wan_case(config: dict, frames: int, height: int, width: int, device: str, dtype=torch.bfloat16):
    from diffusers import WanTransformer3DModel

    with torch.device(device):
        model = WanTransformer3DModel(**config).to(dtype)
    prepare_wan(model, rank=16)
    f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    with torch.device(device):
        x = torch.zeros(1, 32, f, h, w, dtype=dtype)
        e = torch.zeros(1, 512, config["text_dim"], dtype=dtype)
        t = torch.zeros(1)

    def forward():
        return model(hidden_states=x, timestep=t, encoder_hidden_states=e, return_dict=False)[0]

    return model, forward


def cog_case(config: dict, frames: int, height: int, width: int, device: str, dtype=torch.bfloat16):
    from diffusers import CogVideoXTransformer3DModel

    with torch.device(device):
        model = CogVideoXTransformer3DModel(**config).to(dtype)
    prepare_cogvideox(model, rank=16)
    f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    with torch.device(device):
        x = torch.zeros(1, f, 32, h, w, dtype=dtype)
        e = torch.zeros(1, config["max_text_seq_length"], config["text_embed_dim"], dtype=dtype)
        t = torch.zeros(1, dtype=torch.long)
    rotary = None
    if config.get("use_rotary_positional_embeddings"):
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        head = config["attention_head_dim"]
        grid = (h // 2, w // 2)
        cos, sin = get_3d_rotary_pos_embed(head, ((0, 0), grid), grid, f, device="cpu")
        rotary = (cos.to(device), sin.to(device))

    def forward():
        return model(hidden_states=x, encoder_hidden_states=e, timestep=t, image_rotary_emb=rotary, return_dict=False)[0]

    return model, forward


def estimate(model, forward, checkpointing: bool) -> dict:
    trainable = [p for n, p in model.named_parameters() if "lora_" in n or "patch_emb" in n]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    acts = saved_bytes(forward)
    n_total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable)
    weights = (n_total - n_train) * 2
    optim = n_train * 16  # fp32 weight + gradient + two AdamW moments
    return {"params": n_total, "trainable": n_train, "weights": weights, "optim": optim, "acts": acts,
            "peak": weights + optim + acts}


def main() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    print("AMG training memory, estimated on the meta device (bf16 frozen weights, fp32 LoRA/patch-embedding + AdamW,")
    print("LoRA rank 16 on q/k/v/out of every attention, one clip per step at the backbone's native size)\n")
    cases = [("Wan2.1-T2V-1.3B", wan_case, WAN_1_3B, (81, 480, 832)),
             ("Wan2.1-T2V-14B", wan_case, WAN_14B, (81, 480, 832)),
             ("CogVideoX-2b", cog_case, COG_2B, (49, 480, 720)),
             ("CogVideoX-5b", cog_case, COG_5B, (49, 480, 720))]
    print(f"{'model':18s} {'params':>8s} {'trainable':>10s} {'weights':>8s} {'optim':>7s} "
          f"{'acts':>8s} {'acts(ckpt)':>10s} {'peak':>8s} {'peak(ckpt)':>10s}  GiB")
    for name, case, config, (f, h, w) in cases:
        plain = estimate(*case(config, f, h, w, "meta"), checkpointing=False)
        ckpt = estimate(*case(config, f, h, w, "meta"), checkpointing=True)
        per_block = plain["acts"] / config["num_layers"]
        ckpt_peak = ckpt["peak"] + per_block  # one block's activations alive while it is recomputed
        print(f"{name:18s} {plain['params'] / 1e9:7.2f}B {plain['trainable'] / 1e6:9.1f}M "
              f"{plain['weights'] / GIB:8.2f} {plain['optim'] / GIB:7.2f} {plain['acts'] / GIB:8.2f} "
              f"{(ckpt['acts'] + per_block) / GIB:10.2f} {plain['peak'] / GIB:8.2f} {ckpt_peak / GIB:10.2f}")

    # the count on meta tensors equals the count on real tensors (tiny configs)
    tiny_wan = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=32, num_layers=2)
    tiny_cog = dict(COG_2B, num_attention_heads=4, attention_head_dim=8, time_embed_dim=2, text_embed_dim=32,
                    num_layers=1, sample_width=2, sample_height=2, sample_frames=9, max_text_seq_length=16)
    print("\ncheck on tiny configs (fp32): saved-activation bytes on meta vs on real CPU tensors")
    for name, case, config, size in (("wan", wan_case, tiny_wan, (9, 32, 32)), ("cogvideox", cog_case, tiny_cog, (9, 16, 16))):
        meta = estimate(*case(config, *size, "meta", torch.float32), checkpointing=False)["acts"]
        real = estimate(*case(config, *size, "cpu", torch.float32), checkpointing=False)["acts"]
        line = f"  {name:10s} meta {meta / 1024:8.1f} KiB  real {real / 1024:8.1f} KiB  ratio {meta / real:.3f}"
        if torch.cuda.is_available():
            model, forward = case(config, *size, "cuda", torch.float32)
            estimate(model, lambda: None, checkpointing=False)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            forward().float().square().mean().backward()
            torch.cuda.synchronize()
            line += f"  measured CUDA peak {(torch.cuda.max_memory_allocated() - base) / 1024:8.1f} KiB"
        print(line)


if __name__ == "__main__":
    main()
