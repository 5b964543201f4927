"""Training data: the clip manifest, a dataset of (video, avatar video, caption) clips, and a latent cache.

The manifest is a JSON-lines file, one clip per line::

    {"video": "clips/0001.mp4", "avatar": "avatars/0001.mp4", "caption": "a man walks in a park",
     "frames": [0, 48], "fps": 24.0}

``video`` and ``avatar`` are paths (relative ones resolve against the manifest's folder); the avatar
video is rendered frame-aligned with the clip; ``frames`` is the half-open source frame range
``[start, end)`` and ``fps`` the clip's frame rate. A sample takes ``num_frames`` frames from the range
at the training frame rate (AMG: 16 frames at 8 fps, 256x256), scales the short side to the target
size, centre-crops, and maps values to [-1, 1].

The VAE latents of both videos and the caption's text embedding can be cached on disk, keyed by the
record, the files' size and time, the sampling settings and the encoders' weights, so later epochs and
later runs skip the encoders.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# AMG's training clip (16 frames at 8 fps, 256x256), written once in render.defaults; the training
# config, the dataset and the tiny clips take their defaults from here.
from render.defaults import AMG_FPS, AMG_NUM_FRAMES, AMG_SIZE
from render.errors import AmgError
from render.io import atomic_path, list_outputs
from render.video import read_video

__all__ = ["AMG_NUM_FRAMES", "AMG_SIZE", "AMG_FPS", "ClipRecord", "read_manifest", "write_manifest", "ClipSample", "ClipDataset", "LatentSample",
           "LatentDataset", "collate_latents", "sample_indices", "to_model_range", "resize_center_crop"]



@dataclass(frozen=True)
class ClipRecord:
    """One manifest line: clip and avatar video paths, scene caption, source frame range and frame rate.

    Optional fields (written only when set): ``appearance``, one caption per person; ``people``, how many
    people the avatar video shows; ``valid``, one flag per frame of ``frames`` (``valid[k]`` is frame
    ``frames[0] + k``): False where the people's bodies were not observed (a frame a loss should skip).
    """

    video: str
    avatar: str
    caption: str
    frames: tuple[int, int]
    fps: float
    appearance: tuple[str, ...] = ()
    people: int | None = None
    valid: tuple[bool, ...] | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["frames"] = list(self.frames)
        for k in ("appearance", "people", "valid"):
            if d[k] is None or d[k] == ():
                del d[k]
            elif k != "people":
                d[k] = list(d[k])
        return d

    def valid_at(self, indices: list[int]) -> torch.Tensor:
        """``(len(indices),)`` bool: validity of source frames ``indices`` (all True without a mask)."""
        if self.valid is None:
            return torch.ones(len(indices), dtype=torch.bool)
        return torch.tensor([bool(self.valid[i - self.frames[0]]) for i in indices], dtype=torch.bool)


def read_manifest(path: str | os.PathLike) -> list[ClipRecord]:
    """Read a jsonl manifest; relative video paths become absolute against the manifest's folder.

    ``path`` may also be a folder of manifests (``amg.prep`` writes one per job into ``manifests/``):
    their records are concatenated in file-name order.
    """
    path = Path(path)
    if path.is_dir():
        files = list_outputs(path, "*.jsonl")  # not the temp files of a killed writer
        if not files:
            raise AmgError(f"{path}: folder holds no *.jsonl manifest")
        records = [r for f in files for r in _read_manifest_lines(f)]
        if not records:
            raise AmgError(f"{path}: manifests have no clips")
        return records
    records = _read_manifest_lines(path)
    if not records:
        raise AmgError(f"{path}: manifest has no clips")
    return records


def _read_manifest_lines(path: Path) -> list[ClipRecord]:
    if not path.is_file():
        raise AmgError(f"{path}: no such manifest; expected a jsonl file of clips")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise AmgError(f"{path}: not text (undecodable bytes); expected a jsonl file of clips") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            frames = tuple(int(v) for v in d["frames"])
            rec = ClipRecord(video=str(path.parent / d["video"]), avatar=str(path.parent / d["avatar"]),
                             caption=str(d["caption"]), frames=frames, fps=float(d["fps"]),
                             appearance=tuple(str(a) for a in d.get("appearance", ())),
                             people=None if d.get("people") is None else int(d["people"]),
                             valid=None if d.get("valid") is None else tuple(bool(v) for v in d["valid"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise AmgError(f"{path}:{n}: bad manifest line ({type(e).__name__}: {e}); expected keys "
                           "video, avatar, caption, frames [start, end), fps") from None
        if len(rec.frames) != 2 or rec.frames[0] < 0 or rec.frames[1] <= rec.frames[0] or rec.fps <= 0:
            raise AmgError(f"{path}:{n}: frames {list(rec.frames)} / fps {rec.fps}: expected 0 <= start < end "
                           "and fps > 0")
        if rec.valid is not None and len(rec.valid) != rec.frames[1] - rec.frames[0]:
            raise AmgError(f"{path}:{n}: valid has {len(rec.valid)} flags; expected one per frame of "
                           f"{list(rec.frames)}")
        records.append(rec)
    return records


def write_manifest(path: str | os.PathLike, records: list[ClipRecord]) -> Path:
    """Write ``records`` as a jsonl manifest atomically (paths are written as given)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return Path(path)


