"""Builds the pieces of a scene from the apps' config groups: body, motions, avatars, camera path.

Shared by ``amg.render`` (studio renders), ``amg.generate`` (prompt -> video) and ``amg.prep`` (training
data), so each choice means the same thing in every app.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
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
from render.camera import CameraPath, static_camera  # noqa: F401  (static_camera: re-exported, its old home)
from render.errors import AmgError

log = logging.getLogger("amg")

def _conf_dir() -> Path:
    """The Hydra configs: ``conf/`` of a source checkout, else the copy a wheel installs as ``amg/conf``."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "conf"
    return checkout if (checkout / "generate.yaml").is_file() else here / "conf"


CONF_DIR = _conf_dir()

__all__ = ["report_errors", "hydra_app", "prepare_run_dir", "static_camera", "build_body", "build_motions",
           "build_avatars", "make_avatars", "build_camera", "build_scene", "Scene", "check_frame_settings",
           "check_kwargs", "fit_length", "place_side_by_side", "torch_dtype", "LibraryMotion", "FileMotion",
           "motion_spec", "load_motion_file", "check_in_view"]


def torch_dtype(name: str, key: str = "dtype") -> torch.dtype | None:
    """The torch dtype named ``name`` in the one dtype table (:data:`finetune.model.DTYPES`; auto -> None)."""
    from finetune.model import dtype_from_name

    return dtype_from_name(name, key)


