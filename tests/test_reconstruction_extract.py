import numpy as np
import pytest
import torch
from reconstruction_helpers import stick_body, walking_pose

from reconstruction import ExtractionResult, extract_people
from reconstruction.fit import mpjpe
from render.camera import Camera, CameraPath
from render.errors import AmgError


@pytest.fixture(scope="module")
def estimator():
    from reconstruction.pose import PoseEstimator

    with PoseEstimator() as est:
        yield est


def test_astronaut_as_a_one_frame_video(estimator, tmp_path):
    import skimage.data

    image = skimage.data.astronaut()
    res = extract_people(image[None], fps=8, body=stick_body(), estimator=estimator)
    assert isinstance(res, ExtractionResult)
    assert res.track_ids == [1] and res.flags == [] and res.usable
    assert len(res.motions) == 1 and len(res.motions[0]) == 1 and len(res.cameras) == 1
    kp = res.keypoints[0]
    assert kp.shape == (1, 33, 3) and 170 < kp[0, 0, 0] < 280
    assert res.masks.shape == (1, 512, 512) and set(np.unique(res.masks)) == {0, 1}
    # the fitted body projects onto the figure
    assert res.residuals["1"]["reprojection_px"] < 25
    out = res.save(tmp_path / "astro")
    meta = (out / "meta.json").read_text()
    assert '"reprojection_px"' in meta and (out / "motion_1.npz").exists() and (out / "cameras.json").exists()
    back = ExtractionResult.load(out)
    assert back.track_ids == res.track_ids and back.flags == res.flags and back.residuals == res.residuals
    assert np.array_equal(back.keypoints[0], res.keypoints[0]) and np.array_equal(back.masks, res.masks)
    assert np.array_equal(back.boxes[0], res.boxes[0]) and np.array_equal(back.world[0], res.world[0])
    assert torch.allclose(back.motions[0].body_pose, res.motions[0].body_pose)
    assert torch.allclose(back.cameras.K, res.cameras.K) and back.fits == []
    with pytest.raises(AmgError, match="keypoints.npz"):
        ExtractionResult.load(tmp_path / "nothing")


def test_no_person_is_flagged_not_raised(estimator):
    frames = np.full((3, 48, 48, 3), 90, np.uint8)
    res = extract_people(frames, fps=8, body=stick_body(), estimator=estimator)
    assert res.motions == [] and res.flags == ["no person found in any frame"] and not res.usable
    assert len(res.cameras) == 3


def test_bad_inputs_raise_one_line_errors(estimator):
    for frames, fps, what in [(np.zeros((0, 8, 8, 3), np.uint8), 8, "frames"),
                              (np.zeros((2, 8, 8, 3), np.float32), 8, "uint8"),
                              (np.zeros((2, 8, 8), np.uint8), 8, "frames"),
                              (np.zeros((2, 8, 8, 3), np.uint8), 0, "fps")]:
        with pytest.raises(AmgError, match=what) as e:
            extract_people(frames, fps, estimator=estimator)
        assert "\n" not in str(e.value)
    cam = Camera.look_at((0, 1, 3), width=16, height=16)
    with pytest.raises(AmgError, match="does not match"):
        extract_people(np.zeros((2, 8, 8, 3), np.uint8), 8, camera=cam, estimator=estimator)


