"""The one training loop: any :class:`~finetune.methods.base.Method` on its backbone, with accelerate.

A method says what it attaches to a backbone, what trains and its loss; this loop does the rest: the
optimizer (AdamW) and learning-rate warmup, the data order, gradient accumulation and clipping, mixed
precision, logs (``loss.csv``, tensorboard), checkpoints and resume, and the final weights. Without a
method it trains AMG (:class:`~finetune.methods.amg.AmgMethod`, configured by ``rank``,
``caption_dropout`` and ``spatial_loss_alpha``), as it always has.

Runs on one device or many through ``accelerate launch`` (mixed precision and gradient accumulation
from :class:`TrainConfig`). Checkpoints are small (trainable weights, optimizer, scheduler, random
states and step) and resuming from one reproduces the uninterrupted run's losses exactly on the same
machine: the data order and every random draw derive from the seed and the step.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from render.errors import AmgError
from render.io import atomic_path, write_meta

from .data import AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE
from .methods.amg import AmgMethod, diffusion_loss
from .methods.base import ClipSettings, Method
from .model import dtype_from_name

__all__ = ["TrainConfig", "ClipConfig", "LoopConfig", "AmgOptions", "TrainResult", "train", "latest_checkpoint",
           "diffusion_loss", "batch_indices", "weight_dtype", "validate", "train_step", "restore_checkpoint"]


@dataclass
class ClipConfig:
    """How clips are sampled for training (AMG's 16 frames at 8 fps, 256x256 by default)."""

    num_frames: int = AMG_NUM_FRAMES
    height: int = AMG_SIZE
    width: int = AMG_SIZE
    fps: float = AMG_FPS
    latent_cache: Optional[str] = None  # folder for cached encoder outputs (reused across runs)


@dataclass
class LoopConfig:
    """The loop's own choices, the same for every method."""

    steps: int = 1000
    lr: float = 1e-6
    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "fp16" or "bf16"
    checkpoint_every: int = 500
    seed: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True


@dataclass
class AmgOptions:
    """The options of the default AMG method (see :class:`~finetune.methods.amg.AmgMethod`)."""

    rank: int = 4
    caption_dropout: float = 0.0
    spatial_loss_alpha: float = 0.0


@dataclass
class TrainConfig(LoopConfig, AmgOptions, ClipConfig):
    """Every training choice of :func:`train`: the loop, the clips, and the default AMG method's options.

    The ``train`` app composes it from config groups (``train`` = :class:`LoopConfig`, ``data`` =
    :class:`ClipConfig` plus the manifest, ``method`` = the method with its own options).
    """

    def clips(self) -> ClipSettings:
        return ClipSettings(num_frames=self.num_frames, height=self.height, width=self.width, fps=self.fps,
                            latent_cache=self.latent_cache)


@dataclass
class TrainResult:
    """What a call to :func:`train` did: ``losses[step]`` for the optimizer steps it ran, and where it wrote."""

    losses: dict[int, float] = field(default_factory=dict)
    adapter: Path | None = None
    start_step: int = 0
    steps: int = 0


def weight_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype frozen weights run in under accelerate's ``mixed_precision`` setting."""
    # accelerate's names: "no" keeps float32; the others are names of finetune.model.DTYPES (the one table)
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise AmgError(f"mixed_precision={mixed_precision!r}: expected one of no, fp16, bf16")
    return dtype_from_name("fp32" if mixed_precision == "no" else mixed_precision, "mixed_precision")


def validate(cfg: LoopConfig) -> None:
    """Raise :class:`AmgError` for settings the loop cannot run."""
    weight_dtype(cfg.mixed_precision)
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.checkpoint_every < 1:
        raise AmgError("train: steps, batch_size, grad_accum and checkpoint_every must be >= 1")


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete ``checkpoints/step-NNNNNN`` folder in ``output_dir``, or None."""
    root = Path(output_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "state.pt").is_file()) if root.is_dir() else []
    return done[-1] if done else None


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(micro: int, n: int, batch_size: int, world: int, rank: int, seed: int) -> list[int]:
    """Dataset indices of micro-batch number ``micro`` on process ``rank`` of ``world``.

    Each epoch is a seeded permutation of the ``n`` samples cut into ``world * batch_size`` slices
    (the remainder is dropped), so the order depends only on the seed and the micro-batch number.
    """
    per_epoch = n // (batch_size * world)
    if per_epoch == 0:
        raise AmgError(f"{n} clips, need at least batch_size x processes = {batch_size * world}")
    epoch, j = divmod(micro, per_epoch)
    first = (j * world + rank) * batch_size
    return [int(i) for i in _epoch_order(n, seed, epoch)[first:first + batch_size]]


def _rng_state(gen: torch.Generator) -> dict:
    return {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_step(method: Method, accelerator, batches: list, optimizer, lr_scheduler, params, gen: torch.Generator,
               max_grad_norm: float, device: torch.device, dtype: torch.dtype) -> float:
    """One optimizer step over ``batches`` (one per accumulation micro-step); returns the mean loss."""
    losses = []
    for batch in batches:
        with accelerator.accumulate(method.trained):
            loss = method.loss(batch, gen, device, dtype)
            accelerator.backward(loss)
            if accelerator.sync_gradients and max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(accelerator.gather(loss.detach()[None]).mean().item())
    return float(np.mean(losses))


def restore_checkpoint(ckpt: Path, method: Method, optimizer, lr_scheduler, gen: torch.Generator,
                       rank: int) -> int:
    """Load a checkpoint's weights, optimizer, scheduler and this process's random states; return its step."""
    method.restore(ckpt)
    state = torch.load(ckpt / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    _set_rng_state(gen, torch.load(ckpt / f"rng-{rank}.pt", weights_only=False))
    return int(state["step"])


class _RunLog:
    """``loss.csv`` (rewritten from ``start_step`` on resume) and an optional tensorboard writer."""

    def __init__(self, out: Path, start_step: int, tensorboard: bool):
        self.path = out / "loss.csv"
        _truncate_log(self.path, start_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)

    def log(self, step: int, loss: float, lr: float, seconds: float) -> None:
        _append_log(self.path, step, loss, lr, seconds)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(base_folder: str | os.PathLike, manifest: str | os.PathLike, output_dir: str | os.PathLike,
          config: TrainConfig, method: Method | None = None) -> TrainResult:
    """Train ``method`` (AMG by default) on the clips of ``manifest`` for ``config.steps`` optimizer steps.

    ``base_folder`` is the backbone's diffusers folder. Writes into ``output_dir``:
    ``checkpoints/step-NNNNNN/`` every ``checkpoint_every`` steps and at the end, ``adapter/`` (the
    final trainable weights; for AMG the adapter of :class:`~finetune.pipeline.AMGPipeline`),
    ``loss.csv``, ``tensorboard/`` and ``meta.json``. With ``config.resume`` a run continues from the
    newest checkpoint in ``output_dir``.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    cfg = config
    validate(cfg)
    if method is None:
        method = AmgMethod(rank=cfg.rank, caption_dropout=cfg.caption_dropout,
                           spatial_loss_alpha=cfg.spatial_loss_alpha)
    out = Path(output_dir)
    dtype = weight_dtype(cfg.mixed_precision)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    method.check_data(manifest, cfg.clips())  # a broken manifest fails here, before the model loads
    method.setup(base_folder, device, dtype, cfg.seed)
    params = method.trainable_parameters()
    for p in params:  # trainable weights stay float32 under mixed precision
        p.data = p.data.float()
    method.trained.train()
    data = method.dataset(manifest, cfg.clips())
    if len(data) // (cfg.batch_size * world) == 0:
        raise AmgError(f"{manifest}: {len(data)} clips, need at least batch_size x processes = "
                       f"{cfg.batch_size * world}")

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps)
    method.trained, optimizer, lr_scheduler = accelerator.prepare(method.trained, optimizer, lr_scheduler)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + rank)

    ckpt = latest_checkpoint(out) if cfg.resume else None
    step = restore_checkpoint(ckpt, method, optimizer, lr_scheduler, gen, rank) if ckpt is not None else 0
    start_step = step

    is_main = accelerator.is_main_process
    log = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_meta(out, "train", inputs={"base": str(base_folder), "manifest": str(manifest)},
                   config=asdict(cfg), method={"name": method.name, **method.options()}, seed=cfg.seed,
                   resumed_from=str(ckpt) if ckpt else None)
        log = _RunLog(out, start_step, cfg.tensorboard)

    def micro_batch(micro: int):
        idx = batch_indices(micro, len(data), cfg.batch_size, world, rank, cfg.seed)
        return method.collate([data[i] for i in idx])

    result = TrainResult(start_step=start_step)
    bar = tqdm(total=cfg.steps, initial=start_step, desc=f"train {method.name}",
               disable=not (cfg.progress and is_main))
    while step < cfg.steps:
        t0 = time.time()
        batches = [micro_batch(step * cfg.grad_accum + a) for a in range(cfg.grad_accum)]
        loss_value = train_step(method, accelerator, batches, optimizer, lr_scheduler, params, gen,
                                cfg.max_grad_norm, device, dtype)
        step += 1
        result.losses[step] = loss_value
        if log is not None:
            log.log(step, loss_value, lr_scheduler.get_last_lr()[0], time.time() - t0)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(out, step, accelerator, method, optimizer, lr_scheduler, gen, is_main)
    bar.close()
    if log is not None:
        log.close()
    accelerator.wait_for_everyone()
    if is_main:
        final = out / "adapter"
        if final.exists():
            shutil.rmtree(final)
        method.save(final, extra={"step": step})
        result.adapter = final
    result.steps = step
    return result


