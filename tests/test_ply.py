"""3DGS PLY files against readers and writers that are not ours: ``plyfile``, a loader written here the way
INRIA's ``gaussian-splatting`` reads its files (SH degree 3: 45 ``f_rest``), nerfstudio's rgb export layout,
and gsplat's own spherical-harmonics code for view-dependent colour."""

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics
from plyfile import PlyData, PlyElement

from avatars.gaussians import GaussianAvatar
from render.errors import AmgError
from render.gaussian import Gaussians, rasterize, rotate_sh, sh_to_rgb
from render.camera import Camera
from render.ply import load_ply, save_ply
from render.rotations import axis_angle_to_matrix

from reference_gaussian import rasterize_dense


def random_gaussians(n, K=None, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, 3, generator=g) if K is None else torch.randn(n, K, 3, generator=g) * 0.3
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return Gaussians(torch.randn(n, 3, generator=g) * spread, q, torch.rand(n, 3, generator=g) * 0.05 + 1e-3,
                     torch.rand(n, generator=g) * 0.9 + 0.05, colors)


def inria_load_ply(path, max_sh_degree=3):
    """What INRIA's ``GaussianModel.load_ply`` does with a file (numpy instead of CUDA parameters)."""
    v = PlyData.read(str(path)).elements[0]
    xyz = np.stack([np.asarray(v[k]) for k in ("x", "y", "z")], axis=1)
    opacity = np.asarray(v["opacity"])[..., None]
    dc = np.stack([np.asarray(v[f"f_dc_{i}"]) for i in range(3)], axis=1)[:, :, None]
    extra = sorted((p.name for p in v.properties if p.name.startswith("f_rest_")), key=lambda x: int(x.split("_")[-1]))
    assert len(extra) == 3 * (max_sh_degree + 1) ** 2 - 3
    rest = np.stack([np.asarray(v[k]) for k in extra], axis=1).reshape(len(xyz), 3, (max_sh_degree + 1) ** 2 - 1)
    scale_names = sorted((p.name for p in v.properties if p.name.startswith("scale_")), key=lambda x: int(x.split("_")[-1]))
    rot_names = sorted((p.name for p in v.properties if p.name.startswith("rot")), key=lambda x: int(x.split("_")[-1]))
    scales = np.stack([np.asarray(v[k]) for k in scale_names], axis=1)
    rots = np.stack([np.asarray(v[k]) for k in rot_names], axis=1)
    return {"xyz": xyz, "features_dc": dc.transpose(0, 2, 1), "features_rest": rest.transpose(0, 2, 1),
            "opacity": 1 / (1 + np.exp(-opacity[:, 0])), "scaling": np.exp(scales),
            "rotation": rots / np.linalg.norm(rots, axis=1, keepdims=True)}


def write_ply_with_plyfile(path, fields: dict, byte_order="<"):
    """A PLY written by plyfile from name -> (N,) arrays (their dtypes become the property types)."""
    n = len(next(iter(fields.values())))
    arr = np.empty(n, dtype=[(k, v.dtype.str.replace("<", byte_order).replace(">", byte_order).replace("|", ""))
                             for k, v in fields.items()])
    for k, v in fields.items():
        arr[k] = v
    PlyData([PlyElement.describe(arr, "vertex")], byte_order=byte_order).write(str(path))
    return path


