"""Image-to-video with a trained trajectory model: an image and its trajectory control -> video.

    python -m amg.animate method=levitor backbone.path=/models/svd-img2vid adapter=<run>/adapter scene=<render dir>
    python -m amg.animate method=posetraj ... image=first.png control=traj.npy
    python -m amg.animate method=levitor ... image=first.png mask=ids.png trajectories=clicks.json [depth=depth.npy]
    python -m amg.animate method=imageconductor backbone.path=/models/sd15 adapter=<run>/adapter scene=<render dir> \\
        +sampling.trajectory_guidance_scale=1.5    # camera-free guidance

The control comes from a render folder (``amg.render`` with the method's condition: LeviTor's
``levitor_control.npy`` from 3D trajectories with depth, the 3D-box model's ``traj.npy``, Image
Conductor's ``flow.npy``), from a file, or for LeviTor from clicks with depth: ``trajectories`` (a JSON
file or an inline list ``[{id: 1, points: [[x, y, d], ...]}]``, ``d`` the depth relative to the object's
at the first click) with the first frame's instance ``mask`` (PNG or .npy ids) and optional metric
``depth`` (.npy), turned into the control by :func:`finetune.methods.levitor.clicks_control`. Writes ``video.mp4``, ``contact_sheet.png`` (first frame,
control, generated frames) and ``meta.json`` into Hydra's run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from finetune.methods.image_conductor import ImageConductorMethod
from finetune.methods.svd_control import SVDControlMethod
from finetune.render_clips import CONDITIONS, TARGETS, read_condition
from finetune.train import ClipConfig, LoopConfig
from render.errors import AmgError
from render.io import write_meta, write_npy
from render.video import contact_sheet, read_video, write_image, write_video

from .build import hydra_app


@dataclass
class AnimateAppConfig:
    """The ``animate`` app's schema: the method and backbone groups of ``amg.train`` plus the inputs.

    ``data`` (the method's clip: frames, size) and ``train`` (unused here) are the method configs' own.
    """

    backbone: Any = MISSING
    method: Any = MISSING
    data: ClipConfig = field(default_factory=ClipConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    adapter: Optional[str] = None
    scene: Optional[str] = None
    image: Optional[str] = None
    control: Optional[str] = None
    mask: Optional[str] = None
    depth: Optional[str] = None
    trajectories: Any = None
    prompt: str = MISSING
    seed: int = 0
    fps: float = MISSING
    sampling: Any = field(default_factory=dict)


ConfigStore.instance().store(name="animate_schema", node=AnimateAppConfig)


def _read_array(path: str, what: str) -> np.ndarray:
    """An image (PNG...) or .npy file as an array; AmgError naming ``what`` when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise AmgError(f"{what}={p}: no such file")
    try:
        if p.suffix == ".npy":
            return np.load(p)
        from PIL import Image

        return np.asarray(Image.open(p))
    except Exception as e:  # truncated npy, pickled data, not an image...
        raise AmgError(f"{what}={p}: not a readable .npy or image file ({type(e).__name__})") from None


def _first_image(path: str) -> np.ndarray:
    frames, _ = read_video(path) if Path(path).suffix in (".mp4", ".gif") else (None, None)
    if frames is None:
        from PIL import Image

        if not Path(path).is_file():
            raise AmgError(f"image={path}: no such file")
        frames = np.asarray(Image.open(path).convert("RGB"))[None]
    return frames[0]


def _clicks_inputs(cfg: DictConfig, condition: str, num_frames: int) -> tuple[np.ndarray, torch.Tensor]:
    """First frame and LeviTor control from ``image``, ``mask``, optional ``depth`` and ``trajectories``."""
    from finetune.methods.levitor import clicks_control, read_clicks
    from render.conditions.levitor import disparity_from_depth

    if condition != "levitor":
        raise AmgError(f"trajectories: clicks with depth drive LeviTor (method=levitor), not the {condition} condition")
    if cfg.image is None or cfg.mask is None:
        raise AmgError("trajectories: expected image= (the first frame) and mask= (its instance ids) with them")
    first = _first_image(cfg.image)
    mask = _read_array(cfg.mask, "mask")
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if mask.shape != first.shape[:2]:
        raise AmgError(f"mask={cfg.mask}: {mask.shape}, expected the image's {first.shape[:2]}")
    disparity = None
    if cfg.depth is not None:
        depth = _read_array(cfg.depth, "depth").astype(np.float64)
        depth = depth[0] if depth.ndim == 3 else depth
        disparity = disparity_from_depth(depth)
    source = cfg.trajectories
    source = OmegaConf.to_container(source, resolve=True) if OmegaConf.is_config(source) else source
    control, _ = clicks_control(mask.astype(np.int64), read_clicks(source), num_frames, disparity)
    return first, torch.from_numpy(control)


def _inputs(cfg: DictConfig, condition: str, num_frames: int) -> tuple[np.ndarray, torch.Tensor]:
    """The first frame uint8 ``(H, W, 3)`` and the control ``(F, C, H, W)`` from ``scene``, ``image``+``control``
    or ``image``+``mask``+``trajectories`` (LeviTor's clicks with depth)."""
    if cfg.trajectories is not None:
        return _clicks_inputs(cfg, condition, num_frames)
    if cfg.scene is not None:
        folder = Path(cfg.scene)
        frames, _ = read_video(folder / TARGETS["clip"])
        return frames[0], read_condition(folder, condition, num_frames)
    if cfg.image is None or cfg.control is None:
        raise AmgError("scene: missing; expected a render folder, both image= and control= files, or "
                       "image=, mask= and trajectories= (LeviTor)")
    first = _first_image(cfg.image)
    path = Path(cfg.control)
    if path.suffix != ".npy" or not path.is_file():
        raise AmgError(f"control={path}: expected an existing .npy file ({CONDITIONS[condition]} layout)")
    tmp = path.parent
    if path.name != CONDITIONS[condition]:
        raise AmgError(f"control={path}: expected a file named {CONDITIONS[condition]} for the {condition} condition")
    return first, read_condition(tmp, condition, num_frames)


def run(cfg: DictConfig, out_dir: Path) -> Path:
    """Sample one video with the composed config into ``out_dir``; returns the video path."""
    if OmegaConf.is_missing(cfg.backbone, "path"):
        raise AmgError(f"backbone.path: missing; expected the base {cfg.backbone.family} folder (diffusers layout)")
    spec = instantiate(cfg.backbone, _convert_="all")
    method = instantiate(cfg.method).use(spec)
    if not isinstance(method, (SVDControlMethod, ImageConductorMethod)):
        raise AmgError(f"method={method.name}: amg.animate runs the trajectory models (levitor, posetraj, imageconductor)")
    method.setup(spec.path, torch.device("cpu"), torch.float32, int(cfg.seed))
    if cfg.adapter is not None:
        method.restore(cfg.adapter)
    condition = "flow" if isinstance(method, ImageConductorMethod) else method.condition
    num_frames = int(cfg.data.num_frames)
    first, control = _inputs(cfg, condition, num_frames)
    h, w = first.shape[:2]
    if tuple(control.shape[-2:]) != (h, w):
        raise AmgError(f"control {tuple(control.shape)}: expected frames of the image's size {h}x{w}")
    num_frames = min(num_frames, len(control))
    pipe = method.pipeline()
    gen = torch.Generator().manual_seed(int(cfg.seed))
    sampling = OmegaConf.to_container(cfg.sampling, resolve=True)
    if isinstance(method, ImageConductorMethod):
        image = torch.from_numpy(first).permute(2, 0, 1).float() / 127.5 - 1
        video = pipe(str(cfg.prompt), image=image, flow=control, num_frames=num_frames, height=h, width=w,
                     generator=gen, output_type="np", **sampling).frames[0]
    else:
        from PIL import Image

        from finetune.methods.levitor import SAMPLING

        kw = {**(SAMPLING if method.name == "levitor" else {}), **sampling}
        video = pipe(Image.fromarray(first), control=control, height=h, width=w, num_frames=num_frames,
                     generator=gen, output_type="np", **kw).frames[0]
    frames = (np.clip(np.asarray(video), 0, 1) * 255).round().astype(np.uint8)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_video(out_dir / "video.mp4", frames, fps=float(cfg.fps))
    shown = control[:, :3] if control.shape[1] >= 3 else torch.cat([control, control[:, :1] * 0], 1)
    shown = shown.float()
    shown = (shown / shown.abs().max().clamp(min=1e-6)).abs().clamp(0, 1)
    sheet = [first] + [(s.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for s in shown] + list(frames)
    if cfg.trajectories is not None:  # the control the clicks made, reusable as control=
        write_npy(out_dir / CONDITIONS[condition], control.numpy())
    write_image(out_dir / "contact_sheet.png", contact_sheet(sheet, cols=max(num_frames, 1) + 1))
    write_meta(out_dir, "animate", inputs={"backbone": spec.path, "adapter": cfg.adapter, "scene": cfg.scene,
                                           "image": cfg.image, "control": cfg.control},
               config=OmegaConf.to_container(cfg, resolve=True), seed=int(cfg.seed), method=method.name)
    return path


@hydra_app("animate")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
