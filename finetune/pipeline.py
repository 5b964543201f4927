"""Sampling with the AMG model: text + avatar video -> video.

:class:`AMGPipeline` loads a diffusers text-to-video base folder and an AMG adapter, and its
``__call__`` holds the whole denoising loop: encode the prompt and the avatar video, draw the initial
noise, and at each DDIM step run the UNet on ``[z_t, z_avatar]`` with classifier-free guidance (avatar
latents in both branches, only the text dropped, both branches in one batched UNet call), optionally
with Image Conductor's camera-free guidance on the LoRA, then decode the latents in chunks.

diffusers' ``TextToVideoSDPipeline`` cannot feed an 8-channel UNet, hence the loop here; with LoRA
disabled and zero avatar channels it reproduces that pipeline's output for the same seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.image import to_uint8, video_array
from render.io import read_json, write_json
from render.video import read_video, write_video

from .data import to_model_range
from .guidance import camera_free, classifier_free
from .adapters import has_lora, is_adapter_folder, lora_layers, scaled_lora, unload_lora
from .model import VideoModel, decode_latents, encode_prompt, encode_video, load_adapter, load_base, move, \
    prepare_unet, save_adapter

__all__ = ["AMGPipeline", "save", "MODEL_INDEX", "ADAPTER_FOLDER"]

MODEL_INDEX = "model_index.json"
# the unmerged export keeps the adapter in peft's layout beside the diffusers components
ADAPTER_FOLDER = "adapter"


class AMGPipeline:
    """The AMG model ready to sample: base components plus widened ``conv_in`` and LoRA.

    Build with :meth:`from_pretrained`. Runs in float16 on CUDA by default and float32 on CPU.
    """

    def __init__(self, model: VideoModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.model = model
        self.device, self.dtype = torch.device(device), dtype
        for m in (model.unet, model.vae, model.text_encoder):
            move(m, self.device, dtype)
            m.eval()

    @classmethod
    def from_pretrained(cls, base_folder: str | os.PathLike, adapter: str | os.PathLike | None = None,
                        device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                        rank: int = 4) -> "AMGPipeline":
        """Load a diffusers text-to-video folder and an adapter folder, or a folder :meth:`save_pretrained` wrote.

        ``adapter`` is a folder in peft's layout (``adapter_config.json`` + ``adapter_model.safetensors``)
        or of the first AMG format. A folder written by :meth:`save_pretrained` brings its own adapter
        (unmerged export) or has it merged into ``unet/`` (merged export). Without any adapter the UNet
        is widened with zero avatar channels (unless it already takes them) and given a fresh
        rank-``rank`` LoRA: for a base folder the untrained AMG model, whose output equals the base
        model's. ``dtype`` defaults to float16 on CUDA and float32 elsewhere.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        model = load_base(base_folder)
        if adapter is None:
            index = Path(base_folder) / MODEL_INDEX
            own = read_json(index).get("_amg_adapter") if index.is_file() else None
            if own is not None:
                adapter = Path(base_folder) / own
        if adapter is None:
            prepare_unet(model.unet, rank=rank)
        else:
            if not is_adapter_folder(adapter):
                raise AmgError(f"{adapter}: not an AMG adapter folder (expected adapter_config.json and "
                               f"adapter_model.safetensors)")
            load_adapter(model.unet, adapter, model.fingerprint)
        return cls(model, device=device, dtype=dtype)

    def save_pretrained(self, folder: str | os.PathLike, merged: bool = False) -> Path:
        """Write the whole model as a diffusers folder with ``model_index.json``; returns the folder.

        ``vae/``, ``text_encoder/``, ``tokenizer/`` and ``scheduler/`` are the components' own
        ``save_pretrained`` folders. ``merged=False``: ``unet/`` is the widened 8-channel
        ``UNet3DConditionModel`` without LoRA and ``adapter/`` the adapter in peft's layout (LoRA and the
        trained ``conv_in``), so ``PeftModel.from_pretrained(unet, folder / "adapter")`` restores it.
        ``merged=True``: the LoRA is merged into the weights (as peft's ``merge_and_unload``) and ``unet/``
        is a plain 8-channel ``UNet3DConditionModel``; no adapter folder. Weights are saved as float32.
        Both load back with :meth:`from_pretrained`.
        """
        import copy

        import diffusers

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        m = self.model
        unet = copy.deepcopy(m.unet).to("cpu", torch.float32)
        if merged:
            unload_lora(unet, merge=True)
        else:
            if not has_lora(m.unet):
                raise AmgError("save_pretrained(merged=False): the UNet has no LoRA to keep separate")
            save_adapter(m.unet, folder / ADAPTER_FOLDER, m.fingerprint)
            unload_lora(unet)
        unet.save_pretrained(folder / "unet")
        for name in ("vae", "text_encoder"):
            copy.deepcopy(getattr(m, name)).to("cpu", torch.float32).save_pretrained(folder / name)
        m.tokenizer.save_pretrained(folder / "tokenizer")
        m.scheduler.save_pretrained(folder / "scheduler")
        index = {
            "_class_name": type(self).__name__,
            "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", type(m.scheduler).__name__],
            "text_encoder": ["transformers", type(m.text_encoder).__name__],
            "tokenizer": ["transformers", type(m.tokenizer).__name__],
            "unet": ["diffusers", type(unet).__name__],
            "vae": ["diffusers", type(m.vae).__name__],
        }
        if not merged:
            index["_amg_adapter"] = ADAPTER_FOLDER
        write_json(folder / MODEL_INDEX, index)
        return folder

    def encode_avatar(self, avatar_video, height: int, width: int) -> torch.Tensor:
        """Latents ``(1, 4, F, h, w)`` of an avatar video: uint8 ``(F, H, W, 3)`` array/tensor or a video path."""
        if isinstance(avatar_video, (str, os.PathLike)):
            avatar_video = read_video(avatar_video)[0]
        frames = np.asarray(avatar_video.cpu() if torch.is_tensor(avatar_video) else avatar_video)
        frames = video_array(frames, name="avatar_video", uint8=False)
        video = to_model_range(frames, height, width)[None].to(self.device, self.dtype)
        return encode_video(self.model.vae, video)

    @torch.no_grad()
    def __call__(self, prompt: str, avatar_video, num_inference_steps: int = 20, guidance_scale: float = 3.0,
                 seed: int = 0, negative_prompt: str = "", lora_scale: float = 1.0,
                 lora_guidance_scale: float | None = None, height: int | None = None, width: int | None = None,
                 eta: float = 0.0, latents: torch.Tensor | None = None, decode_chunk_size: int = 8,
                 output_type: str = "uint8", progress: bool = True):
        """Generate a video following ``prompt`` with the motion of ``avatar_video``.

        Args:
            prompt: scene and appearance text.
            avatar_video: the rendered avatar, uint8 ``(F, H, W, 3)`` or a video path; the output has its
                frame count, and its size unless ``height``/``width`` are given (multiples of the VAE's
                downscale factor).
            num_inference_steps: DDIM steps (AMG: 20).
            guidance_scale: classifier-free guidance scale ``l_cfg`` (AMG: 3.0; <= 1 disables the
                unconditional branch).
            seed: seed of the initial noise (a CPU generator, so the same seed gives the same video on
                every device).
            lora_scale: strength of the LoRA (0 = base model plus avatar channels).
            lora_guidance_scale: when given, camera-free guidance ``l_lora``:
                ``eps0(x,0) + l_cfg (eps0(x,c) - eps0(x,0)) + l_lora (eps_lora(x,c) - eps0(x,c))`` with LoRA
                disabled for ``eps0`` (one extra UNet call per step).
            latents: initial noise ``(1, 4, F, h, w)`` instead of drawing it from ``seed``.
            decode_chunk_size: frames per VAE decode call.
            output_type: ``"uint8"`` -> numpy uint8 ``(F, H, W, 3)``; ``"float"`` -> numpy float32 in
                [0, 1]; ``"latent"`` -> the final latents tensor.
        """
        from diffusers.utils.torch_utils import randn_tensor

        model, unet, scheduler = self.model, self.model.unet, self.model.scheduler
        if output_type not in ("uint8", "float", "latent"):
            raise AmgError(f"output_type={output_type!r}: expected 'uint8', 'float' or 'latent'")
        scale_factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
        if isinstance(avatar_video, (str, os.PathLike)):
            avatar_video = read_video(avatar_video)[0]
        num_frames, src_h, src_w = np.shape(avatar_video)[:3]
        height, width = height or src_h, width or src_w
        if height % scale_factor or width % scale_factor:
            raise AmgError(f"height={height}, width={width}: expected multiples of {scale_factor}")

        # 1. Condition: text (and the empty text for the unconditional branch) and avatar latents.
        text = encode_prompt(model.text_encoder, model.tokenizer, [prompt])
        do_cfg = guidance_scale > 1.0 or lora_guidance_scale is not None
        if do_cfg:
            uncond = encode_prompt(model.text_encoder, model.tokenizer, [negative_prompt])
            both_texts = torch.cat([uncond, text])
        z_avatar = self.encode_avatar(avatar_video, height, width)

        # 2. Initial noise and the DDIM timesteps.
        generator = torch.Generator("cpu").manual_seed(seed)
        shape = (1, 4, num_frames, height // scale_factor, width // scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=text.dtype)
        latents = latents.to(self.device, text.dtype) * scheduler.init_noise_sigma
        scheduler.set_timesteps(num_inference_steps, device=self.device)

        # 3. Denoise.
        from tqdm.auto import tqdm

        for t in tqdm(scheduler.timesteps, desc="denoising", disable=not progress, leave=False):
            x = scheduler.scale_model_input(torch.cat([latents, z_avatar], dim=1), t)
            if lora_guidance_scale is not None:
                with scaled_lora(unet, 0.0):
                    eps0_uncond, eps0_text = unet(torch.cat([x, x]), t, encoder_hidden_states=both_texts,
                                                  return_dict=False)[0].chunk(2)
                with scaled_lora(unet, lora_scale):
                    eps_lora_text = unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
                eps = camera_free(eps0_uncond, eps0_text, eps_lora_text, guidance_scale, lora_guidance_scale)
            elif do_cfg:
                with scaled_lora(unet, lora_scale):
                    eps_uncond, eps_text = unet(torch.cat([x, x]), t, encoder_hidden_states=both_texts,
                                                return_dict=False)[0].chunk(2)
                eps = classifier_free(eps_uncond, eps_text, guidance_scale)
            else:
                with scaled_lora(unet, lora_scale):
                    eps = unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
            latents = scheduler.step(eps, t, latents, eta=eta, generator=generator).prev_sample

        if output_type == "latent":
            return latents

        # 4. Decode in chunks of frames; [-1, 1] -> [0, 1] -> (F, H, W, 3).
        video = decode_latents(model.vae, latents, chunk=decode_chunk_size)
        frames = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()
        if output_type == "float":
            return frames
        return to_uint8(frames)


def save(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write generated uint8 ``(F, H, W, 3)`` frames as an MP4 at ``fps`` (AMG clips play at 8 fps)."""
    return write_video(path, frames, fps)