def _one_line(e: BaseException) -> str:
    """A user-facing one-line message for a config error from Hydra or OmegaConf."""
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(e, MissingMandatoryValue):
        key = getattr(e, "full_key", None) or str(e).splitlines()[0].rsplit(" ", 1)[-1]
        return f"{key}: missing; expected a value (add {key}=...)"
    if isinstance(e, MissingConfigException) and getattr(e, "missing_cfg_file", None):
        group, _, choice = str(e.missing_cfg_file).rpartition("/")
        options = list(getattr(e, "options", None) or [])
        if group:
            return f"{group}={choice}: unknown choice; expected one of {', '.join(options)}"
        return f"{choice}: no such config"
    text = str(e)
    if isinstance(e, ConfigCompositionException) and text.startswith("Could not override '"):
        key = text.split("'")[1]
        hint = text.splitlines()[1].strip() if len(text.splitlines()) > 1 else ""
        return f"{key}: unknown config key" + (f" ({hint[0].lower()}{hint[1:]})" if hint else "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def report_errors(fn: Callable) -> Callable:
    """Run an app's ``main``: a user error prints one line and exits with status 2.

    User errors are :class:`AmgError` and a mandatory config value left unset (``???``).
    """
    from omegaconf.errors import MissingMandatoryValue

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AmgError as e:
            _drop_unused_run_dir()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except MissingMandatoryValue as e:
            _drop_unused_run_dir()
            print(f"error: {_one_line(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _drop_unused_run_dir() -> None:
    """Remove the run directory Hydra made for a run that stopped on a user error before writing anything.

    A refused run leaves no output: the folder goes when it holds only Hydra's own files, and so do the
    date and app folders above it when that leaves them empty.
    """
    from hydra.core.hydra_config import HydraConfig

    try:
        hc = HydraConfig.get()
    except ValueError:  # not run by Hydra (a test calling run() directly)
        return
    if hc.mode is None or hc.mode.name != "RUN":
        return
    out = Path(hc.runtime.output_dir)
    if not out.is_dir() or any(f.name not in _HYDRA_OWN and not f.name.endswith(".log") for f in out.iterdir()):
        return
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cwd = Path.cwd().resolve()
    parent = out.resolve().parent
    while parent != cwd and cwd in parent.parents and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def hydra_app(config_name: str) -> Callable:
    """``@hydra.main`` for the apps, with Hydra's own errors (unknown key or choice) as one line and exit 2.

    Hydra prints a composition error over several lines plus a hint about ``HYDRA_FULL_ERROR`` and exits
    1; with that variable set it re-raises instead, so the error is caught here and reported like every
    other user error. Errors inside the app are handled by :func:`report_errors`.
    """
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def decorate(fn: Callable) -> Callable:
        # an absolute path: the apps also start from console scripts and in-process calls, where Hydra's
        # path relative to the calling module would look for a Python package named "conf"
        task = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base=None)(report_errors(fn))

        @functools.wraps(fn)
        def main(*args, **kwargs):
            previous = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                return task(*args, **kwargs)
            except (HydraException, OmegaConfBaseException) as e:
                print(f"error: {_one_line(e)}", file=sys.stderr)
                sys.exit(2)
            finally:
                if previous is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = previous

        return main

    return decorate


# What Hydra itself puts in a fresh run directory before the app starts.
_HYDRA_OWN = (".hydra",)


def prepare_run_dir(out_dir: str | os.PathLike, overwrite: bool) -> list[str]:
    """Make ``out_dir`` ready for a run: fresh, or (with ``overwrite``) cleared of the previous run's outputs.

    A run writes into a fresh directory (Hydra's default run dir is new for every run). A directory that
    already holds files other than Hydra's own (``.hydra/``, the ``*.log`` of the job) is refused unless
    ``overwrite`` is true; then the outputs the previous run listed in its ``meta.json`` (and that
    ``meta.json``) are removed first, so the folder holds only what this run writes. Files the previous run
    did not list are left alone. Returns the names removed.
    """
    from render.io import read_json

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AmgError(f"{out}: exists and is not a folder; expected a run directory")
    if not out.is_dir():
        return []
    held = sorted(f.name for f in out.iterdir() if f.name not in _HYDRA_OWN and not f.name.endswith(".log"))
    if not held:
        return []
    if not overwrite:
        raise AmgError(f"{out}: holds earlier outputs ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                       "expected a fresh run directory, or overwrite=true to replace the previous run")
    meta = out / "meta.json"
    listed = []
    if meta.is_file():
        try:
            listed = [str(x) for x in (read_json(meta).get("outputs") or [])]
        except (AmgError, AttributeError):
            listed = []
    removed = []
    for name in listed + ["meta.json"]:
        f = (out / name).resolve()
        # only files inside the run directory: a tampered meta.json must not delete anything else
        if out.resolve() in f.parents and f.is_file():
            f.unlink()
            removed.append(name)
    return removed


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
        # a config key the target does not take: one line naming it, not a TypeError from inside Hydra
        import re

        hit = re.search(r"unexpected keyword argument '(\w+)'", repr(e.__cause__))
        if hit:
            where = re.search(r"full_key: (\S+)", str(e))
            key = where.group(1) if where else "config"
            target = cfg.get("_target_") if isinstance(cfg, DictConfig) else None
            raise AmgError(f"{key}.{hit.group(1)}: unknown key" + (f" for {target}" if target else "")) from None
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
    fallback: str = "idle"  # name: auto without a prompt (amg.render motion=auto) plays this library motion


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
        name = spec.fallback if spec.name in ("auto", "from_text") else spec.name
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
    if p.is_dir():
        raise AmgError(f"motion.path={path}: is a folder; expected a motion file (npz, pkl, bvh)")
    if p.suffix == ".npz" and p.is_file():
        try:
            with np.load(p, allow_pickle=False) as d:
                is_trace = {"reorganize_idx", "smpl_thetas", "cam_trans"} <= set(d.files)
        except Exception as e:  # zipfile.BadZipFile, EOFError, pickled data...: the file is not a clean npz
            raise AmgError(f"{p}: not a readable npz motion file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else 'truncated or empty'})") from None
        if is_trace:
            from reconstruction.trace import load_trace

            # the source video's size only matters for TRACE's camera, which a new camera path replaces
            return [_place(m, spec, heading_matrix) for m in load_trace(p, width=512, height=512, fps=fps).motions]
    try:
        if p.suffix == ".bvh":
            m = Motion.load(path, rest_frame=spec.rest_frame, up=spec.up, joint_map=spec.joint_map,
                            root_offset=spec.root_offset, start=float(spec.start), seconds=spec.seconds)
        else:
            m = Motion.load(path)
    except AmgError as e:  # the motion's own checks name the motion; the user needs the file
        raise (e if str(p) in str(e) else AmgError(f"{p}: {e}")) from None
    except (ValueError, TypeError, KeyError, IndexError) as e:  # arrays of the wrong type or shape
        first = str(e).splitlines()[0] if str(e) else ""
        raise AmgError(f"{p}: not a readable motion file ({type(e).__name__}: {first})") from None
    for field in ("global_orient", "body_pose", "transl", "betas"):
        if not torch.isfinite(torch.as_tensor(getattr(m, field))).all():
            raise AmgError(f"{p}: motion has NaN or inf in {field}; expected finite values")
    if p.suffix != ".bvh":
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


def make_avatars(body, appearances: Sequence[str] | None = None, *, appearance=None, num_gaussians: int,
                 seed: int, ply: str | None = None, betas: Sequence | None = None) -> list[GaussianAvatar]:
    """Avatars of the ``avatar`` group (its ``_target_``, called with the body and the appearances).

    Args:
        body: the body model the Gaussians are bound to.
        appearances: one text per person; None uses the config's ``appearance`` (a text or a list).
        num_gaussians: Gaussians per avatar.
        seed: avatar ``i`` uses ``seed + i``.
        ply: a 3DGS PLY to import instead of painting from text (one avatar).
        betas: optional shape ``(B,)`` per avatar (prep's fitted bodies).
    """
    if ply:
        return [GaussianAvatar.load(str(ply), body)]
    if appearances is None:
        if appearance is None or (isinstance(appearance, str) and not appearance.strip()):
            raise AmgError("avatar.appearance: expected a description of the person (or a list, or avatar.ply)")
        appearances = [str(x) for x in appearance] if isinstance(appearance, (list, tuple, ListConfig)) else [str(appearance)]
    return [GaussianAvatar.from_body(body, appearance=str(text), num_gaussians=int(num_gaussians),
                                     seed=int(seed) + i,
                                     **({} if betas is None else {"betas": betas[i][: body.num_betas]}))
            for i, text in enumerate(appearances)]


def build_avatars(body, cfg: DictConfig, appearances: Sequence[str] | None = None,
                  betas: Sequence | None = None) -> list[GaussianAvatar]:
    """One avatar per appearance (``cfg.appearance`` is a string or a list); or ``cfg.ply`` imported."""
    make = _instantiate(cfg) if cfg.get("_target_") else functools.partial(make_avatars, **cfg)
    return make(body, appearances, **({} if betas is None else {"betas": betas}))


def build_camera(cfg: DictConfig, people: Sequence[Person] | None = None) -> CameraPath:
    """The camera path of the ``camera`` group; ``follow`` tracks the people's centre at their mid-height,
    far enough back for their whole height (:func:`render.camera.follow_framing`)."""
    made = _instantiate(cfg)
    if isinstance(made, CameraPath):
        return _check_intrinsics(cfg, made)
    if people is None:
        raise AmgError("camera=follow: needs the people it follows")
    from render.camera import follow_framing

    with torch.no_grad():  # the bodies as posed, so the framing fits their real height and reach
        points = torch.cat([p.avatar.body(betas=p.avatar.betas.reshape(1, -1), global_orient=p.motion.global_orient,
                                          body_pose=p.motion.body_pose, transl=p.motion.transl).vertices
                            for p in people], 1)
    kw = made.keywords
    targets, offset = follow_framing(points, kw["offset"], float(kw["fov_deg"]), int(kw["width"]), int(kw["height"]))
    return _check_intrinsics(cfg, made(targets=targets, offset=offset.tolist()))


def _check_intrinsics(cfg: DictConfig, made: CameraPath) -> CameraPath:
    """Every camera's intrinsics finite with positive focal lengths, naming the camera file when there is one,
    so a bad file is one line instead of a division by zero inside the rasterizer."""
    where = f"camera.path={cfg.path}" if cfg.get("path") else "camera"
    for i, cam in enumerate(made):
        K = np.asarray(torch.as_tensor(cam.K).detach().cpu(), dtype=np.float64)
        if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise AmgError(f"{where}: frame {i} has intrinsics fx={K[0, 0]:g}, fy={K[1, 1]:g}; expected finite "
                           "focal lengths > 0 (pixels)")
    return made


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
    """Exactly ``n`` appearances: cycle the given ones when there are fewer."""
    if not appearances:
        raise AmgError("appearance: expected at least one description of a person")
    return [appearances[i % len(appearances)] for i in range(n)]


def check_frame_settings(cfg: DictConfig) -> None:
    """``num_frames``, ``fps``, ``width`` and ``height`` of an app, checked before any work.

    Widths and heights must be even: H.264 (the MP4 outputs) stores even sizes only, and every output of a
    run (videos, depth, masks) must have the same size.
    """
    for key in ("num_frames", "width", "height"):
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise AmgError(f"{key}={v}: expected a positive integer")
    for key in ("width", "height"):
        if int(cfg[key]) % 2:
            raise AmgError(f"{key}={cfg[key]}: expected an even number of pixels (H.264 video stores even sizes)")
    fps = cfg.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not np.isfinite(fps) or fps <= 0:
        raise AmgError(f"fps={fps}: expected a positive number of frames per second")


def check_kwargs(fn: Callable, kwargs, key: str, exclude: Sequence[str] = ()) -> dict:
    """``kwargs`` (a config node) as a dict, each key checked against ``fn``'s keyword arguments.

    An unknown key is a one-line :class:`AmgError` naming ``key.<name>`` and the accepted names, instead of
    a ``TypeError`` from deep inside the call.
    """
    data = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs or {})
    params = inspect.signature(fn).parameters
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and n not in exclude]
    for name in data:
        if name not in accepted:
            raise AmgError(f"{key}.{name}: unknown key; expected one of {', '.join(accepted)}")
    return data


