import os

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np
import pytest
import torch

torch.set_flush_denormal(True)
# pytest-xdist runs one worker per core: a second torch thread per worker only oversubscribes the CPU, and
# the rasterizer's many small ops lose far more to thread hand-offs than they gain.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def default_body():
    """The embedded default body, shared by the whole test process (tests must not modify it)."""
    from avatars.body import default_body

    return default_body()


@pytest.fixture(scope="session")
def body(default_body):
    """The default body; modules that test on another body (a tiny or a stick body) define their own."""
    return default_body
