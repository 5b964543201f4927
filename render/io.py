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
import threading
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_json", "write_text", "read_json", "write_npz", "write_npy", "write_meta",
           "versions", "is_temp", "list_outputs", "remove_stale_temps", "TEMP_MARK"]

# Temporary files are named ``.<stem>.<random>.part<suffix>``: hidden, and marked, so a glob such as
# ``*.jsonl`` that would otherwise also match them is filtered with :func:`is_temp`.
TEMP_MARK = ".part"
_UMASK_LOCK = threading.Lock()


def is_temp(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a temporary file of :func:`atomic_path` (finished or left by a killed run)."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


def list_outputs(folder: str | os.PathLike, pattern: str) -> list[Path]:
    """Files of ``folder`` matching ``pattern`` (a glob), sorted, without hidden and temporary files.

    Readers of a folder of outputs use this instead of a bare glob: ``Path.glob("*.jsonl")`` also matches
    ``.manifest.x1y2.part.jsonl`` left behind by a killed writer.
    """
    return sorted(f for f in Path(folder).glob(pattern) if f.is_file() and not f.name.startswith("."))


def remove_stale_temps(root: str | os.PathLike) -> int:
    """Delete the temporary files of killed writes anywhere under ``root``; returns how many.

    Only safe where no other process is writing under ``root`` at the same time.
    """
    n = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for f in root.rglob(f".*{TEMP_MARK}*"):
        if f.is_file() and is_temp(f):
            f.unlink(missing_ok=True)
            n += 1
    return n


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 under umask 022)."""
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary name keeps the destination's suffix so writers that dispatch on it (PyAV, numpy,
    imageio) behave as for the real name. The result gets the mode an ordinary ``open()`` would give it:
    an existing file keeps its mode, a new one follows the umask (``mkstemp`` alone would make it 0600).
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
        mode = path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = True, if_changed: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically; returns the path.

    With ``if_changed`` a file that already holds exactly this text is left untouched (a rerun with nothing
    new to say writes nothing).
    """
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_text(path, text, overwrite=overwrite, if_changed=if_changed)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True, if_changed: bool = False) -> Path:
    """Write ``text`` atomically; with ``if_changed`` an identical existing file is not rewritten."""
    path = Path(path)
    if if_changed and path.is_file():
        try:
            if path.read_text() == text:
                return path
        except (OSError, UnicodeDecodeError):
            pass
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return path


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
    except IsADirectoryError:
        raise AmgError(f"{path}: is a folder; expected a JSON file") from None
    except UnicodeDecodeError:
        raise AmgError(f"{path}: not text (undecodable bytes); expected a JSON file") from None
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
