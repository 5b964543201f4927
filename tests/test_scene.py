"""The render stage: one pass over the frames, every condition derived from it."""

from pathlib import Path

import numpy as np
import pytest

from avatars import motion_library
from avatars.body import BodyModel
from avatars.gaussians import GaussianAvatar
from avatars.scene import CONDITIONS, WRITERS, Person, contact_shadow, render_scene, save_scene
from render.camera import Camera, CameraPath
from render.errors import AmgError
from render.image import fit_plate
from render.video import read_video


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
    assert c.present() == ["bbox3d", "levitor", "flow", "traj"]
    assert c.bbox3d.corners2d.shape == (4, 2, 8, 2)
    assert c.levitor.control.shape == (4, 3, 64, 64)
    assert c.flow.flow.shape == (2, 4, 64, 64)
    assert c.traj.frames.shape == (4, 64, 64, 3)
    # conditions agree with the render they come from: LeviTor ids are the instance ids of the masks
    ids = set(np.concatenate([p[:, 2] for p in c.levitor.points if len(p)]).tolist())
    assert ids <= set(np.unique(res.mask).tolist()) - {0}
    # projected boxes contain their person's mask pixels
    for f in range(4):
        for p in (1, 2):
            ys, xs = np.nonzero(res.mask[f] == p)
            if len(xs) == 0:
                continue
            box = c.bbox3d.corners2d[f, p - 1]
            assert xs.min() >= box[:, 0].min() - 2 and xs.max() <= box[:, 0].max() + 2
            assert ys.min() >= box[:, 1].min() - 2 and ys.max() <= box[:, 1].max() + 2


def test_subset_and_outputs(scene, tmp_path):
    _, people, cams = scene
    res = render_scene(people[:1], cams, conditions=["avatar", "mask"], progress=False)
    assert res.conditions.present() == [] and res.rgb.shape == (4, 64, 64, 3) and res.preview is None
    assert set(np.unique(res.mask)) <= {0, 1} and (res.mask == 1).any()
    # depth is metric: the person stands about `radius` metres from the camera
    d = res.depth[res.mask == 1]
    assert 3.0 < np.median(d) < 5.0
    written = save_scene(res, tmp_path, conditions=["avatar", "mask"])
    assert {"avatar.mp4", "masks.npz", "cameras.json", "contact_sheet.png"} <= set(written)
    assert not (tmp_path / "depth.npz").exists()
    with pytest.raises(AmgError, match="bbox3d"):
        save_scene(res, tmp_path, conditions=["avatar", "bbox3d"])


def test_bad_inputs(scene):
    _, people, cams = scene
    with pytest.raises(AmgError, match="sparkles"):
        render_scene(people, cams, conditions=["sparkles"])
    with pytest.raises(AmgError, match="frames"):
        render_scene(people, CameraPath.orbit(7, width=32, height=32))
    with pytest.raises(AmgError, match="at least one person"):
        render_scene([], cams)


def test_save_scene_writes_each_condition_in_its_layout(scene, tmp_path):
    _, people, cams = scene
    res = render_scene(people, cams, conditions=list(CONDITIONS), progress=False)
    written = save_scene(res, tmp_path)
    assert set(written) == {"avatar.mp4", "depth.npz", "masks.npz", "cameras.json", "contact_sheet.png",
                            "bbox3d.npy", "bbox3d.mp4", "levitor_control.npy", "levitor_points.npz", "levitor.mp4",
                            "flow.npy", "flow_tracks.npy", "flow.mp4", "traj.npy", "traj.mp4"}
    assert set(WRITERS) == set(CONDITIONS)
    np.testing.assert_array_equal(np.load(tmp_path / "masks.npz")["masks"], res.mask)
    np.testing.assert_array_equal(np.load(tmp_path / "depth.npz")["depth"], res.depth)
    np.testing.assert_allclose(np.load(tmp_path / "bbox3d_world.npy"), res.conditions.bbox3d.corners3d, atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "traj.npy"), res.conditions.traj.frames)
    assert np.load(tmp_path / "flow.npy").shape == (2, 4, 64, 64)
    assert read_video(tmp_path / "avatar.mp4")[0].shape == (4, 64, 64, 3)


def standing(num_frames=3, size=96):
    """One person standing still on the ground, filmed from the front and above (the ground in front of the
    feet in view)."""
    body = BodyModel.load()
    av = GaussianAvatar.from_body(body, "a man in a black shirt and black pants", num_gaussians=3000, seed=0)
    motion = motion_library.make("idle", seconds=num_frames / 8, fps=8)[:num_frames]
    cams = CameraPath.from_cameras([Camera.look_at((0.0, 2.6, 3.0), (0.0, 0.6, 0.0), fov_deg=50, width=size,
                                                   height=size)] * num_frames)
    return [Person(av, motion)], cams


