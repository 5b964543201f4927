"""Train a video model on prepared clips: AMG, LeviTor, the 3D-box model or Image Conductor.

    python -m amg.train backbone.path=/models/text-to-video-ms-1.7b data.manifest=clips/manifest.jsonl
    python -m amg.train method=levitor backbone.path=/models/svd-img2vid data.manifest=clips/
    python -m amg.train ... train.mixed_precision=fp16 train.grad_accum=4 data.latent_cache=cache/
    accelerate launch -m amg.train ...            # several GPUs or nodes
    python -m amg.train ... hydra.run.dir=outputs/train/<run>   # resume that run

The config's schema is :mod:`finetune.train`'s dataclasses (``train`` = :class:`LoopConfig`, ``data`` =
:class:`ClipConfig` plus the manifest); ``method`` and ``backbone`` are built with ``_target_``.
Writes into Hydra's run directory: checkpoints/step-NNNNNN/, adapter/ (for amg.generate's
model.adapter or amg.animate), loss.csv, tensorboard/ and meta.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from finetune.train import ClipConfig, LoopConfig, TrainConfig, train
from render.errors import AmgError

from .build import hydra_app


def check_inputs(base: str) -> None:
    """Check the base model folder before the model loads. (Every clip of a manifest is checked when its
    dataset is built, before the loop writes ``meta.json``, ``loss.csv`` or a tensorboard file.)"""
    if not Path(str(base)).is_dir():
        raise AmgError(f"backbone.path={base}: no such folder; expected the base model folder (diffusers layout)")


@dataclass
class DataConfig(ClipConfig):
    """The ``data`` group: the manifest (file or folder of jsonl) and how clips are sampled."""

    manifest: str = MISSING


@dataclass
class TrainAppConfig:
    """The ``train`` app's schema; ``backbone`` and ``method`` come from their config groups."""

    backbone: Any = MISSING
    method: Any = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    train: LoopConfig = field(default_factory=LoopConfig)


ConfigStore.instance().store(name="train_schema", node=TrainAppConfig)


def run(cfg: DictConfig, out_dir: Path):
    """Train with the composed config into ``out_dir``; returns :class:`finetune.train.TrainResult`.

    The inputs (base folder, manifest and the clips it lists, config keys) are checked before any work.
    """
    if OmegaConf.is_missing(cfg.backbone, "path"):
        raise AmgError(f"backbone.path: missing; expected the base {cfg.backbone.family} folder (diffusers layout)")
    if OmegaConf.is_missing(cfg.data, "manifest"):
        raise AmgError("data.manifest: missing; expected the jsonl manifest (or folder of them) written by amg.prep")
    check_inputs(cfg.backbone.path)
    spec = instantiate(cfg.backbone, _convert_="all")
    method = instantiate(cfg.method).use(spec)
    loop = OmegaConf.to_object(cfg.train)
    data = OmegaConf.to_object(cfg.data)
    clip = {k: v for k, v in asdict(data).items() if k != "manifest"}
    config = TrainConfig(**asdict(loop), **clip)
    return train(spec.path, data.manifest, out_dir, config, method=method)


@hydra_app("train")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