@pytest.mark.parametrize("sh", [None, 4, 16])
def test_ply_round_trip_and_header(tmp_path, sh):
    g = random_gaussians(50, sh)
    f = save_ply(tmp_path / "a.ply", g, sh_degree=None)
    text = f.read_bytes()[:2000].decode("ascii", errors="replace")
    for field in ["element vertex 50", "property float x", "property float nx", "property float f_dc_0",
                  "property float opacity", "property float scale_2", "property float rot_3"]:
        assert field in text
    if sh:
        assert f"property float f_rest_{(sh - 1) * 3 - 1}" in text
    back = load_ply(f)
    assert torch.allclose(back.means, g.means) and torch.allclose(back.scales, g.scales, rtol=1e-6)
    assert torch.allclose(back.opacities, g.opacities, atol=1e-6) and torch.allclose(back.quats, g.quats, atol=1e-7)
    if sh:
        assert torch.allclose(back.colors, g.colors, atol=1e-7)
    else:
        assert torch.allclose(sh_to_rgb(back.colors[:, 0]), g.colors, atol=1e-6)
    # a loaded file written again is byte-identical
    save_ply(tmp_path / "b.ply", back, sh_degree=None)
    again = load_ply(tmp_path / "b.ply")
    for name in ("means", "quats", "colors"):
        assert torch.equal(getattr(again, name), getattr(back, name))


def test_avatar_ply_loads_in_an_inria_style_reader_at_sh_degree_3(body, tmp_path):
    av = GaussianAvatar.from_body(body, "a man in a red shirt and blue jeans", num_gaussians=800, seed=0)
    path = av.save(tmp_path / "man.ply")
    got = inria_load_ply(path, max_sh_degree=3)
    can = av.canonical()
    assert got["features_rest"].shape == (len(av), 15, 3) and not got["features_rest"].any()
    assert np.allclose(got["xyz"], can.means.numpy(), atol=1e-6)
    assert np.allclose(np.clip(got["features_dc"][:, 0] * 0.28209479177387814 + 0.5, 0, 1), av.colors.numpy(), atol=1e-6)
    assert np.allclose(got["opacity"], av.opacities.numpy(), atol=1e-5)
    assert np.allclose(got["scaling"], av.scales.numpy(), rtol=1e-5)
    q = torch.nn.functional.normalize(av.quats, dim=-1).numpy()
    assert np.allclose(np.abs((got["rotation"] * q).sum(1)), 1, atol=1e-6)
    # plyfile sees plain float32 properties and the count
    v = PlyData.read(str(path))["vertex"]
    assert v.count == len(av) and {p.val_dtype for p in v.properties} == {"f4"}
    # and the avatar itself comes back exactly
    back = GaussianAvatar.load(path, body)
    assert torch.equal(back.colors, av.colors) and torch.equal(back.face_ids, av.face_ids)


