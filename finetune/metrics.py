"""Evaluation metrics: CLIP score, motion fidelity score, ObjMC and CamMC.

- CLIP score (AMG): ``100 * cos(text embedding, frame embedding)`` averaged over the frames, with a
  ``transformers`` ``CLIPModel`` loaded from a local folder.
- Motion fidelity score (AMG appendix, after Yatim et al. 2024): tracklets of the two videos are
  compared through the correlation of their per-frame displacements,
  ``corr(a, b) = 1/F sum_k (v_k . w_k) / (|v_k| |w_k|)``, and the score is the symmetric mean of the best
  correlations, ``1/2 (1/m sum_{b} max_a corr + 1/n sum_{a} max_b corr)``, so identical motion scores 1
  and reversed motion -1. Tracklets come from a pluggable tracker; the default is OpenCV's pyramidal
  Lucas-Kanade on a regular grid.
- ObjMC (MotionCtrl, used by LeviTor and Image Conductor): the mean Euclidean distance in pixels between
  generated and target trajectories. Points are tracked by Lucas-Kanade in decoded frames, or by
  :func:`template_tracks` (patch matching against a reference frame) in any float video, latents included:
  a tiny random VAE cannot decode, but its latents still show where things are.
- CamMC: MotionCtrl's mean distance between generated and target camera poses ``[R|t]`` (each path
  taken relative to its first frame), and Image Conductor's pixel variant, ObjMC over whole-frame tracks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from render.errors import AmgError
from render.image import video_array

__all__ = ["template_tracks", "lk_track_points", "ClipScorer", "clip_score", "lk_tracks", "tracklet_correlation", "motion_fidelity", "objmc",
           "cammc", "cammc_tracks", "Tracker", "sample_control_latents", "control_objmc"]

# A tracker maps a uint8 video (F, H, W, 3) to tracks (N, F, 2) in pixels (x, y) and visibility (N, F).
Tracker = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check_video(video, name: str) -> np.ndarray:
    return video_array(video, name=name, uint8=False)


@dataclass
class ClipScorer:
    """A CLIP model, tokenizer and preprocessing read from a local folder (``transformers`` layout)."""

    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "ClipScorer":
        """Load ``CLIPModel`` and ``CLIPTokenizer``; crop size and normalisation from ``preprocessor_config.json``."""
        from transformers import CLIPModel, CLIPTokenizer

        from render.io import read_json

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise AmgError(f"{folder}: not a CLIP model folder (no config.json)")
        model = CLIPModel.from_pretrained(folder).to(device).eval()
        tokenizer = CLIPTokenizer.from_pretrained(folder)
        size = model.config.vision_config.image_size
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
        if (folder / "preprocessor_config.json").is_file():
            pre = read_json(folder / "preprocessor_config.json")
            mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
        return cls(model=model, tokenizer=tokenizer, image_size=size,
                   mean=torch.tensor(mean).view(1, 3, 1, 1), std=torch.tensor(std).view(1, 3, 1, 1))

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> normalised ``(F, 3, S, S)``: short side to S (bicubic), centre crop."""
        from .data import resize_center_crop

        x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        s = self.image_size / min(h, w)
        x = torch.nn.functional.interpolate(x, size=(max(self.image_size, round(h * s)),
                                                     max(self.image_size, round(w * s))),
                                            mode="bicubic", align_corners=False, antialias=True)
        x = resize_center_crop(x, self.image_size, self.image_size).clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def per_frame(self, frames, text: str) -> np.ndarray:
        """``100 * cos(text, frame)`` for each frame, ``(F,)``."""
        frames = _check_video(frames, "frames")
        device = next(self.model.parameters()).device
        ids = self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        t = self.model.get_text_features(input_ids=ids)
        i = self.model.get_image_features(pixel_values=self.preprocess(frames).to(device))
        t = getattr(t, "pooler_output", t)
        i = getattr(i, "pooler_output", i)
        cos = torch.nn.functional.cosine_similarity(i, t.expand_as(i), dim=-1)
        return (100.0 * cos).cpu().numpy()

    def score(self, frames, text: str) -> float:
        """The CLIP score of a video: the per-frame scores averaged over frames."""
        return float(self.per_frame(frames, text).mean())


