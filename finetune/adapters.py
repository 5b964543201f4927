"""LoRA adapters in peft's folder layout, for every backbone: add, scale, save, load, merge.

An adapter folder is what ``PeftModel.save_pretrained`` writes, so a plain peft user loads it with
``PeftModel.from_pretrained(base, folder)``:

- ``adapter_config.json``: peft's ``LoraConfig`` (rank, alpha, target modules, ``modules_to_save``);
- ``adapter_model.safetensors``: LoRA matrices under peft's key names
  (``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight``) and the whole weights of each module
  listed in ``modules_to_save`` (``base_model.model.conv_in.weight``...), which peft wraps and loads;
- ``amg_adapter.json`` (ours, ignored by peft): the base model's fingerprint, the widened input
  channels and whatever the trainer records (step...).

Non-LoRA trainables (AMG's widened ``conv_in``, a DiT's widened patch embedding) travel as
``modules_to_save``. In memory they stay the plain modules of the model (no peft wrapper), and the LoRA
layers are injected with ``peft.inject_adapter_in_model``; the adapter's description lives in peft's own
``model.peft_config``. The base model passed to ``PeftModel.from_pretrained`` must already have the
widened input shape (its values there do not matter: the saved module replaces them).

Folders of the first AMG format (``adapter.json`` + ``adapter.safetensors``, adapter name inside the
keys) still load, with a one-line notice.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch

from render.errors import AmgError
from render.io import atomic_path, read_json, write_json

__all__ = [
    "ADAPTER_NAME", "PEFT_CONFIG", "PEFT_WEIGHTS", "SIDE_FILE", "LEGACY_CONFIG", "LEGACY_WEIGHTS",
    "add_lora", "has_lora", "lora_layers", "lora_config", "scaled_lora", "adapter_state_dict", "save_adapter",
    "read_adapter", "load_adapter", "apply_adapter", "unload_lora", "merge_lora", "widen_input", "is_adapter_folder",
]

log = logging.getLogger("finetune.adapters")

ADAPTER_NAME = "amg"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
SIDE_FILE = "amg_adapter.json"
LEGACY_CONFIG = "adapter.json"
LEGACY_WEIGHTS = "adapter.safetensors"
# PeftModel prefixes every key with the path to the wrapped model; a saved file always carries it.
_PEFT_PREFIX = "base_model.model."


def add_lora(model: torch.nn.Module, targets: Sequence[str], rank: int = 4, alpha: float | None = None,
             dropout: float = 0.0, seed: int = 0, modules_to_save: Sequence[str] = (),
             adapter_name: str = ADAPTER_NAME) -> torch.nn.Module:
    """Inject LoRA of ``rank`` into every module whose name ends in one of ``targets``, in place.

    ``alpha`` defaults to ``rank`` (scale 1). B starts at zero, so a fresh adapter leaves the output
    exactly unchanged; A is drawn (Kaiming-uniform, peft's default) from ``seed``. ``modules_to_save``
    names modules (e.g. ``conv_in``) that train whole and are saved with the adapter; they are recorded
    in the adapter's ``LoraConfig`` but stay plain modules of ``model``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise AmgError(f"rank={rank}: expected a LoRA rank >= 1")
    if has_lora(model, adapter_name):
        raise AmgError(f"add_lora: the model already has an adapter named {adapter_name!r}")
    config = LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, lora_dropout=dropout,
                        target_modules=list(targets), init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    # recorded after injection so peft does not wrap them: in memory they stay the model's own modules
    model.peft_config[adapter_name].modules_to_save = list(modules_to_save) or None
    return model


def has_lora(model: torch.nn.Module, adapter_name: str = ADAPTER_NAME) -> bool:
    """Whether ``model`` carries the LoRA adapter ``adapter_name`` (injected by :func:`add_lora` or loaded)."""
    return adapter_name in (getattr(model, "peft_config", None) or {})


def lora_config(model: torch.nn.Module, adapter_name: str = ADAPTER_NAME):
    """peft's ``LoraConfig`` of the adapter on ``model``; :class:`AmgError` when there is none."""
    if not has_lora(model, adapter_name):
        raise AmgError(f"the model has no LoRA adapter {adapter_name!r}; add one with add_lora or load_adapter")
    return model.peft_config[adapter_name]


def lora_layers(model: torch.nn.Module) -> list:
    """Every peft ``LoraLayer`` inside ``model``."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@contextlib.contextmanager
def scaled_lora(model: torch.nn.Module, scale: float, adapter_name: str = ADAPTER_NAME) -> Iterator[None]:
    """Run the block with every LoRA layer's output multiplied by ``scale`` (0 disables LoRA).

    ``scale`` multiplies the trained ``alpha / rank``; afterwards the layers are back at 1. The
    ``requires_grad`` flags of the LoRA weights are left as they were (peft's switch resets them).
    """
    layers = lora_layers(model)
    flags = [(p, p.requires_grad) for m in layers for n, p in m.named_parameters() if "lora_" in n]
    try:
        for m in layers:
            if scale == 0:
                m.enable_adapters(False)
            else:
                m.enable_adapters(True)
                m.set_scale(adapter_name, scale)
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
            m.set_scale(adapter_name, 1.0)
        for p, flag in flags:
            p.requires_grad_(flag)


def _lora_key_to_peft(key: str, adapter_name: str) -> str | None:
    """``a.b.lora_A.<name>.weight`` -> ``base_model.model.a.b.lora_A.weight`` (None for other keys)."""
    for part in ("lora_A", "lora_B"):
        tag = f".{part}.{adapter_name}."
        if tag in key:
            return _PEFT_PREFIX + key.replace(tag, f".{part}.")
    return None


def adapter_state_dict(model: torch.nn.Module, adapter_name: str = ADAPTER_NAME) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the key names of ``PeftModel.save_pretrained``, as float32 CPU copies.

    LoRA matrices ``base_model.model.<module>.lora_{A,B}.weight`` and every tensor of each module in
    ``modules_to_save`` (``base_model.model.conv_in.weight``, ``...bias``).
    """
    config = lora_config(model, adapter_name)
    out = {}
    for k, v in model.state_dict().items():
        name = _lora_key_to_peft(k, adapter_name)
        if name is not None:
            out[name] = v
    modules = dict(model.named_modules())
    for m in config.modules_to_save or ():
        if m not in modules:
            raise AmgError(f"modules_to_save: the model has no module {m!r}")
        for k, v in modules[m].state_dict().items():
            out[f"{_PEFT_PREFIX}{m}.{k}"] = v
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def _config_dict(config) -> dict:
    d = config.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}


def save_adapter(model: torch.nn.Module, directory: str | os.PathLike, info: dict | None = None,
                 base_model_name_or_path: str | None = None, adapter_name: str = ADAPTER_NAME) -> Path:
    """Write the adapter on ``model`` into ``directory`` in peft's layout; returns the folder.

    ``info`` (JSON-serialisable: fingerprint, step...) goes into ``amg_adapter.json``. Each file is
    written atomically.
    """
    from safetensors.torch import save_file

    config = lora_config(model, adapter_name)
    config.base_model_name_or_path = base_model_name_or_path or config.base_model_name_or_path
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / PEFT_WEIGHTS) as tmp:
        save_file(adapter_state_dict(model, adapter_name), str(tmp), metadata={"format": "pt"})
    write_json(directory / PEFT_CONFIG, _config_dict(config))
    write_json(directory / SIDE_FILE, {"format": "amg-adapter/2", **(info or {})})
    return directory


