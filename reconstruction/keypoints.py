"""A body's joints and landmark keypoints, fast: what the fit evaluates in its inner loop.

:class:`BodyKeypoints` computes only the 24 joints and the ~20 keypoint vertices that BlazePose landmarks
correspond to (:data:`LANDMARK_TARGETS`), with forward kinematics one tree level at a time;
:func:`body_keypoints_reference` is its slow obvious twin (the full body forward), which the tests compare.
"""

from __future__ import annotations

import torch

from render.rotations import axis_angle_to_matrix

__all__ = ["LANDMARK_TARGETS", "BodyKeypoints", "body_keypoints_reference"]

#: BlazePose landmark index -> (``"joint"``, SMPL joint index) or (``"vertex"``, body vertex-id name), weight.
#: MediaPipe's pinky/index landmarks bracket the hand, so both pull on the SMPL hand joint at half weight.
LANDMARK_TARGETS: dict[int, tuple[str, int | str, float]] = {
    0: ("vertex", "nose", 1.0),
    2: ("vertex", "leye", 0.5), 5: ("vertex", "reye", 0.5),
    7: ("vertex", "lear", 0.5), 8: ("vertex", "rear", 0.5),
    11: ("joint", 16, 1.0), 12: ("joint", 17, 1.0),
    13: ("joint", 18, 1.0), 14: ("joint", 19, 1.0),
    15: ("joint", 20, 1.0), 16: ("joint", 21, 1.0),
    17: ("joint", 22, 0.5), 18: ("joint", 23, 0.5), 19: ("joint", 22, 0.5), 20: ("joint", 23, 0.5),
    23: ("joint", 1, 1.0), 24: ("joint", 2, 1.0),
    25: ("joint", 4, 1.0), 26: ("joint", 5, 1.0),
    27: ("joint", 7, 1.0), 28: ("joint", 8, 1.0),
    29: ("vertex", "LHeel", 0.7), 30: ("vertex", "RHeel", 0.7),
    31: ("vertex", "LBigToe", 0.7), 32: ("vertex", "RBigToe", 0.7),
}

