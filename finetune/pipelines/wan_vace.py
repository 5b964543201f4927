"""Zero-shot avatar control through Wan VACE: the render stage's outputs drive diffusers' ``WanVACEPipeline``.

VACE takes a control video, a mask of where to generate, and optional reference images, with no
training. The render stage gives exactly these: the avatar video (or its depth, as a depth-control
video), the person masks and a crop of each person. :func:`vace_inputs` turns them into the stock
pipeline's arguments; :func:`generate_wan_vace` runs it.

Masks follow VACE's convention: white (1) where the model generates, black (0) where the control
video is kept as it is. ``mask_mode="all"`` (VACE's control tasks: depth or pose video, everything
generated) is the default; ``"persons"`` passes the person masks, so the people are generated over
the control and the rest is taken from the control video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from render.errors import AmgError

__all__ = ["VaceInputs", "vace_inputs", "depth_to_image", "person_references", "load_wan_vace",
           "generate_wan_vace", "CONTROLS", "MASK_MODES"]

CONTROLS = ("avatar", "depth")
MASK_MODES = ("all", "persons")


@dataclass
class VaceInputs:
    """``WanVACEPipeline``'s conditioning: ``video`` and ``mask`` as lists of ``F`` PIL images (``F = 4n + 1``),
    ``reference_images`` a list of PIL images or None."""

    video: list
    mask: list
    reference_images: list | None
    height: int
    width: int


def depth_to_image(depth: np.ndarray) -> np.ndarray:
    """Metric depth ``(F, H, W)`` (0 = empty) -> uint8 ``(F, H, W, 3)`` inverse depth, near bright, empty black.

    Inverse depth is scaled by its range over the whole video (not per frame), so brightness does not
    flicker as people move; this is the disparity-like look of the depth maps VACE was trained with.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 3:
        raise AmgError(f"depth {depth.shape}: expected (F, H, W) metric depth")
    seen = depth > 0
    out = np.zeros(depth.shape, np.uint8)
    if seen.any():
        inv = np.where(seen, 1.0 / np.where(seen, depth, 1.0), 0.0)
        lo, hi = inv[seen].min(), inv[seen].max()
        scaled = (inv - lo) / (hi - lo) if hi > lo else np.ones_like(inv)
        out[seen] = np.round(55 + 200 * scaled[seen]).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=-1)


def person_references(frames: np.ndarray, masks: np.ndarray, background: int = 255,
                      multiple: int = 16) -> list[np.ndarray]:
    """One crop per person id (ascending): the box of its largest visible area, other pixels ``background``.

    ``frames`` uint8 ``(F, H, W, 3)``, ``masks`` integer ids ``(F, H, W)`` with 0 for background. Each
    crop is padded (centred, with ``background``) to a multiple of ``multiple`` pixels: the stock
    pipeline rounds reference sizes down to its VAE stride, which would empty a small crop.
    """
    out = []
    for pid in [int(i) for i in np.unique(masks) if i > 0]:
        areas = (masks == pid).reshape(len(masks), -1).sum(1)
        f = int(areas.argmax())
        ys, xs = np.nonzero(masks[f] == pid)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = frames[f, y0:y1, x0:x1].copy()
        crop[masks[f, y0:y1, x0:x1] != pid] = background
        ph, pw = -crop.shape[0] % multiple, -crop.shape[1] % multiple
        crop = np.pad(crop, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=background)
        out.append(crop)
    return out


