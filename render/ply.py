"""PLY files of plain Gaussians in the standard 3DGS layout (INRIA's ``gaussian-splatting``, viewers).

Reading and writing :class:`~render.gaussian.Gaussians` is a property of the primitive; a Gaussian
avatar's binding to a body lives beside its PLY in a sidecar written by :mod:`avatars.gaussians`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import AmgError
from .gaussian import Gaussians
from .io import atomic_path

__all__ = ["save_ply", "load_ply"]

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
