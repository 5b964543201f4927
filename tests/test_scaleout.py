"""The scale-out paths, run for real: prep shards through submitit (the SLURM preset's machinery) then a
merge, a no-op rerun that writes nothing, prep that keeps nothing, and two-rank training under accelerate."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prep_helpers import ROOT, SMALL, render_videos


def env():
    return {**os.environ, "PYOPENGL_PLATFORM": "osmesa", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two short videos of one avatar each, rendered by the project."""
    return render_videos(tmp_path_factory.mktemp("videos"))


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its inode and modification time: any rewrite changes one of them."""
    return {str(f.relative_to(folder)): (f.stat().st_ino, f.stat().st_mtime_ns)
            for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.mark.slow
def test_prep_shards_with_submitit_then_merge_and_a_noop_rerun(videos, tmp_path):
    out = tmp_path / "prep"
    shards = [sys.executable, "-m", "amg.prep", "--multirun", f"video=[{videos[0]},{videos[1]}]", f"out_dir={out}",
              "num_shards=2", "shard=0,1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
              "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"] + SMALL
    merge = [sys.executable, "-m", "amg.prep", f"out_dir={out}", "merge_only=true",
             f"hydra.run.dir={tmp_path / 'merge'}"]
    r = subprocess.run(shards, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(f.name for f in (out / "manifests").iterdir()) == ["shard-0000-of-0002.jsonl",
                                                                     "shard-0001-of-0002.jsonl"]
    assert list((tmp_path / "sweep").glob(".submitit/*")), "the jobs ran through submitit"
    assert not (out / "manifest.jsonl").exists(), "shards never write the merged manifest"
    r = subprocess.run(merge, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    from finetune.data import read_manifest
    from render.video import read_video

    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == 2
    sources = set()
    for rec in records:
        clip, _ = read_video(rec.video)
        avatar, _ = read_video(rec.avatar)
        assert clip.shape == avatar.shape == (8, 128, 128, 3)
        sources.add(json.loads((Path(rec.video).parent / "meta.json").read_text())["config"]["shard"])
    assert sources == {0, 1}, "each shard made one of the clips"
    assert not [f for f in out.rglob("*") if ".part" in f.name]

    before = snapshot(out)
    r = subprocess.run(shards, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(merge, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert snapshot(out) == before, "a rerun with nothing to do writes nothing"


def test_prep_that_keeps_nothing_exits_2_with_the_reasons(tmp_path, capsys, monkeypatch):
    from render.video import write_video

    empty = write_video(tmp_path / "empty_room.mp4", np.full((10, 96, 96, 3), 90, np.uint8), fps=8)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["amg.prep", f"video={empty}", f"out_dir={tmp_path / 'prep'}",
                                      f"hydra.run.dir={tmp_path / 'run'}"] + SMALL)
    with pytest.raises(SystemExit) as e:
        importlib.import_module("amg.prep").main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: prep job-") and "no clip kept from 1 videos" in err[0], err
    summary = json.loads(next((tmp_path / "prep" / "summaries").glob("*.json")).read_text())
    assert summary["clips_kept"] == 0 and summary["dropped_reasons"], summary
    assert all(k in err[0] for k in summary["dropped_reasons"])


# two ranks under accelerate ---------------------------------------------------------------------------------
TRAIN = ["data.num_frames=4", "data.height=16", "data.width=16", "train.lr=3e-3", "train.steps=4",
         "train.checkpoint_every=2", "train.progress=false", "train.tensorboard=false", "method.rank=2"]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torch's launcher starts the ranks in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo += children.get(q, [])
    return out


def _kill_tree(p: subprocess.Popen) -> None:
    """SIGKILL the launcher and every rank it started, and wait until all are gone."""
    tree = _process_tree(p.pid)
    for q in tree:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(_alive(q) for q in tree[1:]):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate(base, manifest, run_dir, batch_size, extra=()):
    """``accelerate launch`` of amg.train on two CPU ranks (gloo).

    accelerate 1.15 runs ``--cpu --num_processes 2`` as one plain process; two CPU ranks take its
    multi-process launcher with the CPU forced (``ACCELERATE_USE_CPU=1``, see :func:`_accelerate_env`).
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "amg.train", f"backbone.path={base}", f"data.manifest={manifest}",
            f"train.batch_size={batch_size}", f"hydra.run.dir={run_dir}"] + TRAIN + list(extra)


