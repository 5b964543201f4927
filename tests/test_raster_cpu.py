"""The compiled CPU path's pieces against their PyTorch twins in render.gaussian (random scenes)."""

import numpy as np
import pytest
import torch

from render import gaussian as rg
from render import raster_cpu
from render.camera import Camera
from render.gaussian import rasterize

from test_gaussian import assert_twins, random_scene

pytestmark = pytest.mark.skipif(not raster_cpu.available(), reason="the compiled path needs numba (extra 'fast')")


def _arrays(g, cams):
    f32 = np.float32
    return (g.means.numpy(), g.quats.numpy(), g.scales.numpy(), g.opacities.numpy(), g.colors.numpy(),
            g.sh_degree, np.zeros(len(g), np.int32), torch.stack([c.K for c in cams]).numpy().astype(f32),
            torch.stack([c.R for c in cams]).numpy().astype(f32), torch.stack([c.t for c in cams]).numpy().astype(f32),
            cams[0].width, cams[0].height)


@pytest.mark.parametrize("seed,sh,size", [(0, None, (40, 32)), (1, 4, (37, 29)), (2, 9, (64, 17)), (3, 16, (33, 48))])
def test_fused_projection_matches_torch_projection(seed, sh, size):
    """Culling, 2D conic, footprint box, depth and (SH) colour of every Gaussian, as render.gaussian computes
    them: the same Gaussians kept, float32 values within rounding, boxes equal."""
    g = random_scene(3000, seed=seed, sh=sh)
    cam = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=size[0], height=size[1])
    params, feats, box, valid = (x.copy() for x in raster_cpu.project(*_arrays(g, [cam])))
    proj = rg._project(g, cam)
    valid_t = proj.valid.numpy()
    # a Gaussian whose footprint edge sits within float error of the image border may go either way
    assert (valid != valid_t).sum() <= 2 and valid.sum() > 1000
    both = valid & valid_t
    u, v = proj.means2d.unbind(-1)
    want = torch.cat([proj.means2d, proj.conics, g.opacities[:, None]], 1).numpy()[both]
    np.testing.assert_allclose(params[both], want, rtol=2e-5, atol=2e-4)
    colors = rg._colors(g, cam).numpy()[both]
    np.testing.assert_allclose(feats[both, :3], colors, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(feats[both, 3], proj.depths.numpy()[both], rtol=1e-6)
    j0, j1, i0, i1 = rg._footprint_box(u, v, proj.radii, cam.width, cam.height)
    want_box = torch.stack([j0, j1, i0, i1], 1).numpy()[both]
    # boxes from bit-different centres differ by a pixel only where a centre lands within rounding of an edge
    assert (box[both] != want_box).any(axis=1).mean() < 0.002


@pytest.mark.parametrize("num_frames", [4, 40])  # packed int64 keys, and the lexsort beyond 31 frames
def test_depth_order_is_the_stable_sort_by_frame_then_depth(num_frames):
    rng = np.random.default_rng(0)
    depth = rng.choice(np.float32([0.5, 1.0, 1.25, 3.0, 7.5]), 500)  # many ties: the index decides them
    frame = np.sort(rng.integers(0, num_frames, 500)).astype(np.int32)
    valid = rng.random(500) > 0.2
    grec = np.zeros((500, 16), np.float32)
    grec[:, 9] = depth
    grec.view(np.int32)[:, 11] = frame
    keys, mask, vis = raster_cpu._depth_order(valid, grec.view(np.int32), num_frames)
    order = np.flatnonzero(valid)
    order = order[np.lexsort((order, depth[order], frame[order]))]
    np.testing.assert_array_equal(vis[keys & mask], order)


@pytest.mark.parametrize("seed", [0, 1])
def test_tiles_of_many_gaussians_and_threads(seed):
    """Dense small Gaussians over several tiles and image edges that are not tile multiples, 1 or 2 threads,
    many instances: the compiled path against the PyTorch one."""
    g = random_scene(6000, seed=seed, num_ids=9, spread=(1.0, 0.8, 0.6))
    g.scales = g.scales * 0.5
    cam = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=71, height=45)
    ref = rasterize(g, cam, background=(0.5, 0.1, 0.9), backend="torch")
    for threads in (1, 2):
        assert_twins(rasterize(g, cam, background=(0.5, 0.1, 0.9), backend="numba", threads=threads), ref)



@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tight_boxes_change_no_pixel(seed, monkeypatch):
    """The compositor's boxes cut to alpha >= ALPHA_MIN (opacity-aware, without whole-pixel rounding) give the
    same images bit for bit as the rounded boxes, on footprints that stress the margins: needle-thin and
    tilted, large, opacities from just above ALPHA_MIN to above 1, Gaussians over many tiles."""
    g = random_scene(4000, seed=seed, num_ids=5, spread=(1.6, 1.2, 1.0))
    rng = torch.Generator().manual_seed(seed)
    thin = torch.rand(len(g), generator=rng) < 0.5
    g.scales[thin, 0] = g.scales[thin, 0] * 20.0
    g.scales[thin, 1] = g.scales[thin, 1] * 1e-3
    big = torch.rand(len(g), generator=rng) < 0.02
    g.scales[big] = g.scales[big] * 30.0
    low = torch.rand(len(g), generator=rng) < 0.2
    g.opacities[low] = rg.ALPHA_MIN * (1.0 + torch.rand(int(low.sum()), generator=rng) * 0.05)
    g.opacities[:50] = 1.5
    for size in ((97, 61), (256, 192)):
        cam = Camera.look_at((0.3, 0.4, 2.5), (0, 0, 0), fov_deg=50, width=size[0], height=size[1])
        fast = rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="numba")
        monkeypatch.setattr(raster_cpu, "_TIGHT_BOXES", False)
        wide = rasterize(g, cam, background=(0.2, 0.3, 0.4), backend="numba")
        monkeypatch.setattr(raster_cpu, "_TIGHT_BOXES", True)
        assert fast.alpha.max() > 0.5
        for k in ("rgb", "depth", "alpha", "ids"):
            assert torch.equal(getattr(fast, k), getattr(wide, k)), k
