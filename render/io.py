"""Atomic file output and ``meta.json`` records, shared by every stage.

A stage writes each output to a temporary file beside its destination and renames it into place, so a
killed run never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_json", "read_json", "write_npz", "write_npy", "write_meta", "versions"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary name keeps the destination's suffix so writers that dispatch on it (PyAV, numpy,
    imageio) behave as for the real name.
    """
    from .errors import AmgError

    path = Path(path)
    if path.exists() and not overwrite:
        raise AmgError(f"{path}: exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON atomically; returns the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write ``arrays`` into a compressed ``.npz`` atomically; returns the path."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return Path(path)


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    """Write one array as ``.npy`` atomically; returns the path."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, raising :class:`AmgError` naming the file when it is missing or malformed."""
    from .errors import AmgError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AmgError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise AmgError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries loaded in this process."""
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "diffusers", "peft", "transformers", "smplx", "gsplat", "pyrender", "amg"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = str(mod.__version__)
    return out


def write_meta(directory: str | os.PathLike, stage: str, inputs: Any = None, config: Any = None,
               seed: int | None = None, **extra: Any) -> Path:
    """Record what a stage did in ``directory/meta.json`` (inputs, config, versions, seed, time)."""
    meta = {
        "stage": stage,
        "inputs": inputs,
        "config": config,
        "seed": seed,
        "versions": versions(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return write_json(Path(directory) / "meta.json", meta)
