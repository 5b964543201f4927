import json
import math

import numpy as np
import pytest
import torch

from render.camera import Camera, CameraPath, intrinsics_from_fov
from render.errors import AmgError
from render.rotations import axis_angle_to_matrix


def random_camera(gen, width=320, height=240):
    R = axis_angle_to_matrix(torch.randn(3, generator=gen, dtype=torch.float64))
    t = torch.randn(3, generator=gen, dtype=torch.float64)
    K = torch.tensor([[300.0, 0, 150.0], [0, 310.0, 125.0], [0, 0, 1]], dtype=torch.float64)
    return Camera(K, R, t, width, height)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1)


def assert_same_camera(a: Camera, b: Camera, tol=1e-6):
    assert (a.width, a.height) == (b.width, b.height)
    for x, y in ((a.K, b.K), (a.R, b.R), (a.t, b.t)):
        assert torch.allclose(x, y, atol=tol), (x, y)


def test_look_at_axes_follow_opencv():
    cam = Camera.look_at(eye=(0, 0, 5), target=(0, 0, 0), fov_deg=60, width=200, height=100)
    # the camera sits on +Z looking toward -Z: world +X is image right, world +Y is image up (smaller v)
    uv, z = cam.project(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
    assert torch.allclose(uv[0], torch.tensor([100.0, 50.0], dtype=torch.float64))
    assert uv[1, 0] > 100 and abs(uv[1, 1] - 50) < 1e-9
    assert uv[2, 1] < 50 and abs(uv[2, 0] - 100) < 1e-9
    assert torch.allclose(z, torch.full((3,), 5.0, dtype=torch.float64))
    assert math.isclose(cam.fov_deg, 60.0, rel_tol=1e-9)
    assert torch.allclose(cam.center, torch.tensor([0.0, 0, 5], dtype=torch.float64))


def test_project_unproject_and_rays(gen):
    cam = random_camera(gen)
    pts = cam.unproject(torch.rand(50, 2, dtype=torch.float64) * 200, torch.rand(50, dtype=torch.float64) * 5 + 1)
    uv, z = cam.project(pts)
    assert torch.allclose(cam.unproject(uv, z), pts, atol=1e-9)
    o, d = cam.rays(dtype=torch.float64)
    assert o.shape == d.shape == (240, 320, 3)
    # a point along the ray of pixel (row 7, col 11) projects to that pixel's centre
    p = o[7, 11] + 2.5 * d[7, 11]
    uv, _ = cam.project(p[None])
    assert torch.allclose(uv[0], torch.tensor([11.5, 7.5], dtype=torch.float64), atol=1e-9)


def test_resize_and_crop_keep_projection(gen):
    cam = random_camera(gen, 320, 240)
    pts = cam.unproject(torch.tensor([[100.0, 80.0], [250.0, 30.0]], dtype=torch.float64),
                        torch.tensor([2.0, 3.0], dtype=torch.float64))
    uv, _ = cam.project(pts)
    uv_c, _ = cam.crop(40, 10, 200, 200).project(pts)
    assert torch.allclose(uv_c, uv - torch.tensor([40.0, 10.0], dtype=torch.float64))
    uv_r, _ = cam.resize(160, 120).project(pts)
    assert torch.allclose(uv_r, uv / 2)
    # crop then resize = square 256 clip of a video frame
    sq = cam.crop(40, 0, 240, 240).resize(256, 256)
    uv_s, _ = sq.project(pts)
    assert torch.allclose(uv_s, (uv - torch.tensor([40.0, 0.0], dtype=torch.float64)) * 256 / 240)


def test_opengl_round_trip(gen):
    for _ in range(10):
        cam = random_camera(gen)
        back = Camera.from_opengl(cam.to_opengl(), K=cam.K, width=cam.width, height=cam.height)
        assert_same_camera(cam, back, 1e-12)
    # OpenGL camera looks down its -z axis
    cam = Camera.look_at((0, 0, 5), (0, 0, 0))
    c2w = cam.to_opengl()
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 0, 1], dtype=torch.float64))


def all_paths():
    cam = Camera.look_at((0.5, 1.2, 3.0), (0, 0.9, 0), fov_deg=45)
    targets = torch.stack([torch.linspace(-1, 1, 12), torch.full((12,), 0.9), torch.linspace(0, 0.5, 12)], -1)
    keys = [Camera.look_at(e, (0, 0.9, 0)) for e in [(0, 1, 3), (2, 1.5, 2), (3, 1, -1), (0, 2, -3)]]
    return {
        "static": CameraPath.static(cam, 5),
        "orbit": CameraPath.orbit(12, degrees=180, radius=3, elevation_deg=15),
        "zoom": CameraPath.zoom(8, factor=2.0, camera=cam),
        "dolly": CameraPath.dolly(8, distance=1.0, camera=cam),
        "pan": CameraPath.pan(8, degrees=30, camera=cam),
        "follow": CameraPath.follow(targets),
        "keyframes": CameraPath.from_keyframes(keys, 20),
    }


