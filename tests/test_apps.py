"""The Hydra apps end to end, on tiny settings (few frames, small images, few Gaussians)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from render.errors import AmgError
from render.video import read_video

CONF = str(Path(__file__).resolve().parents[1] / "conf")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["num_frames=4", "width=64", "height=64", "avatar.num_gaussians=1500", "progress=false"]


def cfg(name, overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_generate_default_prompt_writes_conditions_and_preview(tmp_path, capsys):
    from amg.generate import NO_MODEL_HINT, run

    written = run(cfg("generate", TINY + ["conditions=[avatar,depth,mask,bbox3d,levitor,flow,traj]"]), tmp_path)
    for name in ("avatar.mp4", "depth.npz", "masks.npz", "cameras.json", "contact_sheet.png", "prompt.json",
                 "preview.mp4", "preview.gif", "bbox3d.npy", "levitor_control.npy", "flow.npy", "traj.npy"):
        assert (tmp_path / name).is_file(), name
    assert NO_MODEL_HINT in capsys.readouterr().out
    prompt = json.loads((tmp_path / "prompt.json").read_text())
    assert len(prompt["people"]) == 2 and prompt["action"] == "dance"
    frames, fps = read_video(tmp_path / "avatar.mp4")
    assert frames.shape == (4, 64, 64, 3) and fps == 8
    masks = np.load(tmp_path / "masks.npz")["masks"]
    assert set(np.unique(masks)) == {0, 1, 2}  # both people visible
    assert np.load(tmp_path / "levitor_control.npy").shape == (4, 3, 64, 64)
    assert np.load(tmp_path / "flow.npy").shape == (2, 4, 64, 64)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["stage"] == "generate" and meta["people"] == 2
    assert {"avatar.mp4", "prompt.json"} <= set(written)


@pytest.mark.parametrize("camera", ["orbit", "zoom", "dolly", "pan", "static", "follow"])
def test_render_every_camera(tmp_path, camera):
    from amg.render import run

    run(cfg("render", TINY + [f"camera={camera}", "motion=walk"]), tmp_path)
    frames, _ = read_video(tmp_path / "avatar.mp4")
    alpha = (frames.max(-1) > 10).mean(axis=(1, 2))
    assert (alpha > 0.01).all(), "the person is in view in every frame"


def test_render_camera_file_and_pair_motion(tmp_path):
    from amg.render import run
    from render.camera import CameraPath

    path = tmp_path / "camera_path.json"
    CameraPath.orbit(5, degrees=90, radius=4.0, width=64, height=64).save(path)
    out = tmp_path / "out"
    run(cfg("render", TINY + ["camera=file", f"camera.path={path}", "motion=dance_pair",
                              "avatar.appearance=[a woman in a red dress,a man in a blue shirt]"]), out)
    frames, _ = read_video(out / "avatar.mp4")
    assert len(frames) == 5  # the camera file decides the length
    assert set(np.unique(np.load(out / "masks.npz")["masks"])) >= {1, 2}


def test_bad_config_values_give_one_line_errors(tmp_path):
    from amg.generate import run

    with pytest.raises(AmgError, match="prompt"):
        run(cfg("generate", TINY + ["prompt=''"]), tmp_path)
    with pytest.raises(AmgError, match="motion=flying"):
        run(cfg("generate", TINY + ["motion=walk", "motion.name=flying"]), tmp_path)
    with pytest.raises(AmgError, match="conditions"):
        run(cfg("generate", TINY + ["conditions=[avatar,sparkles]"]), tmp_path)


def test_cli_prints_user_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYOPENGL_PLATFORM": "osmesa"}
    p = subprocess.run([sys.executable, "-m", "amg.render", "camera=file", f"camera.path={tmp_path / 'nope.json'}",
                        f"hydra.run.dir={tmp_path / 'run'}"] + TINY, capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "nope.json" in err[-1] and "Traceback" not in p.stderr


@pytest.mark.parametrize("fmt", ["npz", "bvh"])
def test_generate_with_motion_file(tmp_path, fmt):
    from amg.generate import run
    from avatars import motion_library
    from avatars.motion import save_bvh

    m = motion_library.make("wave", seconds=1.0, fps=8)
    f = tmp_path / f"wave.{fmt}"
    m.save(f) if fmt == "npz" else save_bvh(m, f)
    out = tmp_path / "out"
    run(cfg("generate", TINY + ["prompt=a man in a green jacket waves", "motion=file", f"motion.path={f}"]), out)
    frames, _ = read_video(out / "avatar.mp4")
    assert len(frames) == 4 and (np.load(out / "masks.npz")["masks"] == 1).any()
