"""Builds the pieces of a scene from the apps' config groups: body, motions, avatars, camera path.

Shared by ``amg.render`` (studio renders), ``amg.generate`` (prompt -> video) and ``amg.prep`` (training
data), so each choice means the same thing in every app.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from avatars.gaussians import GaussianAvatar
from avatars.motion import Motion
from avatars.scene import Person
from render.camera import Camera, CameraPath
from render.errors import AmgError

log = logging.getLogger("amg")

__all__ = ["report_errors", "static_camera", "build_body", "build_motions", "build_avatars", "build_camera",
           "fit_length", "place_side_by_side"]


def report_errors(fn: Callable) -> Callable:
    """Run an app's ``main``: a user error (:class:`AmgError`) prints one line and exits with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AmgError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def static_camera(num_frames: int, eye: Sequence[float], target: Sequence[float], fov_deg: float, width: int,
                  height: int, fps: float) -> CameraPath:
    """A camera that does not move (the ``camera=static`` config)."""
    cam = Camera.look_at(eye, target, fov_deg=fov_deg, width=width, height=height)
    return CameraPath.static(cam, num_frames, fps)


def _instantiate(cfg: DictConfig, **kwargs):
    """``hydra.utils.instantiate`` that lets a user error from the target through as itself."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, AmgError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def build_body(cfg: DictConfig):
    """The body model of the ``body`` group."""
    return _instantiate(cfg)


def fit_length(motion: Motion, num_frames: int) -> Motion:
    """``motion`` with exactly ``num_frames`` frames: sliced when longer, the last pose held when shorter."""
    F = len(motion)
    if F >= num_frames:
        return motion[:num_frames]
    return motion[torch.cat([torch.arange(F), torch.full((num_frames - F,), F - 1)])]


def build_motions(cfg: DictConfig, num_frames: int, fps: float, text: str | None = None,
                  num_people: int | None = None) -> list[Motion]:
    """Motions of the ``motion`` group, each resampled to ``fps`` and fitted to ``num_frames``.

    ``name: from_text`` (or ``text`` given with ``name: auto``) picks motions from the prompt's verbs;
    ``name: file`` loads ``path``; any other name is a motion-library entry.
    """
    from avatars import motion_library

    seconds = num_frames / fps
    name = str(cfg.get("name", "idle"))
    if name == "file" or cfg.get("path"):
        if not cfg.get("path"):
            raise AmgError("motion.path: expected a motion file for motion=file")
        motions = load_motion_file(str(cfg.path), fps)
    elif name in ("auto", "from_text") and text is not None:
        motions = motion_library.from_text(text, seconds=seconds, fps=fps, num_people=num_people)
    else:
        if name not in motion_library.names():
            raise AmgError(f"motion={name}: unknown; expected one of {', '.join(motion_library.names())}, file")
        motions = motion_library.make_people(name, seconds=seconds, fps=fps, speed=float(cfg.get("speed", 1.0)),
                                             direction=float(cfg.get("direction", 0.0)))
    return [fit_length(m.resample(fps) if abs(m.fps - fps) > 1e-6 else m, num_frames) for m in motions]


def load_motion_file(path: str, fps: float) -> list[Motion]:
    """Motions in a file: our npz, AMASS, SMPL pkl/npz, BVH, or a TRACE ``trace2`` npz (one per track)."""
    p = Path(path)
    if p.suffix == ".npz" and p.is_file():
        with np.load(p, allow_pickle=False) as d:
            is_trace = {"reorganize_idx", "smpl_thetas", "cam_trans"} <= set(d.files)
        if is_trace:
            from reconstruction.trace import load_trace

            # the source video's size only matters for TRACE's camera, which a new camera path replaces
            return list(load_trace(p, width=512, height=512, fps=fps).motions)
    return [Motion.load(path)]


def place_side_by_side(motions: list[Motion], spacing: float = 1.0) -> list[Motion]:
    """Shift single-person motions sideways (along x) so several people do not overlap."""
    if len(motions) < 2:
        return motions
    out = []
    for i, m in enumerate(motions):
        dx = (i - (len(motions) - 1) / 2) * spacing
        out.append(m.copy(transl=m.transl + torch.tensor([dx, 0.0, 0.0], dtype=m.transl.dtype)))
    return out


def build_avatars(body, cfg: DictConfig, appearances: Sequence[str] | None = None) -> list[GaussianAvatar]:
    """One avatar per appearance (``cfg.appearance`` is a string or a list); or ``cfg.ply`` imported."""
    if cfg.get("ply"):
        return [GaussianAvatar.load(str(cfg.ply), body)]
    if appearances is None:
        a = cfg.get("appearance", "a person")
        appearances = list(a) if isinstance(a, (list, ListConfig)) else [str(a)]
    return [GaussianAvatar.from_body(body, appearance=str(text), num_gaussians=int(cfg.get("num_gaussians", 30000)),
                                     seed=int(cfg.get("seed", 0)) + i) for i, text in enumerate(appearances)]


def build_camera(cfg: DictConfig, people: Sequence[Person] | None = None) -> CameraPath:
    """The camera path of the ``camera`` group; ``follow`` tracks the people's mean pelvis."""
    made = _instantiate(cfg)
    if isinstance(made, CameraPath):
        return made
    if people is None:
        raise AmgError("camera=follow: needs the people it follows")
    pelvis = np.stack([p.motion.transl.detach().numpy() for p in people]).mean(0)
    pelvis = pelvis + np.array([0.0, 0.9, 0.0]) - pelvis[:1] * np.array([0.0, 1.0, 0.0])
    return made(targets=pelvis)


def pair_appearances(appearances: list[str], n: int) -> list[str]:
    """Exactly ``n`` appearances: cycle the given ones (or a neutral person) when there are fewer."""
    if not appearances:
        appearances = ["a person"]
    return [appearances[i % len(appearances)] for i in range(n)]


def config_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain data for ``meta.json``."""
    return OmegaConf.to_container(cfg, resolve=True)
