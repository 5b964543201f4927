"""3D Gaussian splatting: the ``Gaussians`` container and ``rasterize`` (a CPU and a gsplat backend).

Both backends follow gsplat's conventions (``gsplat.rasterization`` with ``rasterize_mode="classic"``):

* covariance ``R S S^T R^T`` from the unit quaternion (wxyz) and linear scales, moved to the camera and
  projected with the Jacobian of the perspective map (the Jacobian's x/y clamped to 1.3x the field of
  view, as gsplat does), plus a ``0.3`` px low-pass on the 2D covariance;
* Gaussians with camera z below the near plane (``0.01`` m) or opacity below ``1/255`` are dropped;
* a pixel ``(row i, col j)`` samples at its centre ``(j + 0.5, i + 0.5)``;
* ``alpha = min(0.999, opacity * exp(-0.5 d^T Sigma^-1 d))``; contributions with ``alpha < 1/255`` are
  skipped; front-to-back compositing in camera-z order stops before the Gaussian that would take the
  transmittance to ``1e-4`` or below;
* each Gaussian's footprint is its opacity-aware box ``min(3.33, sqrt(2 ln(255 opacity)))`` sigmas wide,
  outside of which its alpha is below ``1/255``.

The CPU backend works on fragment lists: each Gaussian evaluates only the pixels of its footprint box
(rounded up to one of a few block sizes so that Gaussians of similar size are evaluated together by
broadcasting), the surviving fragments are sorted by (pixel, depth) with a radix sort, and compositing is a
segmented cumulative sum of ``log(1 - alpha)`` per pixel followed by one sparse (pixels x Gaussians)
product. Its cost grows with the covered area, not with pixels x Gaussians; it is differentiable with
respect to means, quaternions, scales, opacities and colours.

Outputs (:class:`RenderOutput`):

* ``rgb``: ``sum_i w_i c_i + T bg`` with blending weights ``w_i = alpha_i prod_{j<i} (1 - alpha_j)`` and
  final transmittance ``T``;
* ``alpha``: ``sum_i w_i`` (= ``1 - T``);
* ``depth``: the expected camera z, ``sum_i w_i z_i / sum_i w_i`` (gsplat's ``"ED"``), 0 where nothing
  was drawn;
* ``ids``: per pixel the instance id whose Gaussians carry the largest total blending weight, where
  ``alpha > 0.5``; 0 elsewhere. With people as instances this is the visible person in front: a nearer
  opaque person takes almost all the weight of the pixels they cover.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from . import raster_cpu
from .camera import Camera
from .errors import AmgError
from .image import to_uint8
from .rotations import quaternion_to_matrix

__all__ = ["Gaussians", "RenderOutput", "rasterize", "rasterize_clip", "eval_sh", "gsplat_available",
           "NEAR_PLANE", "EPS2D", "ALPHA_MIN", "ALPHA_MAX", "T_MIN", "ID_ALPHA"]

NEAR_PLANE = 0.01       #: metres; Gaussians with camera z at or below this are dropped
EPS2D = 0.3             #: px^2 added to the diagonal of every projected covariance (anti-aliasing)
ALPHA_MIN = 1.0 / 255   #: contributions below this alpha are skipped
ALPHA_MAX = 0.999       #: alpha clamp (gsplat's; the original 3DGS code uses 0.99)
T_MIN = 1e-4            #: compositing stops before the transmittance would reach this
ID_ALPHA = 0.5          #: pixels with accumulated alpha at or below this get instance id 0
_EXTEND = 3.33          #: footprint half-width in sigmas, before the opacity-aware tightening
# Instance-id votes use a dense (pixels, ids) table up to this many cells, a sort beyond.
_DENSE_ID_TABLE_MAX = 1 << 24


# ------------------------------------------------------------------------------------------------
# Containers
# ------------------------------------------------------------------------------------------------


@dataclass
class Gaussians:
    """A set of ``N`` 3D Gaussians in world coordinates (metres).

    Attributes:
        means: ``(N,3)`` centres.
        quats: ``(N,4)`` rotations as quaternions wxyz (normalised when rendered).
        scales: ``(N,3)`` standard deviations along the rotated axes, linear, metres.
        opacities: ``(N,)`` in ``[0,1]``.
        colors: ``(N,3)`` RGB in ``[0,1]``, or ``(N,K,3)`` spherical-harmonics coefficients with
            ``K`` in 1, 4, 9, 16 (degree ``sqrt(K)-1``; colour = ``max(SH(dir) + 0.5, 0)`` as in 3DGS).
        ids: optional ``(N,)`` int64 instance ids >= 1 (e.g. one per person); ``None`` means all 1.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,)}
        if n < 0 or self.means.shape[1] != 3:
            raise AmgError(f"gaussians: expected means of shape (N,3), got {tuple(self.means.shape)}")
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise AmgError(f"gaussians: expected {name} of shape {shape}, got {tuple(getattr(self, name).shape)}")
        c = self.colors
        if not ((c.dim() == 2 and c.shape == (n, 3)) or
                (c.dim() == 3 and c.shape[0] == n and c.shape[2] == 3 and c.shape[1] in (1, 4, 9, 16))):
            raise AmgError(f"gaussians: expected colors (N,3) or SH coefficients (N,K,3) with K in 1,4,9,16 "
                           f"and N={n}, got {tuple(c.shape)}")
        if self.ids is not None:
            if tuple(self.ids.shape) != (n,) or self.ids.dtype.is_floating_point:
                raise AmgError(f"gaussians: expected integer ids of shape ({n},), got {tuple(self.ids.shape)} "
                               f"{self.ids.dtype}")
            self.ids = self.ids.long()
            if n and int(self.ids.min()) < 1:
                raise AmgError("gaussians: expected instance ids >= 1 (0 is the background)")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int | None:
        """``None`` for RGB colours, else the spherical-harmonics degree of ``colors``."""
        return None if self.colors.dim() == 2 else int(math.isqrt(self.colors.shape[1])) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    def instance_ids(self) -> torch.Tensor:
        """``(N,)`` int64 ids, ones when none were given."""
        if self.ids is None:
            return torch.ones(len(self), dtype=torch.long, device=self.device)
        return self.ids

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Gaussians":
        """Move to ``device`` and/or cast the float tensors to ``dtype`` (ids stay int64)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: (None if v is None else v.to(device=device, dtype=dtype if v.is_floating_point() else None))
               for k, v in kw.items()}
        return Gaussians(**out)

    def __getitem__(self, index) -> "Gaussians":
        """A subset: ``index`` is a boolean mask, an index tensor or a slice."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Gaussians(**{k: (None if v is None else v[index]) for k, v in kw.items()})

    def detach(self) -> "Gaussians":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Gaussians(**{k: (None if v is None else v.detach()) for k, v in kw.items()})

    @classmethod
    def cat(cls, parts: Sequence["Gaussians"]) -> "Gaussians":
        """Concatenate several sets (e.g. people) into one scene.

        A part without ``ids`` gets id ``i + 1`` for its position ``i`` in ``parts``, so
        ``Gaussians.cat([alice, bob])`` renders Alice as instance 1 and Bob as 2. SH parts of
        different degrees are zero-padded to the largest; RGB and SH parts cannot be mixed.
        """
        parts = list(parts)
        if not parts:
            raise AmgError("gaussians: expected at least one set to concatenate, got none")
        kinds = {p.colors.dim() for p in parts}
        if len(kinds) > 1:
            raise AmgError("gaussians: cannot concatenate RGB colours with SH coefficients")
        colors = [p.colors for p in parts]
        if kinds == {3}:
            k = max(c.shape[1] for c in colors)
            colors = [torch.nn.functional.pad(c, (0, 0, 0, k - c.shape[1])) for c in colors]
        ids = [p.ids if p.ids is not None else
               torch.full((len(p),), i + 1, dtype=torch.long, device=p.device) for i, p in enumerate(parts)]
        return cls(torch.cat([p.means for p in parts]), torch.cat([p.quats for p in parts]),
                   torch.cat([p.scales for p in parts]), torch.cat([p.opacities for p in parts]),
                   torch.cat(colors), torch.cat(ids))


