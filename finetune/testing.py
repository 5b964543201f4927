"""Tiny random models of each backbone family, saved in the libraries' own folder layouts.

No model hub is reachable, so tests and benchmarks build these at run time. Each folder loads with
this package's loaders and with diffusers' stock pipelines (``TextToVideoSDPipeline``,
``StableVideoDiffusionPipeline``, ``AnimateDiffPipeline``). Weights are random but seeded: the same
seed gives the same weights. The ModelScope builder and the tiny clips live in :mod:`finetune.tiny`
and are re-exported here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .tiny import TINY_MAX_TOKENS, _text_config, build_tiny_clip, build_tiny_text_to_video, save_components, \
    tiny_tokenizer, unit_scaling_factor, write_tiny_clips

__all__ = ["build_tiny_text_to_video", "build_tiny_svd", "build_tiny_animatediff", "build_tiny_clip", "write_tiny_render_clips",
           "two_trajectory_clips",
           "tiny_tokenizer", "write_tiny_clips", "TINY_MAX_TOKENS", "TINY_IMAGE_EMBED"]

TINY_IMAGE_EMBED = 32


def _index(folder: Path, class_name: str, components: dict) -> None:
    import diffusers

    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__, **components}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def svd_scheduler():
    """SVD img2vid's ``EulerDiscreteScheduler`` configuration (EDM Karras sigmas, v-prediction)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                  beta_schedule="scaled_linear", prediction_type="v_prediction",
                                  interpolation_type="linear", use_karras_sigmas=True, sigma_min=0.002,
                                  sigma_max=700.0, timestep_spacing="leading", timestep_type="continuous",
                                  steps_offset=1)


