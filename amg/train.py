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

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from finetune.train import TrainConfig, train
from render.errors import AmgError

from .build import hydra_app


def check_inputs(base: str, manifest: str) -> int:
    """Check the base model folder and every clip of the manifest before any training output is written.

    A manifest row pointing at a missing clip or avatar video is found here, not at step 1 after
    ``meta.json``, ``loss.csv`` and a tensorboard file were written. Returns the number of clips.
    """
    from finetune.data import read_manifest
    from finetune.model import _COMPONENTS

    folder = Path(str(base))
    if not folder.is_dir():
        raise AmgError(f"model.path={base}: no such folder; expected the base text-to-video folder (diffusers layout)")
    missing = [c for c in _COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise AmgError(f"model.path={base}: not a diffusers text-to-video folder (missing {', '.join(missing)})")
    records = read_manifest(str(manifest))
    for i, rec in enumerate(records):
        for what in ("video", "avatar"):
            p = Path(getattr(rec, what))
            if not p.is_file():
                raise AmgError(f"{p}: no such {what} video (clip {i} of data.manifest={manifest})")
    return len(records)


def run(cfg: DictConfig, out_dir: Path):
    """Train with the composed config into ``out_dir``; returns :class:`finetune.train.TrainResult`.

    The inputs (base folder, manifest and the clips it lists, config keys) are checked before any work.
    """
    if cfg.model.get("path") in (None, "???"):
        raise AmgError("model.path: missing; expected the base text-to-video folder (diffusers layout)")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(cfg.train) - known)
    if unknown:
        raise AmgError(f"train.{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}")
    d = cfg.data
    check_inputs(cfg.model.path, d.manifest)
    config = TrainConfig(**cfg.train, num_frames=int(d.num_frames), height=int(d.height), width=int(d.width),
                         fps=float(d.fps), latent_cache=None if d.latent_cache is None else str(d.latent_cache))
    return train(cfg.model.path, d.manifest, out_dir, config)


@hydra_app("train")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