def is_adapter_folder(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds an adapter in peft's layout or the first AMG layout."""
    d = Path(directory)
    return ((d / PEFT_CONFIG).is_file() and (d / PEFT_WEIGHTS).is_file()) or (
        (d / LEGACY_CONFIG).is_file() and (d / LEGACY_WEIGHTS).is_file())


def _load_tensors(path: Path) -> dict:
    """A safetensors file's tensors; a truncated or foreign file is one :class:`AmgError` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise AmgError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else 'empty'})") from None


def _config_from(d: Path, raw: dict):
    """peft's ``LoraConfig`` of ``adapter_config.json``; a config peft cannot read is one line."""
    from peft import LoraConfig

    try:
        return LoraConfig.from_pretrained(str(d))
    except Exception as e:  # missing fields, wrong types: peft raises TypeError/ValueError
        raise AmgError(f"{d / PEFT_CONFIG}: not a LoRA config peft can read ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None


def read_adapter(directory: str | os.PathLike, adapter_name: str = ADAPTER_NAME):
    """Read an adapter folder without a model: ``(config, tensors, info)``.

    ``config`` is peft's ``LoraConfig``; ``tensors`` maps the model's own key names (``...lora_A.<adapter
    name>.weight``, ``conv_in.weight``) to tensors; ``info`` is ``amg_adapter.json`` (``{}`` when absent).
    A folder of the first AMG format is converted, with a one-line notice.
    """
    d = Path(directory)
    if (d / PEFT_CONFIG).is_file() and (d / PEFT_WEIGHTS).is_file():
        raw = read_json(d / PEFT_CONFIG)
        if not isinstance(raw, dict) or raw.get("peft_type") != "LORA":
            raise AmgError(f"{d / PEFT_CONFIG}: peft_type={raw.get('peft_type') if isinstance(raw, dict) else raw!r}, "
                       "expected 'LORA'")
        config = _config_from(d, raw)
        saved = _load_tensors(d / PEFT_WEIGHTS)
        info = read_json(d / SIDE_FILE) if (d / SIDE_FILE).is_file() else {}
        tensors = {}
        for k, v in saved.items():
            name = k[len(_PEFT_PREFIX):] if k.startswith(_PEFT_PREFIX) else k
            for part in ("lora_A", "lora_B"):
                name = name.replace(f".{part}.weight", f".{part}.{adapter_name}.weight")
            tensors[name] = v
        return config, tensors, info
    if (d / LEGACY_CONFIG).is_file() and (d / LEGACY_WEIGHTS).is_file():
        return _read_legacy(d, adapter_name)
    raise AmgError(f"{d}: not an AMG adapter (expected {PEFT_CONFIG} and {PEFT_WEIGHTS}, "
                   f"or {LEGACY_CONFIG} and {LEGACY_WEIGHTS})")


def _read_legacy(d: Path, adapter_name: str):
    from peft import LoraConfig

    old = read_json(d / LEGACY_CONFIG)
    missing = [k for k in ("rank", "alpha", "targets") if not isinstance(old, dict) or k not in old]
    if missing:
        raise AmgError(f"{d / LEGACY_CONFIG}: not an AMG adapter config (missing {', '.join(missing)}); expected "
                       "rank, alpha and targets")
    log.warning("%s: adapter in the first AMG format (%s); loading it, re-save it to get peft's layout",
                d, LEGACY_CONFIG)
    saved = _load_tensors(d / LEGACY_WEIGHTS)
    old_name = "amg"
    tensors = {}
    for k, v in saved.items():
        for part in ("lora_A", "lora_B"):
            k = k.replace(f".{part}.{old_name}.", f".{part}.{adapter_name}.")
        tensors[k] = v
    saved_modules = sorted({k.split(".")[0] for k in tensors if "lora_" not in k})
    try:
        config = LoraConfig(r=int(old["rank"]), lora_alpha=float(old["alpha"]), target_modules=list(old["targets"]),
                            modules_to_save=saved_modules or None)
    except (KeyError, TypeError, ValueError) as e:
        raise AmgError(f"{d / LEGACY_CONFIG}: not an AMG adapter config ({type(e).__name__}: {e}); expected rank, "
                       "alpha and targets") from None
    info = {k: v for k, v in old.items() if k not in ("format", "rank", "alpha", "targets")}
    info["format"] = old.get("format", "amg-adapter/1")
    return config, tensors, info


def load_adapter(model: torch.nn.Module, directory: str | os.PathLike, adapter_name: str = ADAPTER_NAME,
                 seed: int = 0) -> dict:
    """Load the adapter in ``directory`` into ``model`` in place; returns its ``amg_adapter.json`` info.

    When ``model`` has no LoRA yet, it is injected from the folder's ``LoraConfig``. Modules in
    ``modules_to_save`` must already have the saved shapes (widen them first). Every saved tensor must
    land on a tensor of the same shape, and every adapter tensor of the model must be in the file:
    anything else raises :class:`AmgError` (peft's own loader would skip such keys silently).
    """
    config, tensors, info = read_adapter(directory, adapter_name)
    apply_adapter(model, config, tensors, source=str(directory), adapter_name=adapter_name, seed=seed)
    return info


def apply_adapter(model: torch.nn.Module, config, tensors: dict[str, torch.Tensor], source: str = "adapter",
                  adapter_name: str = ADAPTER_NAME, seed: int = 0) -> torch.nn.Module:
    """Put ``(config, tensors)`` of :func:`read_adapter` into ``model`` with :func:`load_adapter`'s checks.

    ``source`` names the input in error messages.
    """
    if not has_lora(model, adapter_name):
        targets = config.target_modules
        add_lora(model, sorted(targets) if isinstance(targets, set) else targets, rank=config.r,
                 alpha=config.lora_alpha, dropout=config.lora_dropout, seed=seed,
                 modules_to_save=config.modules_to_save or (), adapter_name=adapter_name)
    else:
        mine = lora_config(model, adapter_name)
        mine.modules_to_save = sorted(set(mine.modules_to_save or ()) | set(config.modules_to_save or ())) or None
    own = model.state_dict()
    expected = {k for k in own if f".lora_A.{adapter_name}." in k or f".lora_B.{adapter_name}." in k}
    for m in config.modules_to_save or ():
        expected |= {k for k in own if k.startswith(f"{m}.")}
    unexpected = sorted(k for k in tensors if k not in own)
    mismatched = sorted(k for k in tensors if k in own and own[k].shape != tensors[k].shape)
    missing = sorted(expected - set(tensors))
    if unexpected or mismatched or missing:
        first = (unexpected or mismatched or missing)[0]
        raise AmgError(f"{source}: adapter does not fit this model ({len(unexpected)} unexpected, "
                       f"{len(mismatched)} wrong-shape, {len(missing)} missing tensors; first: {first})")
    model.load_state_dict(tensors, strict=False)
    return model


def unload_lora(model: torch.nn.Module, merge: bool = False, adapter_name: str = ADAPTER_NAME) -> torch.nn.Module:
    """Replace every LoRA layer of ``model`` by its base layer, in place; ``merge`` first adds B A into it.

    The result is the plain model class (e.g. ``UNet3DConditionModel``) that ``save_pretrained`` writes
    and ``from_pretrained`` reads back; with ``merge`` it computes what ``PeftModel.merge_and_unload``
    gives (up to float rounding of the merged weights).
    """
    from peft.tuners.lora import LoraLayer

    named = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in named:
        if merge:
            layer.merge(adapter_names=[adapter_name])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        model.peft_config.pop(adapter_name, None)
        if not model.peft_config:
            del model.peft_config
    return model


def merge_lora(model: torch.nn.Module, adapter_name: str = ADAPTER_NAME) -> torch.nn.Module:
    """Merge the LoRA into the base weights and drop the LoRA layers (see :func:`unload_lora`)."""
    return unload_lora(model, merge=True, adapter_name=adapter_name)


def widen_input(layer: torch.nn.Module, extra: int) -> torch.nn.Module:
    """A copy of a ``Conv1d/2d/3d`` or ``Linear`` with ``extra`` more input channels, zero-initialised.

    Old weights and bias are copied, so for any input the output is exactly the old layer's on the
    old channels. Device, dtype and ``requires_grad`` are kept.
    """
    if extra < 0:
        raise AmgError(f"extra_channels={extra}: expected a non-negative channel count")
    if isinstance(layer, torch.nn.Linear):
        new = torch.nn.Linear(layer.in_features + extra, layer.out_features, bias=layer.bias is not None,
                              device=layer.weight.device, dtype=layer.weight.dtype)
    elif isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        if layer.groups != 1:
            raise AmgError(f"widen_input: grouped convolution ({layer.groups} groups) cannot be widened")
        new = type(layer)(layer.in_channels + extra, layer.out_channels, kernel_size=layer.kernel_size,
                          stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                          bias=layer.bias is not None, padding_mode=layer.padding_mode,
                          device=layer.weight.device, dtype=layer.weight.dtype)
    else:
        raise AmgError(f"widen_input: {type(layer).__name__} is not a Linear or Conv layer")
    old_in = layer.weight.shape[1]
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old_in] = layer.weight
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.weight.requires_grad_(layer.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new
