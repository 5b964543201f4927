"""Builds the pieces of a scene from the apps' config groups: body, motions, avatars, camera path.

Shared by ``amg.render`` (studio renders), ``amg.generate`` (prompt -> video) and ``amg.prep`` (training
data), so each choice means the same thing in every app.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
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
           "fit_length", "place_side_by_side", "LibraryMotion", "FileMotion", "motion_spec", "load_motion_file",
           "check_in_view"]


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


@dataclass
class LibraryMotion:
    """``motion=<name>``: a motion-library entry (``avatars.motion_library.names()``), or with
    ``name: auto``/``from_text`` the motions the prompt's verbs choose. ``path`` set turns it into a
    :class:`FileMotion` (``motion=walk motion.path=x.bvh`` keeps working)."""

    name: str = "idle"
    path: str | None = None
    speed: float = 1.0
    direction: float = 0.0  # degrees about +Y; 0 faces the default camera


@dataclass
class FileMotion:
    """``motion=file``: a motion file and the part of it to use.

    ``start``/``seconds`` (``None``: to the end) choose a segment in the file's own time; ``speed`` plays
    it faster or slower; ``direction`` (degrees about +Y) turns the whole path about the person's first
    position; ``offset`` (metres) moves it; BVH files also take ``rest_frame`` (``auto``: the best T-pose
    frame, ``zero``: the all-zero pose, or a frame number), ``up`` (``auto``, ``y``, ``z``), ``joint_map``
    (BVH joint -> SMPL joint name) and ``root_offset`` (``auto``, ``add``, ``ignore``); see
    :func:`avatars.bvh.load_bvh`. ``python -m avatars.bvh FILE`` lists a BVH's length and T-pose frames.
    """

    path: str
    name: str = "file"
    start: float = 0.0
    seconds: float | None = None
    speed: float = 1.0
    direction: float = 0.0
    offset: Sequence[float] = (0.0, 0.0, 0.0)
    rest_frame: int | str = "auto"
    up: str = "auto"
    joint_map: dict | None = None
    root_offset: str = "auto"


def motion_spec(cfg: DictConfig) -> LibraryMotion | FileMotion:
    """The ``motion`` group as a :class:`LibraryMotion` or :class:`FileMotion` (built from ``_target_``; a
    config without one is read by ``name``)."""
    if cfg.get("name") == "file" and OmegaConf.is_missing(cfg, "path"):
        raise AmgError("motion.path: expected a motion file for motion=file")
    if "_target_" in cfg:
        spec = _instantiate(cfg, _convert_="all")
    else:
        data = OmegaConf.to_container(cfg, resolve=True)
        spec = FileMotion(**data) if data.get("name") == "file" else LibraryMotion(**data)
    if isinstance(spec, LibraryMotion) and (spec.path or spec.name == "file"):
        if not spec.path:
            raise AmgError("motion.path: expected a motion file for motion=file")
        spec = FileMotion(path=str(spec.path), speed=spec.speed, direction=spec.direction)
    return spec


def build_motions(cfg: DictConfig, num_frames: int, fps: float, text: str | None = None,
                  num_people: int | None = None) -> list[Motion]:
    """Motions of the ``motion`` group, each resampled to ``fps`` and fitted to ``num_frames``.

    ``name: from_text`` (or ``text`` given with ``name: auto``) picks motions from the prompt's verbs;
    ``name: file`` loads ``path`` (:class:`FileMotion`); any other name is a motion-library entry.
    """
    from avatars import motion_library

    seconds = num_frames / fps
    spec = motion_spec(cfg)
    if isinstance(spec, FileMotion):
        motions = load_motion_file(spec.path, fps, spec)
    elif spec.name in ("auto", "from_text") and text is not None:
        motions = motion_library.from_text(text, seconds=seconds, fps=fps, num_people=num_people)
    else:
        name = "idle" if spec.name in ("auto", "from_text") else spec.name
        if name not in motion_library.names():
            raise AmgError(f"motion={name}: unknown; expected one of {', '.join(motion_library.names())}, file")
        motions = motion_library.make_people(name, seconds=seconds, fps=fps, speed=float(spec.speed),
                                             direction=float(spec.direction))
    return [fit_length(m.resample(fps) if abs(m.fps - fps) > 1e-6 else m, num_frames) for m in motions]


def load_motion_file(path: str, fps: float, spec: FileMotion | None = None) -> list[Motion]:
    """Motions in a file: our npz, AMASS, SMPL pkl/npz, BVH, or a TRACE ``trace2`` npz (one per track).

    ``spec`` chooses the segment, speed, heading and offset (:class:`FileMotion`); files other than
    TRACE land with their lowest foot point on ``y = 0``.
    """
    from avatars.contact import ground
    from avatars.motion_library import heading_matrix

    spec = spec if spec is not None else FileMotion(path=path)
    p = Path(path)
    if p.suffix == ".npz" and p.is_file():
        with np.load(p, allow_pickle=False) as d:
            is_trace = {"reorganize_idx", "smpl_thetas", "cam_trans"} <= set(d.files)
        if is_trace:
            from reconstruction.trace import load_trace

            # the source video's size only matters for TRACE's camera, which a new camera path replaces
            return [_place(m, spec, heading_matrix) for m in load_trace(p, width=512, height=512, fps=fps).motions]
    if p.suffix == ".bvh":
        m = Motion.load(path, rest_frame=spec.rest_frame, up=spec.up, joint_map=spec.joint_map,
                        root_offset=spec.root_offset, start=float(spec.start), seconds=spec.seconds)
    else:
        m = Motion.load(path)
        a = int(round(max(float(spec.start), 0.0) * m.fps))
        if a >= len(m):
            raise AmgError(f"motion.start {spec.start}: {path} is only {m.duration:.2f} s long")
        n = len(m) - a if spec.seconds is None else max(1, int(round(float(spec.seconds) * m.fps)))
        m = ground(m[a: a + n])
    if spec.seconds is not None and m.duration < float(spec.seconds) - 1.5 / m.fps:
        log.warning("motion.seconds %s: %s has only %.2f s from motion.start %s; the last pose is held",
                    spec.seconds, path, m.duration, spec.start)
    return [_place(m, spec, heading_matrix)]


def _place(m: Motion, spec: FileMotion, heading_matrix) -> Motion:
    """Apply a file motion's ``speed``, ``direction`` (about its first pelvis position) and ``offset``."""
    speed = float(spec.speed)
    if not (speed > 0 and np.isfinite(speed)):
        raise AmgError(f"motion.speed {spec.speed}: expected a positive number")
    if speed != 1.0:
        m = m.copy(fps=m.fps * speed)
    if float(spec.direction) != 0.0:
        from avatars.motion import _pelvis

        R = heading_matrix(float(spec.direction))
        pelvis0 = _pelvis(m.betas) + m.transl[0]  # turn about the person's first position, not the origin
        m = m.transformed(R, offset=pelvis0 - R @ pelvis0)
    offset = torch.as_tensor([float(x) for x in spec.offset], dtype=torch.float32)
    if offset.shape != (3,):
        raise AmgError(f"motion.offset {list(spec.offset)}: expected three numbers (metres)")
    return m.copy(transl=m.transl + offset) if bool(offset.any()) else m


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
    """The camera path of the ``camera`` group; ``follow`` tracks the people's centre at their mid-height,
    far enough back for their whole height (:func:`render.camera.follow_framing`)."""
    made = _instantiate(cfg)
    if isinstance(made, CameraPath):
        return made
    if people is None:
        raise AmgError("camera=follow: needs the people it follows")
    from render.camera import follow_framing

    with torch.no_grad():  # the bodies as posed, so the framing fits their real height and reach
        points = torch.cat([p.avatar.body(betas=p.avatar.betas.reshape(1, -1), global_orient=p.motion.global_orient,
                                          body_pose=p.motion.body_pose, transl=p.motion.transl).vertices
                            for p in people], 1)
    kw = made.keywords
    targets, offset = follow_framing(points, kw.get("offset", (0.0, 0.3, 3.8)), float(kw.get("fov_deg", 50.0)),
                                     int(kw.get("width", 256)), int(kw.get("height", 256)))
    return made(targets=targets, offset=offset.tolist())


def check_in_view(res, names: Sequence[str], max_out_of_view: float = 0.25, strict: bool = False) -> list[str]:
    """Warn in one line per person who is out of view (:meth:`avatars.scene.SceneRender.out_of_view`) in
    more than ``max_out_of_view`` of the frames; with ``strict`` that is an :class:`AmgError`. Returns
    the warnings."""
    share = res.out_of_view()
    msgs = [f"{names[i] if i < len(names) else f'person {i + 1}'} is out of view in {s:.0%} of the frames "
            f"(more than {max_out_of_view:.0%}); check the camera path and motion.start/offset"
            for i, s in enumerate(share) if s > max_out_of_view]
    if msgs and strict:
        raise AmgError(msgs[0] + " (strict=true)")
    for m in msgs:
        log.warning(m)
    return msgs


def pair_appearances(appearances: list[str], n: int) -> list[str]:
    """Exactly ``n`` appearances: cycle the given ones (or a neutral person) when there are fewer."""
    if not appearances:
        appearances = ["a person"]
    return [appearances[i % len(appearances)] for i in range(n)]


def config_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain data for ``meta.json``."""
    return OmegaConf.to_container(cfg, resolve=True)
