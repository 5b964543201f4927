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