def test_closed_loop_on_mesh_renders_of_the_default_body(estimator):
    """Render the default body walking, extract it again: pose error after alignment and reprojection."""
    from avatars.body import BodyModel
    from render.mesh import render_mesh

    body = BodyModel.load("default")
    F = 6
    go, pose, _ = walking_pose(F)
    go[:, 1] = torch.linspace(0.3, 0.8, F)
    truth = body(global_orient=go, body_pose=pose, transl=torch.zeros(F, 3))
    centre = float(truth.vertices[0, :, 1].mean())
    cam = Camera.look_at((0, centre, 3.2), (0, centre, 0), fov_deg=50, width=256, height=256)
    frames = np.stack([(np.clip(np.asarray(render_mesh(truth.vertices[f], body.faces, cam, colors=(0.8, 0.6, 0.5),
                                                       background=(0.3, 0.4, 0.5)).rgb), 0, 1) * 255).astype(np.uint8)
                       for f in range(F)])
    res = extract_people(frames, 8, camera=cam, body=body, estimator=estimator)
    assert res.track_ids == [1] and res.flags == []
    pa = 1000 * mpjpe(res.fits[0].joints, truth.joints).mean().item()
    assert pa <= 80, f"PA-MPJPE {pa:.0f} mm"
    assert res.residuals["1"]["reprojection_px"] <= 8
    # the recovered motion, posed and projected through the returned cameras, lands on the rendered body
    m = res.motions[0]
    posed = body(betas=m.betas[None].expand(F, -1), global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    uv, _ = res.cameras.project(posed.joints.double())
    uv_true, _ = CameraPath.static(cam, F).project(truth.joints.double())
    assert (uv - uv_true).norm(dim=-1).mean() < 12


def test_truncated_and_one_frame_video_files(estimator, tmp_path):
    """A video cut short mid-stream either decodes what is intact or raises a one-line AmgError; a
    one-frame file goes through extraction (flagged when nobody is in it), never a crash."""
    from reconstruction.video import read_frames
    from render.video import write_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    whole = write_video(tmp_path / "whole.mp4", frames, fps=8)
    data = whole.read_bytes()
    for keep in (len(data) // 2, 48):
        cut = tmp_path / f"cut_{keep}.mp4"
        cut.write_bytes(data[:keep])
        try:
            got, fps = read_frames(cut)
        except AmgError as e:
            assert "\n" not in str(e) and str(cut) in str(e)
        else:
            assert got.dtype == np.uint8 and got.shape[1:] == (64, 64, 3) and 1 <= len(got) <= 12 and fps > 0
    one = write_video(tmp_path / "one.mp4", np.full((1, 48, 48, 3), 90, np.uint8), fps=8)
    got, fps = read_frames(one)
    assert got.shape == (1, 48, 48, 3)
    res = extract_people(got, fps, body=stick_body(), estimator=estimator)
    assert not res.usable and res.flags == ["no person found in any frame"] and len(res.cameras) == 1


def test_a_failed_save_leaves_nothing_that_looks_finished(estimator, tmp_path, monkeypatch):
    """meta.json (the done marker) is written last and every file atomically: a save that fails midway
    leaves no meta.json and no partial file; a clip with nobody in it saves its flag."""
    import skimage.data

    res = extract_people(skimage.data.astronaut()[None], fps=8, body=stick_body(), estimator=estimator)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError):
        res.save(tmp_path / "broken")
    monkeypatch.undo()
    left = sorted(p.name for p in (tmp_path / "broken").iterdir())
    assert "meta.json" not in left and "keypoints.npz" not in left
    assert all(not n.startswith(".") and not n.endswith(".tmp") for n in left), left

    empty = extract_people(np.full((2, 32, 32, 3), 90, np.uint8), fps=8, body=stick_body(), estimator=estimator)
    out = empty.save(tmp_path / "empty")
    import json

    meta = json.loads((out / "meta.json").read_text())
    assert meta["flags"] == ["no person found in any frame"] and meta["track_ids"] == []
    assert not list(out.glob("motion_*.npz"))


def test_off_centre_subject_is_detected_at_source_resolution_and_kept_inside_the_crop(estimator):
    """A person near the right edge of a wide frame: the centre crop would cut them; the subjects' crop
    holds them in every frame, and keypoints, boxes, masks and cameras are mapped into it exactly."""
    import cv2
    import skimage.data

    from reconstruction.extract import extract_clip
    from reconstruction.video import prepare_clips

    person = cv2.resize(skimage.data.astronaut(), (240, 240))
    F, H, W = 3, 240, 600
    frames = np.full((F, H, W, 3), 100, np.uint8)
    for f in range(F):
        frames[f, :, 350 + 4 * f:590 + 4 * f] = person
    clip = prepare_clips(frames, fps=8, length=F, size=96, crop="subjects")[0]
    assert clip.crop_box[0] == (W - H) // 2 and clip.source.shape == frames.shape  # the centre, for now
    full = extract_people(frames, 8, camera=clip.source_camera, body=stick_body(), estimator=estimator)
    res = extract_clip(clip, body=stick_body(), estimator=estimator)
    x0, y0, side, _ = res.crop_box
    assert side == H and res.track_ids == full.track_ids and res.usable
    box = full.boxes[0]
    assert (box[:, 0] >= x0 - 1).all() and (box[:, 2] <= x0 + side + 1).all()  # inside in every frame
    s = 96 / side
    assert np.allclose(res.keypoints[0][..., :2], (full.keypoints[0][..., :2] - [x0, y0]) * s, atol=1e-3)
    assert res.masks.shape == (F, 96, 96) and (res.masks == res.track_ids[0]).sum() > 0.1 * F * 96 * 96
    # the mapped cameras are those of the re-cropped clip pixels: the fitted body lands on the same spot
    cropped = clip.recrop(x0, y0, side)
    assert torch.allclose(res.cameras.K[0], cropped.camera.K)
    uv_full, _ = full.cameras.project(full.fits[0].joints.double())
    uv_clip, _ = res.cameras.project(res.fits[0].joints.double())
    assert torch.allclose(uv_clip, (uv_full - torch.tensor([x0, y0], dtype=torch.float64)) * s, atol=1e-3)
