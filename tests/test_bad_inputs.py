"""Every loader on truncated, empty, random-byte and wrong-schema files: one-line AmgError naming the file.

And the same files through the apps: exit status 2, one line on stderr, nothing on stdout, no run folder.
Text formats are also fuzzed with hypothesis: any text either loads or raises AmgError, nothing else.
"""

import importlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from app_helpers import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render.errors import AmgError

TINY = ["num_frames=2", "width=32", "height=32", "avatar.num_gaussians=300", "progress=false"]
KINDS = ["truncated", "empty", "random", "wrong_schema"]


# good files (to truncate) and wrong-schema files, per loader -------------------------------------------
def _motion():
    from avatars import motion_library

    return motion_library.make("wave", seconds=0.5, fps=8)


def good_motion_npz(d):
    f = d / "good.npz"
    _motion().save(f)
    return f.read_bytes()


def good_amass(d):
    m = _motion()
    F = len(m)
    poses = np.zeros((F, 156), np.float32)
    poses[:, :72] = m.full_pose.reshape(F, 72).numpy()
    f = d / "g.npz"
    np.savez(f, poses=poses, trans=m.transl.numpy(), mocap_framerate=np.array(30.0), betas=np.zeros(16),
             gender=np.array("neutral"))
    return f.read_bytes()


def good_pkl(d):
    m = _motion()
    return pickle.dumps({"smpl_poses": m.full_pose.reshape(len(m), 72).numpy(), "smpl_trans": m.transl.numpy()})


def good_bvh(d):
    from avatars.motion import save_bvh

    f = d / "g.bvh"
    save_bvh(_motion(), f)
    return f.read_bytes()


def _trace_arrays(n=4):
    return {"reorganize_idx": np.arange(n), "track_ids": np.ones(n, int), "smpl_thetas": np.zeros((n, 72)),
            "smpl_betas": np.zeros((n, 10)), "cam_trans": np.tile([0.0, 0.0, 5.0], (n, 1))}


def good_trace(d):
    f = d / "g.npz"
    np.savez(f, **_trace_arrays())
    return f.read_bytes()


def good_body(d):
    rng = np.random.default_rng(0)
    f = d / "g.npz"
    np.savez(f, v_template=rng.random((50, 3)), shapedirs=rng.random((50, 3, 4)), J_regressor=rng.random((24, 50)),
             weights=rng.random((50, 24)), f=rng.integers(0, 50, (40, 3)))
    return f.read_bytes()


def _camera_path():
    from render.camera import CameraPath

    return CameraPath.orbit(3, width=32, height=32)


def good_camera_json(d):
    return json.dumps(_camera_path().to_dict()).encode()


def good_camera_yaml(d):
    import yaml

    return yaml.safe_dump(_camera_path().to_dict()).encode()


def good_nerfstudio(d):
    return json.dumps(_camera_path().to_nerfstudio()).encode()


def good_tum(d):
    return _camera_path().to_tum().encode()


def good_ply(d):
    from avatars.body import BodyModel
    from avatars.gaussians import GaussianAvatar

    f = d / "g.ply"
    GaussianAvatar.from_body(BodyModel.load("default"), "a man", num_gaussians=200).save(f)
    return f.read_bytes()


def good_video(d):
    from render.video import write_video

    f = d / "g.mp4"
    write_video(f, np.zeros((3, 16, 16, 3), np.uint8), fps=8)
    return f.read_bytes()


def good_manifest(d):
    rows = [{"video": f"c{i}.mp4", "avatar": f"a{i}.mp4", "caption": "a park", "frames": [0, 8], "fps": 8.0}
            for i in range(3)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wrong(d, suffix, write):
    f = d / f"wrong{suffix}"
    write(f)
    return f


def _npz(**arrays):
    def write(f):
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)
    return write


def _text(text):
    return lambda f: f.write_text(text)


