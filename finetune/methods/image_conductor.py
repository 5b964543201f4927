"""Image Conductor on AnimateDiff: a flow ControlNet with camera and object LoRA sets, an image ControlNet.

- Flow ControlNet: diffusers' ``SparseControlNetModel`` (AnimateDiff's ControlNet, with motion modules)
  with the simplified condition embedding: the flow ``(F, 2, H, W)`` (``render/conditions/flow.py``) is
  folded by ``PixelUnshuffle(s)`` (``s`` the VAE factor, 8 for SD) onto the latent grid and enters
  through a zero-initialised convolution; the ControlNet sees zero latents and only the condition
  (SparseCtrl's design, which ``SparseControlNetModel`` implements).
- Image ControlNet: a SparseCtrl-style ``SparseControlNetModel`` over the first frame's latents plus a
  mask marking the conditioned frame; frozen here (its weights come from SparseCtrl's RGB model or an
  import), contributing its residuals alongside the flow ControlNet's.
- LoRA sets on the flow ControlNet, as the public code names them: ``cmcm_weights`` (camera) and
  ``omcm_weights`` (object), rank 64, alpha = rank, on :data:`LORA_TARGETS`. Stages: ``controlnet``
  trains the flow ControlNet itself, ``camera`` trains the camera LoRA on camera-only clips, ``object``
  trains the object LoRA on mixed clips with the camera LoRA loaded and frozen (stop-gradient), plus
  ``orthogonal_weight`` times :func:`orthogonal_loss`.

The loss is the epsilon objective of AnimateDiff's DDIM/DDPM schedule. :func:`import_image_conductor`
reads the public ``flow_controlnet.ckpt`` (ControlNet weights and both LoRA sets in peft names).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from render.errors import AmgError
from render.io import read_json, write_json

from ..backbones.base import encode_frames
from ..importers.checkpoint import load_checkpoint, load_exact, unwrap_state
from ..losses import epsilon_target, v_target, weighted_mse
from ..model import encode_prompt, fingerprints_match
from ..render_clips import RenderClipDataset, collate_render
from .base import ClipSettings, Method

__all__ = ["ImageConductorMethod", "LORA_TARGETS", "CAMERA", "OBJECT", "STAGES", "flow_controlnet_from_unet",
           "image_controlnet_from_unet", "add_lora_sets", "lora_scales", "orthogonal_loss", "flow_condition",
           "first_frame_condition", "import_image_conductor"]

CAMERA = "cmcm_weights"   # camera motion control module
OBJECT = "omcm_weights"   # object motion control module
STAGES = ("controlnet", "camera", "object")
# the public code's LoRA targets on the flow ControlNet (module-name suffixes, peft matching)
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv", "proj", "proj_in", "proj_out", "time_emb_proj",
                "linear_1", "linear_2", "ff.net.2", "conv_shortcut", "controlnet_cond_embedding", "conv_in",
                "conv1", "conv2", "controlnet_mid_block") + tuple(f"controlnet_down_blocks.{i}" for i in range(12))


def _sparse_controlnet(unet, conditioning_channels: int, concat_mask: bool, load_weights: bool = True):
    from diffusers import SparseControlNetModel

    c = unet.config
    kinds = ["CrossAttnDownBlockMotion" if "CrossAttn" in k else "DownBlockMotion" for k in c.down_block_types]
    net = SparseControlNetModel(
        # UNetMotionModel's time projection is Timesteps(c0, flip_sin_to_cos=True, shift=0), the defaults here
        in_channels=c.in_channels, conditioning_channels=conditioning_channels, down_block_types=tuple(kinds),
        block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
        downsample_padding=c.downsample_padding, mid_block_scale_factor=c.mid_block_scale_factor, act_fn=c.act_fn,
        norm_num_groups=c.norm_num_groups, norm_eps=c.norm_eps, cross_attention_dim=c.cross_attention_dim,
        num_attention_heads=c.num_attention_heads, use_linear_projection=c.use_linear_projection,
        motion_max_seq_length=c.motion_max_seq_length, motion_num_attention_heads=c.motion_num_attention_heads,
        concat_conditioning_mask=concat_mask, use_simplified_condition_embedding=True)
    if load_weights:
        # the spatial layers start from the base UNet (as SparseControlNetModel.from_unet), motion modules too
        own = net.state_dict()
        state = {k: v for k, v in unet.state_dict().items()
                 if k.startswith(("conv_in.", "time_embedding.", "down_blocks.", "mid_block.")) and k in own
                 and own[k].shape == v.shape}
        net.load_state_dict(state, strict=False)
    return net.to(device=unet.device)


def flow_controlnet_from_unet(unet, vae_scale_factor: int):
    """The flow ControlNet for an AnimateDiff ``UNetMotionModel``: condition channels ``2 * s^2`` (the
    unshuffled flow), no mask, zero-initialised simplified condition embedding."""
    return _sparse_controlnet(unet, 2 * vae_scale_factor ** 2, concat_mask=False)


def image_controlnet_from_unet(unet):
    """A SparseCtrl-style image ControlNet: first-frame latents (4 channels) plus the conditioning mask."""
    return _sparse_controlnet(unet, unet.config.in_channels, concat_mask=True)


def flow_condition(flow: torch.Tensor, vae_scale_factor: int) -> torch.Tensor:
    """Flow ``(B, F, 2, H, W)`` pixels -> the flow ControlNet's condition ``(B, 2 s^2, F, H/s, W/s)``."""
    b, f, c, h, w = flow.shape
    if h % vae_scale_factor or w % vae_scale_factor:
        raise AmgError(f"flow {h}x{w}: expected sides divisible by the VAE factor {vae_scale_factor}")
    x = nn.functional.pixel_unshuffle(flow.reshape(b * f, c, h, w), vae_scale_factor)
    return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def first_frame_condition(first_latents: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ControlNet inputs from first-frame latents ``(B, 4, h, w)``: condition ``(B, 4, F, h, w)``
    (latents at frame 0, zeros elsewhere) and mask ``(B, 1, F, h, w)`` (1 at frame 0)."""
    b, c, h, w = first_latents.shape
    cond = first_latents.new_zeros(b, c, num_frames, h, w)
    mask = first_latents.new_zeros(b, 1, num_frames, h, w)
    cond[:, :, 0], mask[:, :, 0] = first_latents, 1
    return cond, mask


# diffusers' motion modules call ``proj_in(input=...)`` by keyword, which peft's LoRA layers do not accept
_EXCLUDE = r".*motion_modules\..*\.proj_(in|out)"


def add_lora_sets(net: nn.Module, rank: int = 64, targets: tuple[str, ...] = LORA_TARGETS, seed: int = 0) -> nn.Module:
    """Add the camera and object LoRA sets (``cmcm_weights``, ``omcm_weights``) to ``net`` in place.

    Gaussian-initialised A, zero B (peft's ``init_lora_weights="gaussian"``, as the public code), so a
    fresh set changes nothing. Both are active; scale them with :func:`lora_scales`. The motion
    modules' ``proj_in``/``proj_out`` are left out (diffusers calls them by keyword).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise AmgError(f"rank={rank}: expected a LoRA rank >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in (OBJECT, CAMERA):
            cfg = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets),
                             exclude_modules=_EXCLUDE)
            inject_adapter_in_model(cfg, net, adapter_name=name)
    for m in _lora_layers(net):
        m.set_adapter([CAMERA, OBJECT])
    return net


