"""Image and video-array helpers: the one uint8/float conversion, the one video-array check, the one resize,
background plates, compositing and the false-colour pictures of masks, depth and flow.

Arrays are numpy: images ``(H,W,3)``, videos ``(F,H,W,3)``; ``uint8`` on disk and for display, float32 in
``[0,1]`` for arithmetic (DESIGN.md's convention). Functions here know pixels only, not cameras or people.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import AmgError

__all__ = ["to_uint8", "to_float", "video_array", "resize_frames", "fit_plate", "load_plate", "composite_over",
           "colorize_ids", "colorize_depth", "flow_to_rgb"]


def to_uint8(frames) -> np.ndarray:
    """Images or videos (uint8, or float in ``[0,1]``; numpy or torch) as a uint8 numpy array.

    Floats are clipped to ``[0,1]`` and rounded (``round(255 x)``). A trailing single channel is repeated to
    RGB; an alpha channel is dropped.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    a = np.asarray(frames)
    if a.dtype == np.uint8:
        out = a
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise AmgError("frames: expected finite values in [0,1], got NaN or inf")
        out = np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    else:
        raise AmgError(f"frames: expected uint8 or float in [0,1], got {a.dtype}")
    if out.ndim >= 3 and out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    if out.ndim >= 3 and out.shape[-1] == 4:
        out = out[..., :3]
    return np.ascontiguousarray(out)


def to_float(frames) -> np.ndarray:
    """uint8 images/videos (or floats, passed through) as float32 in ``[0,1]`` (``x / 255``)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    a = np.asarray(frames)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32)


def video_array(frames, name: str = "frames", uint8: bool = True) -> np.ndarray:
    """Check and return a video ``(F,H,W,3)`` with ``F, H, W >= 1``: the one validator of video arrays.

    With ``uint8`` (default), float frames in ``[0,1]`` (numpy or torch) and lists of frames are converted
    with :func:`to_uint8`; without it the array must already be ``uint8``. Raises :class:`AmgError`
    naming ``name`` otherwise.
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise AmgError(f"{name}: expected at least one frame, got none")
        frames = np.stack([to_uint8(f) for f in frames]) if uint8 else np.stack([np.asarray(f) for f in frames])
    v = to_uint8(frames) if uint8 else np.asarray(frames)
    if v.ndim != 4 or v.shape[-1] != 3 or 0 in v.shape:
        raise AmgError(f"{name}: expected a video (F,H,W,3) with F, H, W >= 1, got shape {tuple(v.shape)}")
    if v.dtype != np.uint8:
        raise AmgError(f"{name}: expected uint8 RGB frames, got {v.dtype}")
    return v


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image ``(H,W,C)`` or video ``(F,H,W,C)`` to ``height x width``: area averaging when
    shrinking (no aliasing), bilinear when enlarging. Same dtype out."""
    import cv2

    a = np.asarray(frames)
    if a.ndim not in (3, 4):
        raise AmgError(f"resize: expected an image (H,W,C) or video (F,H,W,C), got shape {a.shape}")
    if a.shape[-3:-1] == (height, width):
        return a
    shrink = height * width < a.shape[-3] * a.shape[-2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    one = lambda f: cv2.resize(f, (int(width), int(height)), interpolation=interp).reshape(height, width, -1)
    return one(a) if a.ndim == 3 else np.stack([one(f) for f in a])


def fit_plate(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale ``image (H,W,3)`` to cover ``height x width`` (aspect kept) and crop the centre -> ``(height,width,3)``."""
    h, w = image.shape[:2]
    s = max(height / h, width / w)
    sh, sw = max(height, int(round(h * s))), max(width, int(round(w * s)))
    big = resize_frames(image, sh, sw)
    y0, x0 = (sh - height) // 2, (sw - width) // 2
    return np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width])


def load_plate(source, num_frames: int, height: int, width: int) -> np.ndarray:
    """A background plate for ``num_frames`` frames of ``height x width`` -> ``uint8 (F,H,W,3)``.

    ``source``: a path to an image or a video (read with :mod:`render.video`), or an array ``(H,W,3)`` /
    ``(F,H,W,3)``. Each frame is scaled to cover the camera's image and centre-cropped; a video gives its
    frame ``f`` to frame ``f`` and holds its last frame when shorter than the clip.
    """
    from .video import _IMAGE_SUFFIXES, read_image, read_video

    if isinstance(source, (str, Path)):
        p = Path(source)
        frames = read_image(p)[None] if p.suffix.lower() in _IMAGE_SUFFIXES else read_video(p)[0]
    else:
        a = to_uint8(source)
        frames = a[None] if a.ndim == 3 else a
    frames = video_array(frames, name=f"background {source if isinstance(source, (str, Path)) else 'array'}")
    pick = np.minimum(np.arange(num_frames), len(frames) - 1)
    cache: dict[int, np.ndarray] = {}
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for f, k in enumerate(pick):
        if k not in cache:
            cache[k] = fit_plate(frames[k], height, width)
        out[f] = cache[k]
    return out


def composite_over(rgb: np.ndarray, alpha: np.ndarray, plate: np.ndarray, shade: np.ndarray | None = None) -> np.ndarray:
    """Avatars rendered over black, put over a plate: ``rgb + (1 - alpha) * plate * (1 - shade)``.

    Args:
        rgb: ``(..., H, W, 3)`` uint8 or float: the render over a black background (premultiplied colour).
        alpha: ``(..., H, W)`` coverage in ``[0,1]``.
        plate: ``(..., H, W, 3)`` background.
        shade: optional ``(..., H, W)`` darkening of the plate in ``[0,1]`` (a shadow), 0 for none.

    Returns:
        uint8 ``(..., H, W, 3)``.
    """
    fg, bg = to_float(rgb), to_float(plate)
    a = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)[..., None]
    if shade is not None:
        bg = bg * (1.0 - np.clip(np.asarray(shade, np.float32), 0.0, 1.0))[..., None]
    return to_uint8(fg + (1.0 - a) * bg)


_ID_COLORS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                       [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.uint8)


def colorize_ids(mask: np.ndarray) -> np.ndarray:
    """Instance ids ``(..., H, W)`` (0 background) -> ``uint8 (..., H, W, 3)``, one fixed colour per id."""
    mask = np.asarray(mask)
    return _ID_COLORS[np.where(mask > 0, (mask - 1) % (len(_ID_COLORS) - 1) + 1, 0)]


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Metric depth ``(..., H, W)`` (0 empty) -> grey ``uint8 (..., H, W, 3)``: near bright, far dark, empty black."""
    depth = np.asarray(depth)
    valid = depth > 0
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    lo, hi = float(depth[valid].min()), float(depth[valid].max())
    t = np.where(valid, 1 - (depth - lo) / max(hi - lo, 1e-6), 0)
    g = to_uint8(t)
    return np.stack([g, g, g], -1)


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """Visualise a ``(2,F,H,W)`` flow map as ``uint8 (F,H,W,3)``: hue = direction, value = magnitude."""
    import cv2

    dx, dy = flow[0], flow[1]
    mag = np.sqrt(dx * dx + dy * dy)
    ang = (np.degrees(np.arctan2(dy, dx)) % 360) / 2
    scale = max(float(mag.max()), 1e-6)
    hsv = np.stack([ang, np.full_like(ang, 255), np.clip(mag / scale * 255, 0, 255)], -1).astype(np.uint8)
    return np.stack([cv2.cvtColor(h, cv2.COLOR_HSV2RGB) for h in hsv])