@dataclass
class Scene:
    """What ``amg.render`` and ``amg.generate`` film: the people (avatar + motion) and the camera path."""

    people: list[Person]
    cameras: CameraPath


def build_scene(cfg: DictConfig, appearances: Sequence[str] | None = None, text: str | None = None,
                motions: Sequence[Motion] | None = None, body=None) -> Scene:
    """The scene of an app's config: body, motions, avatars and camera path, with every length agreeing.

    Args:
        cfg: the app config (``body``, ``motion``, ``avatar``, ``camera`` groups and ``num_frames``, ``fps``,
            ``width``, ``height``, ``spacing``).
        appearances: one text per person (``generate``: from the prompt); None: the ``avatar`` group's own
            ``appearance`` (``render``).
        text: the prompt's people and action, for ``motion=auto``.
        motions: the motions, when the caller chose them (``generate``'s text-to-motion plan); None: the
            ``motion`` group's.
        body: the body model, when the caller built it already; None: the ``body`` group's.

    Single-person motions with several appearances are done side by side, ``spacing`` metres apart. The
    camera path decides the length when it differs from ``num_frames`` (a camera file). A camera inside a
    body is reported as a warning.
    """
    check_frame_settings(cfg)
    F, fps = int(cfg.num_frames), float(cfg.fps)
    given = list(appearances) if appearances is not None else None
    if given is None and not cfg.avatar.get("ply"):
        a = cfg.avatar.get("appearance")
        given = [str(x) for x in a] if isinstance(a, (list, ListConfig)) else [] if a is None else [str(a)]
        if not given or not all(t.strip() for t in given):
            raise AmgError("avatar.appearance: expected a description of the person (or a list, or avatar.ply)")
    body = build_body(cfg.body) if body is None else body
    if motions is None:
        motions = build_motions(cfg.motion, F, fps, text=text, num_people=len(given) if text and given else None)
    motions = list(motions)
    if len(motions) == 1 and given and len(given) > 1:  # one motion, several people: side by side
        motions = place_side_by_side(motions * len(given), spacing=float(cfg.spacing))
    avatars = build_avatars(body, cfg.avatar, pair_appearances(given, len(motions)) if given else None)
    people = [Person(avatars[i % len(avatars)], m, name=f"person{i + 1}") for i, m in enumerate(motions)]
    cameras = build_camera(cfg.camera, people)
    if len(cameras) != F:
        people = [Person(p.avatar, fit_length(p.motion, len(cameras)), p.name) for p in people]
    warn_camera_inside(people, cameras)
    return Scene(people=people, cameras=cameras)


