import numpy as np
import pytest
import torch

from render.errors import AmgError
from render.video import (contact_sheet, read_frames, read_image, read_video, to_uint8, write_frames,
                          write_image, write_video)


def moving_square(F=6, H=32, W=48):
    """A bright square moving right over a dark gradient: easy to compress, easy to locate."""
    v = np.zeros((F, H, W, 3), np.uint8)
    v[..., 2] = np.linspace(0, 80, W, dtype=np.uint8)
    for i in range(F):
        v[i, 10:20, 4 + 4 * i:14 + 4 * i] = (250, 240, 30)
    return v


def test_mp4_round_trip_keeps_content_and_fps(tmp_path):
    v = moving_square()
    p = write_video(tmp_path / "clip.mp4", v, fps=8)
    frames, fps = read_video(p)
    assert frames.shape == v.shape and frames.dtype == np.uint8 and fps == pytest.approx(8.0)
    assert np.abs(frames.astype(int) - v.astype(int)).mean() < 4
    # the square is where it was written, frame by frame
    for i in range(len(v)):
        cols = np.nonzero(frames[i, 15, :, 0] > 128)[0]
        assert abs(cols.mean() - (4 + 4 * i + 4.5)) < 1.0
    assert not list(tmp_path.glob(".*part*"))  # no temporary left behind


def test_mp4_pads_odd_sizes_and_accepts_float_torch(tmp_path):
    v = torch.rand(3, 17, 23, 3)
    frames, fps = read_video(write_video(tmp_path / "odd.mp4", v, fps=12.5))
    assert frames.shape == (3, 18, 24, 3) and fps == pytest.approx(12.5)


def test_gif_round_trip(tmp_path):
    v = moving_square(F=4)
    frames, fps = read_video(write_video(tmp_path / "clip.gif", v, fps=10))
    assert frames.shape == v.shape and fps == pytest.approx(10.0)
    assert np.abs(frames.astype(int) - v.astype(int)).mean() < 8


def test_overwrite_flag(tmp_path):
    p = tmp_path / "a.mp4"
    write_video(p, moving_square(), fps=8)
    before = p.read_bytes()
    with pytest.raises(AmgError, match="exists"):
        write_video(p, moving_square(F=2), fps=8, overwrite=False)
    assert p.read_bytes() == before
    write_video(p, moving_square(F=2), fps=8)
    assert read_video(p)[0].shape[0] == 2


def test_read_video_errors(tmp_path):
    with pytest.raises(AmgError, match="no such"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video at all" * 10)
    with pytest.raises(AmgError, match="bad.mp4"):
        read_video(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(AmgError, match="empty.mp4"):
        read_video(empty)
    with pytest.raises(AmgError, match="extension"):
        write_video(tmp_path / "x.avi2", moving_square())
    with pytest.raises(AmgError, match="frames"):
        write_video(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), np.uint8))


def test_images_and_frame_folders(tmp_path):
    v = moving_square(F=3)
    paths = write_frames(tmp_path / "frames", v)
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    assert np.array_equal(read_frames(tmp_path / "frames"), v)  # PNG is lossless
    grey = np.linspace(0, 1, 20 * 10).reshape(10, 20)
    img = read_image(write_image(tmp_path / "g.png", grey))
    assert img.shape == (10, 20, 3) and img[0, 0, 0] == 0 and img[-1, -1, 0] == 255
    with pytest.raises(AmgError, match="no such"):
        read_image(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(AmgError, match="junk.png"):
        read_image(tmp_path / "junk.png")


def test_to_uint8_rounds_and_clips():
    a = to_uint8(np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], np.float32)[..., None])
    assert a.shape == (1, 5, 3) and a[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(AmgError):
        to_uint8(np.array([np.nan]))


def test_contact_sheet_layout_and_labels():
    frames = [np.full((20, 30, 3), c, np.uint8) for c in (0, 80, 160, 240, 40)]
    plain = contact_sheet(frames, cols=3, pad=2)
    assert plain.shape == (2 * (20 + 2) + 2, 3 * (30 + 2) + 2, 3)
    # frame 4 (value 40) sits in row 1, column 1
    assert (plain[2 + 22 + 5, 2 + 32 + 5] == 40).all()
    labelled = contact_sheet(frames, labels=["a", "b", "c", "d", "e"], cols=3, pad=2)
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] == plain.shape[1]
    label_strip = labelled[2 + 20:2 + 20 + 8, 2:2 + 30]
    assert (label_strip < 128).any()  # text drawn in black on white
    with pytest.raises(AmgError, match="labels"):
        contact_sheet(frames, labels=["a"])


def _top_level_boxes(path):
    """(type, offset) of the top-level ISO-BMFF boxes, read from the bytes."""
    data, out, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        out.append((kind, pos))
        if size < 8:
            break
        pos += size
    return out


def test_mp4_is_tagged_bt709_and_converted_with_it(tmp_path):
    import av

    v = np.zeros((2, 16, 16, 3), np.uint8)
    v[..., 0] = 255  # pure red
    p = write_video(tmp_path / "red.mp4", v, fps=8)
    with av.open(str(p)) as c:
        cc = c.streams.video[0].codec_context
        tags = (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc)
        frame = next(c.decode(video=0))
        luma = frame.to_ndarray(format="yuv420p")[:16].astype(float)
    assert tags == (1, 1, 1, 1)  # MPEG (limited) range; BT.709 matrix, primaries, transfer
    # limited-range BT.709 luma of pure red is 16 + 219 * 0.2126 = 62.6 (BT.601 would give 81.5)
    assert abs(luma.mean() - 62.6) < 2.0
    assert np.abs(read_video(p)[0][..., 0].astype(int) - 255).max() <= 6  # decodes back to red


def test_mp4_index_comes_first(tmp_path):
    boxes = dict(_top_level_boxes(write_video(tmp_path / "a.mp4", moving_square(), fps=8)))
    assert "moov" in boxes and "mdat" in boxes and boxes["moov"] < boxes["mdat"]


def test_same_frames_same_bytes_whatever_cpus_the_encoder_sees(tmp_path):
    """x264 picks its thread count from the CPUs it may run on, and its output depends on that count."""
    import os

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to vary the encoder's view")
    # AMG's clip size: x264 caps its threads by the number of macroblock rows, so tiny clips never vary
    v = (np.random.default_rng(0).integers(0, 4, (16, 256, 256, 3)) * 64).astype(np.uint8)
    cpus = os.sched_getaffinity(0)
    blobs = [write_video(tmp_path / "all.mp4", v, fps=8).read_bytes()]
    try:
        os.sched_setaffinity(0, {min(cpus)})
        blobs.append(write_video(tmp_path / "one.mp4", v, fps=8).read_bytes())
    finally:
        os.sched_setaffinity(0, cpus)
    blobs.append(write_video(tmp_path / "again.mp4", v, fps=8).read_bytes())
    assert blobs[0] == blobs[1] == blobs[2]