def sample_indices(start: int, end: int, clip_fps: float, num_frames: int, fps: float) -> list[int]:
    """Source frame indices of ``num_frames`` frames at ``fps`` from the range ``[start, end)`` at ``clip_fps``.

    The stride is ``clip_fps / fps`` frames; when the range is too short for that stride, the frames are
    spread evenly over the whole range instead (slower motion, never repeated frames).
    """
    n = end - start
    if n < num_frames:
        raise AmgError(f"frames [{start}, {end}): {n} frames, expected at least num_frames={num_frames}")
    stride = clip_fps / fps
    if num_frames > 1 and (num_frames - 1) * stride > n - 1:
        stride = (n - 1) / (num_frames - 1)
    return [start + int(round(i * stride)) for i in range(num_frames)]


def resize_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``(F, C, H, W)`` frames so they cover ``height x width`` (antialiased bilinear) and centre-crop."""
    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return frames[..., y0:y0 + height, x0:x0 + width]


def to_model_range(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` frames -> float32 ``(3, F, height, width)`` in [-1, 1] (the VAE's input)."""
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    x = resize_center_crop(x, height, width).clamp(0, 1)
    return (x * 2 - 1).permute(1, 0, 2, 3).contiguous()


@dataclass
class ClipSample:
    """A training clip: ``video`` and ``avatar`` float32 ``(3, F, H, W)`` in [-1, 1], caption and cache key.

    ``valid`` is ``(F,)`` bool, False on frames whose people were not observed (a loss mask).
    """

    video: torch.Tensor
    avatar: torch.Tensor
    caption: str
    key: str
    valid: torch.Tensor | None = None


class ClipDataset(torch.utils.data.Dataset):
    """Clips of a manifest as :class:`ClipSample` (``num_frames`` frames at ``fps``, ``height x width``)."""

    def __init__(self, manifest: str | os.PathLike | list[ClipRecord], num_frames: int = AMG_NUM_FRAMES,
                 height: int = AMG_SIZE, width: int = AMG_SIZE, fps: float = AMG_FPS):
        self.records = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        self.num_frames, self.height, self.width, self.fps = num_frames, height, width, fps
        # every clip is checked here, so a training run refuses a broken manifest before it writes anything
        for i, r in enumerate(self.records):
            for p in (r.video, r.avatar):
                if not os.path.isfile(p):
                    raise AmgError(f"{p}: no such video (manifest clip {i})")

    def __len__(self) -> int:
        return len(self.records)

    def key(self, i: int) -> str:
        """A hash of everything that determines sample ``i``: record, files' size and time, settings."""
        r = self.records[i]
        stats = []
        for p in (r.video, r.avatar):
            try:
                st = os.stat(p)
                stats.append([st.st_size, st.st_mtime_ns])
            except FileNotFoundError:
                raise AmgError(f"{p}: no such video (manifest clip {i})") from None
        blob = json.dumps([r.to_json(), stats, self.num_frames, self.height, self.width, self.fps])
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    def __getitem__(self, i: int) -> ClipSample:
        r = self.records[i]
        idx = sample_indices(r.frames[0], r.frames[1], r.fps, self.num_frames, self.fps)
        out = []
        for path in (r.video, r.avatar):
            frames, _ = read_video(path)
            if len(frames) <= idx[-1]:
                raise AmgError(f"{path}: {len(frames)} frames, manifest range needs frame {idx[-1]}")
            out.append(to_model_range(frames[idx], self.height, self.width))
        return ClipSample(video=out[0], avatar=out[1], caption=r.caption, key=self.key(i), valid=r.valid_at(idx))


