"""Guidance formulas checked by their properties and by hand-computed values of the papers' equations."""
import pytest
import torch

from finetune.guidance import camera_free, classifier_free


def _eps(seed, n=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 3, 5, 5, generator=g) for _ in range(n)]


def test_classifier_free_scale_one_is_conditional_zero_unconditional():
    u, c = _eps(0, 2)
    assert torch.allclose(classifier_free(u, c, 1.0), c, atol=1e-6)
    assert torch.equal(classifier_free(u, c, 0.0), u)


def test_classifier_free_is_affine_in_the_scale():
    u, c = _eps(1, 2)
    f = lambda s: classifier_free(u, c, s)  # noqa: E731
    # an affine map of s: f(a) + f(b) = f(a + b) + f(0), and the slope is c - u
    assert torch.allclose(f(2.0) + f(5.0), f(7.0) + f(0.0), atol=1e-5)
    assert torch.allclose(f(4.0) - f(3.0), c - u, atol=1e-5)


def test_classifier_free_one_value_by_hand():
    # Ho & Salimans: eps~ = (1 + w) eps(c) - w eps(0) with w = s - 1; s = 3, eps(0) = 0.5, eps(c) = 2
    got = classifier_free(torch.tensor([0.5]), torch.tensor([2.0]), 3.0)
    assert got.item() == pytest.approx(3 * 2.0 - 2 * 0.5)


def test_camera_free_reduces_to_its_branches():
    u, c, lo = _eps(2)
    assert torch.allclose(camera_free(u, c, lo, 3.0, 0.0), classifier_free(u, c, 3.0))
    assert torch.allclose(camera_free(u, c, lo, 1.0, 1.0), lo, atol=1e-6)
    assert torch.allclose(camera_free(u, c, lo, 0.0, 0.0), u)
    assert torch.allclose(camera_free(u, c, lo, 1.0, 0.0), c, atol=1e-6)


def test_camera_free_is_affine_in_each_scale():
    u, c, lo = _eps(3)
    g = lambda a, b: camera_free(u, c, lo, a, b)  # noqa: E731
    assert torch.allclose(g(2.5, 1.0) - g(1.5, 1.0), c - u, atol=1e-5)      # slope in l_cfg
    assert torch.allclose(g(2.0, 3.0) - g(2.0, 2.0), lo - c, atol=1e-5)     # slope in l_traj
    assert torch.allclose(g(1.0, 2.0) + g(3.0, 4.0), g(4.0, 6.0) + g(0.0, 0.0), atol=1e-5)


def test_camera_free_one_value_by_hand():
    # Image Conductor eq.: eps0(x,0) + l_cfg (eps0(x,c) - eps0(x,0)) + l_traj (eps_obj(x,c) - eps0(x,c))
    # with eps0(x,0) = 1, eps0(x,c) = 3, eps_obj(x,c) = 4, l_cfg = 2, l_traj = 0.5:
    # 1 + 2 * 2 + 0.5 * 1 = 5.5
    got = camera_free(torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0]), 2.0, 0.5)
    assert got.item() == pytest.approx(5.5)
