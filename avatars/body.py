"""The body model: SMPL-layout bodies (the embedded default, SMPL and SMPL-X files) behind one call.

``BodyModel.load(path)`` returns a module that maps ``betas, global_orient, body_pose, transl`` to posed
vertices, 24 SMPL joints and per-joint transforms. Two backends run the same model:

- ``"ours"`` (default): :func:`avatars.lbs.lbs`, the fast path;
- ``"smplx"``: smplx's own ``SMPL`` forward on the same buffers, for comparison and as the reference.

SMPL-X files are reduced to SMPL's 24-joint tree (jaw and eyes skin with the head, each hand's fingers
with the SMPL hand joint, whose regressor is the mean of the four finger-base joints), so that every
body speaks the same ``body_pose (B, 23, 3)``. With ``backend="smplx"`` an SMPL-X body runs smplx's
``SMPLX`` with joints 1..21 of ``body_pose``, flat hands and neutral face: SMPL's hand joints 22/23 have
no single SMPL-X counterpart, so the two backends agree when those two rotations are zero.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from render.errors import AmgError

from .lbs import blend_shapes, lbs, regress_joint_basis

__all__ = [
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "PART_NAMES",
    "JOINT_PART",
    "VERTEX_ID_NAMES",
    "DEFAULT_BODY_PATH",
    "BodyOutput",
    "BodyModel",
    "part_labels_from_weights",
    "Body",
    "default_body",
]

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

PART_NAMES = (
    "torso", "head", "hair", "left_upper_arm", "right_upper_arm", "left_lower_arm", "right_lower_arm",
    "left_hand", "right_hand", "left_upper_leg", "right_upper_leg", "left_lower_leg", "right_lower_leg",
    "left_foot", "right_foot",
)
# body part of the vertices each SMPL joint dominates (hair is carved out of the head by height)
JOINT_PART = (
    "torso", "left_upper_leg", "right_upper_leg", "torso", "left_lower_leg", "right_lower_leg", "torso",
    "left_foot", "right_foot", "torso", "left_foot", "right_foot", "head", "torso", "torso", "head",
    "left_upper_arm", "right_upper_arm", "left_lower_arm", "right_lower_arm", "left_hand", "right_hand",
    "left_hand", "right_hand",
)

# the keypoint vertices smplx's VertexJointSelector reads for its 21 extra joints
VERTEX_ID_NAMES = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)

DEFAULT_BODY_PATH = Path(__file__).resolve().parent / "data" / "default_body.npz"

# SMPL-X joints folded into the 24-joint tree: jaw and eyes -> head, fingers -> the hand joint
_SMPLX_FOLD = {22: 15, 23: 15, 24: 15, **{j: 22 for j in range(25, 40)}, **{j: 23 for j in range(40, 55)}}
_SMPLX_HAND_BASES = {22: (25, 28, 31, 34), 23: (40, 43, 46, 49)}  # index1, middle1, pinky1, ring1


@dataclass
class BodyOutput:
    """Posed body for a batch (translation included).

    Attributes:
        vertices: ``(B, V, 3)`` metres, world frame.
        joints: ``(B, 24, 3)`` SMPL joints.
        transforms: ``(B, 24, 4, 4)`` world frame of each joint (global rotation, joint position).
        skin_transforms: ``(B, 24, 4, 4)`` rest-pose (shaped) point -> posed point for each joint;
            skinning any point bound to the body is ``sum_j w_j skin_transforms[j] @ p``.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor
    skin_transforms: torch.Tensor


