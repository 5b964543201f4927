"""Linear blend skinning as pure batched tensor functions (the maths of SMPL, smplx/lbs.py layout).

Shapes: ``B`` batch, ``V`` vertices, ``J`` joints (24 for SMPL), ``NB`` shape coefficients,
``P = 9 (J - 1)`` pose-corrective features. Units are metres; rotations act on column vectors.

Two paths compute the same thing:

- :func:`lbs_reference` follows the textbook order (shape, regress joints from the shaped mesh, pose
  correctives, rigid chain, per-vertex 4x4 blend) and is the slow obvious reference;
- :func:`lbs` is the fast path used by :class:`avatars.body.BodyModel`: joints come from a regressor
  pre-applied to the template and shape directions (``J = J0 + betas @ Jdirs``, exact because both are
  linear), pose correctives are skipped when the model has none, and the per-vertex transforms are one
  GEMM followed by a 3x4 affine apply instead of ``V`` tiny 4x4 matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from render.rotations import axis_angle_to_matrix

__all__ = [
    "LbsOutput",
    "blend_shapes",
    "vertices2joints",
    "pose_features",
    "batch_rigid_transform",
    "skin_vertices",
    "regress_joint_basis",
    "lbs",
    "lbs_reference",
]


@dataclass
class LbsOutput:
    """Result of skinning one batch.

    Attributes:
        vertices: ``(B, V, 3)`` posed vertices.
        joints: ``(B, J, 3)`` posed joint positions.
        transforms: ``(B, J, 4, 4)`` world frame of each joint (its global rotation, its posed position).
        skin_transforms: ``(B, J, 4, 4)`` maps a rest-pose point (after shape) to its posed place when
            bound rigidly to the joint; the per-vertex transform is the weighted sum of these.
        rest_vertices: ``(B, V, 3)`` shaped vertices in the rest pose.
        rest_joints: ``(B, J, 3)`` shaped joints in the rest pose.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor
    skin_transforms: torch.Tensor
    rest_vertices: torch.Tensor
    rest_joints: torch.Tensor


def blend_shapes(betas: torch.Tensor, shapedirs: torch.Tensor) -> torch.Tensor:
    """Per-vertex shape offsets: ``betas (B, NB)`` x ``shapedirs (V, 3, NB)`` -> ``(B, V, 3)`` metres."""
    V, _, NB = shapedirs.shape
    # one GEMM against the transposed view; einsum picks a batched path that is several times slower
    return (betas @ shapedirs.reshape(V * 3, NB).T).view(betas.shape[0], V, 3)


