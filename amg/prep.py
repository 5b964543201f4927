"""Training data for AMG: videos -> clips -> tracks -> captions -> avatars -> aligned avatar renders -> manifest.

    python -m amg.prep video=data/raw/dance.mp4
    python -m amg.prep 'video=data/raw/*.mp4' out_dir=data/prep
    python -m amg.prep --multirun 'video=data/raw/a.mp4,data/raw/b.mp4' hydra/launcher=joblib
    python -m amg.prep --multirun 'video=data/raw/*.mp4' num_shards=8 'shard=range(8)' hydra/launcher=submitit_slurm_amg

Each clip lives in ``out_dir/clips/<video-key>/<clip>/`` and every stage writes its files atomically and then a
done-marker holding the key of its inputs and config; a rerun (after a crash, ``kill -9``, or with more videos)
skips what is done and redoes what changed. A clip that fails is recorded with its stage and reason and the run
goes on. Each job writes its own ``manifests/<job>.jsonl`` (shards never write the same file; ``amg.train``
reads a manifest file or the whole ``manifests/`` folder) and ``summaries/<job>.json``; a single job also
writes the merged ``manifest.jsonl``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import replace
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig
from tqdm.auto import tqdm

from avatars.scene import Person, render_scene, save_scene
from finetune.data import ClipRecord, read_manifest
from render.camera import CameraPath
from render.errors import AmgError
from render.io import list_outputs, read_json, remove_stale_temps, write_json, write_meta, write_text
from render.video import write_video

from .build import _instantiate, build_avatars, build_body, check_kwargs, config_dict, hydra_app

log = logging.getLogger("amg.prep")

STAGES = ("clips", "tracks", "captions", "avatars", "render")


def list_videos(pattern, shard: int = 0, num_shards: int = 1) -> list[Path]:
    """Videos matched by a path, a glob or a list of them, sorted; this shard's share (every n-th)."""
    pats = list(pattern) if isinstance(pattern, (list, tuple, ListConfig)) else [pattern]
    files: list[Path] = []
    for p in pats:
        p = str(p)
        hits = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise AmgError(f"video={p}: matched no file")
        for h in hits:
            if Path(h).is_dir():
                raise AmgError(f"video={h}: is a folder; expected a video file or a glob such as '{h}/*.mp4'")
            if not Path(h).is_file():
                raise AmgError(f"video={h}: no such file")
            files.append(Path(h).resolve())
    files = sorted(set(files))
    if not 0 <= shard < num_shards:
        raise AmgError(f"shard={shard}: expected 0 <= shard < num_shards={num_shards}")
    return files[shard::num_shards]


