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


def _pelvis_world(c) -> np.ndarray:
    """The rendered person's pelvis ``(F,3)`` in world metres, from the body model posed by the motion."""
    from amg.build import build_scene

    person = build_scene(c).people[0]
    m, av = person.motion, person.avatar
    out = av.body(betas=av.betas.expand(len(m), -1), global_orient=m.global_orient, body_pose=m.body_pose,
                  transl=m.transl)
    return out.joints[:, 0].detach().double().numpy()


def _project(cameras: dict, points: np.ndarray) -> np.ndarray:
    """Pixels ``(F,2)`` of world points ``(F,3)`` through the OpenCV cameras of a written cameras.json."""
    uv = []
    for fr, p in zip(cameras["frames"], points):
        K, R, t = (np.asarray(fr[k], np.float64) for k in ("K", "R", "t"))
        x = K @ (R @ p + t)
        uv.append(x[:2] / x[2])
    return np.array(uv)


@pytest.mark.parametrize("camera", ["orbit", "zoom", "dolly", "pan", "static", "follow"])
def test_render_every_camera(tmp_path, camera):
    """Where the person lands: the mask's centre sits on the pelvis projected through the written cameras,
    and each path moves its cameras as its config says (checked on cameras.json with plain numpy)."""
    from amg.render import run

    over = TINY + [f"camera={camera}", "motion=walk"]
    run(cfg("render", over), tmp_path)
    masks = np.load(tmp_path / "masks.npz")["masks"]
    cams = json.loads((tmp_path / "cameras.json").read_text())
    F, H, W = masks.shape
    uv = _project(cams, _pelvis_world(cfg("render", over)))
    area = (masks == 1).sum(axis=(1, 2))
    assert (area > 0).all(), "the person is in view in every frame"
    for f in range(F):
        ys, xs = np.nonzero(masks[f] == 1)
        centre = np.array([xs.mean(), ys.mean()])
        assert np.abs(centre - uv[f]).max() < 0.12 * W, (f, centre, uv[f])
    K = np.array([fr["K"] for fr in cams["frames"]])
    R = np.array([fr["R"] for fr in cams["frames"]])
    t = np.array([fr["t"] for fr in cams["frames"]])
    centres = -np.einsum("fji,fj->fi", R, t)
    forward = R[:, 2]  # OpenCV: the camera's +z axis in world coordinates
    target = np.array([0.0, 0.9, 0.0])
    c = cfg("render", over).camera
    if camera == "orbit":
        a0, a1 = (np.degrees(np.arctan2(v[0], v[2])) for v in (centres[0] - target, centres[-1] - target))
        assert abs((a1 - a0) % 360 - float(c.degrees) % 360) < 1.0
        assert np.allclose(np.linalg.norm((centres - target)[:, [0, 2]], axis=1), float(c.radius) *
                           np.cos(np.radians(float(c.elevation_deg))), atol=1e-3)
    elif camera == "zoom":
        assert abs(K[-1, 0, 0] / K[0, 0, 0] - float(c.factor)) < 1e-3 and np.allclose(centres, centres[0])
        assert area[-1] > 1.8 * area[0], "the person grows on screen"
    elif camera == "dolly":
        d = np.linalg.norm(centres - target, axis=1)
        assert abs(d[0] - d[-1] - float(c.distance)) < 1e-3 and np.allclose(K, K[0])
        assert area[-1] > 1.3 * area[0]
    elif camera == "pan":
        turned = np.degrees(np.arccos(np.clip(forward[0, [0, 2]] @ forward[-1, [0, 2]] /
                                              np.linalg.norm(forward[0, [0, 2]]) /
                                              np.linalg.norm(forward[-1, [0, 2]]), -1, 1)))
        assert abs(turned - float(c.degrees)) < 0.5 and np.allclose(centres, centres[0])
        assert abs(uv[-1, 0] - uv[0, 0]) > 0.1 * W, "turning the camera moves the person across the image"
    elif camera == "static":
        assert np.allclose(R, R[0]) and np.allclose(t, t[0]) and np.allclose(K, K[0])
    elif camera == "follow":
        assert (np.abs(uv - [W / 2, H / 2]) < 0.2 * W).all(), "the camera keeps the person near the centre"


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


def test_amg_clip_numbers_agree_between_conf_and_python():
    """AMG's 16 frames / 8 fps / 256 px: conf/shared/amg_clip.yaml (the apps) and render.defaults (Python), and the
    DiT families' native clips: conf/shared/native/*.yaml and the methods' constants."""
    from omegaconf import OmegaConf

    from finetune.methods.amg_cogvideox import COGVIDEOX_FPS, COGVIDEOX_HEIGHT, COGVIDEOX_NUM_FRAMES, COGVIDEOX_WIDTH
    from finetune.methods.amg_wan import WAN_FPS, WAN_HEIGHT, WAN_NUM_FRAMES, WAN_WIDTH
    from render.defaults import AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE

    shared = Path(CONF) / "shared"
    for name, want in (("amg_clip", (AMG_NUM_FRAMES, AMG_FPS, AMG_SIZE, AMG_SIZE)),
                       ("native/wan", (WAN_NUM_FRAMES, WAN_FPS, WAN_WIDTH, WAN_HEIGHT)),
                       ("native/cogvideox", (COGVIDEOX_NUM_FRAMES, COGVIDEOX_FPS, COGVIDEOX_WIDTH, COGVIDEOX_HEIGHT))):
        c = OmegaConf.load(shared / f"{name}.yaml")
        assert (c.num_frames, c.fps, c.width, c.height) == want, name
    for app in ("generate.yaml", "render.yaml", "prep.yaml"):  # no app writes the numbers itself
        text = (Path(CONF) / app).read_text()
        assert not any(line.split("#")[0].strip() in ("num_frames: 16", "width: 256", "height: 256", "fps: 8")
                       for line in text.splitlines()), app


def test_motion_auto_without_a_prompt_plays_the_fallback_its_config_names():
    """``motion=auto`` in amg.render has no prompt to read: it plays ``motion.fallback`` (conf shows ``idle``)."""
    import torch
    from hydra import compose, initialize_config_dir

    from amg.build import build_motions

    with initialize_config_dir(config_dir=CONF, version_base=None):
        auto = compose(config_name="render", overrides=["motion=auto"])
        assert auto.motion.fallback == "idle"
        wave = compose(config_name="render", overrides=["motion=auto", "motion.fallback=wave"])
        ref = compose(config_name="render", overrides=["motion=wave"])
    (got,), (want,) = build_motions(wave.motion, 8, 8.0), build_motions(ref.motion, 8, 8.0)
    assert torch.equal(got.body_pose, want.body_pose)
    (idle,) = build_motions(auto.motion, 8, 8.0)
    assert not torch.equal(idle.body_pose, want.body_pose)
