"""The one training loop's steps and the apps on top of it (train and animate for every method)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from finetune.train import LoopConfig, TrainConfig, batch_indices, validate, weight_dtype
from render.errors import AmgError

CONF = str((Path(__file__).parents[1] / "conf").resolve())


def test_batch_indices_cover_each_epoch_once_and_depend_only_on_seed_and_step():
    n, bs, world = 7, 2, 2
    per_epoch = n // (bs * world)
    seen = [i for micro in range(per_epoch) for r in range(world) for i in batch_indices(micro, n, bs, world, r, 3)]
    assert len(seen) == len(set(seen)) == per_epoch * bs * world
    assert batch_indices(5, n, bs, world, 1, 3) == batch_indices(5, n, bs, world, 1, 3)
    assert batch_indices(0, n, bs, world, 0, 3) != batch_indices(per_epoch, n, bs, world, 0, 3) or n < 3
    with pytest.raises(AmgError, match="at least"):
        batch_indices(0, 3, 2, 2, 0, 0)


def test_validate_and_dtypes():
    validate(LoopConfig())
    assert weight_dtype("bf16") == torch.bfloat16
    with pytest.raises(AmgError, match="mixed_precision"):
        validate(LoopConfig(mixed_precision="fp8"))
    with pytest.raises(AmgError, match=">= 1"):
        validate(LoopConfig(grad_accum=0))


def test_amg_clip_numbers_have_one_source():
    from finetune.data import AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE, ClipDataset

    cfg = TrainConfig()
    assert (cfg.num_frames, cfg.height, cfg.width, cfg.fps) == (AMG_NUM_FRAMES, AMG_SIZE, AMG_SIZE, AMG_FPS)
    ds = ClipDataset([])
    assert (ds.num_frames, ds.height, ds.width, ds.fps) == (AMG_NUM_FRAMES, AMG_SIZE, AMG_SIZE, AMG_FPS)
    assert "num_frames" not in (Path(CONF) / "train.yaml").read_text().split("data:")[1].split("train:")[0].replace(
        "# num_frames", "")


@pytest.mark.parametrize("method,family", [("amg", "modelscope"), ("levitor", "svd"), ("posetraj", "svd"),
                                           ("imageconductor", "animatediff")])
def test_each_method_config_builds_its_method_on_its_backbone(method, family):
    from hydra.utils import instantiate

    import amg.train  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("train", overrides=[f"method={method}", "backbone.path=/x", "data.manifest=/y"])
    assert cfg.backbone.family == family
    m = instantiate(cfg.method)
    assert m.name == method and family in m.families
    spec = instantiate(cfg.backbone, _convert_="all")
    assert spec.family == family and spec.path == "/x"


def test_train_and_animate_apps_for_levitor(tmp_path):
    from amg.animate import run as animate
    from amg.train import run as train_app
    from finetune.testing import build_tiny_svd, write_tiny_render_clips

    base = build_tiny_svd(tmp_path / "svd")
    clips = write_tiny_render_clips(tmp_path / "clips", frames=2, side=16)
    small = ["method.conditioning_embedding_out_channels=[16,32]", "data.num_frames=2", "data.height=16",
             "data.width=16"]
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("train", overrides=["method=levitor", f"backbone.path={base}", f"data.manifest={clips}",
                                          "train.steps=1", "train.progress=false", "train.tensorboard=false"] + small)
        result = train_app(cfg, tmp_path / "run")
        acfg = compose("animate", overrides=["method=levitor", f"backbone.path={base}",
                                             f"adapter={result.adapter}", f"scene={clips / 'clip0'}",
                                             "+sampling.num_inference_steps=2"] + small)
        video = animate(acfg, tmp_path / "anim")
        with pytest.raises(AmgError, match="scene: missing"):
            animate(compose("animate", overrides=["method=levitor", f"backbone.path={base}"] + small), tmp_path / "bad")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["method"]["name"] == "levitor"
    from render.video import read_video

    frames, _ = read_video(video)
    assert frames.shape == (2, 16, 16, 3)
    assert (tmp_path / "anim" / "contact_sheet.png").is_file() and (tmp_path / "anim" / "meta.json").is_file()
