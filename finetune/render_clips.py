"""Training clips from the render stage's folders: target frames plus the trajectory models' conditions.

A render folder (``amg.render``, ``avatars.scene.save_scene``) holds the clip ``avatar.mp4`` and,
per condition asked for, ``levitor_control.npy`` (F,3,H,W) LeviTor's control, ``traj.npy`` (F,H,W,3)
uint8 trajectory images, ``flow.npy`` (2,F,H,W) Image Conductor's flow with ``flow_tracks.npy`` (T,F,2),
``bbox3d.npy`` (F,N,8,2) projected box corners and ``bbox3d.mp4`` (the frames with the boxes drawn,
the 3D-box model's stage-1 target), and ``cameras.json``. Paths given to :func:`render_folders` are one
folder, a folder of such folders (searched recursively), or a text file listing folders.

:class:`RenderClipDataset` reads the first ``num_frames`` frames of each folder at its own size
(conditions are pixel-exact: the render is made at the training size, never resized here). A folder
is a camera-only clip when ``meta.json`` or ``scene.json`` says so, or when its name holds ``camera``:
Image Conductor's first stage trains on those alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.errors import AmgError
from render.video import read_video

__all__ = ["CONDITIONS", "TARGETS", "render_folders", "RenderSample", "RenderClipDataset", "collate_render",
           "is_camera_only", "read_condition"]

# condition name -> file in a render folder
CONDITIONS = {"levitor": "levitor_control.npy", "traj": "traj.npy", "flow": "flow.npy"}
# training target -> video file in a render folder
TARGETS = {"clip": "avatar.mp4", "bbox3d": "bbox3d.mp4"}


def render_folders(path: str | os.PathLike) -> list[Path]:
    """Render folders (those holding ``avatar.mp4``) under ``path``, sorted; AmgError if there are none."""
    p = Path(path)
    if p.is_file():
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        folders = [(p.parent / ln).resolve() for ln in lines]
    elif (p / TARGETS["clip"]).is_file():
        folders = [p]
    elif p.is_dir():
        folders = sorted(f.parent for f in p.rglob(TARGETS["clip"]))
    else:
        raise AmgError(f"{p}: no such render folder or list; expected amg.render outputs")
    folders = [f for f in folders if (f / TARGETS["clip"]).is_file()]
    if not folders:
        raise AmgError(f"{p}: no render folders (none holds {TARGETS['clip']})")
    return folders


def is_camera_only(folder: str | os.PathLike) -> bool:
    """Whether a render folder is a camera-only clip (static people, moving camera)."""
    f = Path(folder)
    for name in ("meta.json", "scene.json"):
        if (f / name).is_file():
            try:
                d = json.loads((f / name).read_text())
            except json.JSONDecodeError:
                continue
            for key in ("camera_only", "clip_kind"):
                v = d.get(key) if isinstance(d, dict) else None
                if v is not None:
                    return v is True or v == "camera"
    return "camera" in f.name


def read_condition(folder: Path, condition: str, num_frames: int) -> torch.Tensor:
    """A condition of a render folder as float32 ``(F, C, H, W)``.

    ``levitor``: unnormalised ``[heat, id, depth]`` as written; ``traj``: RGB in [0, 1]; ``flow``:
    ``(dx, dy)`` pixels per frame moved to the frame axis first.
    """
    if condition not in CONDITIONS:
        raise AmgError(f"condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
    path = folder / CONDITIONS[condition]
    if not path.is_file():
        raise AmgError(f"{path}: missing; render the clip with the {condition} condition")
    a = np.load(path)
    if condition == "levitor":
        c = torch.from_numpy(a.astype(np.float32))
    elif condition == "traj":
        c = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0
    else:
        c = torch.from_numpy(a.astype(np.float32)).permute(1, 0, 2, 3)
    if len(c) < num_frames:
        raise AmgError(f"{path}: {len(c)} frames, expected at least num_frames={num_frames}")
    return c[:num_frames].contiguous()


@dataclass
class RenderSample:
    """One clip: ``video`` (F,3,H,W) in [-1, 1] (the target), ``first`` (3,H,W) in [-1, 1] (the clean first
    frame the model is conditioned on), ``control`` (F,C,H,W) float32, ``tracks`` (T,F,2) the control's
    driving trajectories in pixels (for ObjMC; may be empty), ``camera_only``, ``key``, and ``boxes``
    ``(F, P, 8, 2)`` the projected 3D box corners when the folder has them (else None)."""

    video: torch.Tensor
    first: torch.Tensor
    control: torch.Tensor
    tracks: np.ndarray
    camera_only: bool
    key: str
    boxes: np.ndarray | None = None


def collate_render(samples: list[RenderSample]) -> RenderSample:
    """Stack samples (leading batch axis on tensors; tracks as a list; keys joined by newlines)."""
    return RenderSample(video=torch.stack([s.video for s in samples]), first=torch.stack([s.first for s in samples]),
                        control=torch.stack([s.control for s in samples]), tracks=[s.tracks for s in samples],
                        camera_only=all(s.camera_only for s in samples), key="\n".join(s.key for s in samples),
                        boxes=[s.boxes for s in samples])


def _tracks(folder: Path, condition: str, num_frames: int) -> np.ndarray:
    if condition == "flow" and (folder / "flow_tracks.npy").is_file():
        return np.load(folder / "flow_tracks.npy")[:, :num_frames].astype(np.float32)
    if (folder / "tracks.npy").is_file():
        return np.load(folder / "tracks.npy")[:, :num_frames].astype(np.float32)
    if condition == "levitor" and (folder / "levitor_points.npz").is_file():
        pts = np.load(folder / "levitor_points.npz")
        frames = [pts[k] for k in sorted(pts.files)][:num_frames]
        n = min(len(p) for p in frames)
        # LeviTor points are [row, col, id, depth]; as (x, y) tracks of the points present in every frame
        return np.stack([np.stack([p[:n, 1], p[:n, 0]], -1) for p in frames], 1).astype(np.float32)
    return np.zeros((0, num_frames, 2), np.float32)


class RenderClipDataset(torch.utils.data.Dataset):
    """Render folders as :class:`RenderSample` for one ``condition`` (``levitor``, ``traj``, ``flow``).

    ``target`` ``clip`` trains on ``avatar.mp4``; ``bbox3d`` on ``bbox3d.mp4`` (the 3D-box model's stage
    1); the conditioning first frame is always the clean clip's. ``kind`` keeps ``all``, ``camera``
    (camera-only clips) or ``mixed`` clips (the others).
    """

    def __init__(self, path: str | os.PathLike | list, condition: str, num_frames: int, height: int, width: int,
                 target: str = "clip", kind: str = "all"):
        if target not in TARGETS:
            raise AmgError(f"target {target!r}: expected one of {', '.join(TARGETS)}")
        if kind not in ("all", "camera", "mixed"):
            raise AmgError(f"kind {kind!r}: expected all, camera or mixed")
        folders = [Path(f) for f in path] if isinstance(path, list) else render_folders(path)
        if kind != "all":
            folders = [f for f in folders if is_camera_only(f) == (kind == "camera")]
            if not folders:
                raise AmgError(f"{path}: no {kind} clips among the render folders")
        self.folders, self.condition, self.target, self.kind = folders, condition, target, kind
        self.num_frames, self.height, self.width = num_frames, height, width

    def __len__(self) -> int:
        return len(self.folders)

    def _frames(self, path: Path) -> torch.Tensor:
        frames, _ = read_video(path)
        if len(frames) < self.num_frames or frames.shape[1:3] != (self.height, self.width):
            raise AmgError(f"{path}: {frames.shape[:3]} frames, expected at least {self.num_frames} at "
                           f"{self.height}x{self.width} (render at the training size)")
        x = torch.from_numpy(frames[:self.num_frames]).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x.contiguous()

    def __getitem__(self, i: int) -> RenderSample:
        f = self.folders[i]
        clip = self._frames(f / TARGETS["clip"])
        video = clip if self.target == "clip" else self._frames(f / TARGETS[self.target])
        control = read_condition(f, self.condition, self.num_frames)
        if tuple(control.shape[-2:]) != (self.height, self.width):
            raise AmgError(f"{f}: {self.condition} condition is {tuple(control.shape[-2:])}, expected "
                           f"{(self.height, self.width)}")
        key = hashlib.sha1(json.dumps([str(f), self.condition, self.target, self.num_frames]).encode()).hexdigest()[:16]
        boxes = np.load(f / "bbox3d.npy")[:self.num_frames] if (f / "bbox3d.npy").is_file() else None
        return RenderSample(video=video, first=clip[0], control=control,
                            tracks=_tracks(f, self.condition, self.num_frames), camera_only=is_camera_only(f), key=key,
                            boxes=boxes)
