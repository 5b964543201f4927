"""The camera convention end to end: a marker at a known world point lands, in a pyrender image, where
``Camera.project`` says, for cameras from every ``CameraPath`` generator."""

import pytest
import torch
import trimesh

from render.camera import Camera, CameraPath
from render.mesh import render_mesh

HALF = 0.04
MARKERS = [(0.0, 0.9, 0.0), (0.4, 1.3, 0.2), (-0.35, 0.5, -0.2), (0.2, 0.2, 0.3)]


def cube_at(p):
    box = trimesh.creation.box(extents=(2 * HALF,) * 3)
    box.apply_translation(p)
    return box


def paths():
    base = Camera.look_at((0.5, 1.2, 3.2), (0.0, 0.9, 0.0), width=256, height=256)
    walk = torch.stack([torch.linspace(-0.3, 0.3, 5), torch.full((5,), 0.9), torch.linspace(0, 0.4, 5)], dim=-1)
    key = [Camera.look_at((-1.5, 1.0, 2.8), (0, 0.9, 0)), Camera.look_at((0.2, 1.8, 3.0), (0, 0.8, 0)),
           Camera.look_at((2.0, 0.8, 2.0), (0, 0.9, 0))]
    return {
        "orbit": CameraPath.orbit(num_frames=5, degrees=270, radius=3.0, elevation_deg=15),
        "zoom": CameraPath.zoom(num_frames=5, factor=1.8, camera=base),
        "dolly": CameraPath.dolly(num_frames=5, distance=1.2, camera=base),
        "pan": CameraPath.pan(num_frames=5, degrees=8, camera=base),
        "follow": CameraPath.follow(walk),
        "keyframes": CameraPath.from_keyframes(key, num_frames=5),
        "cropped": CameraPath.static(base.crop(30, 10, 200, 230), num_frames=1),
        "resized": CameraPath.static(base.resize(160, 120), num_frames=1),
    }


@pytest.mark.parametrize("name", ["orbit", "zoom", "dolly", "pan", "follow", "keyframes", "cropped", "resized"])
def test_marker_lands_where_camera_projects(name):
    path = paths()[name]
    checked = 0
    for f in sorted({0, len(path) // 2, len(path) - 1}):
        cam = path[f]
        for p in MARKERS:
            uv, z = cam.project(torch.tensor([p], dtype=torch.float64))
            u, v = uv[0].tolist()
            if not (z[0] > 0.5 and 8 < u < cam.width - 8 and 8 < v < cam.height - 8):
                continue
            box = cube_at(p)
            out = render_mesh(box.vertices, box.faces, cam)
            rows, cols = torch.nonzero(out.ids == 1, as_tuple=True)
            assert len(rows) > 10, (name, f, p)
            # silhouette centroid (pixel centres at +0.5) against the projected centre
            assert abs(cols.double().mean() + 0.5 - u) < 1.0, (name, f, p)
            assert abs(rows.double().mean() + 0.5 - v) < 1.0, (name, f, p)
            # every covered pixel unprojects with its depth onto the cube's surface
            uv_pix = torch.stack([cols, rows], dim=-1).double() + 0.5
            pts = cam.unproject(uv_pix, out.depth[rows, cols].double())
            dist = (pts - torch.tensor(p, dtype=torch.float64)).abs().max(dim=-1).values
            assert (dist - HALF).abs().median() < 2e-3, (name, f, p)
            checked += 1
    assert checked >= 3, f"{name}: too few markers in view to test"
