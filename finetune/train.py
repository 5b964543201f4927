"""LoRA fine-tuning of the AMG model with accelerate.

The UNet sees ``[z_t, z_avatar]`` (noisy video latents and the avatar video's latents on the channel
axis) and the caption's text embedding, and learns to predict the noise (epsilon loss). Only LoRA and
the widened ``conv_in`` train (AdamW, lr 1e-6 as AMG). Options: caption dropout (AMG uses none) and
the thesis's spatial-enhancement loss, ``loss = loss_temp + alpha * loss_spa`` where ``loss_spa`` is the
same UNet's loss on one random frame passed alone as a one-frame video.

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

import numpy as np
import torch
import torch.nn.functional as F

from render.errors import AmgError
from render.io import atomic_path, write_meta

from .data import ClipDataset, LatentDataset, collate_latents
from .model import (dtype_from_name, encode_prompt, load_adapter, load_base, mark_trainable, move, prepare_unet,
                    save_adapter)

__all__ = ["TrainConfig", "TrainResult", "train", "latest_checkpoint", "diffusion_loss"]


@dataclass
class TrainConfig:
    """Every training choice; ``conf/train.yaml`` mirrors these fields."""

    steps: int = 1000
    lr: float = 1e-6
    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "fp16" or "bf16"
    rank: int = 4
    caption_dropout: float = 0.0
    spatial_loss_alpha: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    num_frames: int = 16
    height: int = 256
    width: int = 256
    fps: float = 8.0
    latent_cache: str | None = None
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True


@dataclass
class TrainResult:
    """What a call to :func:`train` did: ``losses[step]`` for the optimizer steps it ran, and where it wrote."""

    losses: dict[int, float] = field(default_factory=dict)
    adapter: Path | None = None
    start_step: int = 0
    steps: int = 0


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete ``checkpoints/step-NNNNNN`` folder in ``output_dir``, or None."""
    root = Path(output_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "state.pt").is_file()) if root.is_dir() else []
    return done[-1] if done else None


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    # accelerate's names: "no" keeps float32; the others are names of finetune.model.DTYPES
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise AmgError(f"mixed_precision={mixed_precision!r}: expected one of no, fp16, bf16")
    return dtype_from_name("fp32" if mixed_precision == "no" else mixed_precision, "mixed_precision")


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


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


def diffusion_loss(unet, scheduler, z0: torch.Tensor, z_avatar: torch.Tensor, text: torch.Tensor,
                   gen: torch.Generator, spatial_alpha: float = 0.0) -> torch.Tensor:
    """The AMG training loss on one batch of latents ``(B, 4, F, h, w)`` and text ``(B, L, D)``.

    Draws noise and timesteps from ``gen`` (on the CPU, so any device gives the same draws), noises
    ``z0``, predicts from ``[z_t, z_avatar]``; the target is the noise (or the velocity for
    v-prediction schedulers). With ``spatial_alpha > 0`` adds ``alpha`` times the loss of one random
    frame denoised on its own.
    """
    b, _, f = z0.shape[:3]
    noise = torch.randn(z0.shape, generator=gen).to(z0.device, z0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen).to(z0.device)
    frame = int(torch.randint(0, f, (1,), generator=gen))
    zt = scheduler.add_noise(z0, noise, t)
    target = scheduler.get_velocity(z0, noise, t) if scheduler.config.prediction_type == "v_prediction" else noise
    pred = unet(torch.cat([zt, z_avatar], dim=1), t, encoder_hidden_states=text).sample
    loss = F.mse_loss(pred.float(), target.float())
    if spatial_alpha > 0:
        k = slice(frame, frame + 1)
        pred1 = unet(torch.cat([zt[:, :, k], z_avatar[:, :, k]], dim=1), t, encoder_hidden_states=text).sample
        loss = loss + spatial_alpha * F.mse_loss(pred1.float(), target[:, :, k].float())
    return loss