@dataclass
class LatentSample:
    """Encoded clip: ``video`` and ``avatar`` latents ``(4, F, h, w)``, caption embedding ``text`` ``(L, D)``.

    ``valid``: ``(F,)`` bool frame mask of the clip (batched: ``(B, F)``), or None.
    """

    video: torch.Tensor
    avatar: torch.Tensor
    text: torch.Tensor
    caption: str
    valid: torch.Tensor | None = None


def collate_latents(samples: list[LatentSample]) -> LatentSample:
    """Stack samples into a batch (leading batch axis on every tensor; captions joined by newlines)."""
    return LatentSample(video=torch.stack([s.video for s in samples]),
                        avatar=torch.stack([s.avatar for s in samples]),
                        text=torch.stack([s.text for s in samples]),
                        caption="\n".join(s.caption for s in samples),
                        valid=(torch.stack([s.valid for s in samples])
                               if all(s.valid is not None for s in samples) else None))


def _weights_hash(*modules: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for m in modules:
        for name, p in list(m.state_dict().items())[:4] + list(m.state_dict().items())[-2:]:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


class LatentDataset(torch.utils.data.Dataset):
    """:class:`ClipDataset` encoded by the model's VAE and text encoder, optionally cached on disk.

    With ``cache_dir`` each clip is encoded once and stored as ``<key>.safetensors`` (float32); later
    epochs and runs with the same clips, settings and encoders load it instead of decoding videos.
    Encoding runs on the device the encoders are on.
    """

    def __init__(self, clips: ClipDataset, vae: torch.nn.Module, text_encoder: torch.nn.Module, tokenizer,
                 cache_dir: str | os.PathLike | None = None):
        self.clips, self.vae, self.text_encoder, self.tokenizer = clips, vae, text_encoder, tokenizer
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._encoders = _weights_hash(vae, text_encoder)

    def __len__(self) -> int:
        return len(self.clips)

    def cache_path(self, i: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.clips.key(i)}-{self._encoders}.safetensors"

    def _valid(self, i: int) -> torch.Tensor:
        c, r = self.clips, self.clips.records[i]
        return r.valid_at(sample_indices(r.frames[0], r.frames[1], r.fps, c.num_frames, c.fps))

    def __getitem__(self, i: int) -> LatentSample:
        from safetensors.torch import load_file, save_file

        from .model import encode_prompt, encode_video

        path = self.cache_path(i)
        caption = self.clips.records[i].caption
        if path is not None and path.is_file():
            t = load_file(str(path))
            return LatentSample(video=t["video"], avatar=t["avatar"], text=t["text"], caption=caption,
                                valid=self._valid(i))
        clip = self.clips[i]
        both = torch.stack([clip.video, clip.avatar])
        lat = encode_video(self.vae, both).float().cpu()
        text = encode_prompt(self.text_encoder, self.tokenizer, [clip.caption])[0].float().cpu()
        sample = LatentSample(video=lat[0].contiguous(), avatar=lat[1].contiguous(), text=text.contiguous(),
                              caption=caption, valid=clip.valid)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({"video": sample.video, "avatar": sample.avatar, "text": sample.text}, str(tmp))
        return sample