def part_labels_from_weights(weights: np.ndarray, vertices: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Body-part id per vertex (index into :data:`PART_NAMES`) from skin weights ``(V, 24)``.

    Each vertex takes the part of its dominant joint; head vertices in the upper back of the skull
    (above the head joint by more than 45% of the head's height, or behind it and above the ears)
    become ``hair``. ``vertices (V, 3)`` and ``joints (24, 3)`` are the rest pose, Y-up, facing +Z.
    """
    part_of_joint = np.array([PART_NAMES.index(p) for p in JOINT_PART])
    labels = part_of_joint[np.asarray(weights).argmax(1)]
    head = labels == PART_NAMES.index("head")
    if head.any():
        hj = joints[15]
        top = vertices[head, 1].max()
        y, z = vertices[:, 1], vertices[:, 2]
        rel = (y - hj[1]) / max(top - hj[1], 1e-6)
        hair = head & ((rel > 0.55) | ((z < hj[2] - 0.02) & (rel > 0.05)))
        labels[hair] = PART_NAMES.index("hair")
    return labels.astype(np.int64)


def _to_np(x) -> np.ndarray:
    if hasattr(x, "r"):  # chumpy arrays in official pickles
        x = x.r
    if hasattr(x, "toarray"):  # scipy sparse J_regressor
        x = x.toarray()
    return np.asarray(x)


class BodyModel(torch.nn.Module):
    """An SMPL-layout body: template, shape directions, regressor, skin weights, 24-joint tree.

    Build with :meth:`load`. Buffers (float32 unless noted): ``v_template (V, 3)``,
    ``shapedirs (V, 3, NB)``, ``J_regressor (24, V)``, ``weights (V, 24)`` (skin weights),
    ``faces (F, 3)`` int64, ``part_labels (V,)`` int64 into :data:`PART_NAMES`,
    ``posedirs (207, V * 3)`` (zero for the default body, then skipped).
    """

    def __init__(self, v_template, shapedirs, posedirs, J_regressor, weights, faces, parents,
                 part_labels=None, vertex_ids=None, backend="ours", smplx_model=None, name="body"):
        super().__init__()
        f32 = dict(dtype=torch.float32)
        self.register_buffer("v_template", torch.as_tensor(np.asarray(v_template), **f32))
        self.register_buffer("shapedirs", torch.as_tensor(np.asarray(shapedirs), **f32))
        self.register_buffer("J_regressor", torch.as_tensor(np.asarray(J_regressor), **f32))
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), **f32))
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces, dtype=np.int64)))
        pd = torch.as_tensor(np.asarray(posedirs), **f32).reshape(-1, self.v_template.numel())
        self.has_posedirs = bool(pd.abs().max() > 0)
        self.register_buffer("posedirs", pd)
        J0, Jdirs = regress_joint_basis(self.J_regressor.double(), self.v_template.double(),
                                        self.shapedirs.double())
        self.register_buffer("J_template", J0.float())
        self.register_buffer("J_shapedirs", Jdirs.float())
        self.parents = [int(p) for p in parents]
        if part_labels is None:
            rest_v = self.v_template.numpy()
            part_labels = part_labels_from_weights(self.weights.numpy(), rest_v, J0.numpy())
        self.register_buffer("part_labels", torch.as_tensor(np.asarray(part_labels, dtype=np.int64)))
        self.vertex_ids = dict(vertex_ids or {})
        if backend not in ("ours", "smplx"):
            raise AmgError(f"body backend {backend!r}: expected 'ours' or 'smplx'")
        self.backend = backend
        self.smplx_model = smplx_model
        self.name = name

    # ---- properties other stages need -------------------------------------------------------------
    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def skin_weights(self) -> torch.Tensor:
        """``(V, 24)`` skin weights (rows sum to 1)."""
        return self.weights

    # ---- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike = "default", gender: str = "neutral", backend: str = "ours",
             num_betas: int | None = None) -> "BodyModel":
        """Load a body.

        Args:
            path: ``"default"`` (the embedded MakeHuman body), an SMPL ``.pkl``/``.npz``, an SMPL-X
                ``.pkl``/``.npz``, or a folder holding ``SMPL_{GENDER}.pkl``/``SMPLX_{GENDER}.npz``.
            gender: ``"neutral"``, ``"female"`` or ``"male"``; picks the file in a folder, and for the
                default body shifts the template along its gender direction.
            backend: ``"ours"`` or ``"smplx"`` (see the module docstring).
            num_betas: keep this many shape directions (default: all the file has, at most 10 for SMPL
                files as smplx does, since smplx warns and truncates the 10-component official files).
        """
        gender = str(gender).lower()
        if gender not in ("neutral", "female", "male"):
            raise AmgError(f"body gender {gender!r}: expected neutral, female or male")
        if str(path) == "default":
            path = DEFAULT_BODY_PATH
        path = Path(path)
        if path.is_dir():
            found = [path / f"{p}_{gender.upper()}.{e}" for p in ("SMPL", "SMPLX") for e in ("pkl", "npz")]
            found = [f for f in found if f.exists()]
            if not found:
                raise AmgError(f"{path}: no SMPL_{gender.upper()}.pkl or SMPLX_{gender.upper()}.npz/.pkl in it")
            path = found[0]
        if not path.exists():
            raise AmgError(f"{path}: no such body model file")
        data = cls._read(path)
        is_smplx = "hands_componentsl" in data or ("J_regressor" in data and _to_np(data["J_regressor"]).shape[0] == 55)
        if is_smplx:
            return cls._from_smplx_data(path, data, gender, backend, num_betas)
        return cls._from_smpl_data(path, data, gender, backend, num_betas)

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as f:
                    return {k: f[k] for k in f.files}
            if path.suffix == ".pkl":
                with open(path, "rb") as fh:
                    return dict(pickle.load(fh, encoding="latin1"))
        except ModuleNotFoundError as e:
            raise AmgError(f"{path}: unpickling needs the '{e.name}' package (official SMPL files need "
                           "chumpy-fixed)") from None
        except Exception as e:  # corrupt archive, wrong pickle
            raise AmgError(f"{path}: not a readable body model ({type(e).__name__}: {e})") from None
        raise AmgError(f"{path}: unknown body model format; expected .npz or .pkl")

    @classmethod
    def _from_smpl_data(cls, path, data, gender, backend, num_betas):
        need = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")
        missing = [k for k in need if k not in data]
        if missing:
            raise AmgError(f"{path}: not an SMPL-layout body; missing {', '.join(missing)}")
        arrays = {k: _to_np(v) for k, v in data.items()}
        if arrays["J_regressor"].shape[0] != 24:
            raise AmgError(f"{path}: J_regressor has {arrays['J_regressor'].shape[0]} joints; expected 24")
        V = arrays["v_template"].shape[0]
        if "posedirs" not in arrays:
            arrays["posedirs"] = np.zeros((V, 3, 207), np.float32)
        shapedirs = arrays["shapedirs"]
        nb = shapedirs.shape[-1] if num_betas is None else min(num_betas, shapedirs.shape[-1])
        if num_betas is None and shapedirs.shape[-1] >= 300:
            nb = 10
        shapedirs = shapedirs[:, :, :nb]
        v_template = arrays["v_template"].astype(np.float64)
        if "gender_names" in arrays and gender != "neutral":
            names = [str(n) for n in arrays["gender_names"]]
            if gender in names:
                g = arrays["gender_betas"][names.index(gender)][:nb]
                v_template = v_template + shapedirs @ g
        vertex_ids = None
        if "vertex_id_names" in arrays:
            vertex_ids = {str(k): int(v) for k, v in zip(arrays["vertex_id_names"], arrays["vertex_id_values"])}
        parents = arrays["kintree_table"][0].astype(np.int64).copy()
        parents[0] = -1
        # smplx's posedirs layout is (P, V*3) after transposing the file's (V, 3, P)
        posedirs = arrays["posedirs"].reshape(-1, arrays["posedirs"].shape[-1]).T
        smplx_model = None
        if backend == "smplx":
            import smplx
            from smplx.utils import Struct

            struct = dict(arrays, v_template=v_template.astype(np.float32), shapedirs=shapedirs)
            smplx_model = smplx.SMPL(model_path=str(path), data_struct=Struct(**struct), num_betas=nb,
                                     vertex_ids=vertex_ids, gender=gender)
            smplx_model.requires_grad_(False)
        return cls(v_template, shapedirs, posedirs, arrays["J_regressor"], arrays["weights"], arrays["f"],
                   parents, part_labels=arrays.get("part_labels"), vertex_ids=vertex_ids, backend=backend,
                   smplx_model=smplx_model, name=path.stem)

    @classmethod
    def _from_smplx_data(cls, path, data, gender, backend, num_betas):
        import smplx

        nb = 10 if num_betas is None else num_betas
        ext = "npz" if path.suffix == ".npz" else "pkl"
        try:
            full = smplx.SMPLX(model_path=str(path), gender=gender, num_betas=nb, ext=ext, use_pca=False,
                               flat_hand_mean=True, num_expression_coeffs=10)
        except Exception as e:
            raise AmgError(f"{path}: smplx could not load this SMPL-X file ({type(e).__name__}: {e})") from None
        full.requires_grad_(False)
        W55 = full.lbs_weights.numpy()
        Jr55 = full.J_regressor.numpy()
        W = W55[:, :24].copy()
        W[:, 22:24] = 0
        for j, k in _SMPLX_FOLD.items():
            W[:, k] += W55[:, j]
        Jr = Jr55[:24].copy()
        for j, bases in _SMPLX_HAND_BASES.items():
            Jr[j] = Jr55[list(bases)].mean(0)
        V = full.v_template.shape[0]
        # keep the correctives of the 21 shared body joints; the folded joints' rotations are zero
        pd = full.posedirs.numpy().reshape(-1, 9, V * 3)[:21]
        posedirs = np.concatenate([pd.reshape(-1, V * 3), np.zeros((18, V * 3), np.float32)], 0)
        return cls(full.v_template.numpy(), full.shapedirs.numpy(), posedirs, Jr, W, full.faces, SMPL_PARENTS,
                   backend=backend, smplx_model=full if backend == "smplx" else None, name=path.stem)

    # ---- evaluation -------------------------------------------------------------------------------
    def _inputs(self, betas, global_orient, body_pose, transl):
        dev, dt = self.v_template.device, self.v_template.dtype
        # a 1-D betas is one shape for the whole batch: its length is not a batch size
        inputs = (("betas", betas, None), ("global_orient", global_orient, 3), ("body_pose", body_pose, 69),
                  ("transl", transl, 3))
        sizes = {name: _batch(x, width) for name, x, width in inputs}
        B = max([n for n in sizes.values() if n is not None], default=1)
        for name, n in sizes.items():
            if n is not None and n not in (1, B):
                raise AmgError(f"{name}: batch of {n} does not match the batch of {B} (only 1 broadcasts)")
        if betas is None:
            betas = torch.zeros(B, self.num_betas, device=dev, dtype=dt)
        betas = torch.as_tensor(betas, device=dev, dtype=dt)
        if betas.dim() == 1:
            betas = betas[None]
        if betas.shape[-1] < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[-1]))
        betas = betas[:, : self.num_betas].expand(B, -1)
        go = torch.zeros(B, 3, device=dev, dtype=dt) if global_orient is None else \
            torch.as_tensor(global_orient, device=dev, dtype=dt).reshape(-1, 3).expand(B, -1)
        bp = torch.zeros(B, 23, 3, device=dev, dtype=dt) if body_pose is None else \
            torch.as_tensor(body_pose, device=dev, dtype=dt).reshape(-1, 23, 3).expand(B, -1, -1)
        tr = torch.zeros(B, 3, device=dev, dtype=dt) if transl is None else \
            torch.as_tensor(transl, device=dev, dtype=dt).reshape(-1, 3).expand(B, -1)
        return betas, go, bp, tr

    def forward(self, betas=None, global_orient=None, body_pose=None, transl=None) -> BodyOutput:
        """Pose the body.

        Args:
            betas: ``(B, NB')`` or ``(NB',)`` shape coefficients (zero-padded or cut to ``num_betas``); a 1-D
                betas is one shape shared by the whole batch.
            global_orient: ``(B, 3)`` axis-angle of the root.
            body_pose: ``(B, 23, 3)`` (or ``(B, 69)``) axis-angle of joints 1..23.
            transl: ``(B, 3)`` metres added to everything.
        Missing inputs are zero; batch sizes of 1 broadcast; other mismatched batch sizes raise AmgError.
        Returns:
            :class:`BodyOutput`.
        """
        betas, go, bp, tr = self._inputs(betas, global_orient, body_pose, transl)
        if self.backend == "smplx":
            return self._forward_smplx(betas, go, bp, tr)
        pose = torch.cat([go[:, None], bp], dim=1)
        out = lbs(betas, pose, self.v_template, self.shapedirs, self.J_template, self.J_shapedirs,
                  self.parents, self.weights, self.posedirs if self.has_posedirs else None)
        return BodyOutput(out.vertices + tr[:, None], out.joints + tr[:, None],
                          _translate(out.transforms, tr), _translate(out.skin_transforms, tr))

    def _forward_smplx(self, betas, go, bp, tr) -> BodyOutput:
        from smplx.lbs import batch_rigid_transform as smplx_rigid
        from smplx.lbs import batch_rodrigues, vertices2joints

        m = self.smplx_model
        B = betas.shape[0]
        if isinstance(m, __import__("smplx").SMPLX):
            out = m(betas=betas, global_orient=go, body_pose=bp[:, :21].reshape(B, -1), transl=tr,
                    left_hand_pose=torch.zeros(B, 45), right_hand_pose=torch.zeros(B, 45),
                    jaw_pose=torch.zeros(B, 3), leye_pose=torch.zeros(B, 3), reye_pose=torch.zeros(B, 3),
                    expression=torch.zeros(B, m.num_expression_coeffs))
        else:
            out = m(betas=betas, global_orient=go, body_pose=bp.reshape(B, -1), transl=tr)
        # smplx reports no transforms; its own rigid chain on its own regressed joints gives them
        J = vertices2joints(self.J_regressor, self.v_template + blend_shapes(betas, self.shapedirs))
        rot = batch_rodrigues(torch.cat([go[:, None], bp], 1).reshape(-1, 3)).view(B, -1, 3, 3)
        posed, A = smplx_rigid(rot, J, torch.as_tensor(self.parents), dtype=J.dtype)
        world = A.clone()
        world[:, :, :3, 3] = posed
        return BodyOutput(out.vertices, _joints24(out.joints, posed, tr, m), _translate(world, tr),
                          _translate(A, tr))

    def rest(self, betas=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest-pose (T-pose) geometry for ``betas (B, NB)``: vertices ``(B, V, 3)``, joints ``(B, 24, 3)``."""
        betas = self._inputs(betas, None, None, None)[0]
        return (self.v_template + blend_shapes(betas, self.shapedirs),
                self.J_template + blend_shapes(betas, self.J_shapedirs))

    def extra_joints(self, vertices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keypoints read off vertices (nose, eyes, ears, toes, heels, finger tips): name -> ``(B, 3)``."""
        return {k: vertices[:, v] for k, v in self.vertex_ids.items()}


def _batch(x, width: int | None) -> int | None:
    """Batch size of one forward input: rows of ``width`` numbers, or for betas (``width`` None) the
    leading size of a 2-D tensor; None when the input is absent or un-batched."""
    if x is None:
        return None
    x = torch.as_tensor(x)
    if width is None:
        return x.shape[0] if x.dim() >= 2 else None
    return max(x.numel() // width, 1)


def _joints24(smplx_joints, posed, tr, model):
    if smplx_joints.shape[1] >= 24 and not isinstance(model, __import__("smplx").SMPLX):
        return smplx_joints[:, :24]
    return posed + tr[:, None]


def _translate(T: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    shift = torch.zeros_like(T)
    shift[:, :, :3, 3] = tr[:, None]
    return T + shift


@runtime_checkable
class Body(Protocol):
    """What motions, avatars and reconstruction need from a body model (:class:`BodyModel` is one).

    ``__call__(betas (B, NB), global_orient (F, 3), body_pose (F, 23, 3), transl (F, 3)) -> BodyOutput``
    poses the body (metres, Y-up); ``rest(betas (B, NB))`` returns the T-pose vertices ``(B, V, 3)`` and
    joints ``(B, 24, 3)``; ``faces (T, 3)``, ``skin_weights (V, 24)`` and ``part_labels (V,)`` describe
    the surface; ``parents`` is the 24-joint tree (``-1`` for the root).
    """

    faces: torch.Tensor
    part_labels: torch.Tensor
    parents: list

    @property
    def num_betas(self) -> int: ...

    @property
    def skin_weights(self) -> torch.Tensor: ...

    def rest(self, betas=None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __call__(self, betas=None, global_orient=None, body_pose=None, transl=None) -> BodyOutput: ...


_DEFAULT_BODY: dict[str, BodyModel] = {}


def default_body() -> BodyModel:
    """The embedded default body, loaded once per process (every stage shares this one copy)."""
    if "default" not in _DEFAULT_BODY:
        _DEFAULT_BODY["default"] = BodyModel.load("default")
    return _DEFAULT_BODY["default"]