@dataclass
class RenderOutput:
    """One rendered view (also returned by :func:`render.mesh.render_mesh`).

    Attributes:
        rgb: ``(H,W,3)`` float32 in ``[0,1]``, composited over the background.
        depth: ``(H,W)`` float32 camera z in metres, 0 where empty.
        alpha: ``(H,W)`` float32 coverage in ``[0,1]``.
        ids: ``(H,W)`` int64 instance ids, 0 for background.
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
    ids: torch.Tensor

    def image(self) -> np.ndarray:
        """``rgb`` as a ``uint8 (H,W,3)`` array."""
        return to_uint8(self.rgb)


# ------------------------------------------------------------------------------------------------
# Spherical harmonics (the real basis of 3DGS, degrees 0-3)
# ------------------------------------------------------------------------------------------------

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def eval_sh(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Colours ``(N,3) = max(SH(dirs) + 0.5, 0)`` from coefficients ``(N,K,3)`` and view directions ``(N,3)``.

    ``dirs`` point from the camera to the Gaussians (any length). Uses the highest complete degree in ``K``.
    """
    deg = int(math.isqrt(coeffs.shape[1])) - 1
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    c = coeffs
    out = _SH_C0 * c[:, 0]
    if deg >= 1:
        out = out - _SH_C1 * y * c[:, 1] + _SH_C1 * z * c[:, 2] - _SH_C1 * x * c[:, 3]
    if deg >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out = (out + _SH_C2[0] * xy * c[:, 4] + _SH_C2[1] * yz * c[:, 5] + _SH_C2[2] * (2 * zz - xx - yy) * c[:, 6]
               + _SH_C2[3] * xz * c[:, 7] + _SH_C2[4] * (xx - yy) * c[:, 8])
    if deg >= 3:
        out = (out + _SH_C3[0] * y * (3 * xx - yy) * c[:, 9] + _SH_C3[1] * xy * z * c[:, 10]
               + _SH_C3[2] * y * (4 * zz - xx - yy) * c[:, 11] + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * c[:, 12]
               + _SH_C3[4] * x * (4 * zz - xx - yy) * c[:, 13] + _SH_C3[5] * z * (xx - yy) * c[:, 14]
               + _SH_C3[6] * x * (xx - 3 * yy) * c[:, 15])
    return (out + 0.5).clamp_min(0.0)


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficients ``(N,3)`` whose colour is ``rgb (N,3)`` from every direction (3DGS's ``RGB2SH``)."""
    return (rgb - 0.5) / _SH_C0


def sh_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """The view-independent colour ``(N,3)`` of DC coefficients ``dc (N,3)``, clamped to ``[0,1]``."""
    return (dc * _SH_C0 + 0.5).clamp(0.0, 1.0)


def rotate_sh(coeffs: torch.Tensor, rotations: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """SH coefficients ``(N,K,3)`` of Gaussians turned by ``rotations (N,3,3)``: the result seen from a
    direction ``d`` has the colour the input has from ``R^T d``, so view-dependent colour turns with a
    Gaussian (a posed avatar's limbs).

    Each Gaussian's colour is evaluated (:func:`eval_sh`, the one place the SH polynomials are written) at
    25 directions turned back by ``R``, and the coefficients giving those colours at the unturned
    directions are solved by least squares; rotation keeps each degree's band, so the fit is exact.
    """
    K = coeffs.shape[1]
    if K == 1:
        return coeffs
    dt = torch.float64
    D = _fibonacci_dirs(25, coeffs.device)
    P = torch.linalg.pinv(_sh_basis(D, K))  # (K,S): colours at D -> coefficients
    S, R = len(D), rotations.to(dt)
    out = []
    for s in range(0, coeffs.shape[0], chunk):
        c = coeffs[s:s + chunk].to(dt)
        n = len(c)
        # every basis function stays within +-1.1: a DC lift of 2 sum|c| + 1 keeps eval_sh off its clamp
        lift = 2 * c.abs().sum(1) + 1  # (n,3)
        lifted = c.clone()
        lifted[:, 0] += lift / _SH_C0
        dirs = (D @ R[s:s + chunk]).reshape(-1, 3)  # rows: R^T d for each Gaussian and direction
        vals = eval_sh(lifted[:, None].expand(n, S, K, 3).reshape(n * S, K, 3), dirs).reshape(n, S, 3)
        out.append(P @ (vals - 0.5 - lift[:, None]))
    out = torch.cat(out).to(coeffs.dtype)
    out[:, 0] = coeffs[:, 0]  # the DC band is rotation-invariant: keep it bit for bit
    return out


def _sh_basis(dirs: torch.Tensor, K: int) -> torch.Tensor:
    """``(M,K)`` real SH basis at unit ``dirs (M,3)`` (float64), from :func:`eval_sh` with identity
    coefficients; a DC offset of 10 keeps every value above the ``max(., 0)`` clamp."""
    eye = torch.eye(K, dtype=torch.float64, device=dirs.device).expand(len(dirs), K, K).clone()
    eye[:, 0, :] += 10.0 / _SH_C0
    return eval_sh(eye, dirs.to(torch.float64)) - 10.5


def _fibonacci_dirs(n: int, device=None) -> torch.Tensor:
    """``(n,3)`` unit directions spread evenly over the sphere (a Fibonacci lattice), float64."""
    i = torch.arange(n, dtype=torch.float64, device=device) + 0.5
    z = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    r = (1 - z * z).sqrt()
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


__all__ += ["rgb_to_sh", "sh_to_rgb", "rotate_sh"]


# ------------------------------------------------------------------------------------------------
# Public entry point
# ------------------------------------------------------------------------------------------------


def rasterize(gaussians: Gaussians, camera: Camera, background: Sequence[float] = (0.0, 0.0, 0.0),
              backend: str = "auto", threads: int | None = None) -> RenderOutput:
    """Render ``gaussians`` seen by ``camera`` (see the module docstring for the exact conventions).

    Args:
        gaussians: the scene; several people are one :class:`Gaussians` with instance ids
            (:meth:`Gaussians.cat`), so that occlusion between them is resolved per pixel.
        camera: an OpenCV-convention :class:`~render.camera.Camera`; the image is ``height x width``.
        background: RGB in ``[0,1]`` behind the Gaussians.
        backend: ``"cpu"`` (the compiled compositor of :mod:`render.raster_cpu` when numba is installed and
            no gradient is needed, else PyTorch), ``"torch"`` (pure PyTorch, differentiable w.r.t. every
            float field), ``"numba"`` (the compiled compositor, forward only), ``"gsplat"`` (CUDA) or
            ``"auto"`` (gsplat when CUDA and its extension are available, else cpu).
        threads: compositor threads for the compiled path (default: ``AMG_RENDER_THREADS`` or torch's
            thread count).

    Returns:
        :class:`RenderOutput` with ``rgb (H,W,3)``, ``depth (H,W)``, ``alpha (H,W)``, ``ids (H,W)`` on the
        Gaussians' device, float32.
    """
    out = rasterize_clip([gaussians], [camera], background=background, backend=backend, threads=threads)
    return RenderOutput(out.rgb[0], out.depth[0], out.alpha[0], out.ids[0])


def rasterize_clip(frames: Sequence[Gaussians], cameras: Sequence[Camera],
                   background: Sequence[float] = (0.0, 0.0, 0.0), backend: str = "auto",
                   threads: int | None = None) -> RenderOutput:
    """Render a clip: ``frames[f]`` seen by ``cameras[f]`` (a list or a :class:`~render.camera.CameraPath`).

    The compiled path projects every frame, then bins and composites all frames' tiles in one parallel
    call, which keeps the threads busy on small images; the other backends render frame by frame. Same
    arguments and conventions as :func:`rasterize`; all cameras share one image size.

    Returns:
        :class:`RenderOutput` with a leading frame axis: ``rgb (F,H,W,3)``, ``depth (F,H,W)``,
        ``alpha (F,H,W)``, ``ids (F,H,W)``.
    """
    frames, cameras = list(frames), list(cameras)
    if len(frames) != len(cameras) or not frames:
        raise AmgError(f"rasterize: expected one camera per frame and at least one frame, got {len(frames)} "
                       f"frames and {len(cameras)} cameras")
    if len({(c.width, c.height) for c in cameras}) > 1:
        raise AmgError("rasterize: expected cameras of one image size in a clip")
    for g in frames:
        if not isinstance(g, Gaussians):
            raise AmgError(f"rasterize: expected Gaussians, got {type(g).__name__}")
        if not _all_finite(g.means):
            raise AmgError("rasterize: gaussians.means contains NaN or inf")
    bg = torch.as_tensor(np.asarray(background, dtype=np.float32).reshape(-1))
    if bg.numel() != 3 or not torch.isfinite(bg).all():
        raise AmgError(f"rasterize: expected background as 3 finite numbers, got {background!r}")
    if backend not in ("auto", "cpu", "torch", "numba", "gsplat"):
        raise AmgError(f"rasterize: unknown backend {backend!r}; expected auto, cpu, torch, numba or gsplat")
    if backend == "auto":
        backend = "gsplat" if gsplat_available() else "cpu"
    if backend == "gsplat" and not gsplat_available():
        raise AmgError("rasterize: backend 'gsplat' needs CUDA and gsplat's CUDA extension; use 'cpu'")
    if backend == "numba" and not raster_cpu.available():
        raise AmgError("rasterize: backend 'numba' needs numba (pip install amg[fast]); use 'cpu'")
    if backend == "cpu":
        backend = "numba" if raster_cpu.available() and not any(_compiled_unfit(g) for g in frames) else "torch"
    if backend == "numba":
        return _rasterize_numba(frames, cameras, bg, threads)
    one = _rasterize_gsplat if backend == "gsplat" else _rasterize_torch
    outs = [one(g, c, bg) for g, c in zip(frames, cameras)]
    return RenderOutput(*(torch.stack([getattr(o, k) for o in outs]) for k in ("rgb", "depth", "alpha", "ids")))


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite. CPU tensors are checked in numpy: a torch reduction wakes
    torch's OpenMP pool, whose threads then spin beside the compiled compositor's and cost as much CPU
    as a third of a 30k-Gaussian frame."""
    t = t.detach()
    if t.device.type == "cpu" and t.dtype in (torch.float16, torch.float32, torch.float64):
        return bool(np.isfinite(t.numpy()).all())
    return bool(torch.isfinite(t).all())


def _compiled_unfit(g: Gaussians) -> bool:
    """Whether ``g`` needs the PyTorch path: gradients wanted, float64 asked for, or not on the CPU."""
    grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (g.means, g.quats, g.scales, g.opacities, g.colors))
    return grad or g.device.type != "cpu" or g.means.dtype == torch.float64


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """Whether ``gsplat.rasterization`` can run here (CUDA present and gsplat's extension loads)."""
    if not torch.cuda.is_available():
        return False
    try:
        from gsplat.cuda._backend import _C
    except Exception:  # a failed JIT build or a missing toolkit: fall back to the CPU path
        return False
    return _C is not None


# ------------------------------------------------------------------------------------------------
# CPU backend: fragment lists
# ------------------------------------------------------------------------------------------------


@dataclass
class _Projected:
    means2d: torch.Tensor  # (N,2) pixels
    conics: torch.Tensor   # (N,3) upper triangle of the inverse 2D covariance (a, b, c)
    depths: torch.Tensor   # (N,) camera z
    radii: torch.Tensor    # (N,2) footprint half-sizes in pixels (float, integral values)
    valid: torch.Tensor    # (N,) bool


def _project(g: Gaussians, camera: Camera) -> _Projected:
    """EWA projection of every Gaussian (gsplat's pinhole model and culling rules)."""
    means = g.means
    dt, dev = means.dtype, means.device
    R, t, K = camera.R.to(dev, dt), camera.t.to(dev, dt), camera.K.to(dev, dt)
    W, H = camera.width, camera.height
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])

    pc = means @ R.T + t
    x, y, z = pc.unbind(-1)
    # M = R_cam R_q S, so the camera-space covariance is M M^T.
    M = R @ (quaternion_to_matrix(g.quats) * g.scales[:, None, :])
    zs = z.clamp_min(NEAR_PLANE)  # culled below anyway; keeps the arithmetic finite
    rz = 1.0 / zs
    lim_xp, lim_xn = (W - cx) / fx + 0.3 * 0.5 * W / fx, cx / fx + 0.3 * 0.5 * W / fx
    lim_yp, lim_yn = (H - cy) / fy + 0.3 * 0.5 * H / fy, cy / fy + 0.3 * 0.5 * H / fy
    tx = zs * (x * rz).clamp(-lim_xn, lim_xp)
    ty = zs * (y * rz).clamp(-lim_yn, lim_yp)
    # Rows of J M with J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]].
    row0 = (fx * rz)[:, None] * M[:, 0] - (fx * tx * rz * rz)[:, None] * M[:, 2]
    row1 = (fy * rz)[:, None] * M[:, 1] - (fy * ty * rz * rz)[:, None] * M[:, 2]
    a = (row0 * row0).sum(-1) + EPS2D
    b = (row0 * row1).sum(-1)
    c = (row1 * row1).sum(-1) + EPS2D
    det = a * c - b * b
    u = fx * x * rz + cx
    v = fy * y * rz + cy

    with torch.no_grad():
        op = g.opacities.detach()
        valid = (z > NEAR_PLANE) & (det > 0) & (op >= ALPHA_MIN)
        extend = torch.sqrt(2.0 * torch.log((op * 255.0).clamp_min(1.0))).clamp_max(_EXTEND)
        rx = torch.ceil(extend * a.detach().clamp_min(0).sqrt())
        ry = torch.ceil(extend * c.detach().clamp_min(0).sqrt())
        ud, vd = u.detach(), v.detach()
        valid &= (ud + rx > 0) & (ud - rx < W) & (vd + ry > 0) & (vd - ry < H) & (rx > 0) & (ry > 0)
    det_s = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], dim=-1)
    return _Projected(torch.stack([u, v], dim=-1), conics, z, torch.stack([rx, ry], dim=-1), valid)


