import csv

import numpy as np
import pytest
import torch

from finetune.model import load_adapter, load_base
from finetune.tiny import build_tiny_text_to_video, write_tiny_clips
from finetune.train import TrainConfig, latest_checkpoint, train
from render.errors import AmgError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    base = build_tiny_text_to_video(root / "model", seed=0)
    manifest = write_tiny_clips(root / "clips", count=4, frames=4, side=16)
    return base, manifest, root


def _cfg(**kw):
    base = dict(steps=50, lr=3e-3, num_frames=4, height=16, width=16, fps=8.0, checkpoint_every=25,
                progress=False, tensorboard=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_the_loss_and_changes_only_trainable_weights(setup):
    base, manifest, root = setup
    out = root / "run"
    result = train(base, manifest, out, _cfg(latent_cache=str(root / "cache")))
    losses = np.array([result.losses[s] for s in range(1, 51)])
    assert np.all(np.isfinite(losses))
    assert losses[-15:].mean() < 0.8 * losses[:15].mean()

    before = load_base(base).unet.state_dict()
    trained = load_base(base).unet
    load_adapter(trained, result.adapter, load_base(base).fingerprint)
    changed = [k for k, v in trained.state_dict().items()
               if k in before and before[k].shape == v.shape and not torch.equal(before[k], v)]
    assert changed == ["conv_in.bias"] or set(changed) <= {"conv_in.weight", "conv_in.bias"}
    frozen = {k: v for k, v in trained.state_dict().items() if "lora_" not in k and not k.startswith("conv_in.")}
    for k, v in frozen.items():
        key = k.replace(".base_layer", "")
        assert torch.equal(v, before[key]), k
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in trained.state_dict().items())

    with (out / "loss.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "loss", "lr", "seconds"] and len(rows) == 51
    assert latest_checkpoint(out).name == "step-000050"
    assert (out / "meta.json").is_file() and len(list((root / "cache").glob("*.safetensors"))) == 4


def test_resume_reproduces_the_uninterrupted_losses(setup):
    base, manifest, root = setup
    kw = dict(steps=6, checkpoint_every=3, grad_accum=2, spatial_loss_alpha=0.5, caption_dropout=0.3,
              tensorboard=True)
    full = train(base, manifest, root / "full", _cfg(**kw))
    interrupted = _cfg(**{**kw, "steps": 3})
    part = train(base, manifest, root / "part", interrupted)
    assert sorted(part.losses) == [1, 2, 3]
    rest = train(base, manifest, root / "part", _cfg(**kw))
    assert rest.start_step == 3 and sorted(rest.losses) == [4, 5, 6]
    for s in range(1, 7):
        got = part.losses[s] if s <= 3 else rest.losses[s]
        assert got == full.losses[s], s
    with (root / "part" / "loss.csv").open() as f:
        assert [int(r[0]) for r in list(csv.reader(f))[1:]] == [1, 2, 3, 4, 5, 6]
    assert any((root / "part" / "tensorboard").iterdir())
    a = load_base(base).unet
    b = load_base(base).unet
    fp = load_base(base).fingerprint
    load_adapter(a, root / "full" / "adapter", fp)
    load_adapter(b, root / "part" / "adapter", fp)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_config_is_a_one_line_error(setup):
    base, manifest, root = setup
    with pytest.raises(AmgError, match="mixed_precision"):
        train(base, manifest, root / "bad", _cfg(mixed_precision="fp8"))
    with pytest.raises(AmgError, match="at least batch_size"):
        train(base, manifest, root / "bad", _cfg(batch_size=8))


def test_train_app_composes_the_config_and_writes_an_adapter(setup, tmp_path):
    from hydra import compose, initialize_config_dir

    from amg.train import run
    from finetune.pipeline import AMGPipeline

    base, manifest, root = setup
    conf = str((__import__("pathlib").Path(__file__).parents[1] / "conf").resolve())
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose("train", overrides=[f"backbone.path={base}", f"data.manifest={manifest}", "data.num_frames=4",
                                          "data.height=16", "data.width=16", "train.steps=2",
                                          "train.progress=false", "train.tensorboard=false"])
        assert cfg.train.lr == 1e-6 and cfg.method.rank == 4 and cfg.data.fps == 8
        assert cfg.data.num_frames == 4 and cfg.backbone.family == "modelscope"
        result = run(cfg, tmp_path)
        # the structured schema refuses unknown keys when the config is composed
        with pytest.raises(Exception, match="lr_typo"):
            compose("train", overrides=[f"backbone.path={base}", f"data.manifest={manifest}", "train.lr_typo=1"])
        with pytest.raises(AmgError, match="data.manifest: missing"):
            run(compose("train", overrides=[f"backbone.path={base}"]), tmp_path / "bad")
    assert sorted(result.losses) == [1, 2]
    frames = AMGPipeline.from_pretrained(base, adapter=result.adapter)(
        "a man walks", np.zeros((4, 16, 16, 3), np.uint8), num_inference_steps=2, progress=False)
    assert frames.shape == (4, 16, 16, 3)
