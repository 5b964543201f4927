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
default body and SMPL / SMPL-X bodies. The garment painting is :mod:`avatars.dress`, the surface sampling
and binding :mod:`avatars.surface`, the PLY of the plain Gaussians :mod:`render.ply`; an avatar's PLY comes
with a sidecar holding its binding to the body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from render.errors import AmgError
from render.gaussian import Gaussians, rotate_sh, sh_to_rgb
from render.io import write_npz
from render.ply import SH_DEGREE, load_ply, save_ply
from render.rotations import matrix_to_quaternion, quaternion_multiply, quaternion_to_matrix

from . import dress, surface
from .appearance import Appearance, parse_appearance
from .dress import SEGMENTS, segment_labels
from .lbs import skin_vertices
from .surface import closest_points, normal_frame_quats, sample_bary, stratified_faces, vertex_normals

__all__ = ["GaussianAvatar", "Posed", "segment_labels", "SEGMENTS", "save_ply", "load_ply"]

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


class Posed(NamedTuple):
    """What :meth:`GaussianAvatar.pose` returns: ``frames, body = avatar.pose(...)``.

    Attributes:
        frames: ``F`` posed :class:`Gaussians`, one per frame.
        body: the body model's output for those frames (vertices, joints, skin transforms...), so callers
            posing once per frame can derive every condition from it.
    """

    frames: list[Gaussians]
    body: object


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
        opacities: ``(N,)``; colors: ``(N,3)`` RGB in [0,1], or ``(N,K,3)`` SH coefficients (an imported
            PLY with view-dependent colour; they turn with each Gaussian when posed).
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

        extra = dress.extra_budget(app, num_gaussians)
        n_surf = num_gaussians - sum(extra.values())
        fid = stratified_faces(area, n_surf, gen)
        bary = sample_bary(n_surf, gen)
        anchor = (tri[fid] * bary[..., None]).sum(1)
        # interpolated vertex normals: shading and splat orientation vary smoothly across faces
        normal = torch.nn.functional.normalize((vertex_normals(rest_v, faces)[faces[fid]] * bary[..., None]).sum(1), dim=-1)
        w = (W[faces[fid]] * bary[..., None]).sum(1)
        spacing = math.sqrt(float(area.sum()) / n_surf)

        region = dress.Regions(rest_j, app)
        color, thick = region.surface(anchor, segment_labels(w), normal)
        offsets = normal * (thick - _SURFACE_INSET)[:, None]
        quats = normal_frame_quats(normal)
        s_t = torch.full((n_surf,), _TANGENT_SCALE * spacing)
        scales = torch.stack([s_t, s_t, torch.full((n_surf,), _NORMAL_SCALE * spacing)], -1)

        parts = [(fid, bary, offsets, w, quats, scales, dress.key_light(color, normal))]
        face = dress.face_features(region, rest_v, faces, W, spacing, app)
        if face is not None:
            parts.append(face)
        if extra.get("skirt"):
            parts.append(dress.skirt(region, rest_v, faces, W, extra["skirt"], spacing, gen))
        if extra.get("hair"):
            parts.append(dress.long_hair(region, rest_v, faces, W, extra["hair"], spacing, gen))
        fid, bary, offsets, w, quats, scales, color = (torch.cat(x) for x in zip(*parts))
        color = dress.cloth_shading(color, (rest_v[faces[fid]] * bary[..., None]).sum(1) + offsets, gen)
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
             betas: torch.Tensor | None = None, instance_id: int | None = None,
             return_body: bool = True) -> Posed:
        """Posed Gaussians for ``F`` frames, and the body output they were skinned with.

        Args:
            global_orient: ``(F,3)`` or ``(3,)`` axis-angle root rotation.
            body_pose: ``(F,23,3)`` or ``(23,3)`` axis-angle joint rotations (SMPL order).
            transl: ``(F,3)`` root translation in metres (zeros when omitted).
            betas: ``(NB,)`` shape; the avatar's own when omitted.
            instance_id: id written into every Gaussian (person index + 1 in multi-person scenes).
            return_body: accepted for older callers; the body output is always returned.
        Returns:
            :class:`Posed` ``(frames, body)``: a list of ``F`` :class:`Gaussians` and the body output.
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
        means = skin_vertices(means_rest.expand(F, -1, -1), self.weights, A)
        qj = matrix_to_quaternion(A[:, :, :3, :3])  # (F,J,4)
        dom = self.weights.argmax(-1)
        # sign-align joint quaternions with each Gaussian's dominant joint before blending
        sign = torch.sign((qj[:, None, :, :] * qj[:, dom][:, :, None, :]).sum(-1))  # (F,N,J)
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        qb = torch.einsum("nj,fnj,fjk->fnk", self.weights, sign, qj)
        qb = qb / qb.norm(dim=-1, keepdim=True)
        quats = quaternion_multiply(qb, self.quats.expand_as(qb))
        ids = None if instance_id is None else torch.full((len(self),), int(instance_id), dtype=torch.long)
        view_dependent = self.colors.dim() == 3 and self.colors.shape[1] > 1
        frames = [Gaussians(means[f], quats[f], self.scales, self.opacities,
                            rotate_sh(self.colors, quaternion_to_matrix(qb[f])) if view_dependent else self.colors,
                            ids) for f in range(F)]
        return Posed(frames, out)

    def pose_motion(self, motion, instance_id: int | None = None, return_body: bool = True) -> Posed:
        """Pose with an :class:`avatars.motion.Motion` (its betas are ignored: the avatar keeps its shape)."""
        return self.pose(motion.global_orient, motion.body_pose, motion.transl, instance_id=instance_id,
                         return_body=return_body)

    # ------------------------------------------------------------------------------------------
    # files
    # ------------------------------------------------------------------------------------------
    def save(self, path: str | Path, sh_degree: int | None = SH_DEGREE) -> Path:
        """Write ``path`` (.ply, standard 3DGS layout of the rest pose) and ``path.with_suffix('.npz')``
        holding the body binding (face ids, barycentrics, offsets, weights, betas) and the exact float32
        scales, opacities and colours, which the PLY's log / logit / SH encoding rounds.

        ``sh_degree`` is the PLY's SH degree (:func:`render.ply.save_ply`): 3 by default, the zero-padded
        layout INRIA's 3DGS loader reads; ``None`` writes only the coefficients the avatar has."""
        path = Path(path)
        save_ply(path, self.canonical(), sh_degree=sh_degree)
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
        scales, opac, colors = g.scales, g.opacities, _avatar_colors(g)
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
        fid, bary, closest = closest_points(rest_v, faces, g.means.float())
        W = (_weights(body)[faces[fid]] * bary[..., None]).sum(1)
        return cls(body, fid, bary, g.means.float() - closest, W, g.quats.float(), g.scales.float(),
                   g.opacities.float(), _avatar_colors(g), betas)


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