def build_tiny_svd(folder: str | os.PathLike, seed: int = 0, block_out_channels: tuple[int, ...] = (32, 64),
                   num_frames: int = 4) -> Path:
    """Write a random SVD img2vid model (stable-video-diffusion-img2vid layout) to ``folder``.

    The UNet is a two-level ``UNetSpatioTemporalConditionModel`` (8 input channels, cross-attention
    width ``TINY_IMAGE_EMBED``); the temporal-decoder VAE halves the resolution once; the CLIP image
    encoder reads 224x224 (as the stock pipeline resizes to) with 32-pixel patches and width 32. The VAE's
    ``scaling_factor`` gives its latents unit variance (:func:`~finetune.tiny.unit_scaling_factor`).
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    n = len(block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            sample_size=16, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",),
            up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1),
            block_out_channels=tuple(block_out_channels), addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=24, layers_per_block=1,
            cross_attention_dim=TINY_IMAGE_EMBED, num_attention_heads=tuple(max(1, c // 16) for c in block_out_channels),
            num_frames=num_frames)
        vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3,
                                           down_block_types=("DownEncoderBlock2D",) * 2,
                                           block_out_channels=(32, 32), layers_per_block=1, latent_channels=4,
                                           sample_size=32)
        vae.register_to_config(scaling_factor=unit_scaling_factor(vae))
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=224, patch_size=32, projection_dim=TINY_IMAGE_EMBED)
        image_encoder = CLIPVisionModelWithProjection(vision)
    feature_extractor = CLIPImageProcessor(crop_size={"height": 224, "width": 224},
                                           size={"shortest_edge": 224}, do_normalize=True,
                                           image_mean=[0.48145466, 0.4578275, 0.40821073],
                                           image_std=[0.26862954, 0.26130258, 0.27577711])
    save_components(folder, unet=unet, vae=vae, image_encoder=image_encoder, feature_extractor=feature_extractor,
                    scheduler=svd_scheduler())
    _index(folder, "StableVideoDiffusionPipeline", {
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
    })
    return folder


def build_tiny_animatediff(folder: str | os.PathLike, seed: int = 0,
                           block_out_channels: tuple[int, ...] = (32, 64)) -> Path:
    """Write a random SD1.5-layout folder with a ``motion_adapter/`` sub-folder to ``folder``.

    ``UNet2DConditionModel`` with cross-attention width 32 (the tiny CLIP text encoder of
    :mod:`finetune.tiny`), a VAE halving the resolution once, AnimateDiff's DDIM (linear betas
    0.00085-0.012, ``steps_offset`` 1, ``clip_sample`` off) and a ``MotionAdapter`` with matching widths.
    The VAE's ``scaling_factor`` gives its latents unit variance (:func:`~finetune.tiny.unit_scaling_factor`).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    n = len(block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
            block_out_channels=tuple(block_out_channels), cross_attention_dim=32, attention_head_dim=8,
            norm_num_groups=32)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32),
                            layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=32)
        vae.register_to_config(scaling_factor=unit_scaling_factor(vae))
        tokenizer = tiny_tokenizer()
        text_encoder = CLIPTextModel(_text_config(len(tokenizer), TINY_MAX_TOKENS))
        adapter = MotionAdapter(block_out_channels=tuple(block_out_channels), motion_layers_per_block=1,
                                motion_norm_num_groups=32, motion_num_attention_heads=4,
                                motion_max_seq_length=32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              steps_offset=1, num_train_timesteps=1000, timestep_spacing="linspace")
    save_components(folder, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                    motion_adapter=adapter)
    _index(folder, "StableDiffusionPipeline", {
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    return folder


def write_tiny_render_clips(folder: str | os.PathLike, trajectories=None, frames: int = 4, side: int = 32,
                            fps: float = 8.0, camera_only: tuple[bool, ...] | None = None, seed: int = 0,
                            shared_background: bool = False, texture: int = 50) -> Path:
    """Write small render folders (the layout of ``avatars.scene.save_scene``) and return their parent.

    Clip ``i`` shows a bright square of side ``side/4`` whose centre follows ``trajectories[i]``
    ``(F, 2)`` pixels over a dark textured background; its conditions are made by the render stage's
    own writers: ``levitor_control.npy`` (:func:`render.conditions.levitor.control_tensor` of the
    centre, instance id 1, depth 128, heat box half-size ``side // 8``: LeviTor's 10 pixels would cover a
    tiny clip whole), ``traj.npy`` (:func:`~render.conditions.traj_image.trajectory_frames`),
    ``flow.npy`` + ``flow_tracks.npy`` (:func:`~render.conditions.flow.trajectory_flow`), ``bbox3d.npy``
    + ``bbox3d.mp4`` (the square as a flat box, drawn by :func:`~render.conditions.bbox3d.draw_boxes`
    over the frames) and ``tracks.npy`` (the centre, the ObjMC target). ``camera_only[i]`` marks a
    clip as camera-only in its ``meta.json``. ``shared_background``: every clip over the same background (clips
    starting at the same point then share their first frame, so only the control tells them apart).
    Defaults: two clips, one moving right, one moving down.
    """
    import numpy as np

    from render.conditions.bbox3d import draw_boxes, save_boxes
    from render.conditions.flow import trajectory_flow
    from render.conditions.levitor import control_tensor
    from render.conditions.traj_image import trajectory_frames
    from render.io import write_json, write_npy
    from render.video import write_video

    folder = Path(folder)
    if trajectories is None:
        t = np.linspace(0, 1, frames)[:, None]
        lo, hi = side * 0.3, side * 0.7
        trajectories = [np.concatenate([lo + (hi - lo) * t, np.full_like(t, side / 2)], 1),
                        np.concatenate([np.full_like(t, side / 2), lo + (hi - lo) * t], 1)]
    rng = np.random.default_rng(seed)
    half = side // 8

    def backdrop():
        return rng.integers(20, 70, (side, side, 3)).astype(np.uint8)

    shared = backdrop() if shared_background else None
    for i, traj in enumerate(trajectories):
        traj = np.asarray(traj, np.float64)
        d = folder / f"clip{i}"
        d.mkdir(parents=True, exist_ok=True)
        background = shared if shared is not None else backdrop()
        video = np.repeat(background[None], len(traj), 0)
        corners = np.zeros((len(traj), 1, 8, 2))
        for f, (x, y) in enumerate(traj):
            x0, y0 = int(round(x)) - half, int(round(y)) - half
            video[f, max(y0, 0):y0 + 2 * half, max(x0, 0):x0 + 2 * half] = (230, 200, 60)
            sq = np.array([[x0, y0], [x0 + 2 * half, y0], [x0 + 2 * half, y0 + 2 * half], [x0, y0 + 2 * half]])
            corners[f, 0] = np.concatenate([sq, sq + 1])  # a thin box: its back face one pixel behind
        write_video(d / "avatar.mp4", video, fps)
        points = [np.array([[y, x, 1, 128]]) for x, y in traj]
        # LeviTor's heat box (half-size 10 px) would cover a tiny clip whole and hide the motion: scale it
        write_npy(d / "levitor_control.npy", control_tensor(points, side, side, half_size=max(2, side // 8)))
        write_npy(d / "traj.npy", trajectory_frames(traj[None], side, side))
        write_npy(d / "flow.npy", trajectory_flow(traj[None], side, side))
        write_npy(d / "flow_tracks.npy", traj[None].astype(np.float32))
        write_npy(d / "tracks.npy", traj[None].astype(np.float32))
        save_boxes(d, corners)
        write_video(d / "bbox3d.mp4", draw_boxes(corners, side, side, image=video), fps)
        write_json(d / "meta.json", {"camera_only": bool(camera_only[i]) if camera_only else False})
    return folder


def two_trajectory_clips(folder: str | os.PathLike, frames: int = 4, side: int = 32) -> Path:
    """Two :func:`write_tiny_render_clips` clips from one first frame: the object starts at ``0.3 side``
    in both and moves right to ``0.7 side`` in ``clip0``, down in ``clip1``, over one shared background, so
    only the control tells them apart (the trajectory models' overfitting check)."""
    import numpy as np

    t = np.linspace(0, 1, frames)[:, None]
    lo, hi = side * 0.3, side * 0.7
    right = np.concatenate([lo + (hi - lo) * t, np.full_like(t, lo)], 1)
    down = np.concatenate([np.full_like(t, lo), lo + (hi - lo) * t], 1)
    return write_tiny_render_clips(folder, trajectories=[right, down], frames=frames, side=side, shared_background=True)

