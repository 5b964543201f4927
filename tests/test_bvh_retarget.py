"""BVH import against synthetic files written from known SMPL motions in other people's conventions.

The writer and the forward kinematics here are separate from avatars.bvh (scipy's Euler angles, plain
numpy); the loaded motion is compared with the motion the file was written from.
"""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatars.body import DEFAULT_BODY_PATH, SMPL_PARENTS, default_body
from avatars.bvh import bvh_info, load_bvh, save_bvh
from avatars.contact import ground
from avatars.motion import Motion
from render.errors import AmgError

pytestmark = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")

LAFAN = ["Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot",
         "Spine2", "LeftToe", "RightToe", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm", "RightArm",
         "LeftForeArm", "RightForeArm", "LeftHand", "RightHand"]
MIXAMO = ["mixamorig:" + n.replace("Toe", "ToeBase") for n in LAFAN]
CMU = [{"Spine": "LowerBack", "Spine1": "Spine", "Spine2": "Spine1"}.get(n, n.replace("Toe", "ToeBase")) for n in LAFAN]
RIGIFY = ["DEF-spine", "DEF-thigh.L", "DEF-thigh.R", "DEF-spine.001", "DEF-shin.L", "DEF-shin.R", "DEF-spine.002",
          "DEF-foot.L", "DEF-foot.R", "DEF-spine.003", None, None, "DEF-spine.004", "DEF-shoulder.L",
          "DEF-shoulder.R", "DEF-spine.006", "DEF-upper_arm.L", "DEF-upper_arm.R", "DEF-forearm.L",
          "DEF-forearm.R", "DEF-hand.L", "DEF-hand.R"]
# our world (Y-up) -> a Z-up world, as AMASS and Blender files are: up becomes +Z, forward (+Z) becomes -Y
TO_ZUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def rot(aa):
    return Rotation.from_rotvec(np.asarray(aa, dtype=np.float64).reshape(-1, 3)).as_matrix()


def truth_motion(F=8, seed=0, tpose_first=True):
    """A travelling, turning SMPL motion; frame 0 a T-pose (facing the clip's heading) when asked."""
    g = np.random.default_rng(seed)
    body_pose = g.normal(scale=0.35, size=(F, 23, 3))
    body_pose[:, 21:] = 0.0  # SMPL's hand joints: no file joint for them
    yaw = math.radians(37.0) + np.linspace(0, 0.6, F)
    go = np.stack([Rotation.from_euler("YX", [y, 0.15 * math.sin(3 * y)]).as_rotvec() for y in yaw])
    if tpose_first:
        body_pose[0] = 0.0
        go[0] = [0.0, yaw[0], 0.0]
    transl = np.stack([np.linspace(0, 1.2, F), 0.05 * np.sin(np.arange(F)), np.linspace(0, -0.7, F)], -1)
    m = Motion(30.0, torch.zeros(default_body().num_betas), go, body_pose, transl, name="truth")
    return ground(m)


def smpl_globals(m):
    """``(F, 24, 3, 3)`` world rotations of the SMPL segments, composed here from the local rotations."""
    loc = rot(m.full_pose.double().numpy()).reshape(len(m), 24, 3, 3)
    G = np.zeros_like(loc)
    for j in range(24):
        G[:, j] = loc[:, j] if j == 0 else G[:, SMPL_PARENTS[j]] @ loc[:, j]
    return G


