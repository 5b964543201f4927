"""Evaluate generated videos against references: CLIP score, motion fidelity score, ObjMC.

    python -m amg.evaluate generated=outputs/generate/run1/video.mp4 reference=outputs/generate/run1/avatar.mp4
    python -m amg.evaluate 'generated=runs/amg/*.mp4' 'reference=data/avatars/*.mp4' clip_model=/models/clip name=amg

The reference is the video whose motion the generated one should follow (the avatar render, or the real clip).
A table like the AMG paper's Table 1 (method, CLIP score, motion fidelity) plus ObjMC is printed and written to
``metrics.csv`` in the run directory (per pair in ``pairs.csv``); ``table=path.csv`` also appends the row there.
"""

from __future__ import annotations

import csv
import functools
import glob
import logging
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from finetune.metrics import ClipScorer, lk_tracks, motion_fidelity, objmc
from render.errors import AmgError
from render.image import resize_frames
from render.io import atomic_path, read_json, write_meta
from render.video import read_video

from .build import config_dict, hydra_app, prepare_run_dir

log = logging.getLogger("amg.evaluate")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")
COLUMNS = ["method", "pairs", "clip_score", "motion_fidelity", "objmc_px"]


def find_videos(spec: str, what: str) -> list[Path]:
    """Videos named by a file, a folder (its videos) or a glob, sorted (``what`` names the config key)."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
    elif any(c in spec for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(spec))
    else:
        files = [p]
    if not files or not all(f.is_file() for f in files):
        raise AmgError(f"{what}={spec}: expected a video file, a folder of videos or a glob matching videos")
    return files


def evaluate_pair(generated: np.ndarray, reference: np.ndarray, prompt: str | None, scorer: ClipScorer | None,
                  grid_step: int = 8) -> dict:
    """Metrics of one generated video ``(F,H,W,3)`` against its reference (same frame count).

    ObjMC compares Lucas-Kanade tracks started from the same grid in both videos, over the points tracked
    in both, in pixels of the generated video.
    """
    if len(generated) != len(reference):
        n = min(len(generated), len(reference))
        log.warning("frame counts differ (%d vs %d): using the first %d", len(generated), len(reference), n)
        generated, reference = generated[:n], reference[:n]
    reference = resize_frames(reference, *generated.shape[1:3])
    tracker = functools.partial(lk_tracks, grid_step=grid_step)
    row = {"motion_fidelity": motion_fidelity(reference, generated, tracker=tracker)}
    tg, vg = tracker(generated)
    tr, vr = tracker(reference)
    both = vg & vr
    row["objmc_px"] = objmc(tg, tr, visible=both) if both.any() else float("nan")
    row["clip_score"] = scorer.score(generated, prompt) if scorer is not None and prompt else float("nan")
    return row


def _prompt_for(video: Path, given: str | None) -> str | None:
    if given:
        return given
    pj = video.parent / "prompt.json"
    if pj.is_file():
        d = read_json(pj)
        return d.get("scene_prompt") or d.get("prompt")
    return None


def run(cfg: DictConfig, out_dir: Path) -> dict:
    prepare_run_dir(out_dir, bool(cfg.overwrite))
    gen = find_videos(str(cfg.generated), "generated")
    ref = find_videos(str(cfg.reference), "reference")
    if len(gen) != len(ref):
        raise AmgError(f"generated has {len(gen)} videos, reference {len(ref)}; expected pairs")
    scorer = ClipScorer.from_folder(str(cfg.clip_model)) if cfg.clip_model else None
    pairs = []
    for g, r in zip(gen, ref):
        gv, _ = read_video(g)
        rv, _ = read_video(r)
        for path, frames in ((g, gv), (r, rv)):
            if len(frames) < 2:  # motion needs two frames at least; one frame has no tracks to compare
                raise AmgError(f"{path}: {len(frames)} frame; expected a video of at least 2 frames")
        row = evaluate_pair(gv, rv, _prompt_for(g, cfg.prompt), scorer, int(cfg.grid_step))
        pairs.append({"generated": str(g), "reference": str(r), **row})
    summary = {"method": str(cfg.name), "pairs": len(pairs)}
    for k in ("clip_score", "motion_fidelity", "objmc_px"):
        vals = [p[k] for p in pairs if not np.isnan(p[k])]
        summary[k] = float(np.mean(vals)) if vals else float("nan")
    _write_csv(out_dir / "pairs.csv", pairs, ["generated", "reference", "clip_score", "motion_fidelity", "objmc_px"])
    _write_csv(out_dir / "metrics.csv", [summary], COLUMNS)
    if cfg.table:
        _append_csv(Path(str(cfg.table)), summary)
    if scorer is None:  # said after the inputs were read: a refused run prints nothing but its error
        print("clip score skipped: set clip_model=<local CLIP folder> to compute it")
    print(format_table([summary]))
    write_meta(out_dir, "evaluate", inputs={"generated": [str(g) for g in gen], "reference": [str(r) for r in ref]},
               config=config_dict(cfg), summary=summary)
    return summary


def format_table(rows: list[dict]) -> str:
    """A plain-text table: Method | CLIP score | Motion fidelity | ObjMC (px)."""
    head = f"{'Method':<16}{'CLIP score':>12}{'Motion fidelity':>17}{'ObjMC (px)':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<16}{r['clip_score']:>12.2f}{r['motion_fidelity']:>17.3f}{r['objmc_px']:>12.2f}")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _append_csv(path: Path, row: dict) -> None:
    rows = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh)]
    rows.append(row)
    _write_csv(path, rows, COLUMNS)


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
