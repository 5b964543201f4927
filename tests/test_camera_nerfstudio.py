"""nerfstudio ``camera_path.json`` files against nerfstudio's own reading of them.

``ns_cameras`` below is what nerfstudio's ``get_path_from_json`` (``ns-render camera-path``) builds from a
file: ``fx = fy = (H/2) / tan(fov/2)``, a centred principal point, the OpenGL camera-to-world matrix
(x right, y up, looking down -z). ``viewer_file`` writes a file in the layout its viewer's render panel
saves. Neither uses the project's camera code.
"""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from render.camera import Camera, CameraPath
from render.errors import AmgError


def ns_cameras(data):
    """Per-frame (fx, fy, cx, cy, c2w 4x4) the way nerfstudio reads a camera_path.json."""
    H, W = data["render_height"], data["render_width"]
    out = []
    for cam in data["camera_path"]:
        f = (H / 2.0) / np.tan(np.deg2rad(cam["fov"]) / 2.0)
        out.append((f, f, W / 2.0, H / 2.0, np.asarray(cam["camera_to_world"], dtype=np.float64).reshape(4, 4)))
    return out


def ns_project(cam, points):
    """Pixels of world ``points (N,3)`` in a nerfstudio camera (OpenGL axes: image v grows downwards)."""
    fx, fy, cx, cy, c2w = cam
    pc = (points - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera
    depth = -pc[:, 2]
    return np.stack([cx + fx * pc[:, 0] / depth, cy - fy * pc[:, 1] / depth], 1)


def gl_look_at(eye, target, up):
    """OpenGL camera-to-world of a camera at ``eye`` looking at ``target`` (its -z axis), y towards ``up``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def viewer_file(c2ws, fovs, width, height, fps=24.0, camera_type="perspective"):
    """A camera_path.json with every field nerfstudio's viewer writes."""
    return {
        "default_fov": float(fovs[0]), "default_transition_sec": 2.0,
        "keyframes": [{"matrix": m.reshape(-1).tolist(), "fov": float(f), "aspect": width / height,
                       "override_transition_enabled": False, "override_transition_sec": None}
                      for m, f in zip(c2ws[::2], fovs[::2])],
        "camera_type": camera_type, "render_height": height, "render_width": width, "fps": fps,
        "seconds": len(c2ws) / fps, "is_cycle": False, "smoothness_value": 0.5,
        "camera_path": [{"camera_to_world": m.reshape(-1).tolist(), "fov": float(f), "aspect": width / height,
                         "render_time": i / len(c2ws)} for i, (m, f) in enumerate(zip(c2ws, fovs))],
        "crop": None,
    }


POINTS = np.random.default_rng(0).uniform([-0.5, 0.0, -0.5], [0.5, 1.8, 0.5], size=(40, 3))


@pytest.mark.parametrize("name", ["orbit", "zoom", "wide"])
def test_export_projects_as_nerfstudio_reads_it(name, tmp_path):
    path = {"orbit": CameraPath.orbit(6, degrees=120, radius=3.0),
            "zoom": CameraPath.zoom(5, factor=1.7, camera=Camera.look_at((0.3, 1.2, 3.5), (0, 0.9, 0))),
            "wide": CameraPath.orbit(4, degrees=60, width=320, height=180, fov_deg=40)}[name]
    f = path.save(tmp_path / "camera_path.json")
    data = json.loads(f.read_text())
    assert data["camera_type"] == "perspective" and len(data["camera_path"]) == len(path)
    assert data["render_width"] == path.width and data["render_height"] == path.height
    assert math.isclose(data["seconds"] * data["fps"], len(path))
    uv, _ = path.project(torch.as_tensor(POINTS).expand(len(path), -1, -1))
    for i, cam in enumerate(ns_cameras(data)):
        assert np.allclose(ns_project(cam, POINTS), uv[i].numpy(), atol=1e-8)


def test_viewer_file_imports_with_nerfstudio_intrinsics(tmp_path):
    eyes = [(2.0, 1.5, 2.0), (0.0, 1.2, 3.0), (-2.5, 1.0, 1.0), (-1.0, 2.0, -2.0)]
    c2ws = [gl_look_at(e, (0, 0.9, 0), (0, 1, 0)) for e in eyes]
    data = viewer_file(c2ws, [50.0, 45.0, 40.0, 60.0], width=200, height=120)
    f = tmp_path / "camera_path.json"
    f.write_text(json.dumps(data))
    path = CameraPath.load(f)
    assert (path.width, path.height, path.fps, len(path)) == (200, 120, 24.0, 4)
    uv, depth = path.project(torch.as_tensor(POINTS).expand(4, -1, -1))
    for i, cam in enumerate(ns_cameras(data)):
        assert np.allclose(uv[i].numpy(), ns_project(cam, POINTS), atol=1e-8)
        assert torch.allclose(path.centers[i], torch.tensor(eyes[i], dtype=torch.float64), atol=1e-12)
    assert (depth > 0).all()


def test_cameras_the_format_cannot_hold_are_refused_in_one_line(tmp_path):
    cropped = CameraPath.orbit(3, width=256, height=256).crop(40, 12, 160, 200)
    with pytest.raises(AmgError, match="principal point") as e:
        cropped.save(tmp_path / "camera_path.json")
    assert "\n" not in str(e.value) and not (tmp_path / "camera_path.json").exists()
    K = torch.tensor([[300.0, 0, 128], [0, 280.0, 128], [0, 0, 1]], dtype=torch.float64)
    aniso = CameraPath.static(Camera(K, torch.eye(3), torch.tensor([0.0, 0, 3]), 256, 256), 2)
    with pytest.raises(AmgError, match="fx 300 != fy 280"):
        aniso.to_nerfstudio()
    # on request: a warning, and the centred camera with the same vertical field of view
    with pytest.warns(UserWarning, match="principal point"):
        data = cropped.to_nerfstudio(lossy="warn")
    cam = ns_cameras(data)[0]
    assert cam[2:4] == (80.0, 100.0) and math.isclose(cam[1], float(cropped.K[0, 1, 1]), rel_tol=1e-9)
    # the error nerfstudio would have made: the crop's shift in pixels
    uv, _ = cropped.project(torch.as_tensor(POINTS)[None].expand(3, -1, -1))
    assert np.abs(ns_project(cam, POINTS) - uv[0].numpy()).max() > 10
    # centred, square-pixel cameras pass silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CameraPath.orbit(2).to_nerfstudio(lossy="warn")


@pytest.mark.parametrize("kind", ["fisheye", "equirectangular", "omnidirectional", "vr180"])
def test_non_pinhole_camera_types_are_an_error(kind, tmp_path):
    data = viewer_file([gl_look_at((0, 1, 3), (0, 1, 0), (0, 1, 0))] * 2, [50.0, 50.0], 64, 64, camera_type=kind)
    f = tmp_path / "camera_path.json"
    f.write_text(json.dumps(data))
    with pytest.raises(AmgError, match=f"camera_type.*{kind}") as e:
        CameraPath.load(f)
    assert "camera_path.json" in str(e.value) and "\n" not in str(e.value)


def test_z_up_worlds(tmp_path):
    """nerfstudio's default orientation is Z-up: its (x, y, z) is our (x, z, -y)."""
    c2w = gl_look_at((0.0, -3.0, 1.0), (0.0, 0.0, 1.0), (0, 0, 1))  # on -Y, looking along +Y, Z up
    data = viewer_file([c2w] * 2, [50.0, 50.0], 64, 64)
    f = tmp_path / "camera_path.json"
    f.write_text(json.dumps(data))
    path = CameraPath.load(f, world_up="z")
    assert torch.allclose(path.centers[0], torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), atol=1e-12)
    # a point above the target (their +Z, our +Y) is above the image centre, one to their +X to the right
    uv, _ = path.project(torch.tensor([[[0.0, 1.5, 0.0], [0.5, 1.0, 0.0]]], dtype=torch.float64).expand(2, -1, -1))
    assert uv[0, 0, 1] < 32 and abs(float(uv[0, 0, 0]) - 32) < 1e-9 and uv[0, 1, 0] > 32
    # read as Y-up the same file is another camera; written back Z-up it is the same file
    assert not torch.allclose(CameraPath.load(f).centers[0], path.centers[0])
    back = json.loads(path.save(tmp_path / "out" / "camera_path.json", world_up="z").read_text())
    assert np.allclose(back["camera_path"][0]["camera_to_world"], c2w.reshape(-1), atol=1e-12)
    with pytest.raises(AmgError, match="world_up"):
        path.to_nerfstudio(world_up="x")
