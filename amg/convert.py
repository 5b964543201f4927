"""Import another code base's checkpoint as an AMG pipeline folder.

    python -m amg.convert format=vgen checkpoint=amg.pth base=/models/text-to-video-ms-1.7b out=/models/amg
    python -m amg.convert ... merged=true      # LoRA merged into a plain 8-channel UNet3DConditionModel

``format=vgen`` reads a ModelScope / VGen UNet checkpoint (the official AMG release: ``{'state_dict': ...}``
with ``input_blocks.*`` names, LoRA as ``to_{q,k,v,out}_lora.{down,up}_linear``, an 8-channel
``input_blocks.0.0``) and writes ``out`` as :meth:`finetune.pipeline.AMGPipeline.save_pretrained` does, with
the base folder's VAE, text encoder, tokenizer and scheduler. ``amg.generate model.path=<out>`` samples with it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from render.errors import AmgError
from render.io import write_meta

from .build import config_dict, hydra_app

log = logging.getLogger("amg.convert")

FORMATS = ("vgen",)


def run(cfg: DictConfig, out_dir: Path) -> Path:
    """Convert ``cfg.checkpoint`` into the folder ``cfg.out``; records ``meta.json`` in ``out_dir``."""
    t0 = time.perf_counter()
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise AmgError(f"format={fmt}: expected one of {', '.join(FORMATS)}")
    from finetune.importers.vgen import import_vgen_pipeline

    out = import_vgen_pipeline(str(cfg.checkpoint), str(cfg.base), str(cfg.out), merged=bool(cfg.merged))
    write_meta(out_dir, "convert", inputs={"checkpoint": str(cfg.checkpoint), "base": str(cfg.base)},
               config=config_dict(cfg), outputs=[str(out)], seconds=round(time.perf_counter() - t0, 2))
    log.info("wrote %s", out)
    return out


@hydra_app("convert")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