def camera_inside(people: Sequence[Person], cameras: CameraPath) -> dict[str, int]:
    """Per person, in how many frames the camera centre lies inside the posed body surface.

    A point is inside when it lies within the body's bounding box and behind the face whose centre is
    nearest to it (on the side its outward normal points away from). Centres ``(F,3)`` and vertices in metres.
    """
    centres = cameras.centers.detach().double().cpu().numpy().reshape(-1, 3)
    out = {}
    for p in people:
        av, m = p.avatar, p.motion
        F = len(m)
        with torch.no_grad():
            verts = av.body(betas=av.betas.expand(F, -1), global_orient=m.global_orient.float(),
                            body_pose=m.body_pose.float().reshape(F, 23, 3), transl=m.transl.float()).vertices
        verts = verts.detach().double().cpu().numpy()
        faces = np.asarray(torch.as_tensor(np.asarray(av.body.faces)).long())
        inside = 0
        for f in range(len(centres)):
            v, c = verts[f], centres[f]
            if not ((v.min(0) <= c).all() and (c <= v.max(0)).all()):
                continue
            tri = v[faces]
            n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            mid = tri.mean(1)
            j = int(np.argmin(((mid - c) ** 2).sum(1)))
            if np.dot(c - mid[j], n[j]) < 0:
                inside += 1
        if inside:
            out[p.name] = inside
    return out


def warn_camera_inside(people: Sequence[Person], cameras: CameraPath) -> dict[str, int]:
    """Log one warning line per person whose body contains the camera in some frames; returns the counts."""
    counts = camera_inside(people, cameras)
    for name, n in counts.items():
        log.warning("camera: inside %s's body in %d of %d frames (the render shows the inside and is slow); "
                    "move the camera back", name, n, len(cameras))
    return counts


def config_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain data for ``meta.json``."""
    return OmegaConf.to_container(cfg, resolve=True)