def test_plate_composite_and_contact_shadow_under_the_feet(tmp_path):
    people, cams = standing()
    F, H, W = len(cams), cams.height, cams.width
    plate = np.full((40, 70, 3), 200, np.uint8)  # another aspect: scaled to cover, centre-cropped
    plate[:, :35] = (200, 180, 160)
    res = render_scene(people, cams, background=plate, shadow=True, progress=False)
    assert res.preview.shape == (F, H, W, 3) and res.preview.dtype == np.uint8
    # the condition stays on black, the preview carries the plate where nothing covers it
    empty = res.alpha < 1e-3
    assert (res.rgb[empty] == 0).all()
    far = empty & (np.arange(H)[None, :, None] < H // 4)  # top of the image: no shadow there
    fitted = fit_plate(plate, H, W)
    assert np.abs(res.preview[far].astype(int) - np.broadcast_to(fitted, (F, H, W, 3))[far].astype(int)).max() <= 1
    # over the person: the preview is the avatar (its colour over black plus what shows through)
    solid = res.alpha > 0.999
    assert np.abs(res.preview[solid].astype(int) - res.rgb[solid].astype(int)).max() <= 1
    # the feet touch their shadow: just below the lowest covered pixel of each foot column, the plate darkens
    for f in range(F):
        cols = np.nonzero((res.alpha[f] > 0.5).any(0))[0]
        rows = np.nonzero((res.alpha[f] > 0.5).any(1))[0]
        bottom = rows.max()
        feet_cols = np.nonzero(res.alpha[f, bottom - 2:bottom + 1] > 0.5)[1]
        below = slice(bottom + 1, min(bottom + 3, H))
        band = res.preview[f, below][:, feet_cols].astype(float).mean()
        plain = fitted[below][:, feet_cols].astype(float).mean()
        assert band < 0.85 * plain, (band, plain)
        # away from the person at the same height the ground is not shaded
        side = [c for c in (2, W - 3) if abs(c - cols.mean()) > 0.4 * W]
        assert np.abs(res.preview[f, below][:, side].astype(int) - fitted[below][:, side].astype(int)).max() <= 2


def test_contact_shadow_fades_with_height():
    """A sole on the ground casts ``strength``, the same sole higher up ``strength * exp(-h / height)``,
    beyond the last band nothing; the ground far from it stays unshaded."""
    from avatars.scene import SHADOW_HEIGHT, SHADOW_STRENGTH

    g = np.stack(np.meshgrid(np.linspace(-0.05, 0.05, 12), np.linspace(-0.12, 0.12, 25)), -1).reshape(-1, 2)
    heights = (0.0, 0.5, 1.0, 1.5)
    cams = CameraPath.from_cameras([Camera.look_at((0.0, 1.5, 2.0), (0.0, 0.0, 0.0), fov_deg=40, width=64,
                                                   height=64)] * len(heights))
    sole = [np.stack([np.c_[g[:, 0], np.full(len(g), y), g[:, 1]] for y in heights])]
    dark = contact_shadow(sole, cams)
    centre = dark[:, 32, 32]
    expected = SHADOW_STRENGTH * np.exp(-np.array(heights[:3]) / SHADOW_HEIGHT)
    np.testing.assert_allclose(centre[:3], expected, rtol=0.1)
    assert centre[3] == 0.0 and (dark[:, :4, :4] == 0).all() and dark.max() <= SHADOW_STRENGTH + 1e-6


def test_render_app_writes_a_composite_preview(tmp_path):
    from hydra import compose, initialize_config_dir

    from amg.render import run
    from render.video import write_image

    photo = np.zeros((80, 120, 3), np.uint8)
    photo[..., 1] = 160  # a green field
    write_image(tmp_path / "photo.png", photo)
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose(config_name="render", overrides=["num_frames=2", "width=64", "height=64",
                                                       "avatar.num_gaussians=1500", "progress=false",
                                                       f"background={tmp_path / 'photo.png'}", "shadow=true"])
    out = tmp_path / "run"
    written = run(cfg, out)
    assert "preview.mp4" in written and "avatar.mp4" in written
    preview, _ = read_video(out / "preview.mp4")
    avatar, _ = read_video(out / "avatar.mp4")
    empty = np.load(out / "masks.npz")["masks"] == 0
    assert preview[empty][:, 1].mean() > 100 and avatar[empty].mean() < 10  # plate in the preview only