def _accelerate_env():
    return {**env(), "ACCELERATE_USE_CPU": "1"}


def _reference_two_rank_training(base, manifest, steps, batch_size, lr, rank, seed=0):
    """The same optimisation as two data-parallel ranks, written as one plain loop in one process.

    Rank ``r`` takes every other batch of the epoch order and draws its noise from its own generator; data
    parallelism averages the two ranks' gradients, so one step here averages the two losses.
    """
    from finetune.data import ClipDataset, LatentDataset, collate_latents
    from finetune.model import load_base, mark_trainable, prepare_unet, trainable_state_dict
    from finetune.train import _epoch_order, diffusion_loss

    model = load_base(base)
    unet = prepare_unet(model.unet, rank=rank, seed=seed)
    params = mark_trainable(unet)
    for p in params:
        p.data = p.data.float()
    unet.train()
    data = LatentDataset(ClipDataset(manifest, num_frames=4, height=16, width=16, fps=8.0), model.vae,
                         model.text_encoder, model.tokenizer)
    world = 2
    per_epoch = len(data) // (batch_size * world)
    gens = [torch.Generator().manual_seed(seed * 7919 + 1 + r) for r in range(world)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    for step in range(steps):
        epoch, j = divmod(step, per_epoch)
        order = _epoch_order(len(data), seed, epoch)
        opt.zero_grad()
        losses = []
        for r in range(world):
            first = (j * world + r) * batch_size
            batch = collate_latents([data[int(i)] for i in order[first:first + batch_size]])
            torch.rand(batch.text.shape[0], generator=gens[r])  # the caption-dropout draw (dropout 0)
            losses.append(diffusion_loss(unet, model.scheduler, batch.video, batch.avatar, batch.text, gens[r]))
        (sum(losses) / world).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return trainable_state_dict(unet)


@pytest.mark.slow
def test_two_rank_accelerate_training_matches_one_process_and_resumes_after_a_kill(tmp_path):
    from finetune.adapters import read_adapter
    from finetune.tiny import build_tiny_text_to_video, write_tiny_clips

    base = build_tiny_text_to_video(tmp_path / "base", seed=0)
    manifest = write_tiny_clips(tmp_path / "clips", count=4, frames=4, side=16)
    whole = tmp_path / "whole"
    r = subprocess.run(_accelerate(base, manifest, whole, 1), env=_accelerate_env(), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    two_rank = read_adapter(whole / "adapter")[1]  # peft's layout, under the model's own key names
    reference = _reference_two_rank_training(base, manifest, steps=4, batch_size=1, lr=3e-3, rank=2)
    assert two_rank.keys() == reference.keys()
    moved = max(float((reference[k] - two_rank[k]).abs().max()) for k in reference)
    assert moved < 1e-4, f"two ranks differ from the one-process loop by {moved}"
    assert any(float(v.abs().max()) > 0 for k, v in two_rank.items() if "lora_B" in k), "training moved LoRA"

    # killed after its first checkpoint, then relaunched into the same run directory: it resumes
    killed = tmp_path / "killed"
    # the learning rate is constant (no warm-up), so steps=200 follows the same path as steps=4 up to step 4
    p = subprocess.Popen(_accelerate(base, manifest, killed, 1, ["train.steps=200"]), env=_accelerate_env(), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and not (killed / "checkpoints" / "step-000002" / "state.pt").is_file():
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be killed"
    _kill_tree(p)
    assert not (killed / "adapter").exists()
    import shutil

    for later in (killed / "checkpoints").iterdir():  # as if killed right after the step-2 checkpoint
        if later.name != "step-000002":
            shutil.rmtree(later)
    r = subprocess.run(_accelerate(base, manifest, killed, 1), env=_accelerate_env(), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = read_adapter(killed / "adapter")[1]
    meta = json.loads((killed / "meta.json").read_text())
    assert meta["resumed_from"] and "step-00000" in meta["resumed_from"]
    gap = max(float((resumed[k] - two_rank[k]).abs().max()) for k in two_rank)
    assert gap < 1e-4, f"resumed run differs from the uninterrupted one by {gap}"
