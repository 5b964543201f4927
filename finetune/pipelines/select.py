"""One entry for the apps: the ``model`` config (``family`` + its keys) and the render outputs -> generated frames.

ModelScope (``family: modelscope``) is :class:`finetune.pipeline.AMGPipeline`; this module runs the
diffusion-transformer families: ``wan`` (AMG on Wan, :class:`~finetune.pipelines.amg_wan.AMGWanPipeline`),
``wan_vace`` (zero-shot through diffusers' ``WanVACEPipeline``) and ``cogvideox`` (AMG on CogVideoX).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from render.errors import AmgError

from ..model import DTYPES, dtype_from_name

__all__ = ["FAMILIES", "DTYPES", "load_video_pipeline", "generate_video"]

FAMILIES = ("wan", "wan_vace", "cogvideox")


def _dtype(cfg: Mapping):
    return dtype_from_name(str(cfg.get("dtype", "auto")), "model.dtype")


def _memory_options(pipe, cfg: Mapping) -> None:
    """``cpu_offload``: diffusers' ``enable_model_cpu_offload`` (CUDA only); ``vae_tiling``: decode in tiles."""
    if cfg.get("cpu_offload") and torch.cuda.is_available():
        pipe.enable_model_cpu_offload()
    if cfg.get("vae_tiling"):
        pipe.vae.enable_tiling()


def load_video_pipeline(cfg: Mapping):
    """The pipeline ``cfg`` describes (``conf/model/*.yaml``: ``family``, ``path``, ``adapter``, ``dtype``, memory
    options), loaded and checked; an :class:`AmgError` names what is wrong."""
    family = str(cfg.get("family"))
    if family not in FAMILIES:
        raise AmgError(f"model.family={family}: expected one of {', '.join(FAMILIES)}")
    if not cfg.get("path"):
        raise AmgError(f"model.path: missing; expected the {family} model folder (diffusers layout)")
    if family == "wan_vace":
        from .wan_vace import load_wan_vace

        pipe = load_wan_vace(str(cfg.path), dtype=_dtype(cfg))
    else:
        if family == "wan":
            from .amg_wan import AMGWanPipeline as cls
        else:
            from .amg_cogvideox import AMGCogVideoXPipeline as cls
        adapter = cfg.get("adapter")
        pipe = cls.from_base(str(cfg.path), adapter=None if adapter is None else str(adapter), dtype=_dtype(cfg))
    _memory_options(pipe, cfg)
    return pipe


def generate_video(cfg: Mapping, prompt: str, avatar: np.ndarray, masks: np.ndarray | None = None,
                   depth: np.ndarray | None = None, seed: int = 0, progress: bool = True, pipe=None) -> np.ndarray:
    """Generate uint8 frames ``(F, H, W, 3)`` with the model ``cfg`` describes (``conf/model/*.yaml``).

    ``avatar`` is the rendered avatar video uint8 ``(F, H, W, 3)`` (``F = 4n + 1`` for Wan and
    CogVideoX), ``masks`` the person ids ``(F, H, W)``, ``depth`` metric depth ``(F, H, W)``; ``pipe``:
    the pipeline from :func:`load_video_pipeline` (loaded here when None).
    """
    pipe = load_video_pipeline(cfg) if pipe is None else pipe
    steps, guidance = int(cfg.get("num_inference_steps", 50)), float(cfg.get("guidance_scale", 5.0))
    max_len = int(cfg.get("max_sequence_length", 512))
    if str(cfg.get("family")) == "wan_vace":
        from .wan_vace import generate_wan_vace, vace_inputs

        inputs = vace_inputs(avatar, masks=masks, depth=depth, control=str(cfg.get("control", "avatar")),
                             mask_mode=str(cfg.get("mask_mode", "all")), references=bool(cfg.get("references", False)))
        return generate_wan_vace(pipe, prompt, inputs, negative_prompt=str(cfg.get("negative_prompt", "")),
                                 num_inference_steps=steps, guidance_scale=guidance,
                                 conditioning_scale=float(cfg.get("conditioning_scale", 1.0)), seed=seed,
                                 max_sequence_length=max_len, progress=progress)
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(prompt, avatar, negative_prompt=str(cfg.get("negative_prompt", "")), num_inference_steps=steps,
                guidance_scale=guidance, generator=generator, max_sequence_length=max_len, output_type="uint8",
                progress=progress)
