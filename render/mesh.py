"""Triangle meshes rendered with pyrender (headless OSMesa or EGL): shaded RGB, depth and instance ids.

The ground truth the Gaussian renderer is checked against and the renderer of mesh/skeleton previews.
``PYOPENGL_PLATFORM`` chooses the OpenGL back end; it defaults to ``osmesa`` when unset (set it to ``egl``
before the first render to use a GPU). One offscreen renderer is kept and reused, since creating an
OpenGL context costs far more than a frame; :func:`close` releases it (also done at exit).
"""

from __future__ import annotations

import atexit
import os
from typing import Sequence

import numpy as np
import torch

from .camera import Camera
from .errors import AmgError
from .gaussian import NEAR_PLANE, RenderOutput
from .image import to_uint8

__all__ = ["render_mesh", "close", "ZNEAR", "ZFAR", "DEFAULT_COLOR"]

ZNEAR = NEAR_PLANE  #: metres, the near plane: the Gaussian rasterizer's, so both cull alike
ZFAR = 1000.0  #: metres
DEFAULT_COLOR = (0.7, 0.7, 0.7)

_renderer = None


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import pyrender

    return pyrender


def _get_renderer(width: int, height: int):
    global _renderer
    pyrender = _pyrender()
    if _renderer is None:
        _renderer = pyrender.OffscreenRenderer(width, height)
    elif (_renderer.viewport_width, _renderer.viewport_height) != (width, height):
        _renderer.viewport_width, _renderer.viewport_height = width, height
    return _renderer


def close() -> None:
    """Release the cached offscreen renderer and its OpenGL context."""
    global _renderer
    if _renderer is not None:
        _renderer.delete()
        _renderer = None


atexit.register(close)


def _as_np(x, name: str, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise AmgError(f"render_mesh: expected {name} as an array of numbers") from None


def _mesh_colors(colors, i: int, nv: int) -> np.ndarray:
    """Per-vertex RGBA uint8 ``(nv,4)`` for mesh ``i`` from the ``colors`` argument."""
    c = DEFAULT_COLOR if colors is None else colors
    if isinstance(c, (list, tuple)) and len(c) and not np.isscalar(c[0]):
        c = c[i]  # one entry per mesh
    c = _as_np(c, f"colors[{i}]", np.float64)
    if c.shape == (3,):
        c = np.broadcast_to(c, (nv, 3))
    if c.shape != (nv, 3):
        raise AmgError(f"render_mesh: expected colors[{i}] as RGB (3,) or per-vertex (V,3) with V={nv}, "
                       f"got {c.shape}")
    if c.max(initial=0) > 1.0 or c.min(initial=0) < 0.0:
        raise AmgError(f"render_mesh: expected colors[{i}] in [0,1]")
    return np.concatenate([to_uint8(c), np.full((nv, 1), 255, np.uint8)], axis=1)


def render_mesh(vertices, faces, camera: Camera, colors=None,
                background: Sequence[float] = (0.0, 0.0, 0.0), light_intensity: float = 3.0,
                ambient: float = 0.3) -> RenderOutput:
    """Render one mesh or several (one instance each) through ``camera``.

    Args:
        vertices: ``(V,3)`` world positions in metres, or a list of them (one per mesh).
        faces: ``(F,3)`` vertex indices, or a list of them matching ``vertices``.
        camera: OpenCV-convention camera; rendered with pyrender's ``IntrinsicsCamera`` at
            ``camera.to_opengl()``, ``znear`` :data:`ZNEAR` (the Gaussian near plane).
        colors: ``None`` (grey), one RGB ``(3,)`` for all meshes, or a list with one RGB ``(3,)`` or
            per-vertex ``(V_i,3)`` array per mesh, in ``[0,1]``.
        background: RGB in ``[0,1]`` where no mesh is seen.
        light_intensity: a directional light from the camera; ``ambient``: ambient light level.

    Returns:
        :class:`RenderOutput` on the CPU: ``rgb (H,W,3)`` float32 Lambert-shaded, ``depth (H,W)`` camera z
        in metres (0 where empty), ``alpha (H,W)`` 1 on the meshes, ``ids (H,W)`` int64 with mesh ``i`` as
        instance ``i + 1`` and 0 for background.
    """
    single = not isinstance(vertices, (list, tuple))
    verts = [vertices] if single else list(vertices)
    facs = [faces] if single else (list(faces) if isinstance(faces, (list, tuple)) else [faces] * len(verts))
    if len(verts) != len(facs):
        raise AmgError(f"render_mesh: got {len(verts)} vertex arrays but {len(facs)} face arrays")
    if not verts:
        raise AmgError("render_mesh: expected at least one mesh, got none")
    bg = _as_np(background, "background", np.float64).reshape(-1)
    if bg.shape != (3,):
        raise AmgError(f"render_mesh: expected background as RGB (3,), got {bg.shape}")

    pyrender = _pyrender()
    import trimesh

    W, H = camera.width, camera.height
    scene = pyrender.Scene(bg_color=np.append(bg, 0.0), ambient_light=np.full(3, ambient))
    nodes = []
    for i, (v, f) in enumerate(zip(verts, facs)):
        v = _as_np(v, f"vertices[{i}]", np.float64)
        f = _as_np(f, f"faces[{i}]", np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise AmgError(f"render_mesh: expected vertices[{i}] of shape (V,3), got {v.shape}")
        if not np.isfinite(v).all():
            raise AmgError(f"render_mesh: vertices[{i}] contains NaN or inf")
        if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
            raise AmgError(f"render_mesh: expected faces[{i}] (F,3) indexing {len(v)} vertices")
        tm = trimesh.Trimesh(v, f, vertex_colors=_mesh_colors(colors, i, len(v)), process=False)
        nodes.append(scene.add(pyrender.Mesh.from_trimesh(tm, smooth=True)))

    K = camera.K.numpy()
    cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=ZNEAR, zfar=ZFAR)
    pose = camera.to_opengl().numpy()
    scene.add(cam, pose=pose)
    scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=light_intensity), pose=pose)

    r = _get_renderer(W, H)
    flags = pyrender.RenderFlags.SKIP_CULL_FACES
    color, depth = r.render(scene, flags=flags)
    depth = np.array(depth, dtype=np.float32)
    hit = depth > 0
    rgb = np.where(hit[..., None], color[..., :3].astype(np.float32) / 255.0, bg.astype(np.float32))
    if len(nodes) == 1:
        ids = hit.astype(np.int64)
    else:
        # flat-colour pass: instance i+1 encoded in the 24 bits of RGB
        seg_map = {n: [(i + 1) & 255, ((i + 1) >> 8) & 255, ((i + 1) >> 16) & 255] for i, n in enumerate(nodes)}
        seg, _ = r.render(scene, flags=pyrender.RenderFlags.SEG | flags, seg_node_map=seg_map)
        seg = seg.astype(np.int64)
        ids = np.where(hit, seg[..., 0] | (seg[..., 1] << 8) | (seg[..., 2] << 16), 0)
    return RenderOutput(torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(hit.astype(np.float32)),
                        torch.from_numpy(ids))
