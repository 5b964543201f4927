import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from render import rotations as rot



@pytest.fixture(autouse=True)
def _float64():
    """Double precision for this module only (the default dtype is process-wide)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def random_aa(n, gen, max_angle=math.pi):
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    ang = torch.rand(n, 1, generator=gen) * max_angle
    return axis * ang


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def special_cases(gen):
    axis = torch.nn.functional.normalize(torch.randn(40, 3, generator=gen, dtype=torch.float64), dim=-1)
    angles = torch.tensor([0.0, 1e-12, 1e-8, 1e-5, 1e-3, math.pi - 1e-3, math.pi - 1e-6, math.pi - 1e-9,
                           math.pi] * 4 + [0.5] * 4, dtype=torch.float64)
    return axis * angles[:, None]


def test_axis_angle_matrix_matches_scipy(gen):
    aa = torch.cat([random_aa(500, gen), special_cases(gen)])
    R = rot.axis_angle_to_matrix(aa)
    ref = torch.as_tensor(Rotation.from_rotvec(aa.numpy()).as_matrix())
    assert torch.allclose(R, ref, atol=1e-12)


def test_matrix_to_quaternion_matches_scipy(gen):
    aa = torch.cat([random_aa(500, gen), special_cases(gen)])
    R = torch.as_tensor(Rotation.from_rotvec(aa.numpy()).as_matrix())
    q = rot.matrix_to_quaternion(R)
    ref = Rotation.from_matrix(R.numpy()).as_quat()  # xyzw
    ref = torch.as_tensor(ref[:, [3, 0, 1, 2]])
    ref = rot.standardize_quaternion(ref)
    # at exactly pi both signs are valid (w = 0): compare as rotations
    same = torch.minimum((q - ref).abs().amax(-1), (q + ref).abs().amax(-1))
    assert same.max() < 1e-9


def test_round_trips_near_zero_and_pi(gen):
    aa = torch.cat([random_aa(500, gen), special_cases(gen)])
    R = rot.axis_angle_to_matrix(aa)
    for back in (rot.matrix_to_axis_angle(R), rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(aa))):
        assert torch.allclose(rot.axis_angle_to_matrix(back), R, atol=1e-9)
    angle = aa.norm(dim=-1)
    back = rot.matrix_to_axis_angle(R)
    ok = angle < math.pi - 1e-6  # at pi, aa and -aa coincide
    assert torch.allclose(back[ok], aa[ok], atol=1e-7)
    assert torch.allclose(rot.quaternion_to_matrix(rot.axis_angle_to_quaternion(aa)), R, atol=1e-12)
    assert torch.allclose(rot.rotation_6d_to_matrix(rot.matrix_to_rotation_6d(R)), R, atol=1e-12)


def test_quaternion_to_axis_angle_matches_scipy(gen):
    q = torch.nn.functional.normalize(torch.randn(300, 4, generator=gen), dim=-1)
    aa = rot.quaternion_to_axis_angle(q)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_rotvec()
    assert np.allclose(aa.numpy(), ref, atol=1e-10)


def test_6d_gram_schmidt_of_noisy_input(gen):
    R = rot.axis_angle_to_matrix(random_aa(100, gen))
    d6 = rot.matrix_to_rotation_6d(R) * 3.0  # scaled rows still give the same rotation
    assert torch.allclose(rot.rotation_6d_to_matrix(d6), R, atol=1e-12)


def test_gradients_finite_at_zero():
    aa = torch.zeros(2, 3, requires_grad=True)
    rot.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    rot.quaternion_to_axis_angle(q).sum().backward()
    assert torch.isfinite(q.grad).all()
    aa2 = torch.zeros(1, 3, requires_grad=True)
    rot.axis_angle_to_quaternion(aa2).sum().backward()
    assert torch.isfinite(aa2.grad).all()


def test_multiply_apply_invert(gen):
    a = rot.axis_angle_to_quaternion(random_aa(100, gen))
    b = rot.axis_angle_to_quaternion(random_aa(100, gen))
    Ra, Rb = rot.quaternion_to_matrix(a), rot.quaternion_to_matrix(b)
    assert torch.allclose(rot.quaternion_to_matrix(rot.quaternion_multiply(a, b)), Ra @ Rb, atol=1e-12)
    v = torch.randn(100, 3, generator=gen)
    assert torch.allclose(rot.quaternion_apply(a, v), (Ra @ v[..., None])[..., 0], atol=1e-12)
    ident = rot.quaternion_multiply(a, rot.quaternion_invert(a))
    assert torch.allclose(rot.standardize_quaternion(ident), torch.tensor([1.0, 0, 0, 0]).expand(100, 4), atol=1e-12)


def test_slerp_matches_scipy(gen):
    q0 = rot.axis_angle_to_quaternion(random_aa(50, gen))
    q1 = rot.axis_angle_to_quaternion(random_aa(50, gen))
    t = torch.linspace(0, 1, 7)
    for i in range(50):
        key = Rotation.from_quat(torch.stack([q0[i], q1[i]])[:, [1, 2, 3, 0]].numpy())
        ref = Slerp([0, 1], key)(t.numpy()).as_matrix()
        ours = rot.quaternion_to_matrix(rot.slerp(q0[i].expand(7, 4), q1[i].expand(7, 4), t))
        assert np.allclose(ours.numpy(), ref, atol=1e-9)
    # identical endpoints (the near-parallel branch) and t broadcasting
    same = rot.slerp(q0, q0, 0.3)
    assert torch.allclose(rot.standardize_quaternion(same), rot.standardize_quaternion(q0), atol=1e-12)


@pytest.mark.parametrize("order", ["XYZ", "ZXY", "ZYX", "YXZ", "XZY", "YZX"])
def test_euler_matches_scipy(order, gen):
    ang = (torch.rand(200, 3, generator=gen) - 0.5) * 2 * torch.tensor([math.pi, math.pi / 2 - 0.01, math.pi])
    R = rot.euler_to_matrix(ang, order)
    ref = Rotation.from_euler(order, ang.numpy()).as_matrix()  # upper case = intrinsic in scipy
    assert np.allclose(R.numpy(), ref, atol=1e-12)
    back = rot.matrix_to_euler(R, order)
    assert torch.allclose(rot.euler_to_matrix(back, order), R, atol=1e-9)
    # gimbal lock: middle angle at +-90 degrees still reproduces the matrix
    ang[:, 1] = math.pi / 2
    R = rot.euler_to_matrix(ang, order)
    assert torch.allclose(rot.euler_to_matrix(rot.matrix_to_euler(R, order), order), R, atol=1e-6)


def test_bad_euler_orders_are_user_errors():
    from render.errors import AmgError

    for bad in ("XY", "XYW", "abc"):
        with pytest.raises(AmgError, match="euler order"):
            rot.euler_to_matrix(torch.zeros(3), bad)
    with pytest.raises(AmgError, match="permutation"):
        rot.matrix_to_euler(torch.eye(3), "XYX")
