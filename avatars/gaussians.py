"""Gaussian avatars bound to the body: text -> coloured Gaussians on the surface, animated by LBS.

``GaussianAvatar.from_body(body, appearance="a woman wearing a bright yellow dress")`` samples Gaussians
area-uniformly on the body surface (face id + barycentric coordinates + an offset), flattens them along the
surface normal, interpolates the skin weights, and colours them from the parsed appearance
(:mod:`avatars.appearance`): skin, hair, each garment over the body regions it covers, with garment
geometry as extra Gaussians (a dress flares from the hips, long hair falls behind the shoulders).

``avatar.pose(...)`` moves the Gaussians with the body: centres by linear blend skinning, and rotations
turned by the blended joint rotation, so splats stay tangent to the limbs they sit on. Root orientation and
translation are applied (HumanGaussian's animation drops them).

Regions are found from the skin weights and the rest-pose joints, so the same code dresses the embedded
default body and SMPL / SMPL-X bodies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.gaussian import Gaussians
from render.io import atomic_path, write_npz
from render.rotations import matrix_to_quaternion, quaternion_multiply

from .appearance import Appearance, parse_appearance

__all__ = ["GaussianAvatar", "segment_labels", "SEGMENTS", "save_ply", "load_ply"]

# SMPL joint -> body segment; the segment of a point is that of its dominant skinning joint
SEGMENTS = ("torso", "head", "upper_arm", "lower_arm", "hand", "upper_leg", "lower_leg", "foot")
_JOINT_SEGMENT = {0: "upper_leg", 1: "upper_leg", 2: "upper_leg", 3: "torso", 4: "lower_leg", 5: "lower_leg",
                  6: "torso", 7: "foot", 8: "foot", 9: "torso", 10: "foot", 11: "foot", 12: "head",
                  13: "torso", 14: "torso", 15: "head", 16: "upper_arm", 17: "upper_arm", 18: "lower_arm",
                  19: "lower_arm", 20: "hand", 21: "hand", 22: "hand", 23: "hand"}
# SMPL joint indices used for garment extents
_PELVIS, _LHIP, _RHIP, _LKNEE, _RKNEE, _LANKLE, _RANKLE = 0, 1, 2, 4, 5, 7, 8
_SPINE3, _NECK, _HEAD, _LSHO, _RSHO, _LELB, _RELB, _LWRI, _RWRI = 9, 12, 15, 16, 17, 18, 19, 20, 21

# Surface splats, tuned against the posed mesh rendered by pyrender (tests/test_avatar_render.py,
# benchmarks/avatar.py). Standard deviations in units of the sampling spacing sqrt(area / n): 0.6 along
# the surface covers it without holes (with stratified sampling) even where splats span several pixels;
# thin along the normal, because the edge-on splats at an outline set the silhouette's width.
_TANGENT_SCALE = 0.6
_NORMAL_SCALE = 0.05
# Metres the splat surface sits inside the skin. 3DGS rasterization adds a 0.3 px^2 low-pass to every
# splat, and the many edge-on splats along an outline push alpha past 0.5 about a pixel outside it;
# 7 mm is about one pixel of a full-body 256 px view (AMG's), so the alpha = 0.5 outline lands on the
# skin's there (higher resolutions see a body up to 7 mm slimmer; depth reads up to ~1 cm far).
_SURFACE_INSET = 0.007
# Near-opaque, so the front surface hides the back one (colour) and expected depth is the front's.
_OPACITY = 0.99
# how far each garment stands off the skin, metres (cloth over skin, a jacket over a shirt)
_THICKNESS = {"top": 0.004, "dress": 0.004, "bottom": 0.004, "outer": 0.012, "shoes": 0.005, "hair": 0.008}


def segment_labels(weights: torch.Tensor) -> list[str]:
    """Body segment name per point from skin weights ``(N,24)`` (the dominant joint's segment)."""
    dom = weights.argmax(dim=-1).tolist()
    return [_JOINT_SEGMENT.get(j, "torso") for j in dom]


@dataclass
class GaussianAvatar:
    """Gaussians bound to a body surface.

    Attributes:
        body: the :class:`avatars.body.BodyModel` it is bound to.
        face_ids: ``(N,)`` int64 triangle of each Gaussian's anchor.
        bary: ``(N,3)`` barycentric coordinates of the anchor in its triangle.
        offsets: ``(N,3)`` rest-pose displacement from the anchor, metres (normal offsets, skirt, hair).
        weights: ``(N,J)`` skin weights.
        quats: ``(N,4)`` wxyz rest-pose rotations.
        scales: ``(N,3)`` standard deviations, metres.
        opacities: ``(N,)``; colors: ``(N,3)`` RGB in [0,1].
        betas: ``(NB,)`` the avatar's body shape.
        appearance: the parsed appearance it was built from (``None`` for imported PLYs).
    """

    body: object
    face_ids: torch.Tensor
    bary: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    betas: torch.Tensor
    appearance: Appearance | None = None

    def __len__(self) -> int:
        return self.face_ids.shape[0]

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_body(cls, body, appearance: str | Appearance = "a person", num_gaussians: int = 30000,
                  seed: int = 0, betas: torch.Tensor | None = None) -> "GaussianAvatar":
        """Build an avatar from text on ``body``.

        Args:
            body: a :class:`avatars.body.BodyModel`.
            appearance: a caption or a parsed :class:`Appearance`.
            num_gaussians: total Gaussians, about 85% on the surface, the rest for skirt and hair geometry.
            seed: makes sampling and colour noise reproducible.
            betas: ``(NB,)`` body shape; zeros when omitted (a gender hint nudges the first shape component).
        """
        if num_gaussians < 100:
            raise AmgError(f"num_gaussians: expected >= 100, got {num_gaussians}")
        app = appearance if isinstance(appearance, Appearance) else parse_appearance(appearance, seed=seed)
        gen = torch.Generator().manual_seed(int(seed))
        nb = int(body.num_betas)
        betas = torch.zeros(nb) if betas is None else torch.as_tensor(betas, dtype=torch.float32).reshape(nb)
        rest_v, rest_j = _rest(body, betas)
        faces = _faces(body)
        W = _weights(body)
        tri = rest_v[faces]  # (F,3,3)
        area = 0.5 * torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)

        extra = _extra_budget(app, num_gaussians)
        n_surf = num_gaussians - sum(extra.values())
        fid = _stratified_faces(area, n_surf, gen)
        bary = _sample_bary(n_surf, gen)
        anchor = (tri[fid] * bary[..., None]).sum(1)
        # interpolated vertex normals: shading and splat orientation vary smoothly across faces
        normal = torch.nn.functional.normalize((_vertex_normals(rest_v, faces)[faces[fid]] * bary[..., None]).sum(1), dim=-1)
        w = (W[faces[fid]] * bary[..., None]).sum(1)
        spacing = math.sqrt(float(area.sum()) / n_surf)

        region = _Regions(rest_j, app)
        seg = segment_labels(w)
        color, thick = region.surface(anchor, seg, normal)
        offsets = normal * (thick - _SURFACE_INSET)[:, None]
        quats = _normal_frame_quats(normal)
        s_t = torch.full((n_surf,), _TANGENT_SCALE * spacing)
        scales = torch.stack([s_t, s_t, torch.full((n_surf,), _NORMAL_SCALE * spacing)], -1)

        # baked soft key light from above-front, so limbs and folds read in 3D
        light = torch.nn.functional.normalize(torch.tensor([0.3, 0.8, 0.6]), dim=0)
        color = color * (0.72 + 0.28 * (normal @ light).clamp_min(0))[:, None]
        parts = [(fid, bary, offsets, w, quats, scales, color)]
        face = _face_features(region, rest_v, faces, W, spacing, app)
        if face is not None:
            parts.append(face)
        if extra.get("skirt"):
            parts.append(_skirt(region, rest_v, faces, W, extra["skirt"], spacing, gen))
        if extra.get("hair"):
            parts.append(_long_hair(region, rest_v, faces, W, extra["hair"], spacing, gen))
        fid, bary, offsets, w, quats, scales, color = (torch.cat(x) for x in zip(*parts))
        # shading noise so flat garments read as cloth: mostly smooth folds (a few random plane waves of
        # 5-15 cm over the rest pose), a little per-splat grain
        pos = (rest_v[faces[fid]] * bary[..., None]).sum(1) + offsets
        k = torch.nn.functional.normalize(torch.randn(6, 3, generator=gen), dim=-1)
        k = k * (2 * math.pi / (0.05 + 0.1 * torch.rand(6, 1, generator=gen)))
        folds = torch.sin(pos @ k.T + 2 * math.pi * torch.rand(6, generator=gen)).mean(1, keepdim=True)
        noise = 1 + 0.12 * folds + 0.02 * torch.randn(len(fid), 1, generator=gen)
        color = (color * noise).clamp(0, 1)
        opac = torch.full((len(fid),), _OPACITY)
        return cls(body, fid, bary, offsets, w, quats, scales, opac, color.float(), betas, app)

    # ------------------------------------------------------------------------------------------
    # geometry
    # ------------------------------------------------------------------------------------------
    def rest_means(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,3)`` rest-pose centres for ``betas`` (the avatar's own shape by default)."""
        rest_v, _ = _rest(self.body, self.betas if betas is None else betas)
        tri = rest_v[_faces(self.body)[self.face_ids]]
        return (tri * self.bary[..., None]).sum(1) + self.offsets

    def canonical(self, instance_id: int | None = None) -> Gaussians:
        """The avatar in its rest pose as renderable :class:`Gaussians`."""
        ids = None if instance_id is None else torch.full((len(self),), int(instance_id), dtype=torch.long)
        return Gaussians(self.rest_means(), self.quats, self.scales, self.opacities, self.colors, ids)

    def pose(self, global_orient: torch.Tensor, body_pose: torch.Tensor, transl: torch.Tensor | None = None,
             betas: torch.Tensor | None = None, instance_id: int | None = None, return_body: bool = False):
        """Posed Gaussians for ``F`` frames.

        Args:
            global_orient: ``(F,3)`` or ``(3,)`` axis-angle root rotation.
            body_pose: ``(F,23,3)`` or ``(23,3)`` axis-angle joint rotations (SMPL order).
            transl: ``(F,3)`` root translation in metres (zeros when omitted).
            betas: ``(NB,)`` shape; the avatar's own when omitted.
            instance_id: id written into every Gaussian (person index + 1 in multi-person scenes).
            return_body: also return the body model's output for these frames (vertices, joints...), so
                callers posing once per frame can derive every condition from it.
        Returns:
            a list of ``F`` :class:`Gaussians` (and the body output when ``return_body``).
        """
        go = torch.as_tensor(global_orient, dtype=torch.float32).reshape(-1, 3)
        bp = torch.as_tensor(body_pose, dtype=torch.float32).reshape(-1, 23, 3)
        F = go.shape[0]
        if bp.shape[0] != F:
            raise AmgError(f"pose: expected global_orient and body_pose with the same frame count, got {F} and {bp.shape[0]}")
        tr = torch.zeros(F, 3) if transl is None else torch.as_tensor(transl, dtype=torch.float32).reshape(F, 3)
        b = self.betas if betas is None else torch.as_tensor(betas, dtype=torch.float32)
        out = self.body(betas=b.expand(F, -1), global_orient=go, body_pose=bp, transl=tr)
        means_rest = self.rest_means(b)
        A = out.skin_transforms.to(means_rest.dtype)  # (F,J,4,4)
        T = torch.einsum("nj,fjab->fnab", self.weights, A[:, :, :3, :])  # (F,N,3,4)
        means = (T[..., :3] @ means_rest[None, :, :, None])[..., 0] + T[..., 3]
        qj = matrix_to_quaternion(A[:, :, :3, :3])  # (F,J,4)
        dom = self.weights.argmax(-1)
        # sign-align joint quaternions with each Gaussian's dominant joint before blending
        sign = torch.sign((qj[:, None, :, :] * qj[:, dom][:, :, None, :]).sum(-1))  # (F,N,J)
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        qb = torch.einsum("nj,fnj,fjk->fnk", self.weights, sign, qj)
        qb = qb / qb.norm(dim=-1, keepdim=True)
        quats = quaternion_multiply(qb, self.quats.expand_as(qb))
        ids = None if instance_id is None else torch.full((len(self),), int(instance_id), dtype=torch.long)
        frames = [Gaussians(means[f], quats[f], self.scales, self.opacities, self.colors, ids) for f in range(F)]
        return (frames, out) if return_body else frames

    def pose_motion(self, motion, instance_id: int | None = None, return_body: bool = False):
        """Pose with an :class:`avatars.motion.Motion` (its betas are ignored: the avatar keeps its shape)."""
        return self.pose(motion.global_orient, motion.body_pose, motion.transl, instance_id=instance_id,
                         return_body=return_body)

    # ------------------------------------------------------------------------------------------
    # files
    # ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.ply, standard 3DGS layout of the rest pose) and ``path.with_suffix('.npz')``
        holding the body binding (face ids, barycentrics, offsets, weights, betas) and the exact float32
        scales, opacities and colours, which the PLY's log / logit / SH encoding rounds."""
        path = Path(path)
        save_ply(path, self.canonical())
        write_npz(path.with_suffix(".npz"), face_ids=self.face_ids.numpy(), bary=self.bary.numpy(),
                  offsets=self.offsets.numpy(), weights=self.weights.numpy(), betas=self.betas.numpy(),
                  num_vertices=np.int64(_rest(self.body, self.betas)[0].shape[0]),
                  scales=self.scales.float().numpy(), opacities=self.opacities.float().numpy(),
                  colors=self.colors.float().numpy())
        return path

    @classmethod
    def load(cls, path: str | Path, body) -> "GaussianAvatar":
        """Load an avatar saved by :meth:`save` onto ``body`` (the same body it was built on), or, when
        there is no binding sidecar, import a HumanGaussian-style PLY (see :meth:`from_ply`)."""
        path = Path(path)
        side = path.with_suffix(".npz")
        if not side.exists():
            return cls.from_ply(path, body)
        g = load_ply(path)
        b = np.load(side)
        nv = int(b["num_vertices"])
        if nv != _rest(body, torch.as_tensor(b["betas"]))[0].shape[0]:
            raise AmgError(f"{side}: bound to a body with {nv} vertices, not this body")
        if len(g) != len(b["face_ids"]):
            raise AmgError(f"{side}: binding has {len(b['face_ids'])} Gaussians, {path.name} has {len(g)}")
        colors = g.colors if g.colors.dim() == 2 else (g.colors[:, 0] * 0.28209479177387814 + 0.5).clamp(0, 1)
        scales, opac, colors = g.scales, g.opacities, colors.float()
        # the PLY is the source (it may have been edited in a viewer); where it still holds the saved
        # values up to its encoding's rounding, the sidecar's exact ones make renders identical
        for name, cur in (("scales", scales), ("opacities", opac), ("colors", colors)):
            if name in b.files:
                exact = torch.as_tensor(b[name])
                if exact.shape == cur.shape and torch.allclose(cur, exact, rtol=1e-5, atol=1e-6):
                    cur.copy_(exact)
        return cls(body, torch.as_tensor(b["face_ids"]).long(), torch.as_tensor(b["bary"]),
                   torch.as_tensor(b["offsets"]), torch.as_tensor(b["weights"]), g.quats, scales,
                   opac, colors, torch.as_tensor(b["betas"]))

    @classmethod
    def from_ply(cls, path: str | Path, body, betas: torch.Tensor | None = None) -> "GaussianAvatar":
        """Import canonical Gaussians around ``body`` (e.g. a HumanGaussian export) by binding each
        Gaussian to its nearest surface point (face + barycentrics) and keeping the offset from it."""
        g = load_ply(path)
        nb = int(body.num_betas)
        betas = torch.zeros(nb) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
        rest_v, _ = _rest(body, betas)
        faces = _faces(body)
        fid, bary, closest = _closest_points(rest_v, faces, g.means.float())
        W = (_weights(body)[faces[fid]] * bary[..., None]).sum(1)
        colors = g.colors if g.colors.dim() == 2 else (g.colors[:, 0] * 0.28209479177387814 + 0.5).clamp(0, 1)
        return cls(body, fid, bary, g.means.float() - closest, W, g.quats.float(), g.scales.float(),
                   g.opacities.float(), colors.float(), betas)


# ----------------------------------------------------------------------------------------------
# body access (the few things a body model must provide)
# ----------------------------------------------------------------------------------------------


def _rest(body, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shaped rest-pose vertices ``(V,3)`` and joints ``(J,3)``."""
    v, j = body.rest(torch.as_tensor(betas, dtype=torch.float32).reshape(1, -1))
    return v[0].detach().float(), j[0].detach().float()


def _faces(body) -> torch.Tensor:
    return torch.as_tensor(np.asarray(body.faces), dtype=torch.long)


def _weights(body) -> torch.Tensor:
    return torch.as_tensor(np.asarray(body.weights), dtype=torch.float32)


def _face_normals(tri: torch.Tensor) -> torch.Tensor:
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _stratified_faces(area: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n,)`` face ids, area-proportional by jittered systematic sampling of the cumulative area.

    Every face gets ``floor`` or ``ceil`` of its expected count (multinomial sampling would leave a third
    of the faces empty where there is one sample per face), so the surface is covered evenly and the
    splats can stay small without leaving holes.
    """
    cum = torch.cumsum(area.double(), 0)
    pos = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) * (cum[-1] / n)
    return torch.searchsorted(cum, pos).clamp_max(len(area) - 1)


def _vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(V,3)`` unit vertex normals, the area-weighted mean of the faces around each vertex."""
    tri = vertices[faces]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)  # length = 2 * area
    acc = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), n.repeat_interleave(3, dim=0))
    return acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _sample_bary(n: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform barycentric coordinates on a triangle ``(n,3)``."""
    u, v = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
    su = u.sqrt()
    return torch.stack([1 - su, su * (1 - v), su * v], -1)


def _normal_frame_quats(normal: torch.Tensor) -> torch.Tensor:
    """Quaternions rotating the local z axis onto ``normal (N,3)`` (x, y tangent)."""
    ref = torch.where(normal[:, 1:2].abs() < 0.9, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    t1 = torch.nn.functional.normalize(torch.cross(ref, normal, dim=-1), dim=-1)
    t2 = torch.cross(normal, t1, dim=-1)
    return matrix_to_quaternion(torch.stack([t1, t2, normal], dim=-1))


def _extra_budget(app: Appearance, total: int) -> dict[str, int]:
    out = {}
    d = app.garments.get("dress")
    sk = app.garments.get("bottom")
    if d is not None or (sk is not None and sk.name == "skirt"):
        out["skirt"] = int(0.12 * total)
    if app.hair_length in ("long", "shoulder"):
        out["hair"] = int(0.05 * total)
    return out


class _Regions:
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
            paint((is_leg & (y > hem)) | lower_torso, bottom.color, _THICKNESS["bottom"])
        for garment in (top, dress, outer):
            if garment is None:
                continue
            body_mask = is_torso & ~(lower_torso if garment is not dress else torch.zeros_like(lower_torso))
            if garment.slot == "outer":
                body_mask = is_torso
            sleeve = is_arm & (ax < self.sleeve_x(garment.sleeves or "none"))
            paint(body_mask | sleeve, garment.color, _THICKNESS[garment.slot])
            if garment is dress:
                paint(is_leg & (y > self.hem_y(dress.length)), dress.color, _THICKNESS["dress"])
        if shoes is not None:
            paint(is_foot & (y < self.ankle_y + 0.03), shoes.color, _THICKNESS["shoes"])
        # hair cap: the top and back of the head
        if app.hair_length != "bald":
            rel = p - self.head
            # crown and back of the head, the sides above the ears, the front only above the hairline
            cap = is_head & ((rel[:, 1] > 0.105) | ((rel[:, 2] < -0.01) & (rel[:, 1] > -0.05)) |
                             ((rel[:, 2] < 0.04) & (rel[:, 1] > 0.045) & (rel[:, 0].abs() > 0.05)))
            if app.hair_length in ("long", "shoulder"):
                cap = cap | (is_head & (rel[:, 2] < 0.02) & (rel[:, 1] > -0.02) & (rel[:, 0].abs() > 0.06))
            paint(cap, app.hair_color, _THICKNESS["hair"])
        return color, thick

    def skirt_top(self) -> float:
        return self.hip_y + 0.06


def _bind_free_points(points: torch.Tensor, rest_v: torch.Tensor, faces: torch.Tensor, W: torch.Tensor,
                      pull: int | None = None, pull_amount: float = 0.0):
    """Anchor free points to their nearest surface point; returns (face ids, bary, offsets, weights)."""
    fid, bary, closest = _closest_points(rest_v, faces, points)
    w = (W[faces[fid]] * bary[..., None]).sum(1)
    if pull is not None and pull_amount > 0:
        onehot = torch.zeros_like(w)
        onehot[:, pull] = 1
        w = (1 - pull_amount) * w + pull_amount * onehot
    return fid, bary, points - closest, w


def _face_features(region: "_Regions", rest_v, faces, W, spacing: float, app: Appearance):
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
    fid, bary, off, w = _bind_free_points(pts, rest_v, faces, W, pull=_HEAD, pull_amount=1.0)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(len(pts), 4).clone()
    return fid, bary, off, w, quats, torch.tensor(sc), torch.tensor(cols, dtype=torch.float32)


def _skirt(region: _Regions, rest_v, faces, W, n: int, spacing: float, gen):
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
    fid, bary, off, w = _bind_free_points(pts, rest_v, faces, W, pull=_PELVIS, pull_amount=0.5)
    quats = _normal_frame_quats(normal)
    s = 1.3 * spacing
    scales = torch.tensor([s, s, 0.25 * spacing]).expand(n, 3).clone()
    color = torch.tensor(garment.color, dtype=torch.float32).expand(n, 3) * (0.9 + 0.1 * torch.cos(6 * theta))[:, None]
    return fid, bary, off, w, quats, scales, color


def _long_hair(region: _Regions, rest_v, faces, W, n: int, spacing: float, gen):
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
    fid, bary, off, w = _bind_free_points(pts, rest_v, faces, W, pull=_HEAD, pull_amount=0.7)
    quats = _normal_frame_quats(normal)
    scales = torch.tensor([0.6 * spacing, 1.5 * spacing, 0.3 * spacing]).expand(n, 3).clone()
    color = torch.tensor(app.hair_color, dtype=torch.float32).expand(n, 3) * (0.85 + 0.15 * torch.rand(n, 1, generator=gen))
    return fid, bary, off, w, quats, scales, color


def _closest_points(vertices: torch.Tensor, faces: torch.Tensor, points: torch.Tensor, chunk: int = 8192):
    """Nearest surface point of each of ``points (P,3)`` on the mesh: face ids, barycentrics, positions.

    Exact point-triangle distances over candidate faces: those touching the 8 nearest vertices (a k-d
    tree query), which contain the true nearest face for points near a mesh of even-sized triangles.
    """
    from scipy.spatial import cKDTree

    vf_t = _vertex_faces(faces, vertices.shape[0])
    tree = cKDTree(vertices.double().numpy())
    out_f, out_b, out_p = [], [], []
    for s in range(0, len(points), chunk):
        p = points[s: s + chunk]
        knn = torch.as_tensor(tree.query(p.double().numpy(), k=8)[1], dtype=torch.long).reshape(len(p), 8)
        cand = vf_t[knn].reshape(len(p), -1)  # (P,8*deg)
        valid = cand >= 0
        cand_c = cand.clamp_min(0)
        tri = vertices[faces[cand_c]]  # (P,C,3,3)
        q, bary = _closest_on_triangles(p[:, None, :].expand(-1, cand.shape[1], -1), tri)
        d = (q - p[:, None]).norm(dim=-1)
        d = torch.where(valid, d, torch.full_like(d, float("inf")))
        best = d.argmin(dim=1)
        ar = torch.arange(len(p))
        out_f.append(cand_c[ar, best])
        out_b.append(bary[ar, best])
        out_p.append(q[ar, best])
    return torch.cat(out_f), torch.cat(out_b), torch.cat(out_p)


def _vertex_faces(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """``(V, D)`` the faces around each vertex, padded with -1 (``D`` the largest vertex degree)."""
    flat = faces.reshape(-1)
    fid = torch.arange(faces.shape[0]).repeat_interleave(faces.shape[1])
    order = torch.argsort(flat, stable=True)
    v_sorted, f_sorted = flat[order], fid[order]
    deg = torch.bincount(flat, minlength=num_vertices)
    start = torch.cumsum(deg, 0) - deg
    slot = torch.arange(len(flat)) - start[v_sorted]
    out = torch.full((num_vertices, int(deg.max()) if len(flat) else 1), -1, dtype=torch.long)
    out[v_sorted, slot] = f_sorted
    return out


def _closest_on_triangles(p: torch.Tensor, tri: torch.Tensor):
    """Closest point on triangles ``tri (...,3,3)`` to ``p (...,3)`` and its barycentrics (Ericson's method)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-20
    # default: inside the face
    denom = (va + vb + vc)
    denom = torch.where(denom.abs() < eps, torch.full_like(denom, eps), denom)
    v = vb / denom
    w = vc / denom
    u = 1 - v - w
    bary = torch.stack([u, v, w], -1)

    def setb(mask, uu, vv, ww):
        nonlocal bary
        nb = torch.stack([uu, vv, ww], -1)
        bary = torch.where(mask[..., None], nb, bary)

    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    # edge regions (applied in reverse priority so vertex regions win)
    m_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    wbc = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(eps)
    setb(m_bc, zero, 1 - wbc, wbc)
    m_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    wac = d2 / (d2 - d6).clamp_min(eps)
    setb(m_ac, 1 - wac, zero, wac)
    m_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    vab = d1 / (d1 - d3).clamp_min(eps)
    setb(m_ab, 1 - vab, vab, zero)
    setb((d6 >= 0) & (d5 <= d6), zero, zero, one)
    setb((d3 >= 0) & (d4 <= d3), zero, one, zero)
    setb((d1 <= 0) & (d2 <= 0), one, zero, zero)
    q = (tri * bary[..., None]).sum(-2)
    return q, bary


# ----------------------------------------------------------------------------------------------
# PLY in the standard 3DGS layout
# ----------------------------------------------------------------------------------------------

_SH_C0 = 0.28209479177387814


def save_ply(path: str | Path, g: Gaussians) -> Path:
    """Write ``g`` as a binary little-endian 3DGS PLY: x y z nx ny nz f_dc_0..2 f_rest_* opacity (logit)
    scale_0..2 (log) rot_0..3 (wxyz), the layout common 3DGS viewers open."""
    n = len(g)
    if g.colors.dim() == 2:
        dc = (g.colors.float() - 0.5) / _SH_C0
        rest = torch.zeros(n, 0)
    else:
        dc = g.colors[:, 0].float()
        rest = g.colors[:, 1:].float().transpose(1, 2).reshape(n, -1)  # channel-major, as 3DGS writes
    op = g.opacities.float().clamp(1e-6, 1 - 1e-6)
    cols = [g.means.float(), torch.zeros(n, 3), dc, rest, torch.log(op / (1 - op))[:, None],
            torch.log(g.scales.float().clamp_min(1e-12)), g.quats.float()]
    data = torch.cat(cols, 1).numpy().astype("<f4")
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(rest.shape[1])]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {k}\n" for k in names) + "end_header\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(np.ascontiguousarray(data).tobytes())
    return Path(path)


def load_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY (binary little-endian, float properties) into :class:`Gaussians`.

    Opacities come back through a sigmoid, scales through exp, colours as SH coefficients ``(N,K,3)``
    (``K=1`` when there is no ``f_rest``), quaternions as stored (3DGS files may hold unnormalised ones).
    """
    path = Path(path)
    if not path.is_file():
        raise AmgError(f"{path}: no such PLY file")
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise AmgError(f"{path}: not a PLY file (no 'ply' magic or end_header)")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise AmgError(f"{path}: expected a binary_little_endian PLY")
    n, names = None, []
    for line in header:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[:1] == ["property"] and n is not None:
            if parts[1] not in ("float", "float32"):
                raise AmgError(f"{path}: property {parts[-1]} is {parts[1]}; expected float")
            names.append(parts[2])
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in need if k not in names]
    if n is None or missing:
        raise AmgError(f"{path}: not a 3DGS PLY (missing {', '.join(missing) or 'vertex element'})")
    body = raw[end + len(b"end_header\n"):]
    if len(body) < n * len(names) * 4:
        raise AmgError(f"{path}: truncated ({len(body)} bytes of data, expected {n * len(names) * 4})")
    a = torch.from_numpy(np.frombuffer(body, dtype="<f4", count=n * len(names)).reshape(n, len(names)).copy())
    col = {k: a[:, i] for i, k in enumerate(names)}
    means = torch.stack([col["x"], col["y"], col["z"]], -1)
    dc = torch.stack([col["f_dc_0"], col["f_dc_1"], col["f_dc_2"]], -1)
    rest_names = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
    if rest_names:
        rest = torch.stack([col[k] for k in rest_names], -1).reshape(n, 3, -1).transpose(1, 2)
        sh = torch.cat([dc[:, None], rest], 1)
    else:
        sh = dc[:, None]
    q = torch.stack([col[f"rot_{i}"] for i in range(4)], -1)  # as stored: the rasterizer normalises
    return Gaussians(means, q, torch.exp(torch.stack([col[f"scale_{i}"] for i in range(3)], -1)),
                     torch.sigmoid(col["opacity"]), sh)
