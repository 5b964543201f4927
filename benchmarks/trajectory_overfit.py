"""Overfitting check of the trajectory models: ObjMC of sampled motion to each clip's own control, before and
after training a tiny model on two clips.

Two rendered clips (``finetune.testing.two_trajectory_clips``) share their first frame (same background,
the object starts at the same point) and differ only in the trajectory (one moves right, one down), so
only the control can tell the model which motion to make. Each method is sampled (guidance off: these runs
never drop the conditioning) from the shared first frame with each clip's control; the object is tracked
in the sampled latents (``finetune.metrics.control_objmc``: a tiny random VAE cannot decode, its latents
still show where the object is) and ObjMC (pixels) is printed against the control's own trajectory
("own") and the other clip's ("other"). A model that follows its control has own < other and own below its
value at initialisation.

- LeviTor and the 3D-box model's stage 2: a tiny random SVD, the ControlNet trained by the project's loop
  (``finetune.train.train``); the SVD UNet sees the noisy latents, so its ControlNet can learn on a random
  base (``tests/test_trajectory_overfit.py`` runs the same check in the suite).
- Image Conductor's flow ControlNet sees zero latents and only the flow (SparseCtrl's design), and the
  first frame comes from the frozen image ControlNet: on a random AnimateDiff nothing can denoise. A
  pretrained AnimateDiff + SparseCtrl is stood in for by training the tiny UNet (motion modules included)
  and the image ControlNet on the two clips without any flow first (``--ic-base-steps``; its samples then
  make one average motion whatever the control), then the flow ControlNet is trained on the method's own
  loss and trainable set (``--ic-steps``).

    python benchmarks/trajectory_overfit.py [--steps 30] [--lr 3e-3] [--ic-base-steps 150] [--ic-steps 300]
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

from finetune.methods.box3d import PoseTrajMethod  # noqa: E402
from finetune.methods.image_conductor import ImageConductorMethod  # noqa: E402
from finetune.methods.levitor import LeviTorMethod  # noqa: E402
from finetune.metrics import control_objmc  # noqa: E402
from finetune.render_clips import RenderClipDataset  # noqa: E402
from finetune.testing import build_tiny_animatediff, build_tiny_svd, two_trajectory_clips  # noqa: E402
from finetune.train import TrainConfig, train  # noqa: E402


def fit(method, params, batch, steps: int, lr: float, gen: torch.Generator) -> list[float]:
    """``steps`` AdamW steps of ``method.loss`` on one batch over ``params``; returns the losses."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        loss = method.loss(batch, gen, "cpu", torch.float32)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def row(name: str, before: np.ndarray, after: np.ndarray, losses: list[float], seconds: float) -> None:
    print(f"{name:34s} {before[:, 0].mean():8.2f}/{before[:, 1].mean():<9.2f} "
          f"{after[:, 0].mean():10.2f}/{after[:, 1].mean():<10.2f} {np.mean(losses[-10:]):10.4f} {seconds:8.0f}",
          flush=True)


def main(steps: int, lr: float, side: int, frames: int, ic_base_steps: int, ic_steps: int) -> None:
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp())
    clips = two_trajectory_clips(root / "clips", frames, side)
    svd, ad = build_tiny_svd(root / "svd"), build_tiny_animatediff(root / "ad")
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=2, num_frames=frames, height=side, width=side,
                      checkpoint_every=steps, progress=False, tensorboard=False, weight_decay=0.0, seed=0)
    print(f"two clips sharing the first frame, {frames} frames at {side}x{side}, batch 2; ControlNets {steps} steps "
          f"at lr {lr}; Image Conductor: base stand-in {ic_base_steps} steps, flow ControlNet {ic_steps} steps")
    print(f"{'method':34s} {'init own/other px':>18s} {'trained own/other px':>21s} {'last loss':>10s} {'seconds':>8s}")
    for name, make, condition in [
            ("levitor", lambda: LeviTorMethod(conditioning_embedding_out_channels=(16, 32)), "levitor"),
            ("posetraj (stage 2)", lambda: PoseTrajMethod(stage=2, conditioning_embedding_out_channels=(16, 32)),
             "traj")]:
        t0 = time.perf_counter()
        data = RenderClipDataset(clips, condition, frames, side, side)
        fresh = make()
        fresh.setup(svd, torch.device("cpu"), torch.float32, 0)
        before = control_objmc(fresh, data)
        trained = make()
        result = train(svd, clips, root / name.split()[0], cfg, method=trained)
        row(name, before, control_objmc(trained, data), list(result.losses.values()), time.perf_counter() - t0)

    t0 = time.perf_counter()
    method = ImageConductorMethod(stage="controlnet", rank=4, prompt="a person")
    method.setup(ad, torch.device("cpu"), torch.float32, 0)
    data = RenderClipDataset(clips, "flow", frames, side, side)
    batch = method.collate([data[0], data[1]])
    gen = torch.Generator().manual_seed(0)
    unet, image = method.backbone.unet, method.unwrapped().image
    method.unwrapped().requires_grad_(False)
    unet.requires_grad_(True)
    image.requires_grad_(True)
    fit(method, list(unet.parameters()) + list(image.parameters()), batch, ic_base_steps, 2e-3, gen)
    unet.requires_grad_(False)
    image.requires_grad_(False)
    before = control_objmc(method, data)
    losses = fit(method, method.trainable_parameters(), batch, ic_steps, lr, gen)
    row("imageconductor (flow ControlNet)", before, control_objmc(method, data), losses, time.perf_counter() - t0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--ic-base-steps", type=int, default=150)
    parser.add_argument("--ic-steps", type=int, default=300)
    args = parser.parse_args()
    main(args.steps, args.lr, args.side, args.frames, args.ic_base_steps, args.ic_steps)