def write_bvh(path, m, names, order="ZXY", unit=100.0, world=np.eye(3), zero=None, root="absolute",
              betas=None):
    """Write ``m`` as a BVH of the skeleton ``names`` (SMPL joint order, None = joint absent).

    ``zero (24, 3, 3)``: world rotations of the SMPL segments in the file's all-zero pose (identity: a
    T-pose rest; arm rotations: an A-pose; random: joint frames rotated against the bones, as LAFAN);
    ``world`` turns our Y-up world into the file's; ``unit`` file units per metre; ``betas`` the file
    character's shape (its proportions), the root path scaled by its size; ``root``: "absolute"
    position channels, "relative" to the root OFFSET.
    """
    body = default_body()
    zero = np.tile(np.eye(3), (24, 1, 1)) if zero is None else zero
    b = torch.zeros(body.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
    J = body.rest(b[None])[1][0].double().numpy()
    J0 = body.rest(m.betas[None])[1][0].double().numpy()
    size = (np.linalg.norm(J[4] - J[1]) + np.linalg.norm(J[7] - J[4])) / (
        np.linalg.norm(J0[4] - J0[1]) + np.linalg.norm(J0[7] - J0[4]))
    # zero-pose joint positions: SMPL forward kinematics with world rotations ``zero``
    Jz = np.zeros_like(J)
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        Jz[j] = Jz[p] + zero[p] @ (J[j] - J[p])
    present = [j for j in range(24) if j < len(names) and names[j] is not None]
    parent = {j: next(p for p in _ancestors(j) if p in present) for j in present if j}
    G = smpl_globals(m)
    Gf = world @ G @ np.swapaxes(zero, -1, -2)[None] @ world.T  # file joint frames
    with torch.no_grad():
        pelvis = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose,
                      transl=m.transl).joints[:, 0].double().numpy()
    root_pos = (pelvis * size) @ world.T * unit
    root_off = world @ J[0] * unit
    children = {j: [c for c in present if parent.get(c) == j] for j in present}
    lines = ["HIERARCHY"]

    def emit(j, depth):
        ind = "\t" * depth
        off = root_off if j == 0 else world @ (Jz[j] - Jz[parent[j]]) * unit
        lines.append(f"{ind}{'ROOT' if j == 0 else 'JOINT'} {names[j]}")
        lines.append(ind + "{")
        lines.append(f"{ind}\tOFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        rc = " ".join(f"{a}rotation" for a in order)
        lines.append(f"{ind}\tCHANNELS " + ("6 Xposition Yposition Zposition " if j == 0 else "3 ") + rc)
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            end = world @ zero[j] @ np.array([0.0, 0.05, 0.05]) * unit
            lines.extend([f"{ind}\tEnd Site", ind + "\t{",
                          f"{ind}\t\tOFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", ind + "\t}"])
        lines.append(ind + "}")

    emit(0, 0)
    order_list = []

    def walk(j):
        order_list.append(j)
        for c in children[j]:
            walk(c)

    walk(0)
    lines += ["MOTION", f"Frames: {len(m)}", f"Frame Time: {1.0 / m.fps:.6f}"]
    for f in range(len(m)):
        pos = root_pos[f] - (root_off if root == "relative" else 0.0)
        vals = list(pos)
        for j in order_list:
            L = Gf[f, j] if j == 0 else Gf[f, parent[j]].T @ Gf[f, j]
            vals += list(Rotation.from_matrix(L).as_euler(order, degrees=True))
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")
    return path


def _ancestors(j):
    while j > 0:
        j = SMPL_PARENTS[j]
        yield j


def read_root_offset(path):
    tok = path.read_text().split()
    i = tok.index("OFFSET")
    return np.array([float(x) for x in tok[i + 1:i + 4]])


def read_bvh_fk(path):
    """Independent reader: joint names and world positions ``(F, J, 3)`` in the file's units."""
    tok = path.read_text().split()
    names, parents, offsets, channels, stack, i = [], [], [], [], [], 1
    while tok[i] != "MOTION":
        t = tok[i]
        if t in ("ROOT", "JOINT", "End"):
            names.append(tok[i + 1] if t != "End" else None)
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append([])
            i += 2
        elif t == "{":
            stack.append(len(names) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            offsets[stack[-1]] = np.array([float(x) for x in tok[i + 1:i + 4]])
            i += 4
        elif t == "CHANNELS":
            n = int(tok[i + 1])
            channels[stack[-1]] = tok[i + 2:i + 2 + n]
            i += 2 + n
    nf = int(tok[i + 2])
    vals = np.array([float(x) for x in tok[i + 6:]]).reshape(nf, -1)
    F, nb = nf, len(names)
    pos, glob = np.zeros((F, nb, 3)), np.zeros((F, nb, 3, 3))
    col = 0
    data = []
    for ch in channels:
        data.append((ch, col))
        col += len(ch)
    for b in range(nb):
        ch, c0 = data[b]
        rots = "".join(c[0] for c in ch if c.endswith("rotation"))
        rc = [c0 + k for k, c in enumerate(ch) if c.endswith("rotation")]
        L = Rotation.from_euler(rots, vals[:, rc], degrees=True).as_matrix() if rots else np.tile(np.eye(3), (F, 1, 1))
        p = parents[b]
        if p < 0:
            pc = [c0 + k for k, c in enumerate(ch) if c.endswith("position")]
            pos[:, b] = vals[:, pc] if pc else offsets[b]
            glob[:, b] = L
        else:
            glob[:, b] = glob[:, p] @ L
            pos[:, b] = pos[:, p] + glob[:, p] @ offsets[b]
    return names, pos


CONVENTIONS = {
    # name: (joint names, writer options)
    "lafan_cm_zxy_tframe": (LAFAN, dict(order="ZXY", unit=100.0, zero="random")),
    "mixamo_apose_cm_xyz": (MIXAMO, dict(order="XYZ", unit=100.0, zero="apose")),
    "cmu_tpose_inches_zyx_zup": (CMU, dict(order="ZYX", unit=1 / 0.0254, world=TO_ZUP)),
    "rigify_m_zxy_zup_tframe": (RIGIFY, dict(order="ZXY", unit=1.0, world=TO_ZUP, zero="random")),
    "lafan_cm_relative_root": (LAFAN, dict(order="YXZ", unit=100.0, root="relative")),
    "lafan_other_body_cm": (LAFAN, dict(order="ZXY", unit=100.0, betas="other")),
}


def _zero_pose(kind, seed=3):
    if kind == "random":
        return rot(np.random.default_rng(seed).normal(scale=1.0, size=(24, 3)))
    Z = np.tile(np.eye(3), (24, 1, 1))
    if kind == "apose":  # arms 40 degrees down, the rest of the body as SMPL's rest
        Z[[16, 18, 20, 22]] = rot([0, 0, -math.radians(40)])
        Z[[17, 19, 21, 23]] = rot([0, 0, math.radians(40)])
    return Z


def _angle(R):
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_synthetic_conventions_load_back_to_the_motion(tmp_path, name):
    names, opts = CONVENTIONS[name]
    opts = dict(opts)
    zero = _zero_pose(opts.pop("zero", "identity"))
    betas = opts.pop("betas", None)
    body = default_body()
    if betas == "other":
        betas = np.zeros(body.num_betas)
        betas[0] = 2.0  # a differently sized character
    m = truth_motion(tpose_first=True)
    path = write_bvh(tmp_path / f"{name}.bvh", m, names, zero=zero, betas=betas, **opts)
    # the synthetic file is what it claims: its own FK gives the truth's joints (scaled, turned)
    bnames, P = read_bvh_fk(path)
    with torch.no_grad():
        truth = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    world = opts.get("world", np.eye(3))
    if opts.get("root") == "relative":
        P = P + read_root_offset(path)
    P = P @ world  # file world -> ours (rows)
    if betas is None:
        k = bnames.index(names[16])
        assert np.abs(P[:, k] / opts["unit"] - truth.joints[:, 16].numpy()).max() < 1e-4
    back = load_bvh(path)
    assert len(back) == len(m) and back.fps == 30.0
    with torch.no_grad():
        got = body(betas=back.betas[None], global_orient=back.global_orient, body_pose=back.body_pose,
                   transl=back.transl)
    mapped = [j for j in range(22) if names[j] is not None]
    G_true, G_got = smpl_globals(m), smpl_globals(back)
    # whole segment rotations (swing and twist) within 5 degrees, bone directions within 2
    err = _angle(np.swapaxes(G_true[:, mapped], -1, -2) @ G_got[:, mapped])
    assert err.max() < 5.0, f"{name}: segment rotation off by {err.max():.1f} deg"
    # limbs point where the file's limbs point (its own forward kinematics)
    for j in mapped:
        for c in (c for c in range(22) if SMPL_PARENTS[c] == j and c in mapped):
            d_f = P[:, bnames.index(names[c])] - P[:, bnames.index(names[j])]
            d_g = (got.joints[:, c] - got.joints[:, j]).double().numpy()
            cos = (d_f * d_g).sum(-1) / (np.linalg.norm(d_f, axis=-1) * np.linalg.norm(d_g, axis=-1))
            assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0, f"{name}: bone {j}-{c}"
    # heading of the pelvis within 2 degrees
    ft, fg = G_true[:, 0, :, 2], G_got[:, 0, :, 2]
    h = np.degrees(np.abs(np.arctan2(ft[:, 0], ft[:, 2]) - np.arctan2(fg[:, 0], fg[:, 2])))
    assert np.minimum(h, 360 - h).max() < 2.0
    # root path: the loaded body travels the truth's path (the file body's size divided out)
    path_t = (truth.joints[1:, 0] - truth.joints[:-1, 0]).norm(dim=-1).sum()
    path_g = (got.joints[1:, 0] - got.joints[:-1, 0]).norm(dim=-1).sum()
    assert abs(float(path_g / path_t) - 1.0) < 0.05
    # on the floor: lowest foot point over the clip at 0, and the same heights as the truth
    assert abs(float(got.vertices[..., 1].min())) < 0.02
    assert (got.joints[:, 0, 1] - truth.joints[:, 0, 1]).abs().max() < 0.02


def test_tpose_frames_listed_and_rest_frame_chosen(tmp_path):
    m = truth_motion(F=8, tpose_first=True)
    m = Motion.concatenate([m, m[:1], m[:1]])  # T-pose bookends: frames 0, 8 and 9
    path = write_bvh(tmp_path / "t.bvh", m, LAFAN, zero=_zero_pose("random"))
    info = bvh_info(path)
    assert info.frames == 10 and info.fps == 30.0 and info.up == "y"
    assert info.tpose == [(0, 1), (8, 10)]
    assert "T-pose frames: 0-0" in str(info)
    good = load_bvh(path, rest_frame=9)
    bad = load_bvh(path, rest_frame=3)  # not a T-pose: the whole motion comes out wrong
    G_t, G_good, G_bad = smpl_globals(m), smpl_globals(good), smpl_globals(bad)
    assert _angle(np.swapaxes(G_t, -1, -2) @ G_good)[:, :22].max() < 5.0
    assert _angle(np.swapaxes(G_t, -1, -2) @ G_bad)[:, :22].max() > 20.0
    with pytest.raises(AmgError, match="rest_frame"):
        load_bvh(path, rest_frame=99)


def test_segments_and_frame_rate(tmp_path):
    m = truth_motion(F=12, tpose_first=True)
    path = write_bvh(tmp_path / "s.bvh", m, LAFAN)
    text = path.read_text().replace("Frame Time: 0.033333", "Frame Time: 0.0333333")
    path.write_text(text)
    full = load_bvh(path)
    seg = load_bvh(path, start=4 / 30, seconds=5 / 30, ground=False)
    assert full.fps == 30.0 and len(seg) == 5
    g = load_bvh(path, ground=False)
    assert torch.allclose(seg.body_pose, g.body_pose[4:9], atol=1e-5)
    with pytest.raises(AmgError, match="start"):
        load_bvh(path, start=5.0)


def test_user_joint_map(tmp_path):
    m = truth_motion(F=6)
    odd = ["root_bone"] + [f"bone_{k}" for k in range(1, 22)]
    path = write_bvh(tmp_path / "u.bvh", m, odd)
    from avatars.body import SMPL_JOINT_NAMES

    back = load_bvh(path, joint_map={f"bone_{k}": SMPL_JOINT_NAMES[k] for k in range(1, 22)})
    err = _angle(np.swapaxes(smpl_globals(m), -1, -2) @ smpl_globals(back))[:, :22]
    assert err.max() < 5.0
    with pytest.raises(AmgError, match="joint_map"):
        load_bvh(path, joint_map={"bone_1": "left_tail"})


def test_export_read_back_by_independent_fk_and_bvhio(tmp_path):
    bvhio = pytest.importorskip("bvhio")
    m = truth_motion(F=5, tpose_first=False)
    body = default_body()
    path = save_bvh(m, tmp_path / "out.bvh")
    with torch.no_grad():
        J = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose,
                 transl=m.transl).joints.numpy()
    names, P = read_bvh_fk(path)
    smpl_of = {n: k for k, n in enumerate(EXPORT_NAMES)}
    cols = [k for k, n in enumerate(names) if n is not None]
    idx = [smpl_of[names[k]] for k in cols]
    assert sorted(idx) == list(range(24))
    assert np.abs(P[:, cols] / 100.0 - J[:, idx]).max() < 1e-3  # metres: within 1 mm
    root = bvhio.readAsHierarchy(str(path))
    joints = {j.Name: j for j, _, _ in root.layout()}
    for f in range(len(m)):
        root.loadPose(f)
        for k, j in zip(cols, idx):
            p = np.array(joints[names[k]].PositionWorld) / 100.0
            assert np.abs(p - J[f, j]).max() < 1e-3


# the exporter's joint names, in SMPL order
EXPORT_NAMES = ["Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot",
                "RightFoot", "Spine2", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder", "RightShoulder", "Head",
                "LeftArm", "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand", "LeftHandIndex1",
                "RightHandIndex1"]


def test_info_cli_lists_length_and_tpose_frames(tmp_path, capsys):
    from avatars.bvh import main

    m = truth_motion(F=6, tpose_first=True)
    path = write_bvh(tmp_path / "c.bvh", m, CMU, unit=1 / 0.0254, world=TO_ZUP)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "6 frames at 30 fps (0.20 s), Z-up; T-pose frames: 0-0 (0.00-0.00 s)" in out
    assert "left_hip=LeftUpLeg" in out and "spine1=LowerBack" in out
    assert main([str(tmp_path / "none.bvh")]) == 2


def test_no_rest_pose_warns(tmp_path, caplog):
    import logging

    m = truth_motion(F=6, tpose_first=False)
    path = write_bvh(tmp_path / "w.bvh", m, LAFAN, zero=_zero_pose("random"))
    with caplog.at_level(logging.WARNING, logger="avatars.bvh"):
        back = load_bvh(path)
    assert any("rest_frame" in r.getMessage() for r in caplog.records)
    assert len(back) == 6
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="avatars.bvh"):
        load_bvh(write_bvh(tmp_path / "ok.bvh", m, LAFAN, zero=_zero_pose("apose")))
    assert not caplog.records
