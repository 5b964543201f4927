"""model=wan_vace: render outputs through diffusers' WanVACEPipeline on a tiny random VACE model."""

import numpy as np
import pytest
import torch

from finetune.pipelines.wan_vace import depth_to_image, generate_wan_vace, load_wan_vace, person_references, vace_inputs
from finetune.testing_dit import build_tiny_wan
from render.errors import AmgError


def _scene(frames=9, side=16):
    """Two people as coloured boxes (ids 1 and 2) moving right, with depth 2 m and 3 m."""
    rgb = np.zeros((frames, side, side, 3), np.uint8)
    masks = np.zeros((frames, side, side), np.int32)
    depth = np.zeros((frames, side, side), np.float32)
    for f in range(frames):
        masks[f, 2:10, f % 6:(f % 6) + 4] = 1
        masks[f, 8:14, 9:13] = 2
        rgb[f][masks[f] == 1], rgb[f][masks[f] == 2] = (200, 40, 40), (40, 40, 200)
        depth[f][masks[f] == 1], depth[f][masks[f] == 2] = 2.0, 3.0
    return rgb, masks, depth


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_wan_vace(build_tiny_wan(tmp_path_factory.mktemp("vace"), vace=True), device="cpu")


def test_render_outputs_reach_the_pipeline(pipe):
    rgb, masks, depth = _scene()
    seen = {}
    stock = pipe.preprocess_conditions

    def hook(video, mask, reference_images, *rest):
        seen.update(video=video, mask=mask, reference_images=reference_images)
        return stock(video, mask, reference_images, *rest)

    pipe.preprocess_conditions = hook
    try:
        inputs = vace_inputs(rgb, masks=masks, depth=depth, mask_mode="persons", references=True)
        out = generate_wan_vace(pipe, "two people dance on a beach", inputs, num_inference_steps=2, guidance_scale=3.0,
                                max_sequence_length=16, progress=False)
    finally:
        del pipe.preprocess_conditions
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(np.stack([np.asarray(v) for v in seen["video"]]), rgb)
    got_mask = np.stack([np.asarray(m)[..., 0] for m in seen["mask"]])
    assert np.array_equal(got_mask, np.where(masks > 0, 255, 0))
    refs = seen["reference_images"]
    assert len(refs) == 2 and all(np.asarray(r).shape == (16, 16, 3) for r in refs)
    # each reference holds its person's full box (8x4 and 6x4 pixels) on white
    for ref, colour, area in ((refs[0], (200, 40, 40), 32), (refs[1], (40, 40, 200), 24)):
        ref = np.asarray(ref)
        person = (ref == colour).all(-1)
        assert person.sum() == area and (ref[~person] == 255).all()


def test_depth_control_and_the_conditioning_matters(pipe):
    rgb, masks, depth = _scene()
    inputs = vace_inputs(rgb, masks=masks, depth=depth, control="depth")
    frames = np.stack([np.asarray(v) for v in inputs.video])
    assert np.array_equal(frames, depth_to_image(depth))
    # near is brighter, empty is black, and every mask pixel is "generate"
    assert frames[0][masks[0] == 1].min() > frames[0][masks[0] == 2].max() > 0 and frames[0][masks[0] == 0].max() == 0
    assert all(np.asarray(m).min() == 255 for m in inputs.mask)
    kw = dict(num_inference_steps=2, guidance_scale=1.0, max_sequence_length=16, progress=False, seed=3,
              output_type="latent")
    a = generate_wan_vace(pipe, "a person", inputs, **kw)
    b = generate_wan_vace(pipe, "a person", vace_inputs(rgb, masks=masks), **kw)
    again = generate_wan_vace(pipe, "a person", inputs, **kw)
    assert torch.equal(a, again) and (a - b).abs().max().item() > 1e-4


def test_bad_inputs_are_one_line_errors():
    rgb, masks, depth = _scene()
    with pytest.raises(AmgError, match="4n \\+ 1"):
        vace_inputs(rgb[:8])
    with pytest.raises(AmgError, match="no depth"):
        vace_inputs(rgb, control="depth")
    with pytest.raises(AmgError, match="no person masks"):
        vace_inputs(rgb, mask_mode="persons")
    with pytest.raises(AmgError, match="expected \\(F, H, W\\)"):
        vace_inputs(rgb, masks=masks[:, :8])
    assert len(person_references(rgb, np.zeros_like(masks))) == 0


def test_generate_app_with_model_wan_vace(tmp_path):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from amg.generate import run
    from render.video import read_video

    folder = build_tiny_wan(tmp_path / "vace", vace=True)
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose(config_name="generate", overrides=[
            "num_frames=5", "width=32", "height=32", "avatar.num_gaussians=1500", "progress=false", "model=wan_vace",
            f"model.path={folder}", "model.num_inference_steps=2", "model.max_sequence_length=16",
            "model.mask_mode=persons", "model.references=true"])
    written = run(cfg, tmp_path / "out")
    video, _ = read_video(written["video.mp4"])
    assert video.shape == (5, 32, 32, 3)
    preview, _ = read_video(written["preview.mp4"])
    assert preview.shape == (5, 32, 64, 3)


def test_generate_renders_at_the_model_native_clip_and_refuses_sizes_it_cannot_take(tmp_path):
    """model=wan* defaults the render stage to Wan's 81 frames at 480x832, 16 fps; a frame count or side
    the VAE and patches cannot take is one line before any rendering (nothing written)."""
    from pathlib import Path

    import pytest
    from hydra import compose, initialize_config_dir

    from amg.generate import run
    from render.errors import AmgError

    folder = build_tiny_wan(tmp_path / "vace", vace=True)
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base=None):
        native = compose(config_name="generate", overrides=["model=wan_vace", f"model.path={folder}"])
        assert (native.num_frames, native.height, native.width, native.fps) == (81, 480, 832, 16.0)
        assert (native.camera.width, native.camera.height, native.camera.fps) == (832, 480, 16.0)
        amg = compose(config_name="generate")
        assert (amg.num_frames, amg.height, amg.width, amg.fps) == (16, 256, 256, 8.0)
        for bad, match in ((["num_frames=16", "width=32", "height=32"], r"num_frames=16: model=wan_vace takes 4n \+ 1"),
                           (["num_frames=5", "width=40", "height=32"], "width=40: model=wan_vace takes multiples of 16")):
            cfg = compose(config_name="generate", overrides=[*bad, "model=wan_vace", f"model.path={folder}",
                                                             "progress=false", "model.max_sequence_length=16"])
            out = tmp_path / bad[0]
            with pytest.raises(AmgError, match=match):
                run(cfg, out)
            assert not any(p.suffix in (".mp4", ".npz", ".png") for p in out.rglob("*")) if out.exists() else True