def vertices2joints(J_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Joints as fixed linear combinations of vertices: ``(J, V)`` x ``(B, V, 3)`` -> ``(B, J, 3)``."""
    return torch.einsum("bik,ji->bjk", vertices, J_regressor)


def pose_features(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features ``(R_j - I)`` of the non-root joints: ``(B, J, 3, 3)`` -> ``(B, 9 (J-1))``."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor | list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compose local joint rotations down the kinematic tree.

    Args:
        rot_mats: ``(B, J, 3, 3)`` local rotation of each joint relative to its parent.
        joints: ``(B, J, 3)`` rest-pose joint positions.
        parents: ``(J,)`` parent index of each joint, ``-1`` for the root; parents precede children.
    Returns:
        posed_joints ``(B, J, 3)``, world frames ``(B, J, 4, 4)`` (global rotation, posed position) and
        skinning transforms ``(B, J, 4, 4)`` (world frame composed with the inverse rest translation).
    """
    parents = [int(p) for p in (parents.tolist() if torch.is_tensor(parents) else parents)]
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    # Rotation and translation are chained separately: same result as 4x4 products, fewer flops.
    rots = [rot_mats[:, 0]]
    trans = [rel[:, 0]]
    for i in range(1, J):
        p = parents[i]
        rots.append(rots[p] @ rot_mats[:, i])
        trans.append(trans[p] + (rots[p] @ rel[:, i, :, None])[..., 0])
    R = torch.stack(rots, dim=1)
    t = torch.stack(trans, dim=1)
    world = _make_transform(R, t)
    skin = _make_transform(R, t - (R @ joints[..., None])[..., 0])
    return t, world, skin


def _make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros(*R.shape[:-2], 1, 4, dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def skin_vertices(vertices: torch.Tensor, weights: torch.Tensor, skin_transforms: torch.Tensor) -> torch.Tensor:
    """Blend per-joint rigid transforms per vertex and apply them.

    Args:
        vertices: ``(B, V, 3)`` rest-pose (shaped, pose-corrected) vertices.
        weights: ``(V, J)`` skin weights, rows summing to 1.
        skin_transforms: ``(B, J, 4, 4)`` from :func:`batch_rigid_transform`.
    Returns:
        ``(B, V, 3)`` posed vertices.
    """
    B, J = skin_transforms.shape[:2]
    A = skin_transforms[:, :, :3, :].reshape(B, J, 12)
    T = torch.matmul(weights, A).view(B, -1, 3, 4)  # one GEMM for all vertices
    # the 3x4 apply as four broadcast multiply-adds: V tiny matmuls cost far more
    x, y, z = vertices[..., None, 0], vertices[..., None, 1], vertices[..., None, 2]
    return T[..., 0] * x + T[..., 1] * y + T[..., 2] * z + T[..., 3]


def regress_joint_basis(
    J_regressor: torch.Tensor, v_template: torch.Tensor, shapedirs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-apply the joint regressor: ``J(betas) = J0 + einsum(betas, Jdirs)``.

    Returns ``J0 (J, 3)`` and ``Jdirs (J, 3, NB)`` such that ``vertices2joints(J_regressor, v_shaped)``
    equals ``J0 + blend_shapes(betas, Jdirs)`` for every ``betas``.
    """
    J0 = J_regressor @ v_template
    Jdirs = torch.einsum("jv,vkl->jkl", J_regressor, shapedirs)
    return J0, Jdirs


def lbs(
    betas: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    J_template: torch.Tensor,
    J_shapedirs: torch.Tensor,
    parents: torch.Tensor | list[int],
    weights: torch.Tensor,
    posedirs: torch.Tensor | None = None,
) -> LbsOutput:
    """Fast skinning (see the module docstring for what differs from :func:`lbs_reference`).

    Args:
        betas: ``(B, NB)`` shape coefficients.
        pose: ``(B, J, 3)`` axis-angle per joint (root first) or ``(B, J, 3, 3)`` rotation matrices.
        v_template: ``(V, 3)`` template mesh.
        shapedirs: ``(V, 3, NB)`` shape directions.
        J_template, J_shapedirs: ``(J, 3)`` and ``(J, 3, NB)`` from :func:`regress_joint_basis`.
        parents: ``(J,)`` kinematic tree.
        weights: ``(V, J)`` skin weights.
        posedirs: ``(P, V * 3)`` pose correctives, or ``None`` for a model without them.
    Returns:
        :class:`LbsOutput` (no translation applied).
    """
    B = max(betas.shape[0], pose.shape[0])
    betas = betas.expand(B, -1)
    rot_mats = pose if pose.dim() == 4 else axis_angle_to_matrix(pose)
    rot_mats = rot_mats.expand(B, -1, -1, -1)
    v_shaped = v_template + blend_shapes(betas, shapedirs)
    J = J_template + blend_shapes(betas, J_shapedirs)
    v_posed = v_shaped
    if posedirs is not None:
        v_posed = v_shaped + (pose_features(rot_mats) @ posedirs).view(B, -1, 3)
    posed_joints, world, skin = batch_rigid_transform(rot_mats, J, parents)
    verts = skin_vertices(v_posed, weights, skin)
    return LbsOutput(verts, posed_joints, world, skin, v_shaped, J)


def lbs_reference(
    betas: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: torch.Tensor | list[int],
    weights: torch.Tensor,
) -> LbsOutput:
    """Slow obvious skinning: every step spelled out with 4x4 matrices, per joint and per vertex.

    Args as :func:`lbs`, with ``posedirs (P, V * 3)`` always applied and ``J_regressor (J, V)``.
    """
    parents = [int(p) for p in (parents.tolist() if torch.is_tensor(parents) else parents)]
    B = max(betas.shape[0], pose.shape[0])
    betas = betas.expand(B, -1)
    rot_mats = (pose if pose.dim() == 4 else axis_angle_to_matrix(pose)).expand(B, -1, -1, -1)
    v_shaped = v_template + torch.einsum("bl,mkl->bmk", betas, shapedirs)
    J = vertices2joints(J_regressor, v_shaped)
    v_posed = v_shaped + (pose_features(rot_mats) @ posedirs).view(B, -1, 3)
    n = J.shape[1]
    eye = torch.eye(4, dtype=J.dtype, device=J.device)
    world = []
    for i in range(n):
        local = eye.repeat(B, 1, 1)
        local[:, :3, :3] = rot_mats[:, i]
        local[:, :3, 3] = J[:, i] - (J[:, parents[i]] if parents[i] >= 0 else 0)
        world.append(local if parents[i] < 0 else world[parents[i]] @ local)
    world = torch.stack(world, dim=1)
    unbind = eye.repeat(B, n, 1, 1)
    unbind[..., :3, 3] = -J
    skin = world @ unbind
    T = torch.einsum("vj,bjrc->bvrc", weights, skin)
    homo = torch.cat([v_posed, torch.ones_like(v_posed[..., :1])], dim=-1)
    verts = (T @ homo[..., None])[..., :3, 0]
    return LbsOutput(verts, world[:, :, :3, 3], world, skin, v_shaped, J)
