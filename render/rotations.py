"""Rotation helpers: the project's one rotation module.

Every representation is batched over leading dimensions and works on torch tensors:

- axis-angle ``(..., 3)``: direction is the axis, norm is the angle in radians;
- rotation matrix ``(..., 3, 3)``: acts on column vectors, ``x' = R @ x``;
- quaternion ``(..., 4)`` in **wxyz** order (scalar first), unit norm; outputs are standardised to ``w >= 0``;
- 6D ``(..., 6)``: the first two **rows** of the matrix (Zhou et al. 2019, PyTorch3D's layout);
- Euler angles ``(..., 3)`` in radians for an intrinsic axis order such as ``"ZXY"`` (BVH channels).

All conversions are stable near angle 0 (Taylor expansions, gradients finite) and near angle pi
(quaternions are recovered from the best-conditioned diagonal term).
"""

from __future__ import annotations

import torch

from .errors import AmgError

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "standardize_quaternion",
    "quaternion_multiply",
    "quaternion_invert",
    "quaternion_apply",
    "slerp",
    "euler_to_matrix",
    "matrix_to_euler",
    "skew",
]

_SMALL = 1e-6  # below this squared angle, Taylor series replace sin/cos ratios


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix ``[v]_x`` of ``v (..., 3)`` -> ``(..., 3, 3)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle ``(..., 3)`` -> rotation matrix ``(..., 3, 3)``."""
    sq = (aa * aa).sum(-1)
    small = sq < _SMALL
    sq_safe = torch.where(small, torch.ones_like(sq), sq)
    theta = sq_safe.sqrt()
    a = torch.where(small, 1 - sq / 6 + sq * sq / 120, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - sq / 24 + sq * sq / 720, (1 - torch.cos(theta)) / sq_safe)
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def axis_angle_to_quaternion(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``(..., 3)`` -> unit quaternion wxyz ``(..., 4)`` (w >= 0 for angles <= pi)."""
    sq = (aa * aa).sum(-1, keepdim=True)
    small = sq < _SMALL
    sq_safe = torch.where(small, torch.ones_like(sq), sq)
    theta = sq_safe.sqrt()
    # sin(theta/2)/theta and cos(theta/2), with their series near 0
    s = torch.where(small, 0.5 - sq / 48 + sq * sq / 3840, torch.sin(theta / 2) / theta)
    c = torch.where(small, 1 - sq / 8 + sq * sq / 384, torch.cos(theta / 2))
    return torch.cat([c, aa * s], dim=-1)


