"""What LeviTor and the 3D-box model share: an :class:`SVDControlNet` trained on an SVD backbone.

Training follows SVD fine-tuning: the clip's latents ``z0`` ``(B, F, 4, h, w)`` are noised at an EDM
level ``sigma`` (lognormal, ``finetune.losses``), the UNet sees ``c_in x`` concatenated with the
noise-augmented first frame's latents (the image-to-video conditioning), the CLIP embedding of the
first frame and the added ids (fps - 1, motion bucket, noise augmentation), plus the ControlNet's
residuals from the control images; the loss is EDM's weighted denoising loss. Only the ControlNet
trains. ``init_from`` starts from another run's weights (a curriculum's next stage).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from render.errors import AmgError
from render.io import read_json, write_json

from ..backbones.base import encode_frames
from ..backbones.svd_controlnet import SVDControlNet, svd_unet_forward
from ..losses import edm_loss, edm_sample
from ..model import fingerprints_match
from ..render_clips import RenderClipDataset, collate_render
from .base import ClipSettings, Method

__all__ = ["SVDControlMethod", "svd_image_embedding", "CONTROLNET_DIR", "ADAPTER_CONFIG"]

CONTROLNET_DIR = "controlnet"
ADAPTER_CONFIG = "adapter.json"


@torch.no_grad()
def svd_image_embedding(image_encoder, feature_extractor, frames: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings ``(B, 1, D)`` of frames ``(B, 3, H, W)`` in [-1, 1], preprocessed as
    ``StableVideoDiffusionPipeline`` does for images (antialiased resize to 224 in [-1, 1], CLIP normalisation)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    p = next(image_encoder.parameters())
    x = (_resize_with_antialiasing(frames.float(), (224, 224)) + 1.0) / 2.0
    mean = torch.tensor(feature_extractor.image_mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(feature_extractor.image_std, dtype=x.dtype).view(1, 3, 1, 1)
    x = ((x - mean.to(x.device)) / std.to(x.device)).to(p.device, p.dtype)
    return image_encoder(x).image_embeds.unsqueeze(1)


class SVDControlMethod(Method):
    """An SVD ControlNet over one render condition (see the module docstring).

    Args:
        condition: the render folder's condition the ControlNet reads (``levitor``, ``traj``).
        target: what the clip's frames are (``clip`` or ``bbox3d``, frames with the boxes drawn).
        conditioning_embedding_out_channels: the conditioning embedding's widths (``2^(n-1)`` must be
            the VAE's downsampling factor: 16/32/96/256 for SVD's 8).
        fps, motion_bucket_id, noise_aug_strength: SVD's added conditioning during training.
        spatial_loss_alpha: weight of the thesis's spatial-enhancement loss (one random frame through a
            one-frame pass with its ControlNet residuals); 0 disables it.
        init_from: a previous run's ``adapter/`` (or checkpoint) to start the ControlNet from.
    """

    families = ("svd",)

    def __init__(self, condition: str, target: str = "clip",
                 conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256), fps: int = 7,
                 motion_bucket_id: int = 127, noise_aug_strength: float = 0.02, spatial_loss_alpha: float = 0.0,
                 init_from: str | None = None):
        self.condition, self.target = condition, target
        self.embedding_channels = tuple(conditioning_embedding_out_channels)
        self.fps, self.motion_bucket_id, self.noise_aug_strength = fps, motion_bucket_id, noise_aug_strength
        self.spatial_loss_alpha = float(spatial_loss_alpha)
        self.init_from = init_from
        self._encoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def options(self) -> dict:
        return {"condition": self.condition, "target": self.target,
                "conditioning_embedding_out_channels": list(self.embedding_channels), "fps": self.fps,
                "motion_bucket_id": self.motion_bucket_id, "noise_aug_strength": self.noise_aug_strength,
                "spatial_loss_alpha": self.spatial_loss_alpha, "init_from": self.init_from}

    # -- building ------------------------------------------------------------------------------------
    def setup(self, folder, device, dtype, seed):
        self.backbone = b = self.load_backbone(folder)
        b.to(device, dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.trained = SVDControlNet.from_unet(b.unet, conditioning_embedding_out_channels=self.embedding_channels)
        if self.init_from is not None:
            self.restore(self.init_from)

    def trainable_parameters(self):
        self.trained.requires_grad_(True)
        return list(self.trained.parameters())

    # -- data ----------------------------------------------------------------------------------------
    def dataset(self, manifest, clips: ClipSettings):
        return RenderClipDataset(manifest, self.condition, clips.num_frames, clips.height, clips.width,
                                 target=self.target)

    def check_data(self, manifest, clips: ClipSettings) -> None:
        self.dataset(manifest, clips)  # render folders: reading them needs no model

    def collate(self, samples):
        return collate_render(samples)

    def _encode(self, batch, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled latents ``(B, F, 4, h, w)`` of the targets and CLIP embeddings ``(B, 1, D)`` of the first
        frames, cached per clip (the encoders are frozen and use the posterior mode)."""
        b = self.backbone
        lat, emb = [], []
        for i, key in enumerate(batch.key.split("\n")):
            if key not in self._encoded:
                z = encode_frames(b.vae, batch.video[i].to(device, dtype)).float().cpu()
                e = svd_image_embedding(b.image_encoder, b.feature_extractor, batch.first[i:i + 1].to(device)).float().cpu()
                self._encoded[key] = (z, e[0])
            lat.append(self._encoded[key][0])
            emb.append(self._encoded[key][1])
        return torch.stack(lat).to(device, dtype), torch.stack(emb).to(device, dtype)

    # -- loss ----------------------------------------------------------------------------------------
    def model_inputs(self, batch, gen, device, dtype):
        """Draw everything one training step needs: ``(z0, edm sample, UNet input, embeddings, added ids, control)``."""
        b = self.backbone
        z0, emb = self._encode(batch, device, dtype)
        bsz, nf = z0.shape[:2]
        first = batch.first.to(device, dtype)
        aug = torch.randn(first.shape, generator=gen).to(device, dtype)
        with torch.no_grad():
            cond = b.vae.encode(first + self.noise_aug_strength * aug).latent_dist.mode()
        noise = torch.randn(z0.shape, generator=gen).to(device, dtype)
        u = torch.randn(bsz, generator=gen)
        s = edm_sample(z0, noise, u)
        inp = torch.cat([s.c_in * s.x, cond[:, None].expand(-1, nf, -1, -1, -1)], dim=2).to(dtype)
        ids = torch.tensor([[self.fps - 1, self.motion_bucket_id, self.noise_aug_strength]] * bsz, dtype=dtype,
                           device=device)
        return z0, s, inp, emb, ids, batch.control.to(device, dtype)

    def loss(self, batch, gen, device, dtype):
        unet = self.backbone.unet
        z0, s, inp, emb, ids, control = self.model_inputs(batch, gen, device, dtype)
        frame = int(torch.randint(0, z0.shape[1], (1,), generator=gen))
        t = s.c_noise.to(dtype)
        down, mid = self.trained(inp, t, emb, ids, control)
        loss = edm_loss(s, svd_unet_forward(unet, inp, t, emb, ids, down, mid), z0)
        if self.spatial_loss_alpha > 0:
            k = slice(frame, frame + 1)
            down1, mid1 = self.trained(inp[:, k], t, emb, ids, control[:, k])
            pred1 = svd_unet_forward(unet, inp[:, k], t, emb, ids, down1, mid1)
            loss = loss + self.spatial_loss_alpha * edm_loss(dataclasses.replace(s, x=s.x[:, k]), pred1, z0[:, k])
        return loss

    # -- weights -------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.unwrapped().save_pretrained(d / CONTROLNET_DIR)
        write_json(d / ADAPTER_CONFIG, {"format": "amg-controlnet/1", "method": self.name, **self.options(),
                                        "base": self.backbone.fingerprint, **(extra or {})})
        return d

    def restore(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        d = Path(directory)
        weights = d / CONTROLNET_DIR / "diffusion_pytorch_model.safetensors"
        if not (d / ADAPTER_CONFIG).is_file() or not weights.is_file():
            raise AmgError(f"{d}: not a ControlNet run folder (expected {ADAPTER_CONFIG} and {CONTROLNET_DIR}/)")
        config = read_json(d / ADAPTER_CONFIG)
        if not fingerprints_match(config.get("base", {}), self.backbone.fingerprint):
            raise AmgError(f"{d}: ControlNet was trained on a different base model than the one loaded")
        net = self.unwrapped()
        state = load_file(str(weights))
        own = net.state_dict()
        if set(state) != set(own) or any(own[k].shape != v.shape for k, v in state.items()):
            raise AmgError(f"{weights}: weights do not fit this ControlNet")
        net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})

    # -- sampling ------------------------------------------------------------------------------------
    def pipeline(self):
        """An :class:`~finetune.pipelines.svd_control.SVDControlPipeline` over the backbone and this ControlNet."""
        from ..pipelines.svd_control import SVDControlPipeline

        b = self.backbone
        pipe = SVDControlPipeline(vae=b.vae, image_encoder=b.image_encoder, unet=b.unet, scheduler=b.scheduler,
                                  feature_extractor=b.feature_extractor, controlnet=self.unwrapped().eval())
        pipe.set_progress_bar_config(disable=True)
        return pipe