def video_key(path: Path) -> str:
    """A folder name for a video: its stem and a hash of its absolute path, size and modification time."""
    st = path.stat()
    h = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return f"{path.stem}-{h}"


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ClipStages:
    """Done-markers of one clip's stages: ``.done/<stage>.json`` = {key, outputs}."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.marks = directory / ".done"

    def done(self, stage: str, key: str) -> bool:
        f = self.marks / f"{stage}.json"
        if not f.is_file():
            return False
        try:
            mark = json.loads(f.read_text())
        except json.JSONDecodeError:
            return False
        return mark.get("key") == key and all((self.dir / o).is_file() for o in mark.get("outputs", []))

    def mark(self, stage: str, key: str, outputs: list[str]) -> None:
        write_json(self.marks / f"{stage}.json", {"key": key, "outputs": sorted(outputs)})


def process_clip(clip, clip_dir: Path, cfg: DictConfig, body, captioner, base_key: str,
                 estimator=None) -> ClipRecord:
    """Run the per-clip stages (tracks, captions, avatars + render) with skip-if-done; return the record."""
    from reconstruction import ExtractionResult
    from reconstruction.extract import extract_clip

    stages = ClipStages(clip_dir)
    # temporary files of a killed run (atomic writes that never got renamed, in tracks/ and .done/ too):
    # only this job writes here
    remove_stale_temps(clip_dir)
    ran = []
    # people are found first (at the source resolution when the clip keeps it), so the crop can follow them
    pose = {"num_poses": int(cfg.num_poses), "second_opinion": cfg.get("second_opinion")}  # who is found, and how
    k_tracks = _key(base_key, "tracks", clip.source_frames.tolist(), config_dict(cfg.reconstruction), pose)
    if not stages.done("tracks", k_tracks):
        res = extract_clip(clip, body, estimator, **_reconstruction_kwargs(cfg))
        if not res.usable:  # AMG drops clips where a subject is lost or nobody is tracked
            raise AmgError("; ".join(res.flags) or "no person tracked through the clip")
        res.save(clip_dir / "tracks")  # motion_<id>.npz, cameras.json, keypoints.npz, meta.json
        stages.mark("tracks", k_tracks, ["tracks/meta.json", "tracks/cameras.json", "tracks/keypoints.npz"]
                    + [f"tracks/motion_{t}.npz" for t in res.track_ids])
        ran.append("tracks")
    tracks = ExtractionResult.load(clip_dir / "tracks")
    if tracks.crop_box is not None and clip.source is not None:
        clip = clip.recrop(*tracks.crop_box[:3])
    track_ids, motions, cameras, masks = tracks.track_ids, tracks.motions, tracks.cameras, tracks.masks
    keypoints = dict(zip(track_ids, tracks.keypoints))

    k_clip = _key(k_tracks, "clip", tracks.crop_box)
    if not stages.done("clips", k_clip):
        write_video(clip_dir / "clip.mp4", clip.frames, fps=clip.fps)
        CameraPath.static(clip.camera, len(clip.frames), clip.fps).save(clip_dir / "clip_camera.json")
        stages.mark("clips", k_clip, ["clip.mp4", "clip_camera.json"])
        ran.append("clips")

    k_cap = _key(k_clip, config_dict(cfg.captioner))
    if not stages.done("captions", k_cap):
        from reconstruction.parts import part_labels

        appearance = []
        for t, m in zip(track_ids, motions):
            mask = None if masks is None else masks == t
            # garments are read from the pixels the fitted body covers inside the person's mask
            parts = part_labels(body, m, cameras, mask)
            appearance.append(captioner.appearance(clip.frames, keypoints[t], mask=mask, parts=parts))
        scene = captioner.scene(clip.frames)
        write_json(clip_dir / "captions.json", {"appearance": appearance, "scene": scene, "track_ids": track_ids})
        stages.mark("captions", k_cap, ["captions.json"])
        ran.append("captions")
    captions = read_json(clip_dir / "captions.json")

    texture = bool(cfg.texture_from_frames)
    k_render = _key(k_cap, config_dict(cfg.avatar), list(cfg.conditions), texture)
    if not stages.done("render", k_render):
        avatars = build_avatars(body, cfg.avatar, captions["appearance"][: len(motions)],
                                betas=[m.betas for m in motions])
        people = [Person(a, m, name=f"track{t}") for a, m, t in zip(avatars, motions, track_ids)]
        extra = []
        if texture:  # a first pass for visibility only (ids and depth): no conditions derived from it
            seen = render_scene(people, cameras, conditions=(), backend=str(cfg.backend), progress=False)
            people, extra = texture_people(people, track_ids, clip.frames, seen, masks, cameras, clip_dir)
        res = render_scene(people, cameras, conditions=list(cfg.conditions), backend=str(cfg.backend),
                           seed=int(cfg.seed), progress=False)
        written = save_scene(res, clip_dir, fps=clip.fps, conditions=list(cfg.conditions))
        stages.mark("render", k_render, [p.name for p in written.values()] + extra)
        ran.append("render")
    record = ClipRecord(video=str(clip_dir / "clip.mp4"), avatar=str(clip_dir / "avatar.mp4"),
                        caption=captions["scene"], frames=(0, len(clip.frames)), fps=float(clip.fps),
                        appearance=tuple(captions["appearance"]), people=len(motions),
                        valid=None if tracks.frame_valid is None else tuple(bool(v) for v in tracks.frame_valid))
    if not ran and (clip_dir / "meta.json").is_file():
        return record  # nothing redone: a no-op rerun writes nothing
    write_meta(clip_dir, "prep", inputs={"source_frames": clip.source_frames.tolist()}, config=config_dict(cfg),
               seed=int(cfg.seed), record=record.to_json())
    return record


def texture_people(people: list[Person], track_ids, frames, res, masks, cameras, clip_dir: Path):
    """Each person's avatar coloured from the clip's ``frames`` where its Gaussians are visible
    (:func:`avatars.texture.colour_from_frames`, occlusion from the first render ``res``, the footage's person
    masks ``masks`` of track ids); writes ``avatar<track>.ply`` + binding ``.npz`` and ``texture.json``
    (coverage per person). Returns the re-coloured people and the written file names."""
    from dataclasses import replace as with_

    from avatars.texture import colour_from_frames

    out, names, report = [], [], {}
    for i, (p, t) in enumerate(zip(people, track_ids)):
        real = None if masks is None else masks == t
        avatar, found = colour_from_frames(p.avatar, p.motion, cameras, frames, res.depth, res.mask,
                                           instance_id=i + 1, person_mask=real)
        if found.coverage == 0:
            log.warning("%s: texture_from_frames: no Gaussian of track %s is visible in the clip; it keeps "
                        "the caption's colours", clip_dir.name, t)
        avatar.save(clip_dir / f"avatar{t}.ply")
        names += [f"avatar{t}.ply", f"avatar{t}.npz"]
        report[str(t)] = {"coverage": round(found.coverage, 4), "mean_views": round(float(found.views.float().mean()), 2)}
        out.append(with_(p, avatar=avatar))
    write_json(clip_dir / "texture.json", report)
    return out, names + ["texture.json"]


def build_captioner(cfg: DictConfig):
    """The captioner of the ``captioner`` group (its ``_target_``)."""
    return _instantiate(cfg)


def _reconstruction_kwargs(cfg: DictConfig) -> dict:
    """``cfg.reconstruction`` as keyword arguments of ``extract_people``, unknown keys refused by name."""
    from reconstruction import extract_people

    return check_kwargs(extract_people, cfg.reconstruction, "reconstruction",
                        exclude=("frames", "fps", "camera", "body", "estimator", "previous", "progress"))


def _clips_kwargs(cfg: DictConfig) -> dict:
    from reconstruction.video import prepare_clips

    return check_kwargs(prepare_clips, cfg.clips, "clips", exclude=("video", "fps", "camera"))


def run(cfg: DictConfig, job: str) -> dict:
    """Process this job's share of the videos; returns the summary."""
    from reconstruction.pose import PoseEstimator

    t0 = time.perf_counter()
    out = Path(cfg.out_dir).resolve()
    videos = list_videos(cfg.video, int(cfg.shard), int(cfg.num_shards))
    if int(cfg.height) != int(cfg.width):
        raise AmgError(f"height={cfg.height}, width={cfg.width}: prep cuts square clips; set width (or clips.size)")
    _reconstruction_kwargs(cfg), _clips_kwargs(cfg)  # checked before any work
    body = build_body(cfg.body)
    captioner = build_captioner(cfg.captioner)
    for folder in ("manifests", "summaries"):  # this job's own leftovers only: other shards write here too
        for stale in (out / folder).glob(f".{job}.*.part*"):
            stale.unlink(missing_ok=True)
    second = cfg.get("second_opinion")
    with PoseEstimator(num_poses=int(cfg.num_poses), second_opinion=None if second in (None, "") else str(second)) \
            as estimator:
        records, failures = _process_videos(cfg, out, videos, body, captioner, estimator)
    manifest = write_records(out / "manifests" / f"{job}.jsonl", records)
    reasons: dict[str, int] = {}
    for f in failures:
        why = f["reason"]
        reasons[why] = reasons.get(why, 0) + 1
    summary = {"job": job, "videos": len(videos), "clips_kept": len(records), "clips_dropped": len(failures),
               "dropped_reasons": reasons, "failures": failures, "seconds": round(time.perf_counter() - t0, 2)}
    _write_summary(out / "summaries" / f"{job}.json", summary)
    if int(cfg.num_shards) == 1 and not _is_multirun():
        merge_manifests(out)
    why = f" ({', '.join(f'{k}: {v}' for k, v in reasons.items())})" if reasons else ""
    if videos and not records:
        raise AmgError(f"prep {job}: no clip kept from {len(videos)} videos, {len(failures)} dropped{why}")
    print(f"prep {job}: {len(records)} clips kept, {len(failures)} dropped{why}; manifest {manifest}")
    return summary


