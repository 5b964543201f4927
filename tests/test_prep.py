"""amg.prep on videos rendered by the project: stages, skip-if-done, kill -9 and rerun, failures, multirun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from render.video import read_video

from prep_helpers import CONF, ROOT, SMALL, render_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two short videos of avatars rendered by the project (a waving and a boxing person)."""
    return render_videos(tmp_path_factory.mktemp("videos"))


def prep_cmd(videos, out_dir, extra=()):
    return [sys.executable, "-m", "amg.prep", f"video=[{','.join(map(str, videos))}]", f"out_dir={out_dir}",
            f"hydra.run.dir={out_dir}/.hydra-run"] + SMALL + list(extra)


def check_outputs(out_dir: Path, expected_clips: int):
    """Every output re-reads; no temporary files; the manifest points at real, complete clips."""
    lines = (out_dir / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == expected_clips
    for line in lines:
        rec = json.loads(line)
        clip, _ = read_video(out_dir / rec["video"])
        avatar, _ = read_video(out_dir / rec["avatar"])
        assert clip.shape == avatar.shape == (8, 128, 128, 3)
        assert rec["caption"] and rec["appearance"]
    for f in out_dir.rglob("*"):
        if ".hydra-run" in f.parts or not f.is_file():
            continue
        assert ".part" not in f.name, f
        if f.suffix == ".mp4":
            read_video(f)
        elif f.suffix == ".npz":
            with np.load(f) as d:
                [d[k] for k in d.files]
        elif f.suffix in (".json", ".jsonl"):
            [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.suffix == ".jsonl" else json.loads(f.read_text())


def env():
    return {**os.environ, "PYOPENGL_PLATFORM": "osmesa"}


def test_prep_kill_and_rerun(videos, tmp_path):
    out = tmp_path / "prep"
    p = subprocess.Popen(prep_cmd(videos, out), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("clips/*/*/.done/tracks.json")):
        time.sleep(0.2)
    assert p.poll() is None, "the run finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "manifest.jsonl").exists()
    r = subprocess.run(prep_cmd(videos, out), env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 clips kept, 0 dropped" in r.stdout
    check_outputs(out, 2)
    # a third run does no work: every stage is done
    mtimes = {f: f.stat().st_mtime_ns for f in out.glob("clips/*/*/*.mp4")}
    r = subprocess.run(prep_cmd(videos, out), env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and {f: f.stat().st_mtime_ns for f in mtimes} == mtimes


def test_prep_records_bad_video_and_goes_on(videos, tmp_path):
    from amg.prep import run

    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="prep", overrides=[f"video=[{videos[0]},{bad}]", f"out_dir={tmp_path / 'o'}"] + SMALL)
    summary = run(cfg, "job-test")
    assert summary["clips_kept"] == 1 and summary["clips_dropped"] == 1
    assert "corrupt.mp4" in summary["failures"][0]["video"] and summary["failures"][0]["reason"]


def test_prep_refuses_a_missing_second_opinion_bundle_before_any_work(videos, tmp_path):
    from amg.prep import run
    from render.errors import AmgError

    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="prep", overrides=[f"video=[{videos[0]}]", f"out_dir={tmp_path / 'o'}",
                                                     f"second_opinion={tmp_path / 'heavy.task'}"] + SMALL)
    with pytest.raises(AmgError, match="second_opinion: .*heavy.task: pose model bundle not found"):
        run(cfg, "job-test")
    assert not (tmp_path / "o").exists()


def test_prep_redoes_the_tracks_when_the_pose_settings_change(videos, tmp_path):
    """A rerun with a second opinion (here the embedded bundle itself) or another num_poses finds the people
    again; a rerun with the same settings does not."""
    from amg.prep import run
    from reconstruction.pose import DEFAULT_MODEL

    def tracks_mtime(extra):
        with initialize_config_dir(config_dir=CONF, version_base=None):
            cfg = compose(config_name="prep", overrides=[f"video=[{videos[0]}]", f"out_dir={tmp_path / 'o'}"]
                          + SMALL + extra)
        assert run(cfg, "job-test")["clips_kept"] == 1
        return [f.stat().st_mtime_ns for f in sorted((tmp_path / "o").glob("clips/*/*/tracks/meta.json"))]

    first = tracks_mtime([])
    assert tracks_mtime([]) == first
    second = tracks_mtime([f"second_opinion={DEFAULT_MODEL}"])
    assert second != first
    assert tracks_mtime(["num_poses=2", f"second_opinion={DEFAULT_MODEL}"]) != second


def test_prep_multirun_joblib(videos, tmp_path):
    out = tmp_path / "multi"
    cmd = [sys.executable, "-m", "amg.prep", "--multirun", f"video={videos[0]},{videos[1]}", f"out_dir={out}",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"] + SMALL
    r = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    manifests = sorted((out / "manifests").glob("*.jsonl"))
    assert len(manifests) == 2  # one per job: shards never write the same file
    r = subprocess.run([sys.executable, "-m", "amg.prep", "video=unused", f"out_dir={out}", "merge_only=true",
                        f"hydra.run.dir={tmp_path / 'merge'}"], env=env(), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    check_outputs(out, 2)


def test_prep_output_trains_and_the_adapter_loads_in_generate(videos, tmp_path):
    """The loop of the three apps with tiny random models: prep -> train -> generate."""
    from amg.generate import run as generate
    from amg.prep import run as prep
    from amg.train import run as train
    from finetune.data import read_manifest
    from finetune.tiny import build_tiny_text_to_video

    out = tmp_path / "prep"
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="prep", overrides=[f"video={videos[0]}", f"out_dir={out}", "num_shards=1"] + SMALL)
    prep(cfg, "job-loop")
    assert len(read_manifest(out / "manifests")) == len(read_manifest(out / "manifest.jsonl")) == 1
    base = build_tiny_text_to_video(tmp_path / "t2v")
    with initialize_config_dir(config_dir=CONF, version_base=None):
        tcfg = compose(config_name="train", overrides=[
            f"backbone.path={base}", f"data.manifest={out / 'manifests'}", "data.num_frames=4", "data.height=32",
            "data.width=32", "train.steps=3", "train.lr=1e-3", "train.checkpoint_every=3", "train.progress=false",
            "train.tensorboard=false"])
    result = train(tcfg, tmp_path / "train")
    adapter = tmp_path / "train" / "adapter"
    assert adapter.is_dir() and result is not None
    gen_out = tmp_path / "gen"
    with initialize_config_dir(config_dir=CONF, version_base=None):
        gcfg = compose(config_name="generate", overrides=[
            "num_frames=4", "width=32", "height=32", "avatar.num_gaussians=1500", "progress=false",
            "model=modelscope", f"model.path={base}", f"model.adapter={adapter}", "model.num_inference_steps=2"])
    generate(gcfg, gen_out)
    video, _ = read_video(gen_out / "video.mp4")
    preview, _ = read_video(gen_out / "preview.mp4")
    assert video.shape == (4, 32, 32, 3) and preview.shape == (4, 32, 64, 3)


def test_manifest_rows_carry_per_frame_validity_to_the_loader(tmp_path):
    """prep's manifest rows are ClipRecords; their per-frame valid mask reaches the training samples."""
    from dataclasses import replace

    from amg.prep import merge_manifests, write_records
    from finetune.data import ClipDataset, read_manifest
    from finetune.tiny import write_tiny_clips
    from render.errors import AmgError

    clips = read_manifest(write_tiny_clips(tmp_path / "clips", count=1, frames=8, side=32, fps=8.0))
    valid = (True, True, False, False, True, True, True, True)
    rec = replace(clips[0], appearance=("a person wearing a red top",), people=1, valid=valid)
    write_records(tmp_path / "out" / "manifests" / "job.jsonl", [rec])
    (tmp_path / "out" / "manifests" / "empty.jsonl").write_text("")  # a job that kept nothing
    merged = read_manifest(merge_manifests(tmp_path / "out"))
    assert len(merged) == 1 and Path(merged[0].video).resolve() == Path(rec.video).resolve()
    assert replace(merged[0], video=rec.video, avatar=rec.avatar) == rec
    sample = ClipDataset(merged, num_frames=4, height=32, width=32, fps=4.0)[0]
    # 4 frames at 4 fps from an 8 fps clip: source frames 0, 2, 4, 6
    assert sample.valid.tolist() == [True, False, True, True]
    bad = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    bad["valid"] = bad["valid"][:3]
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(AmgError, match="one per frame"):
        read_manifest(tmp_path / "bad.jsonl")


def test_texture_from_frames_makes_the_avatar_render_look_like_the_filmed_person(videos, tmp_path):
    """texture_from_frames=true: the same clip's avatar video, re-rendered with Gaussians coloured from the
    footage, is closer to the footage inside the person than the caption-coloured one; only the render
    stage reruns; the written PLY reads back."""
    import shutil

    from amg.prep import run
    from render.ply import load_ply

    out = tmp_path / "o"
    with initialize_config_dir(config_dir=CONF, version_base=None):
        plain = compose(config_name="prep", overrides=[f"video={videos[0]}", f"out_dir={out}"] + SMALL)
        textured = compose(config_name="prep", overrides=[f"video={videos[0]}", f"out_dir={out}",
                                                          "texture_from_frames=true"] + SMALL)
    run(plain, "job-plain")
    (clip_dir,) = [d for d in out.glob("clips/*/*") if (d / "clip.mp4").is_file()]
    shutil.copy(clip_dir / "avatar.mp4", tmp_path / "caption_avatar.mp4")
    tracks_time = (clip_dir / "tracks" / "meta.json").stat().st_mtime_ns
    run(textured, "job-textured")
    assert (clip_dir / "tracks" / "meta.json").stat().st_mtime_ns == tracks_time  # only the render reran
    footage = read_video(clip_dir / "clip.mp4")[0].astype(np.float32)
    with np.load(clip_dir / "masks.npz") as d:
        person = d["masks"] > 0
    err = {name: np.abs(read_video(path)[0].astype(np.float32) - footage)[person].mean()
           for name, path in (("caption", tmp_path / "caption_avatar.mp4"), ("texture", clip_dir / "avatar.mp4"))}
    assert err["texture"] < 0.8 * err["caption"], err  # measured 9.4 against 13.7 (8-bit levels)
    report = json.loads((clip_dir / "texture.json").read_text())
    assert report and all(v["coverage"] > 0.2 for v in report.values()), report
    (ply,) = clip_dir.glob("avatar*.ply")
    assert len(load_ply(ply).means) > 1000
    # the studio round trip the README gives: the footage-coloured avatar re-rendered along a new camera path
    from amg.render import run as render

    track = ply.stem.removeprefix("avatar")
    with initialize_config_dir(config_dir=CONF, version_base=None):
        rcfg = compose(config_name="render", overrides=[
            "avatar=ply", f"avatar.ply={ply}", "motion=file", f"motion.path={clip_dir / 'tracks' / f'motion_{track}.npz'}",
            "camera=follow", "num_frames=8", "width=64", "height=64", "progress=false"])
    rendered = render(rcfg, tmp_path / "studio")
    orbit = read_video(rendered["avatar.mp4"])[0]
    assert orbit.shape == (8, 64, 64, 3) and (orbit.max(-1) > 20).mean() > 0.02
