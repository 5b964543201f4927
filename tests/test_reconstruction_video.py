import numpy as np
import pytest
import torch

from reconstruction.video import (decode_video, default_camera, longest_shots, prepare_clips, read_frames, resample_stride,
                                  shot_boundaries, square_crop, windows)
from render.errors import AmgError


def _video(F=60, H=48, W=80, cut_at=(20, 45), seed=0):
    """A panning gradient whose palette changes abruptly at ``cut_at``."""
    rng = np.random.default_rng(seed)
    palettes = rng.integers(0, 256, (len(cut_at) + 1, 3))
    x = np.arange(W)[None, :, None]
    frames = []
    for f in range(F):
        shot = int(np.searchsorted(cut_at, f, side="right"))
        base = palettes[shot][None, None, :] * (0.6 + 0.4 * ((x + 2 * f) % W) / W)
        frames.append(np.broadcast_to(base, (H, W, 3)))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_shot_boundaries_find_cuts_and_not_motion():
    frames = _video()
    assert shot_boundaries(frames) == [(0, 20), (20, 45), (45, 60)]
    assert shot_boundaries(frames[:1]) == [(0, 1)]
    assert longest_shots([(0, 20), (20, 45), (45, 60)], 2) == [0, 1]
    assert longest_shots([(0, 20), (20, 45), (45, 60)], 3, min_frames=16) == [0, 1]


def test_resampling_and_windows():
    assert resample_stride(24) == 3 and resample_stride(30) == 4 and resample_stride(5) == 1
    assert windows(40, 16) == [(0, 16), (16, 32)]
    assert windows(15, 16) == []
    with pytest.raises(AmgError):
        resample_stride(0)


def test_square_crop_keeps_the_camera_consistent_with_pixels():
    H, W = 60, 100
    cam = default_camera(W, H)
    point = torch.tensor([[0.3, 0.2, -4.0]], dtype=torch.float64)
    uv_full, _ = cam.project(point)
    frames = np.zeros((1, H, W, 3), np.uint8)
    j, i = int(uv_full[0, 0]), int(uv_full[0, 1])
    frames[0, i - 2:i + 3, j - 2:j + 3] = 255
    out, cam2, (x0, y0, side, _) = square_crop(frames, cam, size=30, center_x=70)
    assert out.shape == (1, 30, 30, 3) and (x0, y0, side) == (40, 0, 60)
    uv, _ = cam2.project(point)
    ys, xs = np.nonzero(out[0, :, :, 0] > 60)
    assert abs(xs.mean() + 0.5 - float(uv[0, 0])) < 1.0 and abs(ys.mean() + 0.5 - float(uv[0, 1])) < 1.0
    assert cam2.width == cam2.height == 30


def test_default_camera_has_fifty_degrees_across_the_long_side():
    cam = default_camera(512, 256)
    assert abs(float(cam.K[0, 0]) - 256 / np.tan(np.radians(25))) < 1e-6
    assert float(cam.K[0, 2]) == 256 and float(cam.K[1, 2]) == 128
    # a point straight ahead of the camera (world -Z) lands on the principal point, world up is image up
    uv, depth = cam.project(torch.tensor([[0.0, 0.0, -3.0], [0.0, 1.0, -3.0]], dtype=torch.float64))
    assert depth[0] > 0 and torch.allclose(uv[0], cam.K[:2, 2]) and uv[1, 1] < uv[0, 1]


def test_prepare_clips_from_a_file(tmp_path):
    import av

    frames = _video(F=70, H=64, W=96, cut_at=(10,))
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    decoded, fps = decode_video(path)
    assert decoded.shape == (70, 64, 96, 3) and fps == 24
    assert read_frames is decode_video  # the older name still works
    clips = prepare_clips(path, length=16, size=32)
    assert len(clips) == 1  # 60 frames at stride 3 -> 20 frames -> one window
    clip = clips[0]
    assert clip.frames.shape == (16, 32, 32, 3) and clip.fps == 8
    assert clip.source_frames.tolist() == list(range(10, 58, 3))
    assert clip.camera.width == 32 and abs(float(clip.camera.K[0, 2]) - 16) < 1e-9


def test_bad_videos_raise_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01 not a video" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for p in (corrupt, empty, tmp_path / "missing.mp4"):
        with pytest.raises(AmgError) as e:
            read_frames(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value)
    with pytest.raises(AmgError, match="at least"):
        prepare_clips(_video(F=1), fps=24)
    with pytest.raises(AmgError, match="uint8"):
        prepare_clips(np.zeros((20, 8, 8, 3), np.float32), fps=8)