class BodyKeypoints(torch.nn.Module):
    """Fast evaluation of a body's 24 joints and the keypoint vertices the landmark targets name.

    Args:
        body: an ``avatars.body.BodyModel`` (SMPL layout); its ``vertex_ids`` name the keypoint vertices.
    Attributes:
        landmark_index: ``(K,)`` BlazePose indices that have a body target on this body.
        landmark_weight: ``(K,)`` their weights.
    """

    def __init__(self, body) -> None:
        super().__init__()
        lm_idx, weights, joint_of, vert_names = [], [], [], []
        for lm, (kind, target, w) in LANDMARK_TARGETS.items():
            if kind == "vertex" and target not in body.vertex_ids:
                continue  # bodies without keypoint vertex ids still fit on the joints
            lm_idx.append(lm)
            weights.append(w)
            if kind == "joint":
                joint_of.append(int(target))
            else:
                joint_of.append(-1 - len(vert_names))
                vert_names.append(target)
        vids = [int(body.vertex_ids[n]) for n in vert_names]
        self.parents = list(body.parents)
        self._plan_levels()
        self.num_betas = body.num_betas
        self.register_buffer("landmark_index", torch.tensor(lm_idx, dtype=torch.long))
        self.register_buffer("landmark_weight", torch.tensor(weights, dtype=torch.float32))
        # source row of each landmark in cat([joints (24), vertices (Nv)])
        src = [j if j >= 0 else 24 + (-1 - j) for j in joint_of]
        self.register_buffer("source", torch.tensor(src, dtype=torch.long))
        idx = torch.tensor(vids, dtype=torch.long)
        self.register_buffer("v_template", body.v_template[idx].clone())
        self.register_buffer("shapedirs", body.shapedirs[idx].clone())
        self.register_buffer("weights", body.weights[idx].clone())
        self.register_buffer("J_template", body.J_template.clone())
        self.register_buffer("J_shapedirs", body.J_shapedirs.clone())
        self.has_posedirs = bool(getattr(body, "has_posedirs", False)) and len(vids) > 0
        if self.has_posedirs:
            pd = body.posedirs.reshape(body.posedirs.shape[0], -1, 3)[:, idx]
            self.register_buffer("posedirs", pd.reshape(pd.shape[0], -1).clone())

    def _plan_levels(self) -> None:
        depth = []
        for j, p in enumerate(self.parents):
            depth.append(0 if p < 0 else depth[p] + 1)
        self._levels = [torch.tensor([j for j in range(len(depth)) if depth[j] == d], dtype=torch.long)
                        for d in range(max(depth) + 1)]
        order = torch.cat(self._levels)
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        # parent of each level member as a position in the concatenation of the previous levels
        self._parent_pos = [None] + [position[torch.tensor([self.parents[j] for j in lv.tolist()])]
                                     for lv in self._levels[1:]]
        self._inverse_order = position
        self._parent_of = torch.tensor([max(p, 0) for p in self.parents], dtype=torch.long)

    def kinematics(self, rot: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward kinematics one tree level at a time (9 batched steps instead of 23 joint steps).

        Args:
            rot: ``(F,24,3,3)`` local rotations; joints: ``(F,24,3)`` rest joints.
        Returns:
            posed joints ``(F,24,3)`` and skinning transforms ``(F,24,4,4)`` as
            ``avatars.lbs.batch_rigid_transform`` computes them.
        """
        F = rot.shape[0]
        rel = joints - torch.cat([torch.zeros_like(joints[:, :1]), joints[:, self._parent_of[1:]]], dim=1)
        R_levels, t_levels = [rot[:, :1]], [rel[:, :1]]
        for members, parent_pos in zip(self._levels[1:], self._parent_pos[1:]):
            R_prev = torch.cat(R_levels, dim=1)
            t_prev = torch.cat(t_levels, dim=1)
            Rp, tp = R_prev[:, parent_pos], t_prev[:, parent_pos]
            R_levels.append(Rp @ rot[:, members])
            t_levels.append(tp + (Rp @ rel[:, members, :, None])[..., 0])
        R = torch.cat(R_levels, dim=1)[:, self._inverse_order]
        t = torch.cat(t_levels, dim=1)[:, self._inverse_order]
        top = torch.cat([R, (t - (R @ joints[..., None])[..., 0])[..., None]], dim=-1)
        bottom = torch.zeros(F, R.shape[1], 1, 4, dtype=R.dtype, device=R.device)
        bottom[..., 3] = 1
        return t, torch.cat([top, bottom], dim=-2)

    def forward(self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor,
                transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joints ``(F,24,3)`` and landmark targets ``(F,K,3)`` in world metres.

        Args:
            betas: ``(NB,)`` shared shape; global_orient ``(F,3)``; body_pose ``(F,23,3)``; transl ``(F,3)``.
        """
        from avatars.lbs import blend_shapes, pose_features, skin_vertices

        F = global_orient.shape[0]
        b = betas.reshape(1, -1).expand(F, -1)
        rot = axis_angle_to_matrix(torch.cat([global_orient[:, None], body_pose], dim=1))
        J = self.J_template + blend_shapes(b[:1], self.J_shapedirs)
        joints, skin = self.kinematics(rot, J.expand(F, -1, -1))
        v = self.v_template + blend_shapes(b[:1], self.shapedirs)
        v = v.expand(F, -1, -1)
        if self.has_posedirs:
            v = v + (pose_features(rot) @ self.posedirs).view(F, -1, 3)
        verts = skin_vertices(v, self.weights, skin)
        joints = joints + transl[:, None]
        pts = torch.cat([joints, verts + transl[:, None]], dim=1)
        return joints, pts[:, self.source]


def body_keypoints_reference(body, keypoints: BodyKeypoints, betas, global_orient, body_pose, transl):
    """The slow obvious twin of :class:`BodyKeypoints`: full body forward, then gather joints/vertices."""
    F = global_orient.shape[0]
    out = body(betas=betas.reshape(1, -1).expand(F, -1), global_orient=global_orient, body_pose=body_pose,
               transl=transl)
    rows = []
    for lm in keypoints.landmark_index.tolist():
        kind, target, _ = LANDMARK_TARGETS[lm]
        rows.append(out.joints[:, target] if kind == "joint" else out.vertices[:, body.vertex_ids[target]])
    return out.joints, torch.stack(rows, dim=1)
