"""Studio renders: avatars driven by motions, filmed along a camera path.

    python -m amg.render motion=walk camera=orbit camera.degrees=180 avatar.appearance="a man in a red jacket"
    python -m amg.render camera=file camera.path=camera_path.json
    python -m amg.render motion=dance_pair 'avatar.appearance=[a woman in a yellow dress, a man in a white shirt]'
    python -m amg.render --multirun camera=orbit,zoom,dolly

Writes into Hydra's run directory: avatar.mp4, depth.npz, masks.npz, cameras.json, contact_sheet.png, the
conditions selected by ``conditions=[...]`` and meta.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from avatars.scene import Person, render_scene, save_scene
from render.io import write_meta

from .build import (build_avatars, build_body, build_camera, build_motions, check_in_view, config_dict, fit_length,
                    pair_appearances, place_side_by_side, report_errors)

log = logging.getLogger("amg.render")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Render the configured scene into ``out_dir``; returns name -> written path."""
    torch.manual_seed(int(cfg.seed))
    t0 = time.perf_counter()
    body = build_body(cfg.body)
    motions = build_motions(cfg.motion, int(cfg.num_frames), float(cfg.fps))
    a = cfg.avatar.get("appearance")
    given = [str(x) for x in a] if a is not None and not isinstance(a, str) else [str(a or "a person")]
    if len(motions) == 1 and len(given) > 1:  # several appearances, one motion: everyone does it side by side
        motions = place_side_by_side(motions * len(given))
    avatars = build_avatars(body, cfg.avatar, None if cfg.avatar.get("ply") else pair_appearances(given, len(motions)))
    people = [Person(avatars[i % len(avatars)], m, name=f"person{i + 1}") for i, m in enumerate(motions)]
    cameras = build_camera(cfg.camera, people)
    if len(cameras) != int(cfg.num_frames):
        people = [Person(p.avatar, fit_length(p.motion, len(cameras)), p.name) for p in people]
    res = render_scene(people, cameras, conditions=list(cfg.conditions), background=list(cfg.background),
                       backend=str(cfg.backend), seed=int(cfg.seed), progress=bool(cfg.progress))
    check_in_view(res, [p.name for p in people], float(cfg.max_out_of_view), bool(cfg.strict))
    written = save_scene(res, out_dir, fps=float(cfg.fps), conditions=list(cfg.conditions))
    write_meta(out_dir, "render", inputs={"motion": config_dict(cfg.motion), "appearances": [
        p.avatar.appearance.text if p.avatar.appearance else None for p in people]}, config=config_dict(cfg),
        seed=int(cfg.seed), outputs=sorted(written), seconds=round(time.perf_counter() - t0, 2),
        people=len(people), frames=len(cameras))
    log.info("wrote %d files to %s in %.1f s", len(written), out_dir, time.perf_counter() - t0)
    return written


@hydra.main(config_path="../conf", config_name="render", version_base=None)
@report_errors
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
