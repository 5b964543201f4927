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

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.conditions.levitor import MoveResult
from render.errors import AmgError

from ..backbones.svd_controlnet import SVDControlNet
from ..importers.checkpoint import load_checkpoint, load_exact, unwrap_state
from .svd_control import SVDControlMethod

__all__ = ["LeviTorMethod", "SAMPLING", "import_levitor_controlnet", "embedding_channels_of", "Clicks", "read_clicks",
           "clicks_control"]

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


# -- the inference front end: clicks with depth -> control -----------------------------------------------
@dataclass
class Clicks:
    """One object's drawn trajectory: ``object_id`` in the first frame's instance mask and ``points``
    ``(N, 3)``: ``x, y`` pixels and a depth relative to the object's depth at the first click (1 keeps
    the distance, 0.5 halves it: the object comes closer and grows; 2 moves it away)."""

    object_id: int
    points: np.ndarray


def read_clicks(source) -> list[Clicks]:
    """Clicks from a JSON file or an already parsed list: ``[{"id": 1, "points": [[x, y, d], ...]}, ...]``
    (``{"objects": [...]}`` is accepted too; a point without ``d`` keeps the depth, ``d = 1``)."""
    where = str(source) if isinstance(source, (str, os.PathLike)) else "trajectories"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AmgError(f"trajectories={path}: no such file; expected JSON [{{\"id\": 1, \"points\": [[x, y, d], ...]}}]")
        try:
            source = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise AmgError(f"trajectories={path}: not JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(source, dict):
        source = source.get("objects")
    if not isinstance(source, (list, tuple)) or not source:
        raise AmgError(f"{where}: expected a non-empty list of {{id, points}} objects")
    out = []
    for k, obj in enumerate(source):
        try:
            oid, pts = int(obj["id"]), [list(p) for p in obj["points"]]
            pts = np.array([p + [1.0] if len(p) == 2 else p for p in pts], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise AmgError(f"{where}: object {k} needs an integer id and points [[x, y] or [x, y, depth], ...]") from None
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 1 or not np.all(np.isfinite(pts)) or np.any(pts[:, 2] <= 0):
            raise AmgError(f"{where}: object {oid}: points must be finite [x, y, relative depth > 0] rows")
        out.append(Clicks(oid, pts))
    return out


def clicks_control(mask: np.ndarray, clicks: list[Clicks], num_frames: int, disparity: np.ndarray | None = None,
                   ratio: float = 1.0) -> tuple[np.ndarray, MoveResult]:
    """LeviTor's control ``float32 (F, 3, H, W)`` (``[heat, id, depth]`` unnormalised) from drawn clicks.

    Each object's clicks are resampled to ``num_frames`` (PCHIP, :func:`render.conditions.flow.resample_track`),
    their relative depth is multiplied by the LeviTor depth (``1 / disparity``) of the first frame at the
    first click (and kept at or beyond disparity 255, the nearest the control encodes), and :func:`render.conditions.levitor.move_object` moves the object in 3D (occlusion and
    perspective scale by the depth test and the splat) before the K-means points and the heatmaps
    (:func:`~render.conditions.levitor.control_tensor`).

    Args:
        mask: ``(H, W)`` integer instance ids of the first frame (0 background).
        clicks: the objects' trajectories (:func:`read_clicks`).
        num_frames: frames of the control.
        disparity: ``(H, W)`` 8-bit disparity of the first frame (:func:`~render.conditions.levitor.disparity_from_depth`
            of a depth map); None puts every object at disparity 128 on an empty (farthest) background.
        ratio: LeviTor's K-means points multiplier.
    Returns:
        the control and the :class:`~render.conditions.levitor.MoveResult` (re-rendered masks, depth, points).
    """
    from render.conditions.flow import resample_track
    from render.conditions.levitor import POINT_RADIUS_NDC, ObjectMove, control_tensor, inverse_disparity, move_object

    m = np.asarray(mask)
    if m.ndim != 2:
        raise AmgError(f"mask: expected (H, W) instance ids, got shape {m.shape}")
    h, w = m.shape
    disp = np.where(m > 0, 128, 0).astype(np.uint8) if disparity is None else np.asarray(disparity)
    if disp.shape != m.shape:
        raise AmgError(f"depth/disparity {disp.shape}: expected the mask's shape {m.shape}")
    inv = inverse_disparity(disp)
    missing = sorted({c.object_id for c in clicks} - set(np.unique(m).tolist()))
    if missing:
        raise AmgError(f"trajectories: object id {missing[0]} is not in the mask (its ids: "
                       f"{', '.join(str(i) for i in np.unique(m) if i > 0) or 'none'})")
    moves = []
    for c in clicks:
        track = resample_track(c.points, int(num_frames))
        x0, y0 = int(np.clip(round(c.points[0, 0]), 0, w - 1)), int(np.clip(round(c.points[0, 1]), 0, h - 1))
        on = m == c.object_id
        # the object's depth where the drag starts (its median when the click misses the object)
        d0 = float(inv[y0, x0]) if on[y0, x0] else float(np.median(inv[on]))
        # nearer than disparity 255 cannot be encoded in the uint8 depth channel
        track[:, 2] = np.maximum(track[:, 2] * d0, 1.0 / 255.0)
        moves.append(ObjectMove(object_id=c.object_id, trajectory=track))
    # small images: a splat under half a pixel leaves holes (move_object's note), so grow it to 1.5 px
    radius = max(POINT_RADIUS_NDC, 3.0 / min(h, w))  # NDC: the shorter side spans 2
    result = move_object(m, disp, moves, ratio=ratio, radius_ndc=radius)
    if not any(len(p) for p in result.points):
        raise AmgError(f"clicks: LeviTor's K-means rule gives no control point for these objects at {h}x{w} "
                       "(each cluster needs 10 sampled pixels; objects this small, or images under about 500 "
                       "pixels, get none)")
    return control_tensor(result.points, h, w), result
