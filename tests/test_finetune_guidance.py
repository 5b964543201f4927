import torch

from finetune.guidance import camera_free, classifier_free


def _eps(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 3, 5, 5, generator=g) for _ in range(3)]


def test_classifier_free_endpoints_and_reference():
    u, c, _ = _eps(0)
    assert torch.allclose(classifier_free(u, c, 1.0), c)
    assert torch.allclose(classifier_free(u, c, 0.0), u)
    s = 3.0
    ref = (1 - s) * u + s * c  # the same line written the other way round
    assert torch.allclose(classifier_free(u, c, s), ref, atol=1e-6)


def test_camera_free_reduces_to_cfg_and_to_the_lora_prediction():
    u, c, lo = _eps(1)
    assert torch.allclose(camera_free(u, c, lo, 3.0, 0.0), classifier_free(u, c, 3.0))
    assert torch.allclose(camera_free(u, c, lo, 1.0, 1.0), lo, atol=1e-6)
    assert torch.allclose(camera_free(u, c, lo, 0.0, 0.0), u)


def test_camera_free_is_the_paper_formula_elementwise():
    u, c, lo = _eps(2)
    lc, ll = 7.5, 1.3
    got = camera_free(u, c, lo, lc, ll)
    i = (1, 2, 0, 3, 4)
    want = u[i].item() + lc * (c[i].item() - u[i].item()) + ll * (lo[i].item() - c[i].item())
    assert abs(got[i].item() - want) < 1e-5
    # linear in the LoRA scale: the step from l_lora to l_lora + 1 is the LoRA's own contribution
    assert torch.allclose(camera_free(u, c, lo, lc, ll + 1) - got, lo - c, atol=1e-5)