LOADERS = {
    # name: (suffix, good bytes, wrong-schema writer, loader)
    "motion npz": (".npz", good_motion_npz, _npz(body_pose=np.zeros((4, 22, 3)), fps=np.array(8.0)), "motion"),
    "motion AMASS": (".npz", good_amass, _npz(poses=np.zeros((4, 60)), trans=np.zeros((4, 3))), "motion"),
    "motion pkl": (".pkl", good_pkl, lambda f: f.write_bytes(pickle.dumps({"smpl_poses": "not poses"})), "motion"),
    "motion BVH": (".bvh", good_bvh, _text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n}\nMOTION\nFrames: 2\n"), "motion"),
    "motion TRACE": (".npz", good_trace, _npz(**{**_trace_arrays(), "smpl_thetas": np.zeros((4, 10))}), "motion"),
    "body": (".npz", good_body, _npz(v_template=np.zeros((3, 3))), "body"),
    "camera JSON": (".json", good_camera_json, _text('[1, 2, 3]'), "camera"),
    "camera YAML": (".yaml", good_camera_yaml, _text("width: 32\nframes_typo: []\n"), "camera"),
    "camera nerfstudio": (".json", good_nerfstudio,
                          _text(json.dumps({"render_height": 32, "camera_path": [{"camera_to_world": [1] * 15}]})),
                          "camera"),
    "camera TUM": (".txt", good_tum, _text("0 1 2 3 4\n"), "camera"),
    "PLY": (".ply", good_ply, _text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n"),
            "ply"),
    "video": (".mp4", good_video, _text("not a video at all\n"), "video"),
    "manifest": (".jsonl", good_manifest, _text('{"video": "a.mp4"}\n'), "manifest"),
    "adapter": ("", None, None, "adapter"),
}


def load(kind: str, path: Path):
    """Call the loader of ``kind`` on ``path``."""
    if kind == "motion":
        from amg.build import load_motion_file

        return load_motion_file(str(path), 8.0)
    if kind == "body":
        from avatars.body import BodyModel

        return BodyModel.load(str(path))
    if kind == "camera":
        from render.camera import CameraPath

        return CameraPath.load(path, width=32, height=32)
    if kind == "ply":
        from avatars.body import BodyModel
        from avatars.gaussians import GaussianAvatar

        return GaussianAvatar.load(path, BodyModel.load("default"))
    if kind == "video":
        from render.video import read_video

        return read_video(path)
    if kind == "manifest":
        from finetune.data import read_manifest

        return read_manifest(path)
    raise AssertionError(kind)