def _lora_layers(net: nn.Module) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in net.modules() if isinstance(m, LoraLayer)]


@contextlib.contextmanager
def lora_scales(net: nn.Module, camera: float = 1.0, obj: float = 1.0) -> Iterator[None]:
    """Run the block with the camera and object LoRA outputs multiplied by ``camera`` / ``obj`` (0 is off:
    the layer's output is then exactly the one without that set). Trainable flags are left alone."""
    layers = _lora_layers(net)
    saved = [(m, dict(m.scaling)) for m in layers]
    try:
        for m, base in saved:
            for name, factor in ((CAMERA, camera), (OBJECT, obj)):
                if name in m.scaling:
                    m.scaling[name] = base[name] * factor
        yield
    finally:
        for m, base in saved:
            m.scaling.update(base)


def _factor(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1)


def orthogonal_loss(net: nn.Module) -> torch.Tensor:
    """Image Conductor's orthogonal loss ``sum_i ||I - W_i,cam W_i,obj^T||_F^2`` over the LoRA layers.

    ``W_i`` is each layer's LoRA down projection (``lora_A``, ``(r, in)``; convolution kernels
    flattened to ``(r, in*k*k)``), the factor both sets share the shape of; ``I`` is ``r x r``.
    """
    terms = []
    for m in _lora_layers(net):
        if CAMERA in m.lora_A and OBJECT in m.lora_A:
            a_cam, a_obj = _factor(m.lora_A[CAMERA].weight), _factor(m.lora_A[OBJECT].weight)
            eye = torch.eye(a_cam.shape[0], device=a_cam.device, dtype=torch.float32)
            terms.append(((eye - a_cam.float() @ a_obj.float().T) ** 2).sum())
    if not terms:
        raise AmgError("orthogonal_loss: the network has no camera and object LoRA pair")
    return torch.stack(terms).sum()


