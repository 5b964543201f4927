"""The render stage: one pass over the frames, every condition derived from it."""

import numpy as np
import pytest

from avatars import motion_library
from avatars.body import BodyModel
from avatars.gaussians import GaussianAvatar
from avatars.scene import CONDITIONS, Person, render_scene, save_scene
from render.camera import CameraPath
from render.errors import AmgError


@pytest.fixture(scope="module")
def scene():
    body = BodyModel.load()
    a = GaussianAvatar.from_body(body, "a woman in a red dress", num_gaussians=1500, seed=0)
    b = GaussianAvatar.from_body(body, "a man in a blue shirt and white pants", num_gaussians=1500, seed=1)
    pair = motion_library.make("dance_pair", seconds=0.5, fps=8)
    cams = CameraPath.orbit(4, degrees=40, radius=4.0, width=64, height=64)
    return body, [Person(a, pair[0][:4]), Person(b, pair[1][:4])], cams


def test_bodies_posed_once_per_frame_for_all_conditions(scene, monkeypatch):
    body, people, cams = scene
    calls = []
    original = BodyModel.forward

    def counting(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(out.vertices.shape[0])
        return out

    monkeypatch.setattr(BodyModel, "forward", counting)
    res = render_scene(people, cams, conditions=list(CONDITIONS), progress=False)
    # one batched forward per person covering all frames (rest-shape queries use body.rest, not forward)
    assert calls == [len(cams)] * len(people)
    assert res.pose_calls == len(people)
    c = res.conditions
    assert c["bbox3d"]["corners2d"].shape == (4, 2, 8, 2)
    assert c["levitor"]["control"].shape == (4, 3, 64, 64)
    assert c["flow"]["flow"].shape == (2, 4, 64, 64)
    assert c["traj"]["frames"].shape == (4, 64, 64, 3)
    # conditions agree with the render they come from: LeviTor ids are the instance ids of the masks
    ids = set(np.concatenate([p[:, 2] for p in c["levitor"]["points"] if len(p)]).tolist())
    assert ids <= set(np.unique(res.mask).tolist()) - {0}
    # projected boxes contain their person's mask pixels
    for f in range(4):
        for p in (1, 2):
            ys, xs = np.nonzero(res.mask[f] == p)
            if len(xs) == 0:
                continue
            box = c["bbox3d"]["corners2d"][f, p - 1]
            assert xs.min() >= box[:, 0].min() - 2 and xs.max() <= box[:, 0].max() + 2
            assert ys.min() >= box[:, 1].min() - 2 and ys.max() <= box[:, 1].max() + 2


def test_subset_and_outputs(scene, tmp_path):
    _, people, cams = scene
    res = render_scene(people[:1], cams, conditions=["avatar", "mask"], progress=False)
    assert res.conditions == {} and res.rgb.shape == (4, 64, 64, 3)
    assert set(np.unique(res.mask)) <= {0, 1} and (res.mask == 1).any()
    # depth is metric: the person stands about `radius` metres from the camera
    d = res.depth[res.mask == 1]
    assert 3.0 < np.median(d) < 5.0
    written = save_scene(res, tmp_path, conditions=["avatar", "mask"])
    assert {"avatar.mp4", "masks.npz", "cameras.json", "contact_sheet.png"} <= set(written)
    assert not (tmp_path / "depth.npz").exists()


def test_bad_inputs(scene):
    _, people, cams = scene
    with pytest.raises(AmgError, match="sparkles"):
        render_scene(people, cams, conditions=["sparkles"])
    with pytest.raises(AmgError, match="frames"):
        render_scene(people, CameraPath.orbit(7, width=32, height=32))
    with pytest.raises(AmgError, match="at least one person"):
        render_scene([], cams)