@pytest.mark.parametrize("name", list(all_paths()))
def test_file_round_trips(name, tmp_path):
    path = all_paths()[name]
    for fname in ("ours.json", "ours.yaml", "camera_path.json", "traj.txt"):
        f = tmp_path / fname
        path.save(f)
        back = CameraPath.load(f, fov_deg=path[0].fov_deg, width=path.width, height=path.height, fps=path.fps)
        assert len(back) == len(path)
        for a, b in zip(path, back):
            if fname == "traj.txt" and name == "zoom":
                # TUM holds poses only; intrinsics come from the caller
                assert torch.allclose(a.R, b.R, atol=1e-6) and torch.allclose(a.t, b.t, atol=1e-6)
                continue
            assert_same_camera(a, b, 1e-6)


def test_nerfstudio_layout(tmp_path):
    path = CameraPath.orbit(4)
    data = path.to_nerfstudio()
    assert data["camera_type"] == "perspective" and len(data["camera_path"]) == 4
    assert len(data["camera_path"][0]["camera_to_world"]) == 16
    assert math.isclose(data["camera_path"][0]["fov"], 50.0, rel_tol=1e-9)


def test_orbit_geometry():
    path = CameraPath.orbit(5, degrees=360, radius=2.0, elevation_deg=0, target=(0, 1, 0))
    c = path.centers
    assert torch.allclose((c - torch.tensor([0.0, 1, 0], dtype=torch.float64)).norm(dim=-1), torch.full((5,), 2.0, dtype=torch.float64))
    assert torch.allclose(c[0], torch.tensor([0.0, 1, 2], dtype=torch.float64))  # in front of the body (+Z)
    assert torch.allclose(c[1], torch.tensor([2.0, 1, 0], dtype=torch.float64), atol=1e-12)  # 90 deg: +X
    uv, _ = path.project(torch.tensor([0.0, 1, 0], dtype=torch.float64).expand(5, 1, 3))
    assert torch.allclose(uv[:, 0], torch.tensor([128.0, 128.0], dtype=torch.float64).expand(5, 2), atol=1e-9)


def test_zoom_dolly_pan_follow():
    cam = Camera.look_at((0, 1, 4), (0, 1, 0))
    z = CameraPath.zoom(5, factor=2.0, camera=cam)
    assert torch.allclose(z.K[-1, 0, 0], 2 * cam.K[0, 0]) and torch.allclose(z.R, cam.R.expand(5, 3, 3))
    d = CameraPath.dolly(5, distance=1.0, camera=cam, target=(0, 1, 0))
    assert torch.allclose(d.centers[-1], torch.tensor([0.0, 1, 3], dtype=torch.float64))
    p = CameraPath.pan(3, degrees=90, camera=cam)
    assert torch.allclose(p.centers, cam.center.expand(3, 3))
    # after a 90 degree pan to the left, the camera looks along -X
    assert torch.allclose(p.R[-1, 2], torch.tensor([-1.0, 0, 0], dtype=torch.float64), atol=1e-12)
    targets = torch.randn(6, 3, dtype=torch.float64)
    f = CameraPath.follow(targets)
    uv, _ = f.project(targets[:, None])
    assert torch.allclose(uv[:, 0], torch.tensor([128.0, 128.0], dtype=torch.float64).expand(6, 2), atol=1e-9)


def test_keyframes_pass_through_keys_and_are_smooth():
    keys = [Camera.look_at(e, (0, 0.9, 0), fov_deg=f) for e, f in
            [((0, 1, 3), 50), ((2, 1.5, 2), 40), ((3, 1, -1), 45), ((0, 2, -3), 60)]]
    path = CameraPath.from_keyframes(keys, 31)  # keys land on frames 0, 10, 20, 30
    for i, k in zip((0, 10, 20, 30), keys):
        assert_same_camera(path[i], k, 1e-9)
    c = path.centers
    R = path.R
    # C1: first differences change slowly (bounded second differences), no jumps between frames
    v = c[1:] - c[:-1]
    a = v[1:] - v[:-1]
    assert a.norm(dim=-1).max() < 0.25 * v.norm(dim=-1).max()
    rel = R[1:] @ R[:-1].transpose(-1, -2)
    ang = torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    dang = (ang[1:] - ang[:-1]).abs()
    assert ang.max() < math.radians(20)
    assert dang.max() < 0.3 * ang.max()
    # piecewise slerp with easing also passes through the keys
    slerped = CameraPath.from_keyframes(keys, 31, rotation="slerp")
    for i, k in zip((0, 10, 20, 30), keys):
        assert torch.allclose(slerped[i].R, k.R, atol=1e-9)


