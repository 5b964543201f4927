"""Garments painted on the body: which surface points each garment covers, its colour and thickness,
the extra geometry of skirts and long hair, the face features, and the baked cloth shading.

Coverage comes from the skin weights (the dominant joint's body segment) and the rest-pose joints (hem
heights along the legs, sleeve ends along the arms), so the same code dresses the embedded default body
and SMPL / SMPL-X bodies. Each part function returns the Gaussian fields of its splats as a tuple
``(face_ids (n,), bary (n,3), offsets (n,3), weights (n,J), quats (n,4), scales (n,3), colors (n,3))``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .appearance import Appearance
from .surface import bind_free_points, normal_frame_quats

__all__ = ["SEGMENTS", "THICKNESS", "Regions", "segment_labels", "extra_budget", "face_features", "skirt",
           "long_hair", "key_light", "cloth_shading"]

# SMPL joint -> body segment; the segment of a point is that of its dominant skinning joint
SEGMENTS = ("torso", "head", "upper_arm", "lower_arm", "hand", "upper_leg", "lower_leg", "foot")
_JOINT_SEGMENT = {0: "upper_leg", 1: "upper_leg", 2: "upper_leg", 3: "torso", 4: "lower_leg", 5: "lower_leg",
                  6: "torso", 7: "foot", 8: "foot", 9: "torso", 10: "foot", 11: "foot", 12: "head",
                  13: "torso", 14: "torso", 15: "head", 16: "upper_arm", 17: "upper_arm", 18: "lower_arm",
                  19: "lower_arm", 20: "hand", 21: "hand", 22: "hand", 23: "hand"}
# SMPL joint indices used for garment extents
_PELVIS, _LHIP, _RHIP, _LKNEE, _RKNEE, _LANKLE, _RANKLE = 0, 1, 2, 4, 5, 7, 8
_SPINE3, _NECK, _HEAD, _LSHO, _RSHO, _LELB, _RELB, _LWRI, _RWRI = 9, 12, 15, 16, 17, 18, 19, 20, 21

# how far each garment stands off the skin, metres (cloth over skin, a jacket over a shirt)
THICKNESS = {"top": 0.004, "dress": 0.004, "bottom": 0.004, "outer": 0.012, "shoes": 0.005, "hair": 0.008}


def segment_labels(weights: torch.Tensor) -> list[str]:
    """Body segment name per point from skin weights ``(N,24)`` (the dominant joint's segment)."""
    dom = weights.argmax(dim=-1).tolist()
    return [_JOINT_SEGMENT.get(j, "torso") for j in dom]


def extra_budget(app: Appearance, total: int) -> dict[str, int]:
    """Gaussians of ``total`` set aside for garment geometry: ``{"skirt": n, "hair": n}`` when worn."""
    out = {}
    d = app.garments.get("dress")
    sk = app.garments.get("bottom")
    if d is not None or (sk is not None and sk.name == "skirt"):
        out["skirt"] = int(0.12 * total)
    if app.hair_length in ("long", "shoulder"):
        out["hair"] = int(0.05 * total)
    return out


class Regions:
    """Garment coverage from rest-pose coordinates: heights along the legs, distances along the arms."""

    HEM = {"mini": 0.75, "thigh": 0.55, "above_knee": 0.15, "knee": 0.0, "midi": -0.45, "ankle": -1.0,
           "long": -0.95}  # in units of knee->hip (positive) and knee->ankle (negative) lengths

    def __init__(self, joints: torch.Tensor, app: Appearance):
        self.j = joints
        self.app = app
        j = joints
        self.hip_y = float((j[_LHIP, 1] + j[_RHIP, 1]) / 2)
        self.knee_y = float((j[_LKNEE, 1] + j[_RKNEE, 1]) / 2)
        self.ankle_y = float((j[_LANKLE, 1] + j[_RANKLE, 1]) / 2)
        self.neck = j[_NECK]
        self.head = j[_HEAD]
        self.shoulder_x = float((j[_LSHO, 0] - j[_RSHO, 0]).abs() / 2)
        self.elbow_x = float((j[_LELB, 0] - j[_RELB, 0]).abs() / 2)
        self.wrist_x = float((j[_LWRI, 0] - j[_RWRI, 0]).abs() / 2)
        self.center_x = float(j[_PELVIS, 0])

    def hem_y(self, length: str) -> float:
        f = self.HEM.get(length, 0.0)
        if f >= 0:
            return self.knee_y + f * (self.hip_y - self.knee_y)
        return self.knee_y + f * (self.knee_y - self.ankle_y) - 0.02

    def sleeve_x(self, sleeves: str) -> float:
        """Distance from the body centre line where a sleeve ends (T-pose arms lie along x)."""
        if sleeves == "none":
            return self.shoulder_x + 0.02
        if sleeves == "short":
            return self.shoulder_x + 0.45 * (self.elbow_x - self.shoulder_x)
        return self.wrist_x - 0.02

    def surface(self, p: torch.Tensor, seg: list[str], normal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour ``(N,3)`` and normal offset ``(N,)`` (metres) of surface points ``p (N,3)``."""
        app = self.app
        n = p.shape[0]
        color = torch.tensor(app.skin).expand(n, 3).clone()
        thick = torch.zeros(n)
        seg_a = np.asarray(seg)
        y = p[:, 1]
        ax = (p[:, 0] - self.center_x).abs()
        is_arm = torch.as_tensor(np.isin(seg_a, ("upper_arm", "lower_arm", "hand")))
        is_leg = torch.as_tensor(np.isin(seg_a, ("upper_leg", "lower_leg")))
        is_torso = torch.as_tensor(seg_a == "torso")
        is_foot = torch.as_tensor(seg_a == "foot")
        is_head = torch.as_tensor(seg_a == "head")

        def paint(mask, rgb, t):
            color[mask] = torch.tensor(rgb, dtype=torch.float32)
            thick[mask] = t

        g = app.garments
        bottom, dress, top, outer, shoes = (g.get(k) for k in ("bottom", "dress", "top", "outer", "shoes"))
        lower_torso = is_torso & (y < self.hip_y + 0.08)
        if bottom is not None:
            hem = self.hem_y(bottom.length)
            paint((is_leg & (y > hem)) | lower_torso, bottom.color, THICKNESS["bottom"])
        for garment in (top, dress, outer):
            if garment is None:
                continue
            body_mask = is_torso & ~(lower_torso if garment is not dress else torch.zeros_like(lower_torso))
            if garment.slot == "outer":
                body_mask = is_torso
            sleeve = is_arm & (ax < self.sleeve_x(garment.sleeves or "none"))
            paint(body_mask | sleeve, garment.color, THICKNESS[garment.slot])
            if garment is dress:
                paint(is_leg & (y > self.hem_y(dress.length)), dress.color, THICKNESS["dress"])
        if shoes is not None:
            paint(is_foot & (y < self.ankle_y + 0.03), shoes.color, THICKNESS["shoes"])
        # hair cap: the top and back of the head
        if app.hair_length != "bald":
            rel = p - self.head
            # crown and back of the head, the sides above the ears, the front only above the hairline
            cap = is_head & ((rel[:, 1] > 0.105) | ((rel[:, 2] < -0.01) & (rel[:, 1] > -0.05)) |
                             ((rel[:, 2] < 0.04) & (rel[:, 1] > 0.045) & (rel[:, 0].abs() > 0.05)))
            if app.hair_length in ("long", "shoulder"):
                cap = cap | (is_head & (rel[:, 2] < 0.02) & (rel[:, 1] > -0.02) & (rel[:, 0].abs() > 0.06))
            paint(cap, app.hair_color, THICKNESS["hair"])
        return color, thick

    def skirt_top(self) -> float:
        return self.hip_y + 0.06



def face_features(region: "Regions", rest_v, faces, W, spacing: float, app: Appearance):
    """Eyes, brows and mouth as small flat Gaussians on the front of the head, placed from the nose tip
    (the most forward head vertex), so a face reads as a face and front from back."""
    head = region.head
    sel = (rest_v[:, 1] > float(head[1]) - 0.02) & (rest_v[:, 1] < float(head[1]) + 0.15) & \
          ((rest_v[:, 0] - head[0]).abs() < 0.05)
    if int(sel.sum()) < 10:
        return None
    cand = rest_v[sel]
    nose = cand[cand[:, 2].argmax()]
    feats = [((-0.032, 0.035), (0.04, 0.03, 0.03), (0.011, 0.007)), ((0.032, 0.035), (0.04, 0.03, 0.03), (0.011, 0.007)),
             ((-0.033, 0.055), tuple(0.6 * c for c in app.hair_color), (0.014, 0.003)),
             ((0.033, 0.055), tuple(0.6 * c for c in app.hair_color), (0.014, 0.003)),
             ((0.0, -0.038), (0.62, 0.25, 0.25), (0.016, 0.005))]
    pts, cols, sc = [], [], []
    for (dx, dy), col, (sx, sy) in feats:
        target = nose[:2] + torch.tensor([dx, dy])
        near = (rest_v[:, 0] - target[0]).abs().lt(0.012) & (rest_v[:, 1] - target[1]).abs().lt(0.012) & sel
        if not near.any():
            continue
        z = float(rest_v[near, 2].max()) + 0.004
        pts.append([float(target[0]), float(target[1]), z])
        cols.append(col)
        sc.append([sx, sy, 0.002])
    if not pts:
        return None
    pts = torch.tensor(pts)
    fid, bary, off, w = bind_free_points(pts, rest_v, faces, W, pull=_HEAD, pull_amount=1.0)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(len(pts), 4).clone()
    return fid, bary, off, w, quats, torch.tensor(sc), torch.tensor(cols, dtype=torch.float32)


def skirt(region: Regions, rest_v, faces, W, n: int, spacing: float, gen):
    """A flared skirt: an elliptic truncated cone from the hips to the hem, skinned mostly to the pelvis."""
    app = region.app
    garment = app.garments.get("dress") or app.garments.get("bottom")
    top_y, hem_y = region.skirt_top(), region.hem_y(garment.length)
    hem_y = min(hem_y, top_y - 0.1)
    band = rest_v[(rest_v[:, 1] > top_y - 0.03) & (rest_v[:, 1] < top_y + 0.03)]
    cx, cz = float(band[:, 0].mean()), float(band[:, 2].mean())
    rx = float((band[:, 0] - cx).abs().max()) + 0.01
    rz = float((band[:, 2] - cz).abs().max()) + 0.01
    u = torch.rand(n, generator=gen)
    theta = torch.rand(n, generator=gen) * 2 * math.pi
    h = top_y - u * (top_y - hem_y)
    flare = 1 + 0.55 * u  # widens towards the hem
    x = cx + rx * flare * torch.cos(theta)
    z = cz + rz * flare * torch.sin(theta)
    pts = torch.stack([x, h, z], -1)
    normal = torch.nn.functional.normalize(torch.stack([torch.cos(theta) / rx, torch.zeros(n), torch.sin(theta) / rz], -1), dim=-1)
    fid, bary, off, w = bind_free_points(pts, rest_v, faces, W, pull=_PELVIS, pull_amount=0.5)
    quats = normal_frame_quats(normal)
    s = 1.3 * spacing
    scales = torch.tensor([s, s, 0.25 * spacing]).expand(n, 3).clone()
    color = torch.tensor(garment.color, dtype=torch.float32).expand(n, 3) * (0.9 + 0.1 * torch.cos(6 * theta))[:, None]
    return fid, bary, off, w, quats, scales, color


def long_hair(region: Regions, rest_v, faces, W, n: int, spacing: float, gen):
    """Hair falling behind the head and neck: a half cylinder from the crown to the shoulders or below."""
    app = region.app
    head, neck = region.head, region.neck
    end_y = float(neck[1]) - (0.2 if app.hair_length == "long" else 0.04)
    top_y = float(head[1]) + 0.09
    head_pts = rest_v[(rest_v[:, 1] > float(head[1]) - 0.02) & (rest_v[:, 1] < float(head[1]) + 0.02)]
    r = float((head_pts[:, [0, 2]] - head[[0, 2]]).norm(dim=-1).max()) + 0.015 if len(head_pts) else 0.1
    u = torch.rand(n, generator=gen)
    theta = (torch.rand(n, generator=gen) - 0.5) * math.radians(220)  # around the back (-z side)
    y = top_y - u * (top_y - end_y)
    # flares slightly outwards as it falls over the shoulders
    rr = r * (1 + 0.25 * u)
    x = float(head[0]) + rr * torch.sin(theta)
    z = float(head[2]) - rr * torch.cos(theta) * (0.8 + 0.2 * (1 - u))
    pts = torch.stack([x, y, z], -1)
    normal = torch.nn.functional.normalize(torch.stack([torch.sin(theta), torch.zeros(n), -torch.cos(theta)], -1), dim=-1)
    fid, bary, off, w = bind_free_points(pts, rest_v, faces, W, pull=_HEAD, pull_amount=0.7)
    quats = normal_frame_quats(normal)
    scales = torch.tensor([0.6 * spacing, 1.5 * spacing, 0.3 * spacing]).expand(n, 3).clone()
    color = torch.tensor(app.hair_color, dtype=torch.float32).expand(n, 3) * (0.85 + 0.15 * torch.rand(n, 1, generator=gen))
    return fid, bary, off, w, quats, scales, color


def key_light(color: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """``color (N,3)`` under a baked soft key light from above-front, so limbs and folds read in 3D;
    ``normal (N,3)`` unit surface normals of the splats."""
    light = torch.nn.functional.normalize(torch.tensor([0.3, 0.8, 0.6]), dim=0)
    return color * (0.72 + 0.28 * (normal @ light).clamp_min(0))[:, None]


def cloth_shading(color: torch.Tensor, pos: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``color (N,3)`` with shading noise so flat garments read as cloth, clamped to [0,1].

    Mostly smooth folds (a few random plane waves of 5-15 cm over the rest-pose positions ``pos (N,3)``,
    metres), a little per-splat grain; ``gen`` makes it reproducible.
    """
    k = torch.nn.functional.normalize(torch.randn(6, 3, generator=gen), dim=-1)
    k = k * (2 * math.pi / (0.05 + 0.1 * torch.rand(6, 1, generator=gen)))
    folds = torch.sin(pos @ k.T + 2 * math.pi * torch.rand(6, generator=gen)).mean(1, keepdim=True)
    noise = 1 + 0.12 * folds + 0.02 * torch.randn(len(pos), 1, generator=gen)
    return (color * noise).clamp(0, 1)