def vace_inputs(avatar: np.ndarray, masks: np.ndarray | None = None, depth: np.ndarray | None = None,
                control: str = "avatar", mask_mode: str = "all", references: bool | list = False) -> VaceInputs:
    """The render outputs as ``WanVACEPipeline`` inputs.

    Args:
        avatar: the avatar video, uint8 ``(F, H, W, 3)`` with ``F = 4n + 1`` (Wan: 81 at 480x832).
        masks: person ids ``(F, H, W)``, 0 = background (needed for ``mask_mode="persons"`` and references).
        depth: metric depth ``(F, H, W)`` (needed for ``control="depth"``).
        control: ``"avatar"`` (the rendered avatars as the control video) or ``"depth"``.
        mask_mode: ``"all"`` (generate everywhere) or ``"persons"`` (generate where the person masks are).
        references: True for a crop of each person from the avatar video, or a list of uint8 images.
    """
    from PIL import Image

    avatar = np.asarray(avatar)
    if avatar.ndim != 4 or avatar.shape[-1] != 3 or avatar.dtype != np.uint8:
        raise AmgError(f"avatar {avatar.shape} {avatar.dtype}: expected uint8 (F, H, W, 3)")
    f, h, w = avatar.shape[:3]
    if (f - 1) % 4:
        raise AmgError(f"avatar video has {f} frames: Wan VACE needs 4n + 1 (e.g. 81)")
    if control not in CONTROLS:
        raise AmgError(f"control={control!r}: expected one of {', '.join(CONTROLS)}")
    if mask_mode not in MASK_MODES:
        raise AmgError(f"mask_mode={mask_mode!r}: expected one of {', '.join(MASK_MODES)}")
    for name, arr in (("masks", masks), ("depth", depth)):
        if arr is not None and np.shape(arr) != (f, h, w):
            raise AmgError(f"{name} {np.shape(arr)}: expected (F, H, W) = {(f, h, w)} like the avatar video")
    if control == "depth":
        if depth is None:
            raise AmgError("control=depth: no depth given; render with conditions including depth")
        frames = depth_to_image(depth)
    else:
        frames = avatar
    if mask_mode == "persons":
        if masks is None:
            raise AmgError("mask_mode=persons: no person masks given; render with conditions including mask")
        white = (np.asarray(masks) > 0).astype(np.uint8) * 255
    else:
        white = np.full((f, h, w), 255, np.uint8)
    refs = None
    if references is True:
        if masks is None:
            raise AmgError("references=true: person masks are needed to crop each person")
        refs = person_references(avatar, np.asarray(masks))
    elif references:
        refs = [np.asarray(r) for r in references]
    return VaceInputs(video=[Image.fromarray(x) for x in frames],
                      mask=[Image.fromarray(np.repeat(m[..., None], 3, -1)) for m in white],
                      reference_images=[Image.fromarray(r) for r in refs] if refs else None, height=h, width=w)


def load_wan_vace(folder: str | os.PathLike, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None):
    """diffusers' ``WanVACEPipeline`` from a Wan VACE folder (bf16 transformer on CUDA, float32 elsewhere;
    the VAE in float32); ``AmgError`` naming a folder that is not one."""
    from diffusers import WanVACEPipeline

    from ..backbones.wan import load_wan

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    b = load_wan(folder, dtype=dtype, vace=True)
    pipe = WanVACEPipeline(tokenizer=b.tokenizer, text_encoder=b.text_encoder, vae=b.vae, scheduler=b.scheduler,
                           transformer=b.transformer)
    return pipe.to(device)


def generate_wan_vace(pipe, prompt: str, inputs: VaceInputs, negative_prompt: str = "",
                      num_inference_steps: int = 50, guidance_scale: float = 5.0, conditioning_scale: float = 1.0,
                      seed: int = 0, max_sequence_length: int = 512, progress: bool = True,
                      output_type: str = "uint8"):
    """Run ``WanVACEPipeline`` on :func:`vace_inputs`; uint8 frames ``(F, H, W, 3)`` at the avatar's size
    (``output_type="latent"``: the final latents ``(1, 16, f, h, w)``).

    The initial noise comes from a CPU generator seeded with ``seed`` (same seed, same video on any device).
    """
    if output_type not in ("uint8", "latent"):
        raise AmgError(f"output_type={output_type!r}: expected 'uint8' or 'latent'")
    from .amg_wan import encode_prompt_wan

    pipe.set_progress_bar_config(disable=not progress)
    # encoded as WanPipeline does: diffusers' WanVACEPipeline calls ftfy even where it is not installed
    texts = encode_prompt_wan(pipe.text_encoder, pipe.tokenizer, [prompt, negative_prompt], max_sequence_length)
    out = pipe(prompt_embeds=texts[:1], negative_prompt_embeds=texts[1:], video=inputs.video, mask=inputs.mask,
               reference_images=inputs.reference_images, conditioning_scale=conditioning_scale,
               height=inputs.height, width=inputs.width, num_frames=len(inputs.video),
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
               generator=torch.Generator("cpu").manual_seed(seed),
               output_type="latent" if output_type == "latent" else "np",
               max_sequence_length=max_sequence_length).frames[0]
    if output_type == "latent":
        return out[None]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