BAD = {
    "unknown key": {"frames": [{"K": np.eye(3).tolist(), "R": np.eye(3).tolist(), "t": [0, 0, 0]}], "colour": 1},
    "zero frames": {"frames": []},
    "nan": {"frames": [{"K": np.eye(3).tolist(), "R": np.eye(3).tolist(), "t": [0, float("nan"), 0]}]},
    "singular": {"frames": [{"K": np.eye(3).tolist(), "R": np.zeros((3, 3)).tolist(), "t": [0, 0, 0]}]},
    "eye=target": {"keyframes": [{"eye": [0, 1, 0], "target": [0, 1, 0]}], "num_frames": 4},
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_give_one_line_errors(case, tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(BAD[case]))
    with pytest.raises(AmgError) as e:
        CameraPath.load(f)
    msg = str(e.value)
    assert "\n" not in msg and "bad.json" in msg


def test_bad_tum_and_nerfstudio(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("0 1 2 3 0 0 0 0\n")
    with pytest.raises(AmgError, match="t.txt"):
        CameraPath.load(f)
    f.write_text("0 1 2\n")
    with pytest.raises(AmgError, match="line 1"):
        CameraPath.load(f)
    g = tmp_path / "camera_path.json"
    g.write_text(json.dumps({"camera_path": [{"camera_to_world": [1, 0, 0]}]}))
    with pytest.raises(AmgError, match="camera_to_world"):
        CameraPath.load(g)
    with pytest.raises(AmgError, match="no such"):
        CameraPath.load(tmp_path / "missing.json")


def test_save_is_atomic_and_writes_nothing_on_error(tmp_path):
    path = CameraPath.orbit(3)
    with pytest.raises(AmgError):
        path.save(tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(90.0, 200, 100)
    assert math.isclose(float(K[1, 1]), 50.0, rel_tol=1e-12) and float(K[0, 2]) == 100.0


def test_array_likes_in_tensors_out(gen):
    cam = random_camera(gen)
    pts = cam.unproject(torch.rand(6, 2, dtype=torch.float64) * 200, torch.rand(6, dtype=torch.float64) + 1)
    uv, z = cam.project(pts)
    for as_input in (lambda x: x.numpy(), lambda x: x.tolist(), lambda x: x.float()):
        uv2, z2 = cam.project(as_input(pts))
        assert isinstance(uv2, torch.Tensor) and torch.allclose(uv2.double(), uv, atol=1e-3)
        assert torch.allclose(cam.world_to_camera(as_input(pts)).double(), pts @ cam.R.T + cam.t, atol=1e-5)
        back = cam.unproject(as_input(uv), as_input(z))
        assert isinstance(back, torch.Tensor) and torch.allclose(back.double(), pts, atol=1e-3)
    assert cam.project(torch.ones(2, 3, dtype=torch.int64))[0].dtype == torch.float64
    path = CameraPath.orbit(3)
    assert torch.equal(path.project(np.zeros((4, 3)))[0], path.project(torch.zeros(3, 4, 3, dtype=torch.float64))[0])
    for bad, match in (([[1.0, 2.0]], r"shape \(\.\.\., 3\)"), ("abc", "expected an array"), ([[1, "x", 2]], "expected")):
        with pytest.raises(AmgError, match=match):
            cam.project(bad)
    with pytest.raises(AmgError, match="depth of shape"):
        cam.unproject(uv.numpy(), [1.0, 2.0])
    with pytest.raises(AmgError, match=r"\(3, N, 3\)"):
        path.project(np.zeros((2, 4, 3)))


def test_one_default_camera():
    from pathlib import Path

    from omegaconf import OmegaConf

    from render.camera import DEFAULT_EYE, DEFAULT_FOV_DEG, DEFAULT_TARGET, default_camera, static_camera

    conf = Path(__file__).resolve().parents[1] / "conf" / "camera"
    for name in ("static", "zoom", "pan"):  # the configs start from the same studio camera as the code
        # each camera file starts from the shared base (conf/shared/camera.yaml) listed in its defaults
        c = OmegaConf.merge(OmegaConf.load(conf.parent / "shared" / "camera.yaml"), OmegaConf.load(conf / f"{name}.yaml"))
        assert (tuple(c.eye), tuple(c.target), c.fov_deg) == (DEFAULT_EYE, DEFAULT_TARGET, DEFAULT_FOV_DEG), name
    cam = default_camera()
    assert torch.allclose(cam.center, torch.tensor(DEFAULT_EYE, dtype=torch.float64))
    for path in (static_camera(), CameraPath.zoom(3), CameraPath.pan(3), CameraPath.dolly(3)):
        assert_same_camera(path[0], cam, 1e-12)


def test_fov_across_either_side():
    from reconstruction.video import default_camera as video_camera

    assert torch.allclose(intrinsics_from_fov(50.0, 512, 256, side="long"), video_camera(512, 256).K)
    assert torch.allclose(intrinsics_from_fov(50.0, 256, 512, side="long"), video_camera(256, 512).K)
    K = intrinsics_from_fov(90.0, 200, 100, side="horizontal")
    assert math.isclose(float(K[0, 0]), 100.0, rel_tol=1e-12) and float(K[1, 2]) == 50.0
    with pytest.raises(AmgError, match="side"):
        intrinsics_from_fov(50.0, 10, 10, side="diagonal")
