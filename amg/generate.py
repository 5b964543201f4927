"""Generate a human video from a prompt (AMG inference).

    python -m amg.generate prompt="a woman in a yellow dress and a man in a white shirt dance in a park at sunset"
    python -m amg.generate prompt="a man in a red jacket boxes" camera=zoom
    python -m amg.generate prompt="..." motion=file motion.path=walk.bvh
    python -m amg.generate prompt="..." model=modelscope model.path=/models/t2v-ms model.adapter=/runs/amg/adapter

The prompt is decomposed into people (an appearance each), an action and a scene; each person becomes a
Gaussian avatar, the action becomes motions, the camera path films them and the render stage writes the
avatar video and conditions. With ``model.path`` and ``model.adapter`` set, the AMG video model turns the
avatar video into a photoreal ``video.mp4`` conditioned on the scene description. Outputs go to Hydra's run
directory with ``prompt.json``, ``meta.json`` and a side-by-side preview.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from avatars.scene import Person, colorize_ids, render_scene, save_scene
from render.errors import AmgError
from render.io import write_json, write_meta
from render.video import write_video

from .build import (_instantiate, build_avatars, build_body, build_camera, build_motions, check_in_view,
                    config_dict, fit_length, pair_appearances, place_side_by_side, report_errors)

log = logging.getLogger("amg.generate")

NO_MODEL_HINT = ("no video model set: for photoreal output add model=modelscope model.path=<diffusers "
                 "text-to-video folder> model.adapter=<AMG adapter from amg.train>")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the whole generation into ``out_dir``; returns name -> written path."""
    t0 = time.perf_counter()
    torch.manual_seed(int(cfg.seed))
    prompt = str(cfg.prompt).strip()
    if not prompt:
        raise AmgError("prompt: expected a description of people, an action and a scene, got an empty string")
    parsed = _instantiate(cfg.parser).parse(prompt)
    for note in parsed.notes:
        log.info("prompt: %s", note)
    if not parsed.people:
        raise AmgError(f"prompt {prompt!r}: names no person; expected someone doing something, e.g. "
                       "'a man walks on a beach'")
    F, fps = int(cfg.num_frames), float(cfg.fps)
    body = build_body(cfg.body)
    plan = None
    if str(cfg.motion.get("name")) == "auto" and not cfg.motion.get("path"):
        text_to_motion = _instantiate(cfg.text_to_motion, body=body)
        plan = text_to_motion.plan(parsed.actions, len(parsed.people))
        motions = [fit_length(m, F) for m in text_to_motion.build(plan, seconds=F / fps, fps=fps)]
    else:
        motions = build_motions(cfg.motion, F, fps, text=f"{' and '.join(parsed.people)} {parsed.action}".strip(),
                                num_people=len(parsed.people))
    if len(motions) == 1 and len(parsed.people) > 1:
        motions = place_side_by_side(motions * len(parsed.people), spacing=float(cfg.spacing))
    appearances = pair_appearances(parsed.people, len(motions))
    avatars = build_avatars(body, cfg.avatar, appearances)
    people = [Person(avatars[i], m, name=appearances[i]) for i, m in enumerate(motions)]
    cameras = build_camera(cfg.camera, people)
    if len(cameras) != F:
        people = [Person(p.avatar, fit_length(p.motion, len(cameras)), p.name) for p in people]
    res = render_scene(people, cameras, conditions=list(cfg.conditions), background=list(cfg.background),
                       backend=str(cfg.backend), seed=int(cfg.seed), progress=bool(cfg.progress))
    check_in_view(res, [p.name for p in people], float(cfg.max_out_of_view), bool(cfg.strict))
    written = save_scene(res, out_dir, fps=fps, conditions=list(cfg.conditions))
    chosen = plan.to_dict() if plan is not None else {"config": config_dict(cfg.motion)}
    write_json(out_dir / "prompt.json", {**parsed.to_dict(), "motions": chosen,
                                         "appearances": [p.avatar.appearance.describe() for p in people],
                                         "notes": parsed.notes + (plan.notes if plan is not None else [])})
    written["prompt.json"] = out_dir / "prompt.json"
    model_cfg = cfg.model
    if model_cfg.get("path") and model_cfg.get("adapter"):
        from finetune.pipeline import AMGPipeline

        dtypes = {"auto": None, "fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
                  "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
        dtype_name = str(model_cfg.get("dtype", "auto"))
        if dtype_name not in dtypes:
            raise AmgError(f"model.dtype={dtype_name}: expected one of {', '.join(dtypes)}")
        pipe = AMGPipeline.from_pretrained(str(model_cfg.path), adapter=str(model_cfg.adapter),
                                           dtype=dtypes[dtype_name])
        video = pipe(parsed.scene_prompt, avatar_video=res.rgb,
                     num_inference_steps=int(model_cfg.num_inference_steps),
                     guidance_scale=float(model_cfg.guidance_scale), seed=int(cfg.seed),
                     progress=bool(cfg.progress))
        written["video.mp4"] = write_video(out_dir / "video.mp4", video, fps=fps)
        preview = np.concatenate([_fit(res.rgb, video.shape[1:3]), video], axis=2)
    else:
        if model_cfg.get("path") or model_cfg.get("adapter"):
            raise AmgError("model: set both model.path and model.adapter, or neither")
        print(NO_MODEL_HINT)
        preview = np.concatenate([res.rgb, colorize_ids(res.mask)], axis=2)
    written["preview.mp4"] = write_video(out_dir / "preview.mp4", preview, fps=fps)
    written["preview.gif"] = write_video(out_dir / "preview.gif", preview, fps=fps)
    write_meta(out_dir, "generate", inputs={"prompt": prompt}, config=config_dict(cfg), seed=int(cfg.seed),
               outputs=sorted(written), seconds=round(time.perf_counter() - t0, 2), people=len(people))
    log.info("wrote %s in %.1f s", out_dir, time.perf_counter() - t0)
    return written


def _fit(frames: np.ndarray, hw) -> np.ndarray:
    """Resize ``(F,H,W,3)`` frames to ``hw`` so avatar and generated video sit side by side."""
    if frames.shape[1:3] == tuple(hw):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for f in frames])


@hydra.main(config_path="../conf", config_name="generate", version_base=None)
@report_errors
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
