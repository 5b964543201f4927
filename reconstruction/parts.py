"""Which body part covers each pixel: the fitted body's vertices projected into the frames.

Captions describe garments from the pixels of the person, not of the floor behind their legs: each
vertex of the fitted body has its part (``BodyModel.part_labels``, from the skinning weights), vertices
are projected through the clip's cameras with a depth test (the nearest vertex per pixel wins,
so an arm in front of the torso labels the arm), and the labels are closed over the small holes between
projected vertices.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["part_labels", "part_index"]


def part_index(name: str) -> int:
    """The label of body part ``name`` (``avatars.body.PART_NAMES``) in :func:`part_labels` images."""
    from avatars.body import PART_NAMES

    return PART_NAMES.index(name) + 1


def part_labels(body, motion, cameras, mask: np.ndarray | None = None, radius: int = 1) -> np.ndarray:
    """Body part per pixel, ``(F,H,W)`` uint8: ``1 +`` the index in ``avatars.body.PART_NAMES``, 0 off the body.

    Args:
        body: the body model of ``motion``; motion: ``avatars.motion.Motion`` of ``F`` frames (world metres).
        cameras: ``CameraPath`` of the frames.
        mask: optional ``(F,H,W)`` bool, the person's segmentation: labels outside it are cleared (the
            fitted body is a little off the person; the mask says where the person really is).
        radius: pixels each projected vertex covers (holes between vertices are smaller than this).
    """
    import cv2

    F, W, H = len(cameras), cameras.width, cameras.height
    labels = (np.asarray(body.part_labels) + 1).astype(np.uint8)
    with torch.no_grad():
        out = body(betas=motion.betas[: body.num_betas][None].expand(F, -1), global_orient=motion.global_orient,
                   body_pose=motion.body_pose, transl=motion.transl)
        uv, z = cameras.project(out.vertices.double())
    uv, z = uv.numpy(), z.numpy()
    result = np.zeros((F, H, W), np.uint8)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    for f in range(F):
        x, y = np.floor(uv[f, :, 0]).astype(int), np.floor(uv[f, :, 1]).astype(int)
        ok = (z[f] > 1e-3) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
        order = np.argsort(-z[f][ok])  # far first: nearer vertices overwrite
        img = np.zeros((H, W), np.uint8)
        img[y[ok][order], x[ok][order]] = labels[ok][order]
        # fill the gaps between vertices with the nearest label (dilation keeps each part's own pixels)
        grown = cv2.dilate(img, kernel)
        img = np.where(img > 0, img, grown)
        if mask is not None:
            img = np.where(np.asarray(mask[f]) > 0.5, img, 0)
        result[f] = img
    return result