def _write_summary(path: Path, summary: dict) -> None:
    """Write the job summary unless the previous one says the same (timings aside)."""
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and {k: v for k, v in old.items() if k != "seconds"} == {
                k: v for k, v in summary.items() if k != "seconds"}:
            return
    write_json(path, summary)


def _process_videos(cfg: DictConfig, out: Path, videos: list[Path], body, captioner, estimator):
    """Every clip of every video; a failing clip is recorded with its reason and the run goes on."""
    from reconstruction.video import prepare_clips

    records, failures = [], []
    for video in tqdm(videos, desc="videos", disable=not cfg.progress):
        vkey = video_key(video)
        base_key = _key(vkey, config_dict(cfg.clips))
        try:
            clips = prepare_clips(video, **_clips_kwargs(cfg))
        except AmgError as e:
            failures.append({"video": str(video), "clip": None, "stage": "clips", "reason": str(e)})
            continue
        for ci, clip in enumerate(tqdm(clips, desc=video.name, leave=False, disable=not cfg.progress)):
            clip_dir = out / "clips" / vkey / f"{ci:03d}"
            try:
                records.append(process_clip(clip, clip_dir, cfg, body, captioner, base_key, estimator))
            except AmgError as e:
                failures.append({"video": str(video), "clip": ci, "stage": "clip", "reason": str(e)})
            except Exception as e:  # a bug or a library failure on one clip must not stop the run
                failures.append({"video": str(video), "clip": ci, "stage": "clip",
                                 "reason": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc(limit=3)})
    return records, failures


