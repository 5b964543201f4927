"""LeviTor: an SVD ControlNet over ``[heat, instance id, depth]`` control, and its checkpoint importer.

The control ``(F, 3, H, W)`` is ``render.conditions.levitor.control_tensor``'s, fed unnormalised (0-255
values), as LeviTor's ControlNet saw it. Training: AdamW 1e-5 at 16 frames, 288x512 in the paper
(``conf/method/levitor.yaml``); the EDM-weighted denoising loss of :mod:`finetune.methods.svd_control`.
Sampling defaults (:data:`SAMPLING`): 25 steps, per-frame guidance ``linspace(1.0, 3.0, F)``, noise
augmentation 0.02, fps 6, motion bucket 100, control scale 1.0.

:func:`import_levitor_controlnet` reads LeviTor's released ControlNet (``controlnet_svd.py``'s
``ControlNetSVDModel``: a diffusers folder or a state dict) into :class:`SVDControlNet`; the parameter
names are the same, so the import checks shapes and that nothing is left over.
"""

from __future__ import annotations

import os

import torch

from render.errors import AmgError

from ..backbones.svd_controlnet import SVDControlNet
from ..importers.checkpoint import load_checkpoint, load_exact, unwrap_state
from .svd_control import SVDControlMethod

__all__ = ["LeviTorMethod", "SAMPLING", "import_levitor_controlnet", "embedding_channels_of"]

SAMPLING = {"num_inference_steps": 25, "min_guidance_scale": 1.0, "max_guidance_scale": 3.0,
            "noise_aug_strength": 0.02, "fps": 6, "motion_bucket_id": 100, "controlnet_conditioning_scale": 1.0}


class LeviTorMethod(SVDControlMethod):
    """LeviTor's ControlNet training (condition ``levitor``; see :class:`SVDControlMethod` for the options)."""

    name = "levitor"

    def __init__(self, conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
                 fps: int = SAMPLING["fps"], motion_bucket_id: int = SAMPLING["motion_bucket_id"],
                 noise_aug_strength: float = SAMPLING["noise_aug_strength"], init_from: str | None = None):
        super().__init__("levitor", "clip", conditioning_embedding_out_channels, fps, motion_bucket_id,
                         noise_aug_strength, 0.0, init_from)


# LeviTor's optional point-feature branch (``with_id_feature``) has no counterpart here
_UNSUPPORTED = ("controlnet_cond_embedding.mlp_embedding.", "controlnet_cond_embedding.conv_in_feat.",
                "controlnet_cond_embedding.blocks_feat.", "controlnet_cond_embedding.conv_out_feat.")


def embedding_channels_of(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The conditioning embedding's widths read from a state dict's ``controlnet_cond_embedding`` shapes."""
    key = "controlnet_cond_embedding.conv_in.weight"
    if key not in state:
        raise AmgError(f"ControlNet state dict has no {key}: not an SVD ControlNet")
    widths = [int(state[key].shape[0])]
    i = 1
    while f"controlnet_cond_embedding.blocks.{i}.weight" in state:
        widths.append(int(state[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0]))
        i += 2
    return tuple(widths)


def import_levitor_controlnet(source: str | os.PathLike | dict, unet) -> SVDControlNet:
    """An :class:`SVDControlNet` for ``unet`` holding the weights of a LeviTor ControlNet checkpoint.

    ``source``: a diffusers ``controlnet/`` folder, a ``.safetensors``/``.bin`` file or a state dict
    (a ``controlnet.`` prefix, as in full-pipeline saves, is stripped). Raises :class:`AmgError` when
    tensors are missing, left over or of the wrong shape.
    """
    state = unwrap_state(source) if isinstance(source, dict) else load_checkpoint(source)
    if all(k.startswith("controlnet.") for k in state):
        state = {k[len("controlnet."):]: v for k, v in state.items()}
    extra = sorted(k for k in state if k.startswith(_UNSUPPORTED))
    if extra:
        raise AmgError(f"LeviTor ControlNet uses the point-feature branch ({extra[0]}, ...): not supported")
    in_ch = int(state["controlnet_cond_embedding.conv_in.weight"].shape[1]) if \
        "controlnet_cond_embedding.conv_in.weight" in state else 3
    net = SVDControlNet.from_unet(unet, conditioning_channels=in_ch,
                                  conditioning_embedding_out_channels=embedding_channels_of(state),
                                  load_weights_from_unet=False)
    load_exact(net, state, "LeviTor ControlNet (for this UNet)")
    return net
