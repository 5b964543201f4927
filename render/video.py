"""The one module for video and image files: MP4 (H.264, yuv420p, PyAV), GIF, PNG frames, contact sheets.

Frames are ``uint8 (F,H,W,3)`` (numpy or torch) or floats in ``[0,1]`` (rounded to uint8). Every write
goes through :func:`render.io.atomic_path`, so a killed run never leaves a half-written file. Writers
replace an existing file by default (``overwrite=True``: stage outputs are regenerated in place); pass
``overwrite=False`` to refuse, with an :class:`AmgError`, when the destination exists.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import AmgError
from .image import to_uint8, video_array
from .io import atomic_path

__all__ = ["write_video", "read_video", "write_frames", "read_frames", "write_image", "read_image",
           "contact_sheet", "to_uint8"]

_MP4_SUFFIXES = (".mp4", ".mov", ".mkv")
_MP4_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: ITU-R BT.709 tags written on every H.264 stream (FFmpeg's AVColor* values): limited ("MPEG") range,
#: BT.709 matrix, primaries and transfer; the RGB -> YUV conversion uses the same matrix and range.
_BT709 = {"range": 1, "matrix": 1, "primaries": 1, "transfer": 1}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _video_array(frames) -> np.ndarray:
    return video_array(frames, name="frames")


def write_video(path, frames, fps: float = 8.0, overwrite: bool = True, crf: int = 18) -> Path:
    """Write ``frames (F,H,W,3)`` to ``path`` at ``fps`` frames per second.

    ``.mp4``/``.mov``/``.mkv``: H.264 (libx264, yuv420p, constant rate factor ``crf``) via PyAV, tagged
    BT.709 (limited range, matrix, primaries, transfer) and converted with that matrix; MP4/MOV carry the
    index first (``+faststart``). One encoder thread, so the same frames always give the same bytes. Odd
    widths or heights are padded by one repeated edge row/column, since yuv420p needs even sizes.
    ``.gif``: an endlessly looping GIF (frame durations rounded to 10 ms, GIF's unit).
    """
    path = Path(path)
    v = _video_array(frames)
    if not (fps > 0 and math.isfinite(fps)):
        raise AmgError(f"{path}: expected a positive fps, got {fps}")
    suffix = path.suffix.lower()
    if suffix in _MP4_SUFFIXES:
        import av

        F, H, W, _ = v.shape
        v = np.pad(v, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        with atomic_path(path, overwrite=overwrite) as tmp:
            # +faststart moves the index (moov) before the media data, so players and browsers can start
            # before the whole file has arrived
            with av.open(str(tmp), mode="w", format=_MP4_FORMATS[suffix],
                         options={"movflags": "+faststart"} if suffix != ".mkv" else {}) as container:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = v.shape[2], v.shape[1], "yuv420p"
                cc = stream.codec_context
                cc.color_range, cc.colorspace = _BT709["range"], _BT709["matrix"]
                cc.color_primaries, cc.color_trc = _BT709["primaries"], _BT709["transfer"]
                # One encoder thread: x264's output depends on its thread count, which it picks from the
                # CPUs it can see at that moment; pinning it makes the same frames give the same bytes.
                cc.thread_count = 1
                stream.options = {"crf": str(int(crf)), "threads": "1"}
                for frame in v:
                    rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
                    yuv = rgb.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG",
                                       dst_color_trc=_BT709["transfer"], dst_color_primaries=_BT709["primaries"])
                    for packet in stream.encode(yuv):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    elif suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in v]
        with atomic_path(path, overwrite=overwrite) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(10, int(round(1000 / fps / 10)) * 10), loop=0, optimize=False)
    else:
        raise AmgError(f"{path}: unknown video extension {path.suffix!r}; expected .mp4, .mov, .mkv or .gif")
    return path


def read_video(path) -> tuple[np.ndarray, float]:
    """Decode a video (MP4, GIF, anything FFmpeg reads) -> ``frames uint8 (F,H,W,3)`` and its fps.

    Raises :class:`AmgError` when the file is missing, unreadable or holds no video frames.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise AmgError(f"{path}: no such video file")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise AmgError(f"{path}: no video stream in the file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
    except AmgError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise AmgError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
    if not frames:
        raise AmgError(f"{path}: the video has no frames")
    fps = float(rate) if rate else _gif_fps(path)
    return np.stack(frames), fps


def _gif_fps(path: Path) -> float:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return 1000.0 / max(int(im.info.get("duration", 125)), 1)
    except OSError:
        return 8.0


def write_image(path, image, overwrite: bool = True) -> Path:
    """Write ``image (H,W,3)`` (uint8 or float ``[0,1]``) or a grey ``(H,W)`` one as PNG/JPEG/..."""
    from PIL import Image

    path = Path(path)
    a = to_uint8(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise AmgError(f"{path}: expected an image (H,W,3) or (H,W), got {tuple(a.shape)}")
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise AmgError(f"{path}: unknown image extension {path.suffix!r}; expected one of {_IMAGE_SUFFIXES}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(a).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
    return path


def read_image(path) -> np.ndarray:
    """Read an image file -> ``uint8 (H,W,3)`` RGB (grey and palette images converted, alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AmgError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise AmgError(f"{path}: not a readable image ({type(e).__name__})") from None


def write_frames(directory, frames, pattern: str = "{:05d}.png", overwrite: bool = True) -> list[Path]:
    """Write each frame of ``frames (F,H,W,3)`` as ``directory/pattern.format(i)``; returns the paths."""
    v = _video_array(frames)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_image(directory / pattern.format(i), f, overwrite=overwrite) for i, f in enumerate(v)]


def read_frames(directory) -> np.ndarray:
    """Read the images in ``directory`` in name order -> ``uint8 (F,H,W,3)``; all must share one size."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AmgError(f"{directory}: no such frame directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise AmgError(f"{directory}: no image files")
    images = [read_image(p) for p in files]
    if len({im.shape for im in images}) > 1:
        raise AmgError(f"{directory}: expected frames of one size, got {sorted({im.shape for im in images})}")
    return np.stack(images)


def contact_sheet(frames, labels: Sequence[str] | None = None, cols: int | None = None, pad: int = 4,
                  background: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """A grid of ``frames`` (a sequence of ``(H_i,W_i,3)`` images or an ``(F,H,W,3)`` array) with optional
    one-line ``labels`` under each, drawn in PIL's default font -> ``uint8`` image.

    ``cols`` defaults to ``ceil(sqrt(F))``; cells take the largest frame size, smaller frames are centred.
    """
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(frames, (list, tuple)):
        images = [to_uint8(f) for f in frames]
    else:
        images = list(_video_array(frames))
    if not images:
        raise AmgError("contact sheet: expected at least one frame, got none")
    if any(im.ndim != 3 or im.shape[-1] != 3 for im in images):
        raise AmgError("contact sheet: expected frames of shape (H,W,3)")
    n = len(images)
    if labels is not None and len(labels) != n:
        raise AmgError(f"contact sheet: got {len(labels)} labels for {n} frames")
    cols = int(cols) if cols else math.ceil(math.sqrt(n))
    if cols < 1:
        raise AmgError(f"contact sheet: expected cols >= 1, got {cols}")
    rows = math.ceil(n / cols)
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    font = ImageFont.load_default()
    label_h = 0
    if labels is not None:
        label_h = max(font.getbbox(str(t) or " ")[3] for t in labels) + 4
    sheet = Image.new("RGB", (cols * (cw + pad) + pad, rows * (ch + label_h + pad) + pad), tuple(background))
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x = pad + c * (cw + pad)
        y = pad + r * (ch + label_h + pad)
        sheet.paste(Image.fromarray(im), (x + (cw - im.shape[1]) // 2, y + (ch - im.shape[0]) // 2))
        if labels is not None:
            draw.text((x + 2, y + ch + 2), str(labels[i]), fill=(0, 0, 0), font=font)
    return np.asarray(sheet)