def bad_file(tmp_path: Path, loader: str, kind: str) -> Path:
    suffix, good, wrong_writer, _ = LOADERS[loader]
    if kind == "wrong_schema":
        return wrong(tmp_path, suffix, wrong_writer)
    data = good(tmp_path)
    f = tmp_path / f"{kind}{suffix}"
    if kind == "truncated":
        f.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        f.write_bytes(b"")
    else:
        f.write_bytes(np.random.default_rng(1).integers(0, 256, max(64, len(data) // 4), np.uint8).tobytes())
    return f


FILE_LOADERS = [k for k in LOADERS if k != "adapter"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", FILE_LOADERS)
def test_loader_gives_one_line_error_naming_the_file(tmp_path, loader, kind):
    f = bad_file(tmp_path, loader, kind)
    with pytest.raises(AmgError) as e:
        load(LOADERS[loader][3], f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg, msg


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from finetune.model import load_base, prepare_unet, save_adapter
    from finetune.tiny import build_tiny_text_to_video

    root = tmp_path_factory.mktemp("base")
    folder = build_tiny_text_to_video(root / "base", seed=0)
    m = load_base(folder)
    good = save_adapter(prepare_unet(m.unet, rank=2), root / "good_adapter", m.fingerprint)
    return folder, good


def bad_adapter(tmp_path: Path, good: Path, kind: str) -> tuple[Path, Path]:
    """An adapter folder with one broken file; returns (folder, the broken file)."""
    import shutil

    d = tmp_path / f"adapter_{kind}"
    shutil.copytree(good, d)
    # peft's layout (finetune.adapters): adapter_config.json + adapter_model.safetensors
    target = d / ("adapter_config.json" if kind in ("empty", "wrong_schema") else "adapter_model.safetensors")
    data = target.read_bytes()
    if kind == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "random":
        target.write_bytes(np.random.default_rng(2).integers(0, 256, 512, np.uint8).tobytes())
    else:
        target.write_text(json.dumps({"rank": 4, "format": "amg-adapter/1"}))  # not peft's schema
    return d, target


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_loader(tmp_path, base, kind):
    from finetune.model import load_adapter, load_base

    folder, good = base
    d, broken = bad_adapter(tmp_path, good, kind)
    m = load_base(folder)
    with pytest.raises(AmgError) as e:
        load_adapter(m.unet, d, m.fingerprint)
    msg = str(e.value)
    assert "\n" not in msg and str(broken) in msg, msg


# the apps --------------------------------------------------------------------------------------------------
APP = {
    "motion": ("amg.generate", lambda f: TINY + ["prompt=a man waves", "motion=file", f"motion.path={f}"]),
    "body": ("amg.render", lambda f: TINY + ["body=smpl", f"body.path={f}"]),
    "camera": ("amg.render", lambda f: TINY + ["camera=file", f"camera.path={f}"]),
    "ply": ("amg.render", lambda f: TINY + [f"avatar.ply={f}"]),
    "video": ("amg.evaluate", lambda f: [f"generated={f}", f"reference={f}"]),
    "manifest": ("amg.train", lambda f: [f"backbone.path={f.parent / 'base'}", f"data.manifest={f}"]),
}


# each app-reachable loader once, the kinds spread over them (every kind of every loader is covered above)
@pytest.mark.parametrize("loader,kind", [("motion npz", "truncated"), ("motion BVH", "random"), ("body", "empty"),
                                         ("camera JSON", "random"), ("camera TUM", "wrong_schema"),
                                         ("PLY", "truncated"), ("video", "truncated"), ("manifest", "wrong_schema")])
def test_app_exits_2_with_one_line_and_no_output(tmp_path, loader, kind, capsys, monkeypatch, base):
    f = bad_file(tmp_path, loader, kind)
    module, args = APP[LOADERS[loader][3]]
    if loader == "manifest":
        import shutil

        shutil.copytree(base[0], tmp_path / "base")
    code, out, err, run_dir = cli(module, args(f), tmp_path, capsys, monkeypatch)
    assert code == 2 and out == "", (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(f) in lines[0], err
    assert not run_dir.exists()


def test_generate_with_bad_adapter_exits_2(tmp_path, base, capsys, monkeypatch):
    folder, good = base
    d, broken = bad_adapter(tmp_path, good, "random")
    run_dir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["amg.generate"] + TINY + ["model=modelscope", f"model.path={folder}",
                                                               f"model.adapter={d}", f"hydra.run.dir={run_dir}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        importlib.import_module("amg.generate").main()
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == "" and err.count("\n") == 1 and str(broken) in err, err
    assert not run_dir.exists()


# fuzzing the text formats ----------------------------------------------------------------------------------
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True, allow_subnormal=False) | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(
                               st.sampled_from(["frames", "K", "R", "t", "width", "height", "fps", "keyframes",
                                                "camera_path", "camera_to_world", "fov", "render_height", "eye",
                                                "target", "num_frames"]), c, max_size=5), max_leaves=20)


def _loads_or_amg_error(kind, f):
    try:
        load(kind, f)
    except AmgError as e:
        assert "\n" not in str(e) and str(f) in str(e), str(e)


@FUZZ
@given(data=json_values, suffix=st.sampled_from([".json", ".yaml"]))
def test_fuzz_camera_files(tmp_path, data, suffix):
    import yaml

    f = tmp_path / f"cam{suffix}"
    f.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    _loads_or_amg_error("camera", f)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("0123456789 .-e\n#nai")), max_size=200))
def test_fuzz_tum(tmp_path, text):
    f = tmp_path / "cam.txt"
    f.write_text(text)
    _loads_or_amg_error("camera", f)


@FUZZ
@given(lines=st.lists(st.dictionaries(st.sampled_from(["video", "avatar", "caption", "frames", "fps"]),
                                      json_values, max_size=5), max_size=4))
def test_fuzz_manifest(tmp_path, lines):
    f = tmp_path / "m.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    _loads_or_amg_error("manifest", f)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=4000), junk=st.text(max_size=20))
def test_fuzz_bvh(tmp_path, cut, junk):
    text = good_bvh(tmp_path).decode()
    f = tmp_path / "m.bvh"
    f.write_text(text[:cut] + junk + text[cut + len(junk):])
    _loads_or_amg_error("motion", f)
