"""A ControlNet for SVD's ``UNetSpatioTemporalConditionModel`` and the UNet forward that takes its residuals.

:class:`SVDControlNet` is a trainable copy of the UNet's input convolution, time embeddings, down blocks
and mid block, plus a conditioning embedding for per-frame control images (``(B, F, C, H, W)``, e.g.
LeviTor's ``[heat, instance id, depth]``): a 3x3 convolution to 16 channels, then pairs of 3x3
convolutions (the second with stride 2) through ``conditioning_embedding_out_channels`` (LeviTor:
16/32/96/256, so 8x down to the latent grid), then a zero-initialised convolution to the UNet's first
width; its output is added to ``conv_in``'s. Every residual leaves through a zero-initialised 1x1
convolution, so a fresh ControlNet adds exact zeros and the controlled UNet equals the base UNet.
Parameter names follow LeviTor's ``ControlNetSVDModel`` (``controlnet_cond_embedding``,
``controlnet_down_blocks``, ``controlnet_mid_block``), so its checkpoints map one to one.

:func:`svd_unet_forward` is the stock UNet forward, step for step, with the residuals added after the
down blocks and the mid block as diffusers' ``UNet2DConditionModel`` does for its ControlNets. Without
residuals it returns exactly what ``unet(...)`` returns.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..model import move

__all__ = ["SVDControlNet", "svd_unet_forward", "time_embedding"]


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def time_embedding(net: nn.Module, timestep, added_time_ids: torch.Tensor, batch_size: int,
                   like: torch.Tensor) -> torch.Tensor:
    """SVD's embedding ``(B, D)`` of the timestep (``c_noise``) and the added ids (fps-1, motion bucket,
    noise augmentation), computed by ``net``'s ``time_proj``/``time_embedding``/``add_*`` modules
    exactly as the stock UNet does."""
    t = timestep
    if not torch.is_tensor(t):
        dtype = torch.float64 if isinstance(t, float) else torch.int64
        t = torch.tensor([t], dtype=dtype, device=like.device)
    elif len(t.shape) == 0:
        t = t[None].to(like.device)
    t = t.expand(batch_size)
    emb = net.time_embedding(net.time_proj(t).to(dtype=like.dtype))
    time_embeds = net.add_time_proj(added_time_ids.flatten()).reshape((batch_size, -1)).to(emb.dtype)
    return emb + net.add_embedding(time_embeds)


def _run_block(block, sample, emb, ehs, indicator, **kw):
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=sample, temb=emb, encoder_hidden_states=ehs, image_only_indicator=indicator, **kw)
    return block(hidden_states=sample, temb=emb, image_only_indicator=indicator, **kw)


def svd_unet_forward(unet, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                     added_time_ids: torch.Tensor, down_block_additional_residuals=None,
                     mid_block_additional_residual: torch.Tensor | None = None) -> torch.Tensor:
    """``UNetSpatioTemporalConditionModel`` forward with optional ControlNet residuals.

    Args:
        sample: ``(B, F, C_in, h, w)`` noisy latents concatenated with the first frame's latents.
        timestep: scalar or ``(B,)`` (SVD: ``0.25 log sigma``).
        encoder_hidden_states: ``(B, 1, D)`` CLIP image embedding.
        added_time_ids: ``(B, 3)``.
        down_block_additional_residuals: one ``(B*F, c, h', w')`` tensor per skip connection (as
            :class:`SVDControlNet` returns them), or None.
        mid_block_additional_residual: ``(B*F, c, h'', w'')`` or None.

    Returns the prediction ``(B, F, 4, h, w)``.
    """
    up_factor = 2 ** unet.num_upsamplers
    forward_upsample_size = any(s % up_factor != 0 for s in sample.shape[-2:])
    upsample_size = None
    batch_size, num_frames = sample.shape[:2]
    emb = time_embedding(unet, timestep, added_time_ids, batch_size, sample)

    sample = sample.flatten(0, 1)
    emb = emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)
    ehs = encoder_hidden_states.repeat_interleave(num_frames, dim=0,
                                                  output_size=encoder_hidden_states.shape[0] * num_frames)
    sample = unet.conv_in(sample)
    indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)

    skips = (sample,)
    for block in unet.down_blocks:
        sample, res = _run_block(block, sample, emb, ehs, indicator)
        skips += res
    if down_block_additional_residuals is not None:
        skips = tuple(s + r for s, r in zip(skips, down_block_additional_residuals, strict=True))

    sample = unet.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=ehs, image_only_indicator=indicator)
    if mid_block_additional_residual is not None:
        sample = sample + mid_block_additional_residual

    for i, block in enumerate(unet.up_blocks):
        res = skips[-len(block.resnets):]
        skips = skips[:-len(block.resnets)]
        if i < len(unet.up_blocks) - 1 and forward_upsample_size:
            upsample_size = skips[-1].shape[2:]
        sample = _run_block(block, sample, emb, ehs, indicator, res_hidden_states_tuple=res,
                            upsample_size=upsample_size)

    sample = unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))
    return sample.reshape(batch_size, num_frames, *sample.shape[1:])


class SVDControlNet(ModelMixin, ConfigMixin):
    """ControlNet of an SVD UNet (see the module docstring); build one with :meth:`from_unet`.

    ``forward`` returns ``(down_residuals, mid_residual)`` for :func:`svd_unet_forward`, each scaled
    by ``conditioning_scale``.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, in_channels: int = 8,
                 down_block_types: tuple[str, ...] = ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
                 block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280), addition_time_embed_dim: int = 256,
                 projection_class_embeddings_input_dim: int = 768, layers_per_block: int | tuple[int, ...] = 2,
                 cross_attention_dim: int | tuple[int, ...] = 1024,
                 transformer_layers_per_block: int | tuple[int, ...] = 1,
                 num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20), num_frames: int = 25,
                 conditioning_channels: int = 3,
                 conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps
        from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block

        n = len(down_block_types)
        per = lambda v: (v,) * n if isinstance(v, int) else tuple(v)  # noqa: E731
        heads, cross, layers, tlayers = (per(num_attention_heads), per(cross_attention_dim), per(layers_per_block),
                                         per(transformer_layers_per_block))
        c0 = block_out_channels[0]
        time_dim = c0 * 4
        self.conv_in = nn.Conv2d(in_channels, c0, kernel_size=3, padding=1)
        self.time_proj = Timesteps(c0, True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c0, time_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_dim)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=c0, conditioning_channels=conditioning_channels,
            block_out_channels=tuple(conditioning_embedding_out_channels))

        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([_zero(nn.Conv2d(c0, c0, kernel_size=1))])
        out_c = c0
        for i, kind in enumerate(down_block_types):
            in_c, out_c = out_c, block_out_channels[i]
            final = i == n - 1
            self.down_blocks.append(get_down_block(
                kind, num_layers=layers[i], transformer_layers_per_block=tlayers[i], in_channels=in_c,
                out_channels=out_c, temb_channels=time_dim, add_downsample=not final, resnet_eps=1e-5,
                cross_attention_dim=cross[i], num_attention_heads=heads[i], resnet_act_fn="silu"))
            for _ in range(layers[i] + (0 if final else 1)):
                self.controlnet_down_blocks.append(_zero(nn.Conv2d(out_c, out_c, kernel_size=1)))
        self.mid_block = UNetMidBlockSpatioTemporal(block_out_channels[-1], temb_channels=time_dim,
                                                    transformer_layers_per_block=tlayers[-1],
                                                    cross_attention_dim=cross[-1], num_attention_heads=heads[-1])
        self.controlnet_mid_block = _zero(nn.Conv2d(block_out_channels[-1], block_out_channels[-1], kernel_size=1))

    @classmethod
    def from_unet(cls, unet, conditioning_channels: int = 3,
                  conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
                  load_weights_from_unet: bool = True) -> "SVDControlNet":
        """A ControlNet shaped like ``unet`` whose copied parts start from the UNet's weights."""
        c = unet.config
        net = cls(in_channels=c.in_channels, down_block_types=tuple(c.down_block_types),
                  block_out_channels=tuple(c.block_out_channels), addition_time_embed_dim=c.addition_time_embed_dim,
                  projection_class_embeddings_input_dim=c.projection_class_embeddings_input_dim,
                  layers_per_block=c.layers_per_block, cross_attention_dim=c.cross_attention_dim,
                  transformer_layers_per_block=c.transformer_layers_per_block,
                  num_attention_heads=c.num_attention_heads, num_frames=c.num_frames,
                  conditioning_channels=conditioning_channels,
                  conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels))
        if load_weights_from_unet:
            shared = ("conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block.")
            state = {k: v for k, v in unet.state_dict().items() if k.startswith(shared)}
            missing, unexpected = net.load_state_dict(state, strict=False)
            assert not unexpected, unexpected
        return move(net, unet.device, unet.dtype)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, controlnet_cond: torch.Tensor, conditioning_scale: float = 1.0):
        """Residuals for the UNet from ``sample`` ``(B, F, C_in, h, w)`` and ``controlnet_cond``
        ``(B, F, C_cond, H, W)`` (pixel grid, ``H = h * 2^(len(conditioning_embedding_out_channels) - 1)``).

        Returns ``(down, mid)``: a list of ``(B*F, c, ., .)`` tensors, one per UNet skip connection,
        and the mid-block residual.
        """
        batch_size, num_frames = sample.shape[:2]
        emb = time_embedding(self, timestep, added_time_ids, batch_size, sample)
        sample = sample.flatten(0, 1)
        emb = emb.repeat_interleave(num_frames, dim=0)
        ehs = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        cond = controlnet_cond.flatten(0, 1).to(sample.dtype)
        sample = self.conv_in(sample) + self.controlnet_cond_embedding(cond)
        indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
        skips = (sample,)
        for block in self.down_blocks:
            sample, res = _run_block(block, sample, emb, ehs, indicator)
            skips += res
        sample = self.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=ehs,
                                image_only_indicator=indicator)
        down = [conv(s) * conditioning_scale for s, conv in zip(skips, self.controlnet_down_blocks, strict=True)]
        return down, self.controlnet_mid_block(sample) * conditioning_scale
