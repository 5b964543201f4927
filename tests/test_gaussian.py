import math
import time

import pytest
import torch

from render import gaussian as rg
from render import raster_cpu
from render.camera import Camera
from render.errors import AmgError
from render.gaussian import Gaussians, RenderOutput, eval_sh, gsplat_available, rasterize
from reference_gaussian import rasterize_dense


def random_scene(n, seed=0, sh=None, num_ids=3, spread=(2.4, 2.0, 2.0)):
    """Gaussians around the origin: varied sizes and opacities, some off-screen, some behind the camera."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor(spread)
    means[: n // 20, 2] = 3.0  # behind the camera at z=2.5 looking down -z
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * 3.0 - 5.5)
    op = torch.rand(n, generator=g) * 0.99 + 0.005
    colors = torch.rand(n, 3, generator=g) if sh is None else torch.randn(n, sh, 3, generator=g) * 0.3
    ids = torch.randint(1, num_ids + 1, (n,), generator=g)
    return Gaussians(means, quats, scales, op, colors, ids)


CAM = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=40, height=32)


def assert_close(out: RenderOutput, ref: RenderOutput, tol=1e-4):
    assert (out.rgb - ref.rgb).abs().max() < tol
    assert (out.alpha - ref.alpha).abs().max() < tol
    # depth is a ratio: compare the alpha-weighted numerator, and the ratio where coverage is solid
    assert ((out.depth - ref.depth) * ref.alpha).abs().max() < tol
    solid = ref.alpha > 0.05
    assert (out.depth - ref.depth)[solid].abs().max() < 1e-3
    assert torch.equal(out.depth == 0, ref.depth == 0)
    # ids may legitimately differ only where two instances' weights or the alpha threshold tie
    mismatch = out.ids != ref.ids
    near_threshold = (ref.alpha - rg.ID_ALPHA).abs() < 1e-4
    assert (mismatch & ~near_threshold).sum() <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_matches_dense_reference(seed):
    g = random_scene(300, seed=seed)
    out = rasterize(g, CAM, background=(0.2, 0.3, 0.4), backend="cpu")
    ref = rasterize_dense(g, CAM, background=(0.2, 0.3, 0.4))
    assert out.rgb.shape == (32, 40, 3) and out.ids.dtype == torch.long and out.rgb.dtype == torch.float32
    assert out.alpha.max() > 0.9 and len(torch.unique(out.ids)) == 4  # the scene really covers pixels
    assert_close(out, ref)


@pytest.mark.parametrize("k", [4, 9, 16])
def test_cpu_matches_dense_reference_with_sh(k):
    g = random_scene(200, seed=k, sh=k)
    assert g.sh_degree == math.isqrt(k) - 1
    assert_close(rasterize(g, CAM, backend="cpu"), rasterize_dense(g, CAM))


def test_sh_matches_gsplat_torch_implementation():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    coeffs = torch.randn(50, 16, 3)
    dirs = torch.randn(50, 3)
    for deg in range(4):
        c = coeffs[:, : (deg + 1) ** 2]
        expected = torch.clamp_min(_spherical_harmonics(deg, dirs, c) + 0.5, 0.0)
        assert torch.allclose(eval_sh(c, dirs), expected, atol=1e-6)


def test_gradients_match_dense_reference():
    g = random_scene(60, seed=3, spread=(1.5, 1.2, 1.0))
    torch.manual_seed(1)
    probe = torch.rand(32, 40, 3)

    def grads(render):
        leaves = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.colors)]
        out = render(Gaussians(*leaves, ids=g.ids), CAM)
        loss = (out.rgb * probe).sum() + (out.depth * out.alpha).sum() * 0.1 + out.alpha.sum()
        loss.backward()
        return [t.grad for t in leaves]

    fast = grads(lambda gg, c: rasterize(gg, c, backend="cpu"))
    ref = grads(rasterize_dense)
    for name, a, b in zip(["means", "quats", "scales", "opacities", "colors"], fast, ref):
        assert a is not None and a.abs().sum() > 0, name
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * b.abs().max()), name


def test_fast_and_grad_paths_agree():
    g = random_scene(300, seed=5)
    fast = rasterize(g, CAM, backend="cpu")
    leaves = Gaussians(g.means.clone().requires_grad_(True), g.quats, g.scales, g.opacities, g.colors, g.ids)
    slow = rasterize(leaves, CAM, backend="cpu")
    assert (fast.rgb - slow.rgb.detach()).abs().max() < 1e-5
    assert torch.equal(fast.ids, slow.ids)


def test_many_ids_path_matches_table(monkeypatch):
    g = random_scene(300, seed=2, num_ids=7)
    table = rasterize(g, CAM, backend="torch").ids
    monkeypatch.setattr(rg, "_DENSE_ID_TABLE_MAX", 0)
    assert torch.equal(rasterize(g, CAM, backend="torch").ids, table)


def assert_twins(fast: RenderOutput, ref: RenderOutput):
    """The compiled path against the PyTorch one: rgb/alpha within 1e-5, ids equal on >= 99.9% of pixels."""
    assert fast.rgb.shape == ref.rgb.shape and fast.ids.dtype == torch.long and fast.rgb.dtype == torch.float32
    assert (fast.rgb - ref.rgb).abs().max() < 1e-5
    assert (fast.alpha - ref.alpha).abs().max() < 1e-5
    assert ((fast.depth - ref.depth) * ref.alpha).abs().max() < 1e-5
    assert torch.equal(fast.depth == 0, ref.depth == 0)
    assert (fast.ids == ref.ids).float().mean() >= 0.999


@pytest.mark.skipif(not raster_cpu.available(), reason="the compiled path needs numba (extra 'fast')")
@pytest.mark.parametrize("seed,sh,num_ids,size", [(0, None, 3, (40, 32)), (1, 4, 1, (37, 29)), (2, 9, 6, (50, 17)),
                                                   (3, 16, 2, (33, 48))])
def test_compiled_matches_torch_on_random_scenes(seed, sh, num_ids, size):
    g = random_scene(2000, seed=seed, sh=sh, num_ids=num_ids)
    cam = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=size[0], height=size[1])
    fast = rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="numba")
    ref = rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="torch")
    assert ref.alpha.max() > 0.9 and len(torch.unique(ref.ids)) == num_ids + 1  # real coverage, every id seen
    assert_twins(fast, ref)
    assert torch.equal(rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="cpu").rgb, fast.rgb)


@pytest.mark.skipif(not raster_cpu.available(), reason="the compiled path needs numba (extra 'fast')")
def test_compiled_clip_matches_frame_by_frame_and_threads_agree():
    """One call for a clip (frames of different sizes of scene, moving cameras) equals per-frame renders."""
    frames = [random_scene(300 + 50 * f, seed=10 + f, num_ids=2) for f in range(3)]
    cams = [Camera.look_at((0.3 * f, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=40, height=32) for f in range(3)]
    clip = rg.rasterize_clip(frames, cams, background=(0.1, 0.1, 0.1), backend="numba", threads=2)
    assert clip.rgb.shape == (3, 32, 40, 3) and clip.ids.shape == (3, 32, 40)
    for f in range(3):
        one = rasterize(frames[f], cams[f], background=(0.1, 0.1, 0.1), backend="numba", threads=1)
        assert torch.equal(one.rgb, clip.rgb[f]) and torch.equal(one.ids, clip.ids[f])
        assert_twins(one, rasterize(frames[f], cams[f], background=(0.1, 0.1, 0.1), backend="torch"))


def test_fallback_to_torch_without_numba(monkeypatch):
    import sys

    g = random_scene(300, seed=4)
    ref = rasterize(g, CAM, backend="torch")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    raster_cpu.available.cache_clear()
    try:
        assert not raster_cpu.available()
        out = rasterize(g, CAM, backend="cpu")
        assert torch.equal(out.rgb, ref.rgb) and torch.equal(out.ids, ref.ids)
        with pytest.raises(AmgError, match="numba"):
            rasterize(g, CAM, backend="numba")
    finally:
        monkeypatch.undo()
        raster_cpu.available.cache_clear()


def test_depth_is_metric_camera_z_and_alpha_of_opaque_disc():
    # a wide opaque disc facing the camera 2 m in front of it
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), width=32, height=32)
    g = Gaussians(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[1.0, 1.0, 1e-3]]),
                  torch.ones(1), torch.tensor([[1.0, 0.5, 0.25]]))
    out = rasterize(g, cam, background=(0, 0, 1), backend="cpu")
    assert torch.allclose(out.depth[16, 16], torch.tensor(2.0), atol=1e-5)
    assert torch.allclose(out.alpha[16, 16], torch.tensor(0.999), atol=1e-5)
    assert torch.allclose(out.rgb[16, 16], torch.tensor([0.999, 0.4995, 0.24975 + 0.001]), atol=1e-4)
    assert torch.equal(out.ids == 1, out.alpha > 0.5) and (out.ids[8:24, 8:24] == 1).all()


def test_two_person_occlusion():
    """Where two opaque people overlap, the nearer one's id and colour win, whichever comes first in memory."""
    def person(z, color):
        g = torch.Generator().manual_seed(int(z * 10))
        n = 400
        pts = torch.rand(n, 3, generator=g) * torch.tensor([0.5, 1.6, 0.02]) + torch.tensor([-0.25, 0.1, z])
        return Gaussians(pts, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.04),
                         torch.full((n,), 0.95), torch.tensor(color).repeat(n, 1))

    cam = Camera.look_at((0, 0.9, 3), (0, 0.9, 0), width=48, height=48)
    near, far = person(0.5, [1.0, 0.0, 0.0]), person(-0.5, [0.0, 0.0, 1.0])
    for parts, near_id in (([near, far], 1), ([far, near], 2)):
        out = rasterize(Gaussians.cat(parts), cam, backend="cpu")
        centre = out.ids[20:28, 22:26]
        assert (centre == near_id).all()
        assert (out.rgb[20:28, 22:26, 0] > 0.9).all() and (out.rgb[20:28, 22:26, 2] < 0.1).all()
    # the far person alone is visible there, and is then id 1
    alone = rasterize(far, cam, backend="cpu")
    assert (alone.ids[20:28, 22:26] == 1).all() and (alone.rgb[20:28, 22:26, 2] > 0.9).all()


