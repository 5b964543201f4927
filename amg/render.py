"""Studio renders: avatars driven by motions, filmed along a camera path.

    python -m amg.render motion=walk camera=orbit camera.degrees=180 avatar.appearance="a man in a red jacket"
    python -m amg.render camera=file camera.path=camera_path.json
    python -m amg.render motion=dance_pair 'avatar.appearance=[a woman in a yellow dress, a man in a white shirt]'
    python -m amg.render --multirun camera=orbit,zoom,dolly

    python -m amg.render background=street.jpg shadow=true

Writes into Hydra's run directory: avatar.mp4, depth.npz, masks.npz, cameras.json, contact_sheet.png, the
conditions selected by ``conditions=[...]`` and meta.json; with a photo or video as ``background=`` (or
``shadow=true``) also preview.mp4, the avatars composited over it with contact shadows (the conditions
stay on black); with ``save_ply=true`` also each avatar's PLY (avatar1.ply ..., standard 3DGS layout, with
its body binding in avatar1.npz).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from avatars.scene import render_scene, save_scene
from render.io import write_meta

from .build import build_scene, check_in_view, config_dict, hydra_app, prepare_run_dir

log = logging.getLogger("amg.render")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Render the configured scene into ``out_dir``; returns name -> written path.

    ``out_dir`` must be fresh, or ``overwrite=true`` (see :func:`amg.build.prepare_run_dir`).
    """
    prepare_run_dir(out_dir, bool(cfg.overwrite))
    torch.manual_seed(int(cfg.seed))
    t0 = time.perf_counter()
    scene = build_scene(cfg)
    people, cameras = scene.people, scene.cameras
    bg = cfg.background  # RGB, or the path of a photo/video plate for the preview
    res = render_scene(people, cameras, conditions=list(cfg.conditions),
                       background=str(bg) if isinstance(bg, str) else list(bg), backend=str(cfg.backend),
                       seed=int(cfg.seed), progress=bool(cfg.progress), shadow=bool(cfg.shadow))
    check_in_view(res, [p.name for p in people], float(cfg.max_out_of_view), bool(cfg.strict))
    written = save_scene(res, out_dir, fps=float(cfg.fps), conditions=list(cfg.conditions))
    if cfg.get("save_ply"):  # each avatar's rest pose as a 3DGS PLY (SH degree 3) plus its body binding
        avatars = list({id(p.avatar): p.avatar for p in people}.values())  # people may share an avatar
        for i, av in enumerate(avatars):
            ply = av.save(Path(out_dir) / f"avatar{i + 1}.ply")
            written[ply.name], written[ply.with_suffix(".npz").name] = ply, ply.with_suffix(".npz")
    write_meta(out_dir, "render", inputs={"motion": config_dict(cfg.motion), "appearances": [
        p.avatar.appearance.text if p.avatar.appearance else None for p in people]}, config=config_dict(cfg),
        seed=int(cfg.seed), outputs=sorted(written), seconds=round(time.perf_counter() - t0, 2),
        people=len(people), frames=len(cameras))
    log.info("wrote %d files to %s in %.1f s", len(written), out_dir, time.perf_counter() - t0)
    return written


@hydra_app("render")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