def _avatar_colors(g: Gaussians) -> torch.Tensor:
    """A loaded PLY's colours for an avatar: its SH coefficients ``(N,K,3)`` up to the highest degree with
    a non-zero coefficient (view-dependent colour is kept, zero padding dropped), or the plain RGB ``(N,3)``
    they amount to when every rest coefficient is zero."""
    c = g.colors.float()
    if c.dim() == 2:
        return c
    deg = max((d for d in range(1, 4) if (d + 1) ** 2 <= c.shape[1] and bool((c[:, d * d:(d + 1) ** 2] != 0).any())),
              default=0)
    return sh_to_rgb(c[:, 0]) if deg == 0 else c[:, :(deg + 1) ** 2]


# Names these helpers had before they moved to avatars.surface / avatars.dress, kept for old imports.
_bind_free_points, _closest_on_triangles, _closest_points, _vertex_faces = (
    surface.bind_free_points, surface.closest_on_triangles, surface.closest_points, surface.vertex_faces)
_stratified_faces, _sample_bary, _vertex_normals, _normal_frame_quats = (
    stratified_faces, sample_bary, vertex_normals, normal_frame_quats)
_Regions, _THICKNESS, _extra_budget = dress.Regions, dress.THICKNESS, dress.extra_budget
_face_features, _skirt, _long_hair = dress.face_features, dress.skirt, dress.long_hair