def test_empty_and_culled_scenes_give_background():
    behind = Gaussians(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1),
                       torch.ones(1), torch.ones(1, 3))
    for g in (behind, behind[torch.zeros(1, dtype=torch.bool)]):
        out = rasterize(g, CAM, background=(0.1, 0.2, 0.3), backend="cpu")
        assert torch.allclose(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(32, 40, 3))
        assert (out.alpha == 0).all() and (out.depth == 0).all() and (out.ids == 0).all()


def test_cat_assigns_ids_and_pads_sh():
    a, b = random_scene(10, seed=1, sh=4), random_scene(5, seed=2, sh=9)
    a.ids = None
    both = Gaussians.cat([a, b])
    assert len(both) == 15 and both.colors.shape == (15, 9, 3)
    assert (both.ids[:10] == 1).all() and torch.equal(both.ids[10:], b.ids)
    assert (both.colors[:10, 4:] == 0).all()
    with pytest.raises(AmgError):
        Gaussians.cat([random_scene(3), random_scene(3, sh=4)])
    moved = both.to(dtype=torch.float64)
    assert moved.means.dtype == torch.float64 and moved.ids.dtype == torch.long


def test_bad_inputs_raise_amg_error():
    g = random_scene(10)
    with pytest.raises(AmgError, match="quats"):
        Gaussians(g.means, g.quats[:, :3], g.scales, g.opacities, g.colors)
    with pytest.raises(AmgError, match="colors"):
        Gaussians(g.means, g.quats, g.scales, g.opacities, torch.rand(10, 5, 3))
    with pytest.raises(AmgError, match="ids"):
        Gaussians(g.means, g.quats, g.scales, g.opacities, g.colors, ids=torch.zeros(10, dtype=torch.long))
    with pytest.raises(AmgError, match="backend"):
        rasterize(g, CAM, backend="opengl")
    bad = Gaussians(g.means.clone(), g.quats, g.scales, g.opacities, g.colors)
    bad.means[0, 0] = float("nan")
    with pytest.raises(AmgError, match="NaN"):
        rasterize(bad, CAM, backend="cpu")
    if not gsplat_available():
        with pytest.raises(AmgError, match="gsplat"):
            rasterize(g, CAM, backend="gsplat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasterizer needs CUDA")