@pytest.mark.parametrize("K,degree,n_rest", [(None, None, 0), (None, 1, 9), (4, None, 9), (4, 3, 45), (16, 2, None)])
def test_sh_degree_on_save(tmp_path, K, degree, n_rest):
    g = random_gaussians(30, K)
    if n_rest is None:  # fewer coefficients than the Gaussians carry: refused, not truncated
        with pytest.raises(AmgError, match="sh_degree"):
            save_ply(tmp_path / "a.ply", g, sh_degree=degree)
        assert not (tmp_path / "a.ply").exists()
        return
    path = save_ply(tmp_path / "a.ply", g, sh_degree=degree)
    names = [p.name for p in PlyData.read(str(path))["vertex"].properties]
    assert sum(k.startswith("f_rest_") for k in names) == n_rest
    back = load_ply(path)
    assert back.colors.shape == (30, n_rest // 3 + 1, 3)
    if K is None:
        assert torch.allclose(sh_to_rgb(back.colors[:, 0]), g.colors, atol=1e-6)
    else:
        assert torch.allclose(back.colors[:, :K], g.colors, atol=1e-7) and not back.colors[:, K:].any()
    with pytest.raises(AmgError, match="sh_degree"):
        save_ply(tmp_path / "b.ply", g, sh_degree=4)


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_nerfstudio_rgb_ply_imports(body, tmp_path, byte_order):
    """nerfstudio's ``ns-export gaussian-splat`` rgb mode: uchar red/green/blue and no f_dc."""
    rng = np.random.default_rng(0)
    n = 200
    rgb = rng.integers(0, 256, size=(n, 3)).astype(np.uint8)
    means = rng.normal(size=(n, 3)).astype(np.float32) * 0.2 + np.array([0, 1.0, 0], np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    fields = {"x": means[:, 0], "y": means[:, 1], "z": means[:, 2], "nx": np.zeros(n, np.float32),
              "ny": np.zeros(n, np.float32), "nz": np.zeros(n, np.float32), "red": rgb[:, 0], "green": rgb[:, 1],
              "blue": rgb[:, 2], "opacity": rng.normal(size=n).astype(np.float32)}
    fields.update({f"scale_{i}": np.log(np.full(n, 0.01, np.float32)) for i in range(3)})
    fields.update({f"rot_{i}": quats[:, i] for i in range(4)})
    path = write_ply_with_plyfile(tmp_path / "splat.ply", fields, byte_order)
    g = load_ply(path)
    assert g.colors.shape == (n, 3) and torch.allclose(g.colors, torch.as_tensor(rgb / 255.0, dtype=torch.float32))
    assert torch.allclose(g.means, torch.as_tensor(means)) and torch.allclose(g.quats, torch.as_tensor(quats))
    assert torch.allclose(g.opacities, torch.sigmoid(torch.as_tensor(fields["opacity"])))
    av = GaussianAvatar.load(path, body)  # no sidecar: bound to the body as an import
    assert torch.allclose(av.colors, g.colors) and len(av) == n


def test_sh_rest_is_kept_on_import_and_rendered(tmp_path):
    """An SH degree-2 file written by plyfile in INRIA's channel-major layout renders with its
    view-dependent colour, as the dense reference renderer (gsplat's SH code) sees it."""
    truth = random_gaussians(25, K=9, seed=3, spread=0.3)
    truth.scales *= 4
    n = len(truth)
    rest = truth.colors[:, 1:].transpose(1, 2).reshape(n, -1).numpy()  # (N, 3*8): all red, green, blue
    op = truth.opacities.numpy()
    fields = {"x": truth.means[:, 0].numpy(), "y": truth.means[:, 1].numpy(), "z": truth.means[:, 2].numpy()}
    fields.update({f"f_dc_{i}": truth.colors[:, 0, i].numpy() for i in range(3)})
    fields.update({f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])})
    fields["opacity"] = np.log(op / (1 - op)).astype(np.float32)
    fields.update({f"scale_{i}": np.log(truth.scales[:, i].numpy()) for i in range(3)})
    fields.update({f"rot_{i}": truth.quats[:, i].numpy() for i in range(4)})
    g = load_ply(write_ply_with_plyfile(tmp_path / "sh.ply", fields))
    assert g.colors.shape == (n, 9, 3) and torch.allclose(g.colors, truth.colors, atol=1e-7)
    cam = Camera.look_at((0.4, 0.3, 2.0), (0, 0, 0), fov_deg=40, width=24, height=24)
    ours = rasterize(g, cam, backend="cpu").rgb
    ref = rasterize_dense(truth, cam).rgb
    assert (ours - ref).abs().max() < 2e-3
    dc_only = rasterize(Gaussians(g.means, g.quats, g.scales, g.opacities, g.colors[:, :1]), cam, backend="cpu").rgb
    assert (dc_only - ref).abs().max() > 0.05  # the rest coefficients matter in this view


def test_rotate_sh_turns_colour_with_the_gaussian():
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(40, 16, 3, generator=gen, dtype=torch.float64) * 0.2
    R = axis_angle_to_matrix(torch.randn(40, 3, generator=gen, dtype=torch.float64))
    d = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    turned = rotate_sh(c, R)
    # seen from d after the turn = seen from R^T d before it, in gsplat's SH evaluation
    back = (R.transpose(1, 2) @ d[..., None])[..., 0]
    assert torch.allclose(_spherical_harmonics(3, d, turned), _spherical_harmonics(3, back, c), atol=1e-10)
    # degree 1 is a vector: coefficients (c1, c2, c3) hold (-y, z, -x) components, which R turns
    v = torch.stack([-c[:, 3], -c[:, 1], c[:, 2]], 1)
    v2 = R @ v
    assert torch.allclose(turned[:, 1:4], torch.stack([-v2[:, 1], v2[:, 2], -v2[:, 0]], 1), atol=1e-12)
    assert torch.equal(turned[:, 0], c[:, 0])