def clip_score(frames, text: str, clip_folder: str | os.PathLike) -> float:
    """CLIP score of uint8 ``(F, H, W, 3)`` frames against ``text`` with the CLIP model in ``clip_folder``."""
    return ClipScorer.from_folder(clip_folder).score(frames, text)


def lk_tracks(video, grid_step: int = 8, margin: int = 4, window: int = 15, levels: int = 3
              ) -> tuple[np.ndarray, np.ndarray]:
    """Track a regular grid of points through ``video`` with OpenCV's pyramidal Lucas-Kanade.

    Args:
        video: uint8 ``(F, H, W, 3)``.
        grid_step: spacing of the grid in pixels (points start on the first frame).
        margin: distance of the outermost grid points from the border.
        window, levels: LK window side and pyramid levels.
    Returns:
        tracks ``(N, F, 2)`` float32 pixel positions (x, y), and visible ``(N, F)`` bool, false from the
        first frame where LK loses the point or it leaves the frame.
    """
    video = _check_video(video, "video")
    f, h, w = video.shape[:3]
    ys, xs = np.mgrid[margin:h - margin:grid_step, margin:w - margin:grid_step]
    pts = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    return lk_track_points(video, pts, window=window, levels=levels)


def lk_track_points(video, points, window: int = 15, levels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Track given first-frame ``points`` ``(N, 2)`` (x, y pixels) through ``video`` uint8 ``(F, H, W, 3)``.

    Returns tracks ``(N, F, 2)`` float32 and visible ``(N, F)`` bool (false from the first frame where
    pyramidal Lucas-Kanade loses the point or it leaves the frame; a lost point keeps its last position).
    """
    import cv2

    video = _check_video(video, "video")
    f, h, w = video.shape[:3]
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    tracks = np.zeros((len(pts), f, 2), np.float32)
    visible = np.zeros((len(pts), f), bool)
    tracks[:, 0], visible[:, 0] = pts, True
    if len(pts) == 0:
        return tracks, visible
    gray = [cv2.cvtColor(fr, cv2.COLOR_RGB2GRAY) for fr in video]
    for k in range(1, f):
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(gray[k - 1], gray[k], tracks[:, k - 1].reshape(-1, 1, 2).copy(),
                                                  None, winSize=(window, window), maxLevel=levels)
        nxt = nxt.reshape(-1, 2)
        inside = (nxt[:, 0] >= 0) & (nxt[:, 0] <= w - 1) & (nxt[:, 1] >= 0) & (nxt[:, 1] <= h - 1)
        visible[:, k] = visible[:, k - 1] & (status.ravel() == 1) & inside
        tracks[:, k] = np.where(visible[:, k, None], nxt, tracks[:, k - 1])
    return tracks, visible


def template_tracks(video, points, reference=None, radius: int = 1) -> np.ndarray:
    """Track ``points`` ``(N, 2)`` (x, y in the video's own pixels) by matching a patch of ``reference``.

    For each point the ``(2r+1)^2`` patch of ``reference`` ``(H, W, C)`` (default: the video's first frame)
    around its rounded position is compared, by the sum of squared differences over all channels, with
    the patch around every pixel of every frame of ``video`` float ``(F, H, W, C)`` (edges replicated);
    the best pixel is refined to sub-pixel by a parabola through its neighbours' scores, and the point's
    offset from its rounded position is kept. Works on RGB frames and on latents ``(F, h, w, c)`` alike
    (a latent track in pixels is ``(u + 0.5) s - 0.5`` for VAE factor ``s``).

    Returns tracks ``(N, F, 2)`` float64 (x, y).
    """
    v = np.asarray(video, np.float64)
    if v.ndim != 4:
        raise AmgError(f"template_tracks: video {v.shape}, expected (F, H, W, C)")
    ref = v[0] if reference is None else np.asarray(reference, np.float64)
    if ref.shape != v.shape[1:]:
        raise AmgError(f"template_tracks: reference {ref.shape}, expected a frame {v.shape[1:]}")
    n_f, h, w, _ = v.shape
    k, r = 2 * radius + 1, int(radius)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(v, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge"), (k, k), axis=(1, 2))  # (F, H, W, C, k, k)
    ref = np.pad(ref, ((r, r), (r, r), (0, 0)), mode="edge")

    def vertex(a: float, b: float, c: float) -> float:
        curve = a - 2 * b + c
        return 0.0 if curve <= 0 else 0.5 * (a - c) / curve

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    out = np.zeros((len(pts), n_f, 2))
    for n, (x, y) in enumerate(pts):
        xi, yi = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        patch = ref[yi:yi + k, xi:xi + k].transpose(2, 0, 1)
        ssd = ((windows - patch) ** 2).sum((3, 4, 5))  # (F, H, W)
        for f in range(n_f):
            e = ssd[f]
            row, col = divmod(int(np.argmin(e)), w)
            dx = vertex(e[row, col - 1], e[row, col], e[row, col + 1]) if 0 < col < w - 1 else 0.0
            dy = vertex(e[row - 1, col], e[row, col], e[row + 1, col]) if 0 < row < h - 1 else 0.0
            out[n, f] = (col + dx + x - xi, row + dy + y - yi)
    return out


def tracklet_correlation(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Correlation of every tracklet of ``a`` ``(N, F, 2)`` with every tracklet of ``b`` ``(M, F, 2)``: ``(N, M)``.

    ``corr = mean_k (v_k . w_k) / (|v_k| |w_k|)`` over the ``F - 1`` frame displacements; a step where
    either point does not move contributes 0.
    """
    va, vb = np.diff(np.asarray(a, np.float64), axis=1), np.diff(np.asarray(b, np.float64), axis=1)
    na, nb = np.linalg.norm(va, axis=-1), np.linalg.norm(vb, axis=-1)
    dots = np.einsum("nkc,mkc->nmk", va, vb)
    norms = na[:, None, :] * nb[None, :, :]
    cos = np.where(norms > eps, dots / np.maximum(norms, eps), 0.0)
    return cos.mean(-1)


def motion_fidelity(video_a, video_b, tracker: Tracker = lk_tracks, min_motion: float = 1.0) -> float:
    """Motion fidelity score of ``video_b`` against ``video_a`` (both uint8 ``(F, H, W, 3)``), in [-1, 1].

    Tracklets lost before the last frame are dropped, and so are those whose path is shorter than
    ``min_motion`` pixels: the correlation of a still point is undefined (the paper's tracker, CoTracker,
    tracks moving content). Raises :class:`AmgError` when either video has no moving tracklet.
    """
    ta, va = tracker(_check_video(video_a, "video_a"))
    tb, vb = tracker(_check_video(video_b, "video_b"))
    if ta.shape[1] != tb.shape[1]:
        raise AmgError(f"videos have {ta.shape[1]} and {tb.shape[1]} frames; expected the same count")
    keep = []
    for t, v in ((ta, va), (tb, vb)):
        path = np.linalg.norm(np.diff(t, axis=1), axis=-1).sum(-1)
        keep.append(t[v.all(1) & (path >= min_motion)])
    if len(keep[0]) == 0 or len(keep[1]) == 0:
        raise AmgError("motion_fidelity: a video has no tracked moving points; expected visible motion")
    corr = tracklet_correlation(keep[0], keep[1])
    return float(0.5 * (corr.max(0).mean() + corr.max(1).mean()))


def objmc(tracks: np.ndarray, target: np.ndarray, visible: np.ndarray | None = None) -> float:
    """ObjMC: mean Euclidean distance (pixels) between generated ``tracks`` and ``target`` ``(N, F, 2)``.

    ``visible`` ``(N, F)`` restricts the mean to points tracked in the generated video.
    """
    tracks, target = np.asarray(tracks, np.float64), np.asarray(target, np.float64)
    if tracks.shape != target.shape or tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise AmgError(f"tracks {tracks.shape} vs target {target.shape}: expected equal (N, F, 2)")
    d = np.linalg.norm(tracks - target, axis=-1)
    if visible is not None:
        visible = np.asarray(visible, bool)
        if not visible.any():
            raise AmgError("objmc: no visible points")
        return float(d[visible].mean())
    return float(d.mean())


def cammc(R: torch.Tensor, t: torch.Tensor, R_target: torch.Tensor, t_target: torch.Tensor) -> float:
    """CamMC: mean over frames of ``||[R|t] - [R'|t']||_F`` for world-to-camera poses ``R (F,3,3)``, ``t (F,3)``.

    Each path is first expressed relative to its own first frame (``P_k P_0^-1``), so the choice of
    world frame does not count; translations are compared in the paths' common unit (metres).
    """
    def relative(R, t):
        R, t = torch.as_tensor(R, dtype=torch.float64), torch.as_tensor(t, dtype=torch.float64)
        R0, t0 = R[0], t[0]
        Rr = R @ R0.T
        tr = t - (Rr @ t0[:, None])[..., 0]
        return torch.cat([Rr, tr[..., None]], -1)

    a, b = relative(R, t), relative(R_target, t_target)
    if a.shape != b.shape:
        raise AmgError(f"camera paths of {a.shape[0]} and {b.shape[0]} frames; expected the same count")
    return float(torch.linalg.matrix_norm(a - b).mean())


def cammc_tracks(video, target_video, tracker: Tracker = lk_tracks) -> float:
    """Image Conductor's pixel CamMC: ObjMC between whole-frame grid tracks of the two videos."""
    ta, va = tracker(_check_video(video, "video"))
    tb, vb = tracker(_check_video(target_video, "target_video"))
    if ta.shape != tb.shape:
        raise AmgError(f"track shapes {ta.shape} and {tb.shape}: expected videos of equal size and length")
    return objmc(ta, tb, visible=va & vb)


def sample_control_latents(method, first: torch.Tensor, control: torch.Tensor, frames: int, side: int,
                           steps: int, seed: int) -> np.ndarray:
    """Latents ``(F, h, w, C)`` that ``method``'s pipeline samples from a first frame ``(3, H, W)`` in [-1, 1]
    and a control (``(F, C, H, W)`` for the SVD ControlNets, flow ``(2, F, H, W)`` for Image Conductor),
    at ``side x side`` with guidance off; the method's network is put back in training mode."""
    pipe = method.pipeline()
    gen = torch.Generator().manual_seed(seed)
    if method.name == "imageconductor":
        lat = pipe(method.prompt, image=first, flow=control, num_frames=frames, height=side, width=side,
                   num_inference_steps=steps, guidance_scale=1.0, generator=gen, output_type="latent").frames
        lat = lat[0].permute(1, 0, 2, 3)
    else:
        from PIL import Image

        img = Image.fromarray(((first.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
        lat = pipe(img, control=control, height=side, width=side, num_frames=frames, num_inference_steps=steps,
                   min_guidance_scale=1.0, max_guidance_scale=1.0, fps=method.fps,
                   motion_bucket_id=method.motion_bucket_id, generator=gen, output_type="latent").frames[0]
    method.unwrapped().train()
    return lat.permute(0, 2, 3, 1).float().numpy()


def control_objmc(method, data, steps: int = 10, seeds: int = 2) -> np.ndarray:
    """How well a trajectory model follows its control, on two clips that share their first frame.

    ``data``: a :class:`~finetune.render_clips.RenderClipDataset` of two clips (e.g.
    :func:`finetune.testing.two_trajectory_clips`). For each clip's control, latents are sampled from
    ``data[0]``'s first frame (:func:`sample_control_latents`), the object is tracked in them against the
    encoded first frame (:func:`template_tracks`) and ObjMC (pixels) is measured to the clip's own
    trajectory and to the other clip's. Returns ``(2, 2)``: row ``j`` = clip ``j``'s control, columns
    (own, other), averaged over ``seeds`` samples. A model that follows its control has own < other.
    """
    from .backbones.base import encode_frames

    vae = method.backbone.vae
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    frames, side = data[0].video.shape[0], data[0].video.shape[-1]
    with torch.no_grad():
        ref = encode_frames(vae, data[0].video[:1]).permute(0, 2, 3, 1).float().numpy()[0]
    out = np.zeros((2, 2))
    for j in range(2):
        own, other = data[j].tracks, data[1 - j].tracks
        start = (own[:, 0] + 0.5) / scale - 0.5
        for seed in range(seeds):
            lat = sample_control_latents(method, data[0].first, data[j].control, frames, side, steps, seed)
            track = (template_tracks(lat, start, ref, radius=max(1, side // (8 * scale))) + 0.5) * scale - 0.5
            out[j] += [objmc(track, own) / seeds, objmc(track, other) / seeds]
    return out

