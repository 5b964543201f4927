"""Generate a human video from a prompt (AMG inference).

    python -m amg.generate prompt="a woman in a yellow dress and a man in a white shirt dance in a park at sunset"
    python -m amg.generate prompt="a man in a red jacket boxes" camera=zoom
    python -m amg.generate prompt="..." motion=file motion.path=walk.bvh
    python -m amg.generate prompt="..." model=modelscope model.path=/models/t2v-ms model.adapter=/runs/amg/adapter
    python -m amg.generate prompt="..." model=wan_vace model.path=/models/wan-vace   # 81 frames, 480x832, 16 fps

The prompt is decomposed into people (an appearance each), an action and a scene; each person becomes a
Gaussian avatar, the action becomes motions, the camera path films them and the render stage writes the
avatar video and conditions. With ``model.path`` and ``model.adapter`` set, the AMG video model turns the
avatar video into a photoreal ``video.mp4`` conditioned on the scene description. Outputs go to Hydra's run
directory with ``prompt.json``, ``meta.json`` and a side-by-side preview.

The render stage renders at the chosen model's native clip (``model.native``: AMG's 16 frames at 256x256
and 8 fps, Wan's 81 at 480x832 and 16 fps, CogVideoX's 49 at 480x720 and 8 fps); ``num_frames``,
``height``, ``width`` and ``fps`` override it, and a size the model cannot take is refused before rendering.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from avatars.scene import colorize_ids, render_scene, save_scene
from reconstruction.caption import CLIP_MAX_TOKENS, clip_token_count
from render.errors import AmgError
from render.image import resize_frames
from render.io import write_json, write_meta
from render.video import write_video

from .build import (_instantiate, build_body, build_scene, check_frame_settings, check_in_view, config_dict,
                    fit_length, hydra_app, prepare_run_dir, torch_dtype)

log = logging.getLogger("amg.generate")

NO_MODEL_HINT = ("no video model set: for photoreal output add model=modelscope model.path=<diffusers "
                 "text-to-video folder> model.adapter=<AMG adapter from amg.train>")



def warn_long_prompt(text: str, tokens: int, limit: int, exact: bool) -> bool:
    """Log one warning line when ``text`` has more tokens than the text encoder reads; returns whether it did."""
    if tokens <= limit:
        return False
    log.warning("prompt: %s%d tokens, the text encoder reads %d; the rest is cut off (%r...)",
                "" if exact else "at least ", tokens, limit, text[:40])
    return True


class VideoGenerator:
    """The AMG video model of ``model=modelscope``: a base text-to-video folder plus a trained adapter.

    Loaded when the config is read, before any rendering, so a wrong path, a bogus adapter or an adapter
    trained on another base fails at once.

    Args:
        path: base folder in diffusers layout (unet/ vae/ text_encoder/ tokenizer/ scheduler/).
        adapter: folder written by ``amg.train`` (adapter.safetensors + adapter.json).
        dtype: a name of :data:`finetune.model.DTYPES` (``auto``: fp16 on CUDA, fp32 on CPU).
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale (text dropped, avatar kept).
        progress: show the libraries' loading bars (the app's ``progress``).
        native: the model's native clip (``num_frames``, ``height``, ``width``, ``fps``; the app renders at it).
    """

    def __init__(self, path: str, adapter: str, dtype: str, num_inference_steps: int, guidance_scale: float,
                 progress: bool = True, native: dict | None = None):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        from finetune.pipeline import AMGPipeline

        if not Path(str(adapter)).exists():
            raise AmgError(f"model.adapter={adapter}: no such folder; expected an adapter written by amg.train")
        bars = (transformers_logging, diffusers_logging)
        shown = [lib.is_progress_bar_enabled() for lib in bars]
        for lib in bars:
            if not progress:
                lib.disable_progress_bar()
        try:
            self.pipe = AMGPipeline.from_pretrained(str(path), adapter=str(adapter),
                                                    dtype=torch_dtype(dtype, "model.dtype"))
        finally:
            for lib, on in zip(bars, shown):
                if on:
                    lib.enable_progress_bar()
        self.num_inference_steps, self.guidance_scale = int(num_inference_steps), float(guidance_scale)
        self.native = dict(native or {})

    def check_clip(self, num_frames: int, height: int, width: int) -> None:
        """Refuse a clip size the UNet cannot take (height and width multiples of the VAE's 8 pixels)."""
        vae = self.pipe.model.vae
        check_clip_size("modelscope", num_frames, height, width,
                        spatial=2 ** (len(vae.config.block_out_channels) - 1), temporal=1)

    def count_tokens(self, text: str) -> tuple[int, int]:
        """The prompt's token count with this model's tokenizer and the most the text encoder reads."""
        tok = self.pipe.model.tokenizer
        return len(tok(text).input_ids), int(tok.model_max_length)

    def __call__(self, scene_prompt: str, avatar_video: np.ndarray, seed: int, progress: bool,
                 masks: np.ndarray | None = None, depth: np.ndarray | None = None) -> np.ndarray:
        """``(F,H,W,3)`` uint8 video following ``avatar_video`` ``(F,H,W,3)`` uint8, described by the prompt
        (``masks``/``depth`` are for the models that read them; AMG reads the avatar video only)."""
        return self.pipe(scene_prompt, avatar_video=avatar_video, num_inference_steps=self.num_inference_steps,
                         guidance_scale=self.guidance_scale, seed=seed, progress=progress)


class DiTVideoGenerator:
    """``model=wan|cogvideox|wan_vace``: AMG on a diffusion-transformer backbone, or Wan VACE zero-shot.

    The keys of ``conf/model/<family>.yaml`` go to :mod:`finetune.pipelines.select`; the pipeline is loaded
    here, when the config is read, so a wrong folder or adapter fails before any rendering.
    """

    def __init__(self, family: str, path: str, adapter: str | None = None, progress: bool = True,
                 native: dict | None = None, **options):
        from omegaconf import OmegaConf

        from finetune.pipelines.select import load_video_pipeline

        if not Path(str(path)).is_dir():
            raise AmgError(f"model.path={path}: no such folder; expected the {family} model folder (diffusers layout)")
        if adapter is not None and not Path(str(adapter)).exists():
            raise AmgError(f"model.adapter={adapter}: no such folder; expected an adapter written by amg.train")
        self.cfg = OmegaConf.create({"family": family, "path": str(path),
                                     **({} if adapter is None else {"adapter": str(adapter)}), **options})
        self.pipe = load_video_pipeline(self.cfg)
        self.native = dict(native or {})

    def check_clip(self, num_frames: int, height: int, width: int) -> None:
        """Refuse a clip the transformer cannot take: ``4n + 1`` frames (the VAE's temporal compression),
        height and width multiples of the VAE's spatial factor times the patch size."""
        t = self.pipe.transformer.config
        patch = t.patch_size[-1] if isinstance(t.patch_size, (list, tuple)) else t.patch_size
        check_clip_size(self.cfg.family, num_frames, height, width,
                        spatial=int(self.pipe.vae_scale_factor_spatial) * int(patch),
                        temporal=int(self.pipe.vae_scale_factor_temporal))

    def count_tokens(self, text: str) -> tuple[int, int]:
        """The prompt's token count with the model's own tokenizer and ``max_sequence_length``."""
        return len(self.pipe.tokenizer(text).input_ids), int(self.cfg.max_sequence_length)

    def __call__(self, scene_prompt: str, avatar_video: np.ndarray, seed: int, progress: bool,
                 masks: np.ndarray | None = None, depth: np.ndarray | None = None) -> np.ndarray:
        """``(F,H,W,3)`` uint8 video from the avatar video ``(F,H,W,3)`` uint8, person ids ``masks (F,H,W)``
        and metric ``depth (F,H,W)``."""
        from finetune.pipelines.select import generate_video

        return generate_video(self.cfg, scene_prompt, avatar_video, masks=masks, depth=depth, seed=seed,
                              progress=progress, pipe=self.pipe)


def check_clip_size(family: str, num_frames: int, height: int, width: int, spatial: int, temporal: int) -> None:
    """One line naming the setting when ``num_frames``/``height``/``width`` do not suit ``family``'s VAE and
    patches: frames ``temporal * n + 1``, sides multiples of ``spatial`` pixels."""
    if temporal > 1 and (num_frames - 1) % temporal:
        n = max(1, round((num_frames - 1) / temporal))
        raise AmgError(f"num_frames={num_frames}: model={family} takes {temporal}n + 1 frames (e.g. "
                       f"{temporal * n + 1}); leave num_frames unset for its native {family} clip")
    for key, v in (("height", height), ("width", width)):
        if v % spatial:
            raise AmgError(f"{key}={v}: model={family} takes multiples of {spatial} pixels (e.g. "
                           f"{max(spatial, round(v / spatial) * spatial)})")


def no_video_model(path: str | None = None, adapter: str | None = None, progress: bool = True,
                   native: dict | None = None) -> None:
    """``model=none``: no video model (generate writes the avatar video, conditions and preview)."""
    if path or adapter:
        raise AmgError("model.path/model.adapter: given with model=none; expected model=modelscope "
                       "model.path=<base folder> model.adapter=<adapter folder>")
    return None


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the whole generation into ``out_dir``; returns name -> written path.

    Every input is checked before the first frame is rendered: the run directory (fresh, or
    ``overwrite=true``), the prompt, the frame settings and the video model.
    """
    t0 = time.perf_counter()
    prepare_run_dir(out_dir, bool(cfg.overwrite))
    torch.manual_seed(int(cfg.seed))
    prompt = str(cfg.prompt).strip()
    if not prompt:
        raise AmgError("prompt: expected a description of people, an action and a scene, got an empty string")
    parsed = _instantiate(cfg.parser).parse(prompt)
    for note in parsed.notes:
        log.info("prompt: %s", note)
    if not parsed.people:
        raise AmgError(f"prompt {prompt!r}: names no person; expected someone doing something, e.g. "
                       "'a man walks on a beach' (amg renders people)")
    check_frame_settings(cfg)
    model = _instantiate(cfg.model, progress=bool(cfg.progress))
    if model is not None:
        model.check_clip(int(cfg.num_frames), int(cfg.height), int(cfg.width))
        warn_long_prompt(parsed.scene_prompt, *model.count_tokens(parsed.scene_prompt), exact=True)
    else:
        warn_long_prompt(parsed.scene_prompt, clip_token_count(parsed.scene_prompt), CLIP_MAX_TOKENS,
                         exact=False)
    F, fps = int(cfg.num_frames), float(cfg.fps)
    body = build_body(cfg.body)
    plan, motions = None, None
    if str(cfg.motion.get("name")) == "auto" and not cfg.motion.get("path"):
        text_to_motion = _instantiate(cfg.text_to_motion, body=body)
        plan = text_to_motion.plan(parsed.actions, len(parsed.people))
        motions = [fit_length(m, F) for m in text_to_motion.build(plan, seconds=F / fps, fps=fps)]
    scene = build_scene(cfg, appearances=parsed.people, motions=motions, body=body,
                        text=f"{' and '.join(parsed.people)} {parsed.action}".strip())
    people, cameras = scene.people, scene.cameras
    res = render_scene(people, cameras, conditions=list(cfg.conditions), background=list(cfg.background),
                       backend=str(cfg.backend), seed=int(cfg.seed), progress=bool(cfg.progress))
    check_in_view(res, [p.name for p in people], float(cfg.max_out_of_view), bool(cfg.strict))
    written = save_scene(res, out_dir, fps=fps, conditions=list(cfg.conditions))
    chosen = plan.to_dict() if plan is not None else {"config": config_dict(cfg.motion)}
    write_json(out_dir / "prompt.json", {**parsed.to_dict(), "motions": chosen,
                                         "appearances": [p.avatar.appearance.describe() for p in people],
                                         "notes": parsed.notes + (plan.notes if plan is not None else [])})
    written["prompt.json"] = out_dir / "prompt.json"
    if model is not None:
        video = model(parsed.scene_prompt, res.rgb, seed=int(cfg.seed), progress=bool(cfg.progress),
                      masks=res.mask, depth=res.depth)
        written["video.mp4"] = write_video(out_dir / "video.mp4", video, fps=fps)
        preview = np.concatenate([_fit(res.rgb, video.shape[1:3]), video], axis=2)
    else:
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
    return resize_frames(frames, hw[0], hw[1])


@hydra_app("generate")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
