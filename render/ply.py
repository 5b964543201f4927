"""PLY files of plain Gaussians in the standard 3DGS layout (INRIA's ``gaussian-splatting``, viewers).

Written: binary little-endian, float properties ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity
scale_0..2 rot_0..3``: opacity as a logit, scales as logs, rotations wxyz, ``f_rest`` channel-major (all
red coefficients, then green, then blue), as 3DGS writes them. INRIA's loader expects SH degree 3 (45
``f_rest``), so that is the default; lower-degree or RGB colours are padded with zero coefficients.

Read: binary (either endianness) with any scalar property types, so files from other tools load too:
``f_dc``/``f_rest`` SH of any degree, or ``red green blue`` colours (nerfstudio's rgb export, uchar 0-255
or float 0-1) when there is no ``f_dc``.

Reading and writing :class:`~render.gaussian.Gaussians` is a property of the primitive; a Gaussian
avatar's binding to a body lives beside its PLY in a sidecar written by :mod:`avatars.gaussians`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import AmgError
from .gaussian import Gaussians, rgb_to_sh
from .io import atomic_path

__all__ = ["save_ply", "load_ply", "SH_DEGREE"]

#: SH degree written by default: the reference 3DGS loader asserts ``3 * ((3 + 1)**2 - 1) = 45`` f_rest.
SH_DEGREE = 3

# PLY scalar type names (both spellings of the format) -> numpy dtype codes
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_NEED = ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def save_ply(path: str | Path, g: Gaussians, sh_degree: int | None = SH_DEGREE) -> Path:
    """Write ``g`` as a binary little-endian 3DGS PLY (see the module docstring for the layout).

    Args:
        path: the ``.ply`` file, written atomically.
        g: the Gaussians; RGB colours ``(N,3)`` become DC coefficients.
        sh_degree: SH degree of the file: ``3`` (default, what INRIA's loader and most viewers read)
            pads missing coefficients with zeros; ``None`` writes ``g``'s own degree (0 for RGB colours,
            no ``f_rest``). A degree below ``g``'s raises :class:`AmgError` rather than drop coefficients.
    """
    n = len(g)
    sh = rgb_to_sh(g.colors.float())[:, None] if g.colors.dim() == 2 else g.colors.float()
    own = int(math.isqrt(sh.shape[1])) - 1
    deg = own if sh_degree is None else int(sh_degree)
    if not 0 <= deg <= 3:
        raise AmgError(f"save_ply: sh_degree {sh_degree!r}: expected 0, 1, 2, 3 or None")
    if deg < own:
        raise AmgError(f"save_ply: the Gaussians carry SH degree {own}; sh_degree={deg} would drop coefficients")
    sh = torch.nn.functional.pad(sh, (0, 0, 0, (deg + 1) ** 2 - sh.shape[1]))
    rest = sh[:, 1:].transpose(1, 2).reshape(n, -1)  # channel-major, as 3DGS writes
    op = g.opacities.float().clamp(1e-6, 1 - 1e-6)
    cols = [g.means.float(), torch.zeros(n, 3), sh[:, 0], rest, torch.log(op / (1 - op))[:, None],
            torch.log(g.scales.float().clamp_min(1e-12)), g.quats.float()]
    data = torch.cat(cols, 1).detach().cpu().numpy().astype("<f4")
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
    """Read a 3DGS PLY into :class:`Gaussians`.

    Opacities come back through a sigmoid, scales through exp, quaternions as stored (3DGS files may hold
    unnormalised ones; the rasterizer normalises). Colours are SH coefficients ``(N,K,3)`` from
    ``f_dc``/``f_rest`` (``K=1`` without ``f_rest``; every rest coefficient is kept), or RGB ``(N,3)`` in
    ``[0,1]`` from ``red green blue`` when the file has no ``f_dc`` (nerfstudio's rgb export).
    """
    path = Path(path)
    col = _read_vertices(path)
    names = list(col)
    has_dc = all(f"f_dc_{i}" in col for i in range(3))
    has_rgb = all(k in col for k in ("red", "green", "blue"))
    missing = [k for k in _NEED if k not in col] + ([] if has_dc or has_rgb else ["f_dc_0..2 or red/green/blue"])
    if missing:
        raise AmgError(f"{path}: not a 3DGS PLY (missing {', '.join(missing)})")
    f = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in col.items()}  # native-endian copies
    n = len(f["x"])
    means = torch.stack([f["x"], f["y"], f["z"]], -1)
    if has_dc:
        dc = torch.stack([f[f"f_dc_{i}"] for i in range(3)], -1)
        rest_names = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
        if len(rest_names) % 3 or int(math.isqrt(len(rest_names) // 3 + 1)) ** 2 != len(rest_names) // 3 + 1:
            raise AmgError(f"{path}: {len(rest_names)} f_rest properties; expected 0, 9, 24 or 45 (SH degree 0-3)")
        if rest_names:
            rest = torch.stack([f[k] for k in rest_names], -1).reshape(n, 3, -1).transpose(1, 2)
            colors = torch.cat([dc[:, None], rest], 1)
        else:
            colors = dc[:, None]
    else:
        rgb = torch.stack([f["red"], f["green"], f["blue"]], -1)
        colors = rgb / 255.0 if col["red"].dtype.kind in "ui" else rgb.clamp(0, 1)
    q = torch.stack([f[f"rot_{i}"] for i in range(4)], -1)
    return Gaussians(means, q, torch.exp(torch.stack([f[f"scale_{i}"] for i in range(3)], -1)),
                     torch.sigmoid(f["opacity"]), colors.contiguous())


def _read_vertices(path: Path) -> dict[str, np.ndarray]:
    """The ``vertex`` element of a binary PLY as property name -> ``(N,)`` array (its stored dtype)."""
    if not path.is_file():
        raise AmgError(f"{path}: no such PLY file")
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise AmgError(f"{path}: not a PLY file (no 'ply' magic or end_header)")
    body_start = raw.index(b"\n", end) + 1
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format ")), "")
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    if order is None:
        raise AmgError(f"{path}: expected a binary PLY, got format {fmt or 'none'!r}")
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"] and len(parts) == 3:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"] and elements:
            if parts[1] == "list":
                raise AmgError(f"{path}: element {elements[-1][0]} has a list property; expected scalars only")
            if parts[1] not in _PLY_TYPES:
                raise AmgError(f"{path}: property {parts[-1]} has unknown type {parts[1]!r}")
            elements[-1][2].append((parts[2], order + _PLY_TYPES[parts[1]]))
    offset = body_start
    for name, count, props in elements:
        dtype = np.dtype(props)
        if name == "vertex":
            if len(raw) - offset < count * dtype.itemsize:
                raise AmgError(f"{path}: truncated ({len(raw) - offset} bytes of vertex data, expected "
                               f"{count * dtype.itemsize})")
            a = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
            return {k: a[k] for k in dtype.names}
        offset += count * dtype.itemsize
    raise AmgError(f"{path}: not a 3DGS PLY (missing vertex element)")