def train(base_folder: str | os.PathLike, manifest: str | os.PathLike, output_dir: str | os.PathLike,
          config: TrainConfig) -> TrainResult:
    """Fine-tune the AMG adapter on the clips of ``manifest`` for ``config.steps`` optimizer steps.

    Writes into ``output_dir``: ``checkpoints/step-NNNNNN/`` every ``checkpoint_every`` steps and at the
    end, ``adapter/`` (the final adapter for :class:`~finetune.pipeline.AMGPipeline`), ``loss.csv``,
    ``tensorboard/`` and ``meta.json``. With ``config.resume`` a run continues from the newest
    checkpoint in ``output_dir``.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    cfg = config
    out = Path(output_dir)
    weight_dtype = _weight_dtype(cfg.mixed_precision)
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.checkpoint_every < 1:
        raise AmgError("train: steps, batch_size, grad_accum and checkpoint_every must be >= 1")
    if not 0.0 <= cfg.caption_dropout <= 1.0:
        raise AmgError(f"caption_dropout={cfg.caption_dropout}: expected a probability in [0, 1]")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    model = load_base(base_folder)
    unet = prepare_unet(model.unet, rank=cfg.rank, seed=cfg.seed)
    for m in (model.vae, model.text_encoder, unet):
        move(m, device, weight_dtype)
    params = mark_trainable(unet)
    for p in params:  # trainable weights stay float32 under mixed precision
        p.data = p.data.float()
    unet.train()

    clips = ClipDataset(manifest, num_frames=cfg.num_frames, height=cfg.height, width=cfg.width, fps=cfg.fps)
    data = LatentDataset(clips, model.vae, model.text_encoder, model.tokenizer, cache_dir=cfg.latent_cache)
    batches_per_epoch = len(data) // (cfg.batch_size * world)
    if batches_per_epoch == 0:
        raise AmgError(f"{manifest}: {len(data)} clips, need at least batch_size x processes = "
                       f"{cfg.batch_size * world}")
    empty_text = encode_prompt(model.text_encoder, model.tokenizer, [""])[0]

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + rank)

    step = 0
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        load_adapter(accelerator.unwrap_model(unet), ckpt, model.fingerprint)
        state = torch.load(ckpt / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        rng_file = ckpt / f"rng-{rank}.pt"
        _set_rng_state(gen, torch.load(rng_file, weights_only=False))
        step = int(state["step"])
    start_step = step

    is_main = accelerator.is_main_process
    log_path = out / "loss.csv"
    writer = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_meta(out, "train", inputs={"base": str(base_folder), "manifest": str(manifest)},
                   config=asdict(cfg), seed=cfg.seed, resumed_from=str(ckpt) if ckpt else None)
        _truncate_log(log_path, start_step)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)

    def batch_for(micro: int):
        epoch, j = divmod(micro, batches_per_epoch)
        order = _epoch_order(len(data), cfg.seed, epoch)
        first = (j * world + rank) * cfg.batch_size
        return collate_latents([data[int(i)] for i in order[first:first + cfg.batch_size]])

    result = TrainResult(start_step=start_step)
    bar = tqdm(total=cfg.steps, initial=start_step, desc="train", disable=not (cfg.progress and is_main))
    scheduler = model.scheduler
    while step < cfg.steps:
        t0, micro_losses = time.time(), []
        for a in range(cfg.grad_accum):
            batch = batch_for(step * cfg.grad_accum + a)
            text = batch.text.to(device, weight_dtype)
            drop = torch.rand(text.shape[0], generator=gen) < cfg.caption_dropout
            text = torch.where(drop.to(device)[:, None, None], empty_text.to(text.dtype)[None], text)
            with accelerator.accumulate(unet):
                loss = diffusion_loss(unet, scheduler, batch.video.to(device, weight_dtype),
                                      batch.avatar.to(device, weight_dtype), text, gen, cfg.spatial_loss_alpha)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(accelerator.gather(loss.detach()[None]).mean().item())
        step += 1
        loss_value = float(np.mean(micro_losses))
        result.losses[step] = loss_value
        if is_main:
            lr = lr_scheduler.get_last_lr()[0]
            _append_log(log_path, step, loss_value, lr, time.time() - t0)
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, step)
                writer.add_scalar("train/lr", lr, step)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            _save_checkpoint(out, step, accelerator, unet, optimizer, lr_scheduler, gen, model.fingerprint, is_main)
    bar.close()
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    if is_main:
        final = out / "adapter"
        if final.exists():
            shutil.rmtree(final)
        save_adapter(accelerator.unwrap_model(unet), final, model.fingerprint, extra={"step": step})
        result.adapter = final
    result.steps = step
    return result


def _save_checkpoint(out: Path, step: int, accelerator, unet, optimizer, lr_scheduler, gen, fingerprint,
                     is_main: bool) -> None:
    final = out / "checkpoints" / f"step-{step:06d}"
    staging = out / "checkpoints" / f".step-{step:06d}.partial"
    if is_main:
        if staging.exists():
            shutil.rmtree(staging)
        save_adapter(accelerator.unwrap_model(unet), staging, fingerprint, extra={"step": step})
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
