"""Overfitting check of the trajectory models: ObjMC of sampled motion to each clip's own control, before and
after training a tiny model on two clips.

Two rendered clips (``finetune.testing.write_tiny_render_clips``) share their first frame (same background,
the object starts at the same point) and differ only in the trajectory (one moves right, one down), so
only the control can tell the model which motion to make. For each method (LeviTor, the 3D-box model's
stage 2, Image Conductor's flow ControlNet stage) a tiny random backbone is trained by the project's loop
(``finetune.train.train``) and sampled (guidance off: these runs never drop the conditioning) from the
shared first frame with each clip's control. The object is tracked in the sampled latents
(``finetune.metrics.template_tracks`` against the clip's encoded first frame: a tiny random VAE cannot
decode, its latents still show where the object is), and ObjMC (pixels) is printed against the control's
own trajectory ("own") and against the other clip's ("other"). A model that follows its control has own
< other and own below its value at initialisation.

    python benchmarks/trajectory_overfit.py [--steps 300] [--lr 1e-3] [--side 32] [--frames 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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


def main(steps: int, lr: float, side: int, frames: int) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(tempfile.mkdtemp())
    clips = two_trajectory_clips(root / "clips", frames, side)
    svd, ad = build_tiny_svd(root / "svd"), build_tiny_animatediff(root / "ad")
    cases = [("levitor", lambda: LeviTorMethod(conditioning_embedding_out_channels=(16, 32)), svd, "levitor"),
             ("posetraj (stage 2)", lambda: PoseTrajMethod(stage=2, conditioning_embedding_out_channels=(16, 32)),
              svd, "traj"),
             ("imageconductor (flow ControlNet)", lambda: ImageConductorMethod(stage="controlnet", rank=4,
                                                                               prompt="a person"), ad, "flow")]
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=2, num_frames=frames, height=side, width=side,
                      checkpoint_every=steps, progress=False, tensorboard=False, weight_decay=0.0, seed=0)
    print(f"two clips sharing the first frame, {frames} frames at {side}x{side}; {steps} steps, lr {lr}, batch 2")
    print(f"{'method':34s} {'init own/other px':>18s} {'trained own/other px':>21s} {'last loss':>10s}")
    for name, make, base, condition in cases:
        data = RenderClipDataset(clips, condition, frames, side, side)
        fresh = make()
        fresh.setup(base, torch.device("cpu"), torch.float32, 0)
        before = control_objmc(fresh, data)
        trained = make()
        result = train(base, clips, root / name.split()[0], cfg, method=trained)
        after = control_objmc(trained, data)
        losses = list(result.losses.values())
        print(f"{name:34s} {before[:, 0].mean():8.2f}/{before[:, 1].mean():<9.2f} "
              f"{after[:, 0].mean():10.2f}/{after[:, 1].mean():<10.2f} {np.mean(losses[-10:]):10.4f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    main(args.steps, args.lr, args.side, args.frames)