def write_records(path: Path, records: list[ClipRecord]) -> Path:
    """Write manifest records atomically, their clip paths relative to the manifest's own folder."""
    base = path.parent.resolve()
    rel = [replace(r, video=os.path.relpath(Path(r.video).resolve(), base),
                   avatar=os.path.relpath(Path(r.avatar).resolve(), base)) for r in records]
    # written only when it changes: a rerun with nothing to do writes nothing
    return write_text(path, "".join(json.dumps(r.to_json()) + "\n" for r in rel), if_changed=True)


def merge_manifests(out_dir: str | Path) -> Path:
    """Concatenate ``out_dir/manifests/*.jsonl`` into ``out_dir/manifest.jsonl`` (atomically).

    Temporary files of killed writers are not manifests (:func:`render.io.list_outputs` skips them); a
    manifest that does not parse is a one-line error naming it.
    """
    out = Path(out_dir)
    for stale in out.glob(".manifest.*.part*"):  # only a merge writes manifest.jsonl
        stale.unlink(missing_ok=True)
    records = []
    for f in list_outputs(out / "manifests", "*.jsonl"):
        try:
            empty = not f.read_text().strip()
        except UnicodeDecodeError:
            raise AmgError(f"{f}: not text (undecodable bytes); expected a jsonl manifest") from None
        if not empty:  # a job that kept no clip writes an empty manifest
            records.extend(read_manifest(f))
    return write_records(out / "manifest.jsonl", records)


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode.name == "MULTIRUN"
    except ValueError:
        return False


def _job_name(cfg: DictConfig) -> str:
    if int(cfg.num_shards) > 1:
        return f"shard-{int(cfg.shard):04d}-of-{int(cfg.num_shards):04d}"
    v = cfg.video
    text = json.dumps(list(v) if isinstance(v, ListConfig) else str(v))
    return f"job-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


@hydra_app("prep")
def main(cfg: DictConfig) -> None:
    if cfg.get("merge_only"):
        print(merge_manifests(cfg.out_dir))
        return
    run(cfg, _job_name(cfg))


if __name__ == "__main__":
    main()
