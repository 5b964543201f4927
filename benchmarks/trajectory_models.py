"""Per-step sampling cost of the trajectory pipelines against their backbone's stock diffusers pipeline.

On the same tiny random model, seed and size: the SVD ControlNet pipeline (LeviTor / the 3D-box model)
vs ``StableVideoDiffusionPipeline``, and the Image Conductor pipeline vs ``AnimateDiffPipeline``, each
three ways: control off (the loop's own overhead; goal <= 1.15x), control on (the ControlNet's cost,
the method's), and for Image Conductor camera-free guidance (a third UNet pass). Also the parameters
that train with only the ControlNet (or LoRA) trainable vs full fine-tuning of the UNet. Prints a table.

    python benchmarks/trajectory_models.py [--steps N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.methods.image_conductor import add_lora_sets, flow_controlnet_from_unet, image_controlnet_from_unet  # noqa: E402
from finetune.backbones.svd_controlnet import SVDControlNet  # noqa: E402
from finetune.pipelines.image_conductor import ImageConductorPipeline  # noqa: E402
from finetune.pipelines.svd_control import SVDControlPipeline  # noqa: E402
from finetune.testing import build_tiny_animatediff, build_tiny_svd  # noqa: E402


def _per_step(fn, steps: int, repeats: int = 2) -> float:
    fn(1)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(steps)
        best = min(best, time.perf_counter() - t)
    return best / steps


def main(steps: int) -> None:
    from diffusers import AnimateDiffPipeline, MotionAdapter, StableVideoDiffusionPipeline
    from PIL import Image

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    rows = []

    svd = StableVideoDiffusionPipeline.from_pretrained(build_tiny_svd(root / "svd"))
    svd.set_progress_bar_config(disable=True)
    net = SVDControlNet.from_unet(svd.unet, conditioning_embedding_out_channels=(16, 32))
    ours = SVDControlPipeline(svd.vae, svd.image_encoder, svd.unet, svd.scheduler, svd.feature_extractor, net)
    ours.set_progress_bar_config(disable=True)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    control = np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32) * 255
    kw = dict(height=32, width=32, num_frames=4, output_type="latent")
    stock_t = _per_step(lambda n: svd(img, num_inference_steps=n, generator=torch.Generator().manual_seed(0), **kw), steps)
    off_t = _per_step(lambda n: ours(img, num_inference_steps=n, generator=torch.Generator().manual_seed(0), **kw), steps)
    on_t = _per_step(lambda n: ours(img, control=control, num_inference_steps=n,
                                    generator=torch.Generator().manual_seed(0), **kw), steps)
    rows += [("SVD ControlNet, control off", off_t, stock_t), ("SVD ControlNet, control on", on_t, stock_t)]
    n_unet = sum(p.numel() for p in svd.unet.parameters())
    n_cn = sum(p.numel() for p in net.parameters())

    base = build_tiny_animatediff(root / "ad")
    ad = AnimateDiffPipeline.from_pretrained(base, motion_adapter=MotionAdapter.from_pretrained(base / "motion_adapter"))
    ad.set_progress_bar_config(disable=True)
    flow_net = add_lora_sets(flow_controlnet_from_unet(ad.unet, 2), rank=4)
    ic = ImageConductorPipeline(ad.vae, ad.text_encoder, ad.tokenizer, ad.unet, ad.scheduler,
                                flow_controlnet=flow_net, image_controlnet=image_controlnet_from_unet(ad.unet))
    ic.set_progress_bar_config(disable=True)
    flow = np.random.default_rng(2).normal(size=(4, 2, 32, 32)).astype(np.float32)
    kw = dict(num_frames=4, height=32, width=32, guidance_scale=3.0, output_type="latent")
    stock_t = _per_step(lambda n: ad("a man walks", num_inference_steps=n, generator=torch.Generator().manual_seed(0), **kw), steps)
    off_t = _per_step(lambda n: ic("a man walks", num_inference_steps=n, generator=torch.Generator().manual_seed(0), **kw), steps)
    on_t = _per_step(lambda n: ic("a man walks", flow=flow, num_inference_steps=n,
                                  generator=torch.Generator().manual_seed(0), **kw), steps)
    cf_t = _per_step(lambda n: ic("a man walks", flow=flow, trajectory_guidance_scale=1.5, num_inference_steps=n,
                                  generator=torch.Generator().manual_seed(0), **kw), steps)
    rows += [("Image Conductor, control off", off_t, stock_t), ("Image Conductor, flow ControlNet", on_t, stock_t),
             ("Image Conductor, camera-free guidance", cf_t, stock_t)]
    n_lora = sum(p.numel() for n, p in flow_net.named_parameters() if "lora_" in n) // 2

    print(f"{'pipeline':40s} {'ms/step':>9s} {'stock ms/step':>14s} {'ratio':>7s}")
    for name, ours_t, stock in rows:
        print(f"{name:40s} {ours_t * 1e3:9.1f} {stock * 1e3:14.1f} {ours_t / stock:7.2f}")
    print(f"trainable parameters: SVD ControlNet {n_cn} vs full SVD UNet {n_unet} ({n_cn / n_unet:.2f}x); "
          f"one Image Conductor LoRA set {n_lora} vs full motion UNet "
          f"{sum(p.numel() for p in ad.unet.parameters())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    main(parser.parse_args().steps)