def _save_checkpoint(out: Path, step: int, accelerator, method: Method, optimizer, lr_scheduler, gen,
                     is_main: bool) -> None:
    accelerator.wait_for_everyone()
    final = out / "checkpoints" / f"step-{step:06d}"
    staging = out / "checkpoints" / f".step-{step:06d}.partial"
    if is_main:
        if staging.exists():
            shutil.rmtree(staging)
        method.save(staging, extra={"step": step})
    accelerator.wait_for_everyone()
    with atomic_path(staging / f"rng-{accelerator.process_index}.pt") as tmp:
        torch.save(_rng_state(gen), tmp)
    accelerator.wait_for_everyone()
    if is_main:
        with atomic_path(staging / "state.pt") as tmp:
            torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                        "step": step}, tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    accelerator.wait_for_everyone()


def _truncate_log(path: Path, keep_until: int) -> None:
    """Keep the rows of ``loss.csv`` up to step ``keep_until`` (a resumed run rewrites what follows)."""
    rows = []
    if path.is_file() and keep_until > 0:
        with path.open() as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= keep_until]
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "lr", "seconds"])
            w.writerows(rows)


def _append_log(path: Path, step: int, loss: float, lr: float, seconds: float) -> None:
    with path.open("a", newline="") as f:
        csv.writer(f).writerow([step, f"{loss:.8g}", f"{lr:.6g}", f"{seconds:.3f}"])