class _Controls(nn.Module):
    """The trainable flow ControlNet and the frozen image ControlNet as one module (one accelerate prepare)."""

    def __init__(self, flow, image):
        super().__init__()
        self.flow, self.image = flow, image


class ImageConductorMethod(Method):
    """Image Conductor's ControlNet/LoRA training on an AnimateDiff backbone (see the module docstring).

    Args:
        stage: ``controlnet``, ``camera`` or ``object``.
        rank: LoRA rank (64 in the public code).
        orthogonal_weight: weight of the orthogonal loss in the object stage.
        prompt: the caption every clip is trained with (render clips carry none).
        init_from: the previous stage's run folder (``adapter/`` or a checkpoint).
        image_controlnet: a SparseCtrl RGB ControlNet folder (diffusers layout) for the first frame, or None
            for a fresh (no-op) one.
    """

    name = "imageconductor"
    families = ("animatediff",)

    def __init__(self, stage: str = "controlnet", rank: int = 64, orthogonal_weight: float = 1.0, prompt: str = "",
                 init_from: str | None = None, image_controlnet: str | None = None):
        if stage not in STAGES:
            raise AmgError(f"stage={stage!r}: expected one of {', '.join(STAGES)}")
        self.stage, self.rank, self.orthogonal_weight, self.prompt = stage, rank, float(orthogonal_weight), prompt
        self.init_from, self.image_controlnet = init_from, image_controlnet
        self._encoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def options(self) -> dict:
        return {"stage": self.stage, "rank": self.rank, "orthogonal_weight": self.orthogonal_weight,
                "prompt": self.prompt, "init_from": self.init_from, "image_controlnet": self.image_controlnet}

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.backbone.vae.config.block_out_channels) - 1)

    def setup(self, folder, device, dtype, seed):
        from diffusers import SparseControlNetModel

        self.backbone = b = self.load_backbone(folder)
        b.to(device, dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flow = flow_controlnet_from_unet(b.unet, self.scale_factor)
            add_lora_sets(flow, self.rank, seed=seed)
        if self.image_controlnet is not None:
            image = SparseControlNetModel.from_pretrained(self.image_controlnet, torch_dtype=dtype)
        else:
            image = image_controlnet_from_unet(b.unet)
        image.requires_grad_(False)
        self.trained = _Controls(flow, image).to(device)
        if self.init_from is not None:
            self.restore(self.init_from)
        self._text = None

    def trainable_parameters(self):
        net = self.trained.flow
        self.trained.requires_grad_(False)
        if self.stage == "controlnet":
            wanted = [p for n, p in net.named_parameters() if "lora_" not in n]
        else:
            tag = CAMERA if self.stage == "camera" else OBJECT
            wanted = [p for n, p in net.named_parameters() if "lora_" in n and f".{tag}." in n]
        for p in wanted:
            p.requires_grad_(True)
        return wanted

    def _set_scales(self) -> tuple[float, float]:
        """LoRA scales during training: the controlnet stage runs without LoRA, the camera stage with
        the camera set only, the object stage with both."""
        return {"controlnet": (0.0, 0.0), "camera": (1.0, 0.0), "object": (1.0, 1.0)}[self.stage]

    def dataset(self, manifest, clips: ClipSettings):
        kind = {"controlnet": "all", "camera": "camera", "object": "mixed"}[self.stage]
        return RenderClipDataset(manifest, "flow", clips.num_frames, clips.height, clips.width, kind=kind)

    def check_data(self, manifest, clips: ClipSettings) -> None:
        self.dataset(manifest, clips)  # render folders: reading them needs no model

    def collate(self, samples):
        return collate_render(samples)

    def _encode(self, batch, device, dtype):
        lat, first = [], []
        for i, key in enumerate(batch.key.split("\n")):
            if key not in self._encoded:
                z = encode_frames(self.backbone.vae, batch.video[i].to(device, dtype)).float().cpu()
                self._encoded[key] = (z.permute(1, 0, 2, 3).contiguous(), z[0])
            lat.append(self._encoded[key][0])
            first.append(self._encoded[key][1])
        return torch.stack(lat).to(device, dtype), torch.stack(first).to(device, dtype)

    def residuals(self, zt, t, text_frames, flow_cond, first_latents, camera: float, obj: float, scale: float = 1.0):
        """Summed residuals of the flow ControlNet (LoRA sets scaled by ``camera``/``obj``) and the image ControlNet."""
        controls = self.unwrapped()
        nf = zt.shape[2]
        with lora_scales(controls.flow, camera, obj):
            down, mid = controls.flow(zt, t, encoder_hidden_states=text_frames, controlnet_cond=flow_cond,
                                      conditioning_scale=scale, return_dict=False)
        if first_latents is not None:
            cond, mask = first_frame_condition(first_latents, nf)
            down_i, mid_i = controls.image(zt, t, encoder_hidden_states=text_frames, controlnet_cond=cond,
                                           conditioning_mask=mask, conditioning_scale=scale, return_dict=False)
            down = [a + b for a, b in zip(down, down_i, strict=True)]
            mid = mid + mid_i
        return down, mid

    def loss(self, batch, gen, device, dtype):
        b = self.backbone
        if self._text is None:
            self._text = encode_prompt(b.text_encoder, b.tokenizer, [self.prompt])
        z0, first = self._encode(batch, device, dtype)
        bsz, _, nf = z0.shape[:3]
        noise = torch.randn(z0.shape, generator=gen).to(device, dtype)
        t = torch.randint(0, b.scheduler.config.num_train_timesteps, (bsz,), generator=gen).to(device)
        zt = b.scheduler.add_noise(z0, noise, t)
        if b.scheduler.config.prediction_type == "v_prediction":
            target = v_target(b.scheduler.alphas_cumprod, z0, noise, t)
        else:
            target = epsilon_target(z0, noise)
        text = self._text.to(device, dtype).expand(bsz, -1, -1).repeat_interleave(nf, dim=0)
        flow = flow_condition(batch.control.to(device, dtype), self.scale_factor)
        down, mid = self.residuals(zt, t, text, flow, first, *self._set_scales())
        pred = b.unet(zt, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample
        loss = weighted_mse(pred, target)
        if self.stage == "object" and self.orthogonal_weight > 0:
            loss = loss + self.orthogonal_weight * orthogonal_loss(self.unwrapped().flow)
        return loss

    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.unwrapped().flow.state_dict().items()}
        save_file(state, str(d / "flow_controlnet.safetensors"))
        write_json(d / "adapter.json", {"format": "amg-imageconductor/1", "method": self.name, **self.options(),
                                        "base": self.backbone.fingerprint, **(extra or {})})
        return d

    def restore(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / "adapter.json").is_file() or not (d / "flow_controlnet.safetensors").is_file():
            raise AmgError(f"{d}: not an Image Conductor run folder (expected adapter.json, flow_controlnet.safetensors)")
        if not fingerprints_match(read_json(d / "adapter.json").get("base", {}), self.backbone.fingerprint):
            raise AmgError(f"{d}: trained on a different base model than the one loaded")
        net = self.unwrapped().flow
        state, own = load_file(str(d / "flow_controlnet.safetensors")), net.state_dict()
        if set(state) != set(own) or any(own[k].shape != v.shape for k, v in state.items()):
            raise AmgError(f"{d}: weights do not fit this flow ControlNet (rank or base differ)")
        net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})

    def pipeline(self):
        """An :class:`~finetune.pipelines.image_conductor.ImageConductorPipeline` over the backbone."""
        from ..pipelines.image_conductor import ImageConductorPipeline

        b, controls = self.backbone, self.unwrapped().eval()
        pipe = ImageConductorPipeline(vae=b.vae, text_encoder=b.text_encoder, tokenizer=b.tokenizer, unet=b.unet,
                                      scheduler=b.scheduler, flow_controlnet=controls.flow,
                                      image_controlnet=controls.image)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def import_image_conductor(source: str | os.PathLike | dict, flow_controlnet: nn.Module) -> nn.Module:
    """Load Image Conductor's ``flow_controlnet.ckpt`` into a flow ControlNet carrying both LoRA sets.

    The checkpoint holds the ControlNet's weights with peft's LoRA names (``...base_layer.weight``,
    ``...lora_A.omcm_weights.weight``, ``...lora_A.cmcm_weights.weight``); a ``state_dict`` or
    ``module.`` / ``controlnet.`` wrapping is accepted. Raises :class:`AmgError` on missing, extra or
    mis-shaped tensors.
    """
    state = unwrap_state(source) if isinstance(source, dict) else load_checkpoint(source)
    for prefix in ("module.", "controlnet."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    load_exact(flow_controlnet, state, "Image Conductor checkpoint")
    return flow_controlnet
