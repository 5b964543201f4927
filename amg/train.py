"""Fine-tune the AMG adapter (LoRA + widened conv_in) on prepared clips.

    python -m amg.train model.path=/models/text-to-video-ms-1.7b data.manifest=clips/manifest.jsonl
    python -m amg.train ... train.mixed_precision=fp16 train.grad_accum=4 data.latent_cache=cache/
    accelerate launch -m amg.train ...            # several GPUs or nodes
    python -m amg.train ... hydra.run.dir=outputs/train/<run>   # resume that run

Writes into Hydra's run directory: checkpoints/step-NNNNNN/, adapter/ (for amg.generate's
model.adapter), loss.csv, tensorboard/ and meta.json.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from finetune.train import TrainConfig, train
from render.errors import AmgError

from .build import report_errors


def run(cfg: DictConfig, out_dir: Path):
    """Train with the composed config into ``out_dir``; returns :class:`finetune.train.TrainResult`."""
    if cfg.model.get("path") in (None, "???"):
        raise AmgError("model.path: missing; expected the base text-to-video folder (diffusers layout)")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(cfg.train) - known)
    if unknown:
        raise AmgError(f"train.{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}")
    d = cfg.data
    config = TrainConfig(**cfg.train, num_frames=int(d.num_frames), height=int(d.height), width=int(d.width),
                         fps=float(d.fps), latent_cache=None if d.latent_cache is None else str(d.latent_cache))
    return train(cfg.model.path, d.manifest, out_dir, config)


@hydra.main(config_path="../conf", config_name="train", version_base=None)
@report_errors
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