def _colors(g: Gaussians, camera: Camera) -> torch.Tensor:
    if g.colors.dim() == 2:
        return g.colors
    campos = camera.center.to(g.means.device, g.means.dtype)
    return eval_sh(g.colors, g.means - campos)


_BUCKET_SIDES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128)


def _footprint_box(u: torch.Tensor, v: torch.Tensor, radii: torch.Tensor, W: int, H: int):
    """Float ``(j0, j1, i0, i1)``, each ``(N,)``: the pixel columns/rows whose centres ``j + 0.5`` lie within
    ``[u - rx, u + rx]`` (rows alike), clipped to the image (the PyTorch and compiled paths share it)."""
    rx, ry = radii.unbind(-1)
    return (torch.ceil(u - rx - 0.5).clamp_min(0), torch.floor(u + rx - 0.5).clamp_max(W - 1),
            torch.ceil(v - ry - 0.5).clamp_min(0), torch.floor(v + ry - 0.5).clamp_max(H - 1))


def _rasterize_torch(g: Gaussians, camera: Camera, bg: torch.Tensor) -> RenderOutput:
    torch.set_flush_denormal(True)
    W, H = camera.width, camera.height
    P = W * H
    dev = g.means.device
    dt = g.means.dtype if g.means.dtype in (torch.float32, torch.float64) else torch.float32
    if g.means.dtype != dt:
        g = g.to(dtype=dt)
    bg = bg.to(dev, dt)
    proj = _project(g, camera)

    with torch.no_grad():
        # Visible Gaussians numbered near to far: rank r is the r-th nearest.
        vis = torch.nonzero(proj.valid).squeeze(1)
        vis = vis[torch.argsort(proj.depths.detach()[vis], stable=True)]
        R = len(vis)
        if R == 0:
            return _empty(H, W, bg, dev, dt)
        params = torch.cat([proj.means2d, proj.conics, g.opacities[:, None]], dim=-1).detach()[vis]
        u, v = params[:, 0], params[:, 1]
        j0, j1, i0, i1 = _footprint_box(u, v, proj.radii[vis], W, H)
        side = torch.maximum(j1 - j0, i1 - i0).long() + 1
        # Fragments key = pixel * R + rank: sorting by key groups them by pixel, near to far.
        # Gaussians are processed in buckets of similar footprint, each as a padded (n, S, S) block
        # evaluated by broadcasting, so no per-fragment gathers are needed before the sort.
        sides = torch.tensor(_BUCKET_SIDES + (max(int(side.max()), _BUCKET_SIDES[-1]),), device=dev)
        bucket = torch.searchsorted(sides, side)
        keys, alphas = [], []
        ranks = torch.arange(R, device=dev)
        for b in torch.unique(bucket).tolist():
            m = torch.nonzero(bucket == b).squeeze(1)
            S = int(sides[b])
            ar = torch.arange(S, device=dev, dtype=dt)
            cols = j0[m, None] + ar                      # (n,S)
            rows = i0[m, None] + ar
            dx = u[m, None] - (cols + 0.5)
            dy = v[m, None] - (rows + 0.5)
            pm = params[m]
            sigma = ((0.5 * pm[:, 2:3] * dx * dx)[:, None, :] + (0.5 * pm[:, 4:5] * dy * dy)[:, :, None]
                     + pm[:, 3, None, None] * dy[:, :, None] * dx[:, None, :])
            alpha = (pm[:, 5, None, None] * torch.exp(-sigma)).clamp_max_(ALPHA_MAX)
            ok = (alpha >= ALPHA_MIN) & (sigma >= 0) & (cols < W)[:, None, :] & (rows < H)[:, :, None]
            key = ((rows.long() * W)[:, :, None] + cols.long()[:, None, :]) * R + ranks[m, None, None]
            keys.append(torch.masked_select(key, ok))
            alphas.append(torch.masked_select(alpha, ok))
        key = torch.cat(keys)
        if key.numel() == 0:
            return _empty(H, W, bg, dev, dt)
        key, a_nograd = _sort_fragments(key, torch.cat(alphas), P * R)
        del keys, alphas
        rank_s = key % R
        pix_s = key // R
        seg_counts = torch.bincount(pix_s, minlength=P)
        crow = torch.zeros(P + 1, dtype=torch.long, device=dev)
        torch.cumsum(seg_counts, 0, out=crow[1:])
    grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (g.means, g.quats, g.scales, g.opacities, g.colors))
    if grad:
        full = torch.cat([proj.means2d, proj.conics, g.opacities[:, None]], dim=-1)
        a = _fragment_alpha(full[vis][rank_s], pix_s % W, pix_s // W)
    else:
        a = a_nograd

    # Per-pixel exclusive products of (1 - alpha) as segment sums of logs; float64 keeps the global
    # running sum exact enough to subtract each segment's start. Within a pixel the live fragments
    # (transmittance after them still above T_MIN) form a prefix, so the dead ones are dropped last.
    log1m = torch.log1p(-a).double()
    csum = torch.cumsum(log1m, 0)
    excl = csum - log1m
    base = excl[crow[:-1].repeat_interleave(seg_counts, output_size=len(excl))]
    with torch.no_grad():
        live = (csum - base) > math.log(T_MIN)
        if not bool(live.all()):
            lv = torch.nonzero(live).squeeze(1)
            a, rank_s, pix_s, excl, base = a[lv], rank_s[lv], pix_s[lv], excl[lv], base[lv]
            seg_counts = torch.bincount(pix_s, minlength=P)
            torch.cumsum(seg_counts, 0, out=crow[1:])
    w = a * torch.exp(excl - base).to(dt)

    colors = _colors(g, camera)
    feats = torch.cat([colors, proj.depths[:, None], torch.ones_like(proj.depths[:, None])], dim=-1)[vis]
    if grad:
        acc = torch.zeros(P, 5, device=dev, dtype=dt).index_add(0, pix_s, w[:, None] * feats[rank_s])
    else:
        # weights as a sparse (pixels x Gaussians) matrix, rows already sorted: one CSR product
        acc = _csr(crow, rank_s, w, P, R) @ feats
    alpha_img = acc[:, 4]
    rgb = (acc[:, :3] + (1.0 - alpha_img)[:, None] * bg).clamp(0.0, 1.0)
    depth = acc[:, 3] / alpha_img.clamp_min(1e-10)

    ids = _vote_ids(g.instance_ids()[vis], crow, rank_s, pix_s, w.detach(), alpha_img.detach(), P)
    return RenderOutput(rgb.reshape(H, W, 3), depth.reshape(H, W), alpha_img.reshape(H, W), ids.reshape(H, W))


def _fragment_alpha(params: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """``min(ALPHA_MAX, o exp(-sigma))`` of fragments with per-fragment ``params (F,6)`` = (u, v, conic
    a, b, c, opacity) at pixel centres ``(col + 0.5, row + 0.5)``; 0 where ``sigma < 0``."""
    u, v, ca, cb, cc, op = params.unbind(-1)
    dx = u - (col.to(params.dtype) + 0.5)
    dy = v - (row.to(params.dtype) + 0.5)
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    alpha = (op * torch.exp(-sigma)).clamp_max(ALPHA_MAX)
    return torch.where(sigma >= 0, alpha, torch.zeros_like(alpha))


def _sort_fragments(keys: torch.Tensor, values: torch.Tensor, num_keys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct non-negative int64 ``keys < num_keys`` sorted ascending, and ``values`` permuted alike.

    On the CPU, keys below 2^32 go through numpy's radix sort on 16-bit digits (two stable passes) and
    numpy's gathers, several times faster than a comparison sort and torch indexing of the same fragments.
    """
    if keys.device.type != "cpu" or num_keys > (1 << 32):
        keys, order = torch.sort(keys)
        return keys, values[order]
    k = keys.numpy()
    order = np.argsort((k & 0xFFFF).astype(np.uint16), kind="stable")
    if num_keys > (1 << 16):
        order = order[np.argsort((k[order] >> 16).astype(np.uint16), kind="stable")]
    return torch.from_numpy(k[order]), torch.from_numpy(values.numpy()[order])


def _empty(H: int, W: int, bg: torch.Tensor, dev, dt) -> RenderOutput:
    return RenderOutput(bg.expand(H, W, 3).clone(), torch.zeros(H, W, device=dev, dtype=dt),
                        torch.zeros(H, W, device=dev, dtype=dt), torch.zeros(H, W, device=dev, dtype=torch.long))


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=(rows, cols), check_invariants=False)


@torch.no_grad()
def _vote_ids(ids: torch.Tensor, crow: torch.Tensor, rank: torch.Tensor, pix: torch.Tensor, w: torch.Tensor,
              alpha: torch.Tensor, P: int) -> torch.Tensor:
    """Per pixel, the instance id (``ids`` per ranked Gaussian) with the largest summed blending weight
    (smallest id on ties); 0 where ``alpha <= ID_ALPHA``."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    n = len(uniq)
    if n == 1:
        best = torch.zeros(P, dtype=torch.long, device=pix.device)
    elif P * n <= _DENSE_ID_TABLE_MAX:
        onehot = torch.nn.functional.one_hot(inv, n).to(w.dtype)
        best = (_csr(crow, rank, w, P, len(ids)) @ onehot).argmax(dim=1)
    else:
        inst = inv[rank]
        keys, kinv = torch.unique(pix * n + inst, return_inverse=True)
        wsum = torch.zeros(len(keys), dtype=w.dtype, device=pix.device).index_add_(0, kinv, w)
        kpix, kinst = keys // n, keys % n
        top = torch.full((P,), -1.0, dtype=w.dtype, device=pix.device).scatter_reduce(0, kpix, wsum, "amax")
        cand = torch.where(wsum == top[kpix], kinst, torch.full_like(kinst, n))
        best = torch.full((P,), n, dtype=torch.long, device=pix.device).scatter_reduce(0, kpix, cand, "amin")
        best = best.clamp_max(n - 1)
    return torch.where(alpha > ID_ALPHA, uniq[best], torch.zeros_like(best))


# ------------------------------------------------------------------------------------------------
# Compiled CPU backend (render/raster_cpu.py): projection, binning and compositing there
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def _rasterize_numba(frames: Sequence[Gaussians], cameras: Sequence[Camera], bg: torch.Tensor,
                     threads: int | None) -> RenderOutput:
    W, H = cameras[0].width, cameras[0].height
    ids = None if all(g.ids is None for g in frames) else np.concatenate([g.instance_ids().numpy() for g in frames])
    if ids is None:  # one instance, id 1
        uniq, inst = np.ones(1, np.int64), np.zeros(sum(len(g) for g in frames), np.int32)
    elif len(ids) and int(ids.max()) < (1 << 20):  # small ids: a count table instead of a sort
        uniq = np.flatnonzero(np.bincount(ids))
        lut = np.zeros(int(ids.max()) + 1, np.int32)
        lut[uniq] = np.arange(len(uniq), dtype=np.int32)
        inst = lut[ids]
    else:
        uniq, inst = np.unique(ids, return_inverse=True)
    degrees = {g.sh_degree for g in frames}
    if len(degrees) > 1:  # rare: mixed colour kinds in one clip, render them frame by frame
        outs = [_rasterize_numba([g], [c], bg, threads) for g, c in zip(frames, cameras)]
        return RenderOutput(*(torch.cat([getattr(o, k) for o in outs]) for k in ("rgb", "depth", "alpha", "ids")))

    def flat(name):
        # numpy joins the frames: a torch copy this size wakes torch's OpenMP pool, whose threads then spin
        # beside the compositor's (measured: a 16-frame 30k clip took 1.2-5x the compositor's CPU time)
        parts = [getattr(g, name).detach().float().numpy() for g in frames]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)  # one frame: no copy

    frame = np.repeat(np.arange(len(frames), dtype=np.int32), [len(g) for g in frames])
    K = torch.stack([c.K for c in cameras]).float().numpy()
    R = torch.stack([c.R for c in cameras]).float().numpy()
    t = torch.stack([c.t for c in cameras]).float().numpy()
    # background, clamp and ids are applied in the compositor as it writes each tile
    rgb, depth, alpha, ids = raster_cpu.render(flat("means"), flat("quats"), flat("scales"), flat("opacities"),
                                               flat("colors"), degrees.pop(), inst.astype(np.int32), frame, K, R,
                                               t, W, H, uniq.astype(np.int64), bg.numpy(), threads)
    rgb, depth, alpha, ids = (torch.from_numpy(x) for x in (rgb, depth, alpha, ids))
    return RenderOutput(rgb, depth, alpha, ids)


# ------------------------------------------------------------------------------------------------
# gsplat backend
# ------------------------------------------------------------------------------------------------


def _rasterize_gsplat(g: Gaussians, camera: Camera, bg: torch.Tensor) -> RenderOutput:
    from gsplat import rasterization

    out_dev = g.device
    dev = out_dev if out_dev.type == "cuda" else torch.device("cuda")
    gg = g.to(dev, torch.float32)
    W, H = camera.width, camera.height
    viewmats = camera.viewmat.to(dev, torch.float32)[None]
    Ks = camera.K.to(dev, torch.float32)[None]
    common = dict(viewmats=viewmats, Ks=Ks, width=W, height=H, near_plane=NEAR_PLANE, eps2d=EPS2D,
                  packed=False, rasterize_mode="classic")
    colors, alphas, _ = rasterization(gg.means, gg.quats, gg.scales, gg.opacities, gg.colors,
                                      sh_degree=gg.sh_degree, render_mode="RGB+ED",
                                      backgrounds=bg.to(dev)[None], **common)
    rgb = colors[0, ..., :3].clamp(0.0, 1.0)
    depth = colors[0, ..., 3]
    alpha = alphas[0, ..., 0]
    with torch.no_grad():
        uniq, inv = torch.unique(gg.instance_ids(), return_inverse=True)
        if len(uniq) <= 1:
            best = torch.zeros(H, W, dtype=torch.long, device=dev)
        else:
            # one channel per instance: each pixel's summed blending weight of that instance
            onehot = torch.nn.functional.one_hot(inv, len(uniq)).float()
            votes, _, _ = rasterization(gg.means, gg.quats, gg.scales, gg.opacities, onehot,
                                        sh_degree=None, render_mode="RGB", **common)
            best = votes[0].argmax(dim=-1)
        lead = uniq[best] if len(uniq) else torch.ones_like(best)
        ids = torch.where(alpha > ID_ALPHA, lead, torch.zeros_like(lead))
    return RenderOutput(rgb.to(out_dev), depth.to(out_dev), alpha.to(out_dev), ids.to(out_dev))