def standardize_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Flip ``q (..., 4)`` wxyz so that ``w >= 0`` (q and -q are the same rotation)."""
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion wxyz ``(..., 4)`` -> axis-angle ``(..., 3)`` with angle in [0, pi]."""
    q = standardize_quaternion(q)
    w, v = q[..., :1], q[..., 1:]
    n2 = (v * v).sum(-1, keepdim=True)
    small = n2 < _SMALL
    n = torch.where(small, torch.ones_like(n2), n2).sqrt()
    angle = 2 * torch.atan2(n, w)
    # angle / sin(angle/2) -> 2/w * (1 + n^2/(6 w^2)) as n -> 0 (w -> 1)
    w_safe = torch.where(w.abs() < 1e-12, torch.ones_like(w), w)
    factor = torch.where(small, 2 / w_safe * (1 + n2 / (6 * w_safe * w_safe)), angle / n)
    return v * factor


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternion wxyz ``(..., 4)`` (normalised here) -> rotation matrix ``(..., 3, 3)``."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    m = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> unit quaternion wxyz ``(..., 4)`` with ``w >= 0``.

    Four candidate quaternions are formed, each dividing by a different diagonal combination; the one
    with the largest divisor is kept, so the result is accurate for every angle including pi.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    four = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    abs2 = 2 * four.clamp_min(0).sqrt()  # 4*|w|, 4*|x|, 4*|y|, 4*|z| up to the factor 2 below
    cands = torch.stack(
        [
            torch.stack([four[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, four[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, four[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, four[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    cands = cands / abs2.clamp_min(0.1)[..., None]
    best = four.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return standardize_quaternion(q)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> axis-angle ``(..., 3)``, angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6D ``(..., 6)`` (two matrix rows) -> rotation matrix ``(..., 3, 3)`` by Gram-Schmidt."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> 6D ``(..., 6)``: its first two rows."""
    return m[..., :2, :].reshape(*m.shape[:-2], 6)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of wxyz quaternions ``(..., 4)``; as matrices, ``R(a) @ R(b)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quaternion_invert(q: torch.Tensor) -> torch.Tensor:
    """Inverse of a unit quaternion wxyz ``(..., 4)`` (its conjugate)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quaternion_apply(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate points ``v (..., 3)`` by unit quaternions ``q (..., 4)``."""
    w, u = q[..., :1], q[..., 1:]
    t = 2 * torch.cross(u, v, dim=-1)
    return v + w * t + torch.cross(u, t, dim=-1)


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical linear interpolation of unit quaternions wxyz along the shorter arc.

    Args:
        q0, q1: ``(..., 4)`` unit quaternions.
        t: interpolation weights in [0, 1], broadcastable to ``(...)``.
    Returns:
        ``(..., 4)`` unit quaternions, ``q0`` at ``t=0`` and ``+-q1`` at ``t=1``.
    """
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
    if t.dim() < q0.dim():
        t = t[..., None]
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    near = dot > 1 - 1e-6
    omega = torch.acos(torch.where(near, torch.zeros_like(dot), dot))
    sin_omega = torch.where(near, torch.ones_like(omega), torch.sin(omega))
    w0 = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / sin_omega)
    w1 = torch.where(near, t, torch.sin(t * omega) / sin_omega)
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def _axis_rotation(axis: str, angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, i = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == "X":
        r = [i, o, o, o, c, -s, o, s, c]
    elif axis == "Y":
        r = [c, o, s, o, i, o, -s, o, c]
    elif axis == "Z":
        r = [c, -s, o, s, c, o, o, o, i]
    else:
        raise AmgError(f"euler axis {axis!r}: expected one of X, Y, Z")
    return torch.stack(r, dim=-1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(angles: torch.Tensor, order: str = "XYZ") -> torch.Tensor:
    """Intrinsic Euler angles ``(..., 3)`` in radians -> ``(..., 3, 3)``.

    ``order="ZXY"`` gives ``Rz(a0) @ Rx(a1) @ Ry(a2)``, the convention of BVH channel lists.
    """
    order = order.upper()
    if len(order) != 3 or set(order) - set("XYZ"):
        raise AmgError(f"euler order {order!r}: expected three letters of X, Y, Z")
    m = _axis_rotation(order[0], angles[..., 0])
    for i in (1, 2):
        m = m @ _axis_rotation(order[i], angles[..., i])
    return m


def matrix_to_euler(m: torch.Tensor, order: str = "XYZ") -> torch.Tensor:
    """Inverse of :func:`euler_to_matrix` for orders with three distinct axes; ``(..., 3)`` radians."""
    order = order.upper()
    if len(order) != 3 or len(set(order)) != 3 or set(order) - set("XYZ"):
        raise AmgError(f"euler order {order!r}: expected a permutation of XYZ")
    i, j, k = ("XYZ".index(a) for a in order)
    # sign of the permutation (i, j, k): +1 for cyclic orders such as XYZ, -1 otherwise
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    # R = Ri(a) Rj(b) Rk(c): R[i,k] = sign*sin(b); remaining angles from the i-th row / k-th column
    sb = (sign * m[..., i, k]).clamp(-1.0, 1.0)
    b = torch.asin(sb)
    a = torch.atan2(-sign * m[..., j, k], m[..., k, k])
    c = torch.atan2(-sign * m[..., i, j], m[..., i, i])
    # gimbal lock: put all of the first+third rotation into the first angle
    lock = sb.abs() > 1 - 1e-7
    a_lock = torch.atan2(sign * m[..., k, j], m[..., j, j])
    a = torch.where(lock, a_lock, a)
    c = torch.where(lock, torch.zeros_like(c), c)
    return torch.stack([a, b, c], dim=-1)