def test_gsplat_matches_cpu():
    """Runs where CUDA is present: prints the image difference and frames per second of both backends."""
    assert gsplat_available(), "CUDA is present but gsplat's CUDA extension does not load"
    g = random_scene(20000, seed=7, num_ids=3)
    cam = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=256, height=256)
    cpu = rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="cpu")
    gpu = rasterize(g.to("cuda"), cam, background=(0.2, 0.3, 0.4), backend="gsplat")
    gpu = RenderOutput(*(t.cpu() for t in (gpu.rgb, gpu.depth, gpu.alpha, gpu.ids)))
    timings = {}
    for name, gg in (("cpu", g), ("gsplat", g.to("cuda"))):
        t0 = time.perf_counter()
        for _ in range(5):
            rasterize(gg, cam, backend=name)
        torch.cuda.synchronize()
        timings[name] = 5 / (time.perf_counter() - t0)
    drgb = (cpu.rgb - gpu.rgb).abs()
    print(f"\ngsplat vs cpu 256x256, 20k Gaussians: max |rgb diff| {drgb.max():.2e}, mean {drgb.mean():.2e}, "
          f"max |alpha diff| {(cpu.alpha - gpu.alpha).abs().max():.2e}, ids equal "
          f"{(cpu.ids == gpu.ids).float().mean() * 100:.2f}%; fps cpu {timings['cpu']:.1f}, gsplat {timings['gsplat']:.1f}")
    assert_close(gpu, cpu, tol=1e-3)
