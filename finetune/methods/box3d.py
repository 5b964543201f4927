"""The 3D-aware trajectory model (the thesis / PoseTraj): an SVD ControlNet over trajectory images.

The control is ``render/conditions/traj_image.py``'s trajectory images (red step segments, green end
discs, last frame black) as RGB in [0, 1]. The two-stage curriculum: stage 1 trains on frames with the
projected 3D boxes drawn (``bbox3d.mp4``, ``target: bbox3d``) so the network learns the 3D extent of
what it moves; stage 2 continues from stage 1's weights (``init_from``) on the clean frames. The
thesis's spatial-enhancement loss (``spatial_loss_alpha``, e.g. 0.5) adds the loss of one random frame
denoised alone with its own ControlNet residuals. With ``region_points`` each step redraws the
trajectory images from 1-5 points sampled inside the first frame's projected box
(``render.conditions.traj_image.region_tracks``), following the box's motion, the thesis's
region-aware sampler; the draws come from the loop's generator, so resuming stays exact.

PoseTraj's released ControlNet (``models/controlnet_sdv.py``'s ``ControlNetSDVModel``) has LeviTor's
layout and names, so :func:`import_posetraj_controlnet` is the same mapping.
"""

from __future__ import annotations

import numpy as np
import torch

from render.conditions.traj_image import region_tracks, trajectory_frames
from render.errors import AmgError

from .levitor import import_levitor_controlnet
from .svd_control import SVDControlMethod

__all__ = ["PoseTrajMethod", "import_posetraj_controlnet", "STAGE_TARGETS", "region_control"]

STAGE_TARGETS = {1: "bbox3d", 2: "clip"}


def region_control(boxes: np.ndarray, height: int, width: int, seed: int) -> torch.Tensor:
    """Trajectory images ``(F, 3, H, W)`` in [0, 1] from 1-5 points drawn inside each object's projected box.

    ``boxes``: ``(F, P, 8, 2)`` projected corners; every object contributes its own sampled tracks.
    """
    tracks = [region_tracks(boxes[:, p], seed=seed + 7919 * p) for p in range(boxes.shape[1])]
    frames = trajectory_frames(np.concatenate(tracks, 0), height, width)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


class PoseTrajMethod(SVDControlMethod):
    """PoseTraj / the thesis's ControlNet training, stage 1 (boxes drawn) or 2 (clean frames).

    Args:
        stage: 1 or 2 (2 usually with ``init_from`` = stage 1's ``adapter/``).
        spatial_loss_alpha: weight of the one-frame spatial loss (0: off).
        region_points: redraw the control from points sampled inside the projected boxes each step.
        Other arguments as :class:`~finetune.methods.svd_control.SVDControlMethod`.
    """

    name = "posetraj"

    def __init__(self, stage: int = 1, spatial_loss_alpha: float = 0.0, region_points: bool = False,
                 conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256), fps: int = 7,
                 motion_bucket_id: int = 127, noise_aug_strength: float = 0.02, init_from: str | None = None):
        if stage not in STAGE_TARGETS:
            raise AmgError(f"stage={stage!r}: expected 1 (boxes drawn) or 2 (clean frames)")
        super().__init__("traj", STAGE_TARGETS[stage], conditioning_embedding_out_channels, fps, motion_bucket_id,
                         noise_aug_strength, spatial_loss_alpha, init_from)
        self.stage, self.region_points = stage, bool(region_points)

    def options(self) -> dict:
        return {**super().options(), "stage": self.stage, "region_points": self.region_points}

    def loss(self, batch, gen, device, dtype):
        if self.region_points:
            h, w = batch.control.shape[-2:]
            controls = []
            for i, boxes in enumerate(batch.boxes):
                if boxes is None:
                    raise AmgError("region_points: the clip has no bbox3d.npy; render it with the bbox3d condition")
                seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
                controls.append(region_control(np.asarray(boxes), h, w, seed))
            batch.control = torch.stack(controls)
        return super().loss(batch, gen, device, dtype)


def import_posetraj_controlnet(source, unet):
    """PoseTraj's ControlNet checkpoint (LeviTor's layout) as an :class:`SVDControlNet` for ``unet``."""
    return import_levitor_controlnet(source, unet)
