"""Peak training memory of the trajectory models: only the ControlNet / LoRA trainable vs full fine-tuning.

For each method (LeviTor and the 3D-box model: an SVD ControlNet; Image Conductor: its flow ControlNet,
and its object LoRA stage) on a tiny random backbone, one real training step's forward
(``Method.loss`` on rendered tiny clips) runs twice: with the method's own trainable set, and with the
base UNet trainable too (base UNet, ControlNet and LoRA: full fine-tuning; the VAE and the image/text
encoders stay frozen in both). The peak is estimated as

    weights (every parameter, once) + trainable weights' gradients and AdamW moments (3 x their bytes)
    + the activations autograd saves for backward (``saved_tensors_hooks``; unique storages, parameters
    excluded, so a weight saved by its layer is not counted twice)

which is what a step holds at the start of its backward. The table prints both and their ratio (full /
method); a frozen base also saves less, since autograd keeps no activations on paths no gradient needs.
On CUDA the same script prints the measured peak of each step beside the estimate. A second table
counts the released sizes' weights and optimizer states (built on the meta device, no activations).

    python benchmarks/trajectory_memory.py [--side 32] [--frames 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.methods.box3d import PoseTrajMethod  # noqa: E402
from finetune.methods.image_conductor import ImageConductorMethod  # noqa: E402
from finetune.methods.levitor import LeviTorMethod  # noqa: E402
from finetune.render_clips import RenderClipDataset, collate_render  # noqa: E402
from finetune.testing import build_tiny_animatediff, build_tiny_svd, write_tiny_render_clips  # noqa: E402

MIB = 1024 ** 2


def _modules(method) -> list[torch.nn.Module]:
    b = method.backbone
    mods = [method.unwrapped(), b.unet, b.vae]
    mods += [m for m in (getattr(b, "image_encoder", None), getattr(b, "text_encoder", None)) if m is not None]
    return mods


def _params(method) -> list[torch.nn.Parameter]:
    return _params_of(_modules(method))


def _params_of(modules) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def saved_activation_bytes(run, exclude: set[int]) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``run()`` executes, leaving out
    storages in ``exclude`` (data pointers of the weights, counted once elsewhere)."""
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in exclude:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def step_memory(method, batch, full: bool) -> dict:
    """The estimate (and on CUDA the measured peak) of one training step of ``method`` on ``batch``."""
    params = _params(method)
    for p in params:
        p.requires_grad_(False)
    # full fine-tuning: the base UNet and the method's modules; the VAE and the image/text encoders stay frozen
    trainable = _params_of([method.unwrapped(), method.backbone.unet]) if full else method.trainable_parameters()
    for p in trainable:
        p.requires_grad_(True)
    device = params[0].device
    weights = sum(p.numel() * p.element_size() for p in params)
    optim = 3 * sum(p.numel() * 4 for p in trainable)  # fp32 grad + AdamW's two moments
    exclude = {p.untyped_storage().data_ptr() for p in params}
    gen = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss = None

    def run():
        nonlocal loss
        loss = method.loss(batch, gen, device, torch.float32)

    acts = saved_activation_bytes(run, exclude)
    measured = None
    if device.type == "cuda":
        loss.backward()
        measured = torch.cuda.max_memory_allocated() / MIB
    return {"trainable": sum(p.numel() for p in trainable), "weights": weights / MIB, "optim": optim / MIB,
            "acts": acts / MIB, "peak": (weights + optim + acts) / MIB, "measured": measured}


def published_states() -> list[tuple[str, int, int]]:
    """``(name, trainable, total)`` parameter counts of the released sizes, built on the meta device (no
    weights allocated): SVD img2vid's UNet (diffusers' default ``UNetSpatioTemporalConditionModel`` config)
    with LeviTor's ControlNet, and SD1.5 + AnimateDiff v1.5's motion UNet with Image Conductor's flow
    ControlNet and its rank-64 LoRA sets."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel, UNetSpatioTemporalConditionModel

    from finetune.backbones.svd_controlnet import SVDControlNet
    from finetune.methods.image_conductor import add_lora_sets, flow_controlnet_from_unet

    def count(*mods):
        return sum(p.numel() for m in mods for p in m.parameters())

    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel()
        net = SVDControlNet.from_unet(unet)
        sd = UNet2DConditionModel(cross_attention_dim=768)
        motion = UNetMotionModel.from_unet2d(sd, MotionAdapter())
        flow = add_lora_sets(flow_controlnet_from_unet(motion, 8), rank=64)
    lora = sum(p.numel() for n, p in flow.named_parameters() if "lora_" in n) // 2
    return [("SVD + LeviTor ControlNet", count(net), count(unet, net)),
            ("AnimateDiff + flow ControlNet", count(flow) - 2 * lora, count(motion, flow)),
            ("AnimateDiff + one LoRA set", lora, count(motion, flow))]


def main(side: int, frames: int) -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(tempfile.mkdtemp())
    svd = build_tiny_svd(root / "svd")
    ad = build_tiny_animatediff(root / "ad")
    clips = write_tiny_render_clips(root / "clips", frames=frames, side=side, camera_only=(False, False))
    cases = [
        ("levitor", LeviTorMethod(conditioning_embedding_out_channels=(16, 32)), svd, "levitor"),
        ("posetraj (alpha 0.5)", PoseTrajMethod(stage=2, spatial_loss_alpha=0.5,
                                                conditioning_embedding_out_channels=(16, 32)), svd, "traj"),
        ("imageconductor flow ControlNet", ImageConductorMethod(stage="controlnet", rank=4, prompt="a person"), ad, "flow"),
        ("imageconductor object LoRA", ImageConductorMethod(stage="object", rank=4, prompt="a person"), ad, "flow"),
    ]
    print(f"tiny backbones, {frames} frames at {side}x{side}, batch 1, fp32, {device.type}")
    head = (f"{'method':32s} {'trainable':>10s} {'weights':>8s} {'optim':>7s} {'acts':>7s} {'peak MiB':>9s}"
            f" {'full: trainable':>16s} {'acts':>7s} {'peak MiB':>9s} {'full/method':>11s}")
    print(head)
    for name, method, base, condition in cases:
        method.setup(base, device, torch.float32, 0)
        data = RenderClipDataset(clips, condition, frames, side, side)
        batch = collate_render([data[0]])
        own = step_memory(method, batch, full=False)
        full = step_memory(method, batch, full=True)
        line = (f"{name:32s} {own['trainable']:10d} {own['weights']:8.2f} {own['optim']:7.2f} {own['acts']:7.2f}"
                f" {own['peak']:9.2f} {full['trainable']:16d} {full['acts']:7.2f} {full['peak']:9.2f}"
                f" {full['peak'] / own['peak']:11.2f}")
        if own["measured"] is not None:
            line += f"   measured {own['measured']:.1f} / {full['measured']:.1f} MiB"
        print(line)

    print("\nreleased sizes, weights and optimizer state only (activations not counted): frozen weights bf16 "
          "(2 B), trainable weights fp32 + gradient + AdamW moments (16 B)")
    print(f"{'model':32s} {'trainable':>14s} {'total':>14s} {'GiB method':>11s} {'GiB full':>9s} {'full/method':>11s}")
    for name, n_train, n_total in published_states():
        own = (2 * (n_total - n_train) + 16 * n_train) / 1024 ** 3
        full = 16 * n_total / 1024 ** 3
        print(f"{name:32s} {n_train:14,d} {n_total:14,d} {own:11.2f} {full:9.2f} {full / own:11.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    main(args.side, args.frames)