def test_posed_sh_avatar_turns_its_view_dependent_colour(body, tmp_path):
    av = GaussianAvatar.from_body(body, "a person", num_gaussians=1500, seed=0)
    gen = torch.Generator().manual_seed(1)
    sh = torch.randn(len(av), 4, 3, generator=gen) * 0.2
    g = av.canonical()
    path = save_ply(tmp_path / "sh.ply", Gaussians(g.means, g.quats, g.scales, g.opacities, sh), sh_degree=None)
    imp = GaussianAvatar.from_ply(path, body)
    assert imp.colors.shape == (len(av), 4, 3) and torch.allclose(imp.colors, sh, atol=1e-7)
    fore = imp.weights[:, 18] > 0.9999  # rigidly on the left forearm
    assert fore.sum() > 5
    bp = torch.zeros(23, 3)
    bp[17] = torch.tensor([0.0, -1.5, 0.0])
    bp[15] = torch.tensor([0.0, 0.0, -1.2])
    (posed,), out = imp.pose(torch.zeros(3), bp)
    R = out.transforms[0, 18, :3, :3].double()
    d = torch.nn.functional.normalize(torch.randn(int(fore.sum()), 3, generator=gen, dtype=torch.float64), dim=-1)
    seen = _spherical_harmonics(1, d, posed.colors[fore].double())
    rest = _spherical_harmonics(1, d @ R, imp.colors[fore].double())  # rows: R^T d
    assert torch.allclose(seen, rest, atol=1e-5)


def test_bad_ply_files(tmp_path):
    p = tmp_path / "bad.ply"
    p.write_bytes(b"not a ply")
    with pytest.raises(AmgError, match="bad.ply"):
        load_ply(p)
    with pytest.raises(AmgError, match="no such"):
        load_ply(tmp_path / "missing.ply")
    n = 4
    pts = {"x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32), "z": np.zeros(n, np.float32)}
    with pytest.raises(AmgError, match="missing opacity"):
        load_ply(write_ply_with_plyfile(tmp_path / "points.ply", pts))
    ascii_ply = tmp_path / "ascii.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("x", "f4")]), "vertex")], text=True).write(str(ascii_ply))
    with pytest.raises(AmgError, match="binary"):
        load_ply(ascii_ply)


def test_render_app_writes_each_avatar_ply(tmp_path):
    from hydra import compose, initialize_config_dir

    from amg.render import run

    conf = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose(config_name="render", overrides=[
            "num_frames=2", "width=32", "height=32", "avatar.num_gaussians=400", "progress=false",
            "conditions=[avatar]", "save_ply=true", "motion=idle", "camera=static",
            "avatar.appearance=[a woman in a red dress,a man in a blue shirt]"])
    written = run(cfg, tmp_path)
    for i in (1, 2):
        assert f"avatar{i}.ply" in written and f"avatar{i}.npz" in written
        bound = np.load(tmp_path / f"avatar{i}.npz")["face_ids"]
        assert len(inria_load_ply(tmp_path / f"avatar{i}.ply")["xyz"]) == len(bound) >= 400


def test_sh_avatar_saved_at_degree_3_comes_back_at_its_own_degree(body, tmp_path):
    av = GaussianAvatar.from_body(body, "a person", num_gaussians=300, seed=0)
    av.colors = torch.randn(len(av), 4, 3, generator=torch.Generator().manual_seed(0)) * 0.2
    path = av.save(tmp_path / "sh.ply")  # degree 3 on disk: 45 f_rest, the last 36 zero
    assert len(inria_load_ply(path)["features_rest"][0]) == 15
    back = GaussianAvatar.load(path, body)
    assert torch.equal(back.colors, av.colors)
