import json

import numpy as np
import pytest
import torch

from finetune.data import (ClipDataset, ClipRecord, LatentDataset, read_manifest, resize_center_crop,
                           sample_indices, to_model_range, write_manifest)
from finetune.model import encode_video, load_base
from finetune.tiny import build_tiny_text_to_video, write_tiny_clips
from render.errors import AmgError


def test_manifest_round_trip_and_relative_paths(tmp_path):
    recs = [ClipRecord("a/clip.mp4", "b/av.mp4", "a man walks", (3, 40), 24.0)]
    path = write_manifest(tmp_path / "sub" / "m.jsonl", recs)
    back = read_manifest(path)
    assert back[0].video == str(tmp_path / "sub" / "a" / "clip.mp4")
    assert back[0].frames == (3, 40) and back[0].fps == 24.0 and back[0].caption == "a man walks"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"video": "x.mp4"}) + "\n")
    with pytest.raises(AmgError, match="bad.jsonl:1"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "range.jsonl").write_text(json.dumps(
        {"video": "x", "avatar": "y", "caption": "c", "frames": [5, 5], "fps": 8}) + "\n")
    with pytest.raises(AmgError, match="start < end"):
        read_manifest(tmp_path / "range.jsonl")


def test_sample_indices_stride_and_short_ranges():
    assert sample_indices(10, 100, 24.0, 4, 8.0) == [10, 13, 16, 19]
    assert sample_indices(0, 16, 8.0, 16, 8.0) == list(range(16))
    # too short for the 3x stride: spread over the whole range, no repeats
    idx = sample_indices(0, 20, 24.0, 16, 8.0)
    assert idx[0] == 0 and idx[-1] == 19 and len(set(idx)) == 16
    with pytest.raises(AmgError, match="at least num_frames"):
        sample_indices(0, 10, 8.0, 16, 8.0)


def test_resize_center_crop_against_a_slow_reference():
    rng = np.random.default_rng(0)
    frames = torch.as_tensor(rng.random((2, 3, 20, 30)), dtype=torch.float32)
    out = resize_center_crop(frames, 10, 10)
    # covering 10x10 from 20x30 halves both sides to 10x15, then keeps columns 2..11
    ref = torch.nn.functional.interpolate(frames, size=(10, 15), mode="bilinear", antialias=True)[..., 2:12]
    assert out.shape == (2, 3, 10, 10) and torch.allclose(out, ref)
    x = to_model_range(np.full((2, 8, 8, 3), 255, np.uint8), 8, 8)
    assert x.shape == (3, 2, 8, 8) and torch.all(x == 1)


def test_missing_clip_video_is_a_one_line_error(tmp_path):
    manifest = write_tiny_clips(tmp_path, count=1, frames=4, side=16)
    (tmp_path / "avatar0.mp4").unlink()
    with pytest.raises(AmgError, match="avatar0.mp4"):
        ClipDataset(manifest, num_frames=4, height=8, width=8)[0]


def test_clip_dataset_samples(tmp_path):
    manifest = write_tiny_clips(tmp_path, count=2, frames=6, side=16)
    ds = ClipDataset(manifest, num_frames=4, height=8, width=8, fps=8.0)
    s = ds[1]
    assert len(ds) == 2 and s.video.shape == (3, 4, 8, 8) and s.avatar.shape == (3, 4, 8, 8)
    assert s.video.min() >= -1 and s.video.max() <= 1 and s.avatar.max() > 0.5 and s.avatar.min() < -0.9
    assert s.caption == "a woman runs on a beach"
    assert ds.key(0) != ds.key(1)
    assert ClipDataset(manifest, num_frames=5, height=8, width=8).key(0) != ds.key(0)


def test_latent_cache_is_reused_across_runs(tmp_path):
    base = build_tiny_text_to_video(tmp_path / "m")
    model = load_base(base)
    manifest = write_tiny_clips(tmp_path / "clips", count=2, frames=4, side=16)
    clips = ClipDataset(manifest, num_frames=4, height=16, width=16)
    cached = LatentDataset(clips, model.vae, model.text_encoder, model.tokenizer, cache_dir=tmp_path / "cache")
    first = cached[0]
    assert first.video.shape == (4, 4, 8, 8) and first.text.shape == (16, 32)
    assert torch.allclose(first.video, encode_video(model.vae, clips[0].video[None])[0])
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a, **k):
            raise AssertionError("encoder called despite the cache")

    # a new run (new dataset objects) loads from disk without decoding videos or running encoders
    again = LatentDataset(ClipDataset(manifest, num_frames=4, height=16, width=16), model.vae,
                          model.text_encoder, model.tokenizer, cache_dir=tmp_path / "cache")
    again.vae.encode = Broken(model.vae)
    assert torch.equal(again[0].video, first.video) and torch.equal(again[0].text, first.text)
