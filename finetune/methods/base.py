"""What a training method is: the backbone it needs, what it attaches, what trains, its data and its loss.

:func:`finetune.train.train` runs one accelerate loop for every method. A method

- loads its backbone family and attaches its modules (:meth:`Method.setup`),
- holds the one module whose parameters train (``Method.trained``; accelerate prepares it) and names those
  parameters (:meth:`Method.trainable_parameters`),
- turns a manifest into a dataset of samples and stacks them (:meth:`Method.dataset`, :meth:`Method.collate`),
- computes its loss on a batch with every random draw taken from the loop's generator
  (:meth:`Method.loss`), so resuming at a step redraws exactly what the uninterrupted run drew,
- saves and restores its trainable weights (:meth:`Method.save`, :meth:`Method.restore`).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from render.errors import AmgError

from ..backbones import LOADERS, Backbone, BackboneSpec

__all__ = ["Method", "ClipSettings", "load_backbone"]


@dataclass(frozen=True)
class ClipSettings:
    """How training clips are sampled: ``num_frames`` frames at ``fps``, ``height x width`` pixels."""

    num_frames: int
    height: int
    width: int
    fps: float
    latent_cache: str | None = None


def load_backbone(family: str, folder: str | os.PathLike, **kw) -> Backbone:
    """Load ``folder`` with the loader of ``family`` (``modelscope``, ``svd`` or ``animatediff``)."""
    if family not in LOADERS:
        raise AmgError(f"backbone family {family!r}: expected one of {', '.join(LOADERS)}")
    return LOADERS[family](folder, **kw)


class Method(abc.ABC):
    """Base of the training methods (one file per method in :mod:`finetune.methods`)."""

    #: the method's name, as ``method=`` on the command line
    name: str = ""
    #: backbone families this method can attach to
    families: tuple[str, ...] = ()

    #: the loaded base model (set by :meth:`setup`)
    backbone: Backbone
    #: the module holding every trainable parameter (set by :meth:`setup`; the loop replaces it by
    #: accelerate's prepared module)
    trained: torch.nn.Module

    #: the backbone chosen in the config (None: this method's first family, default options)
    spec: BackboneSpec | None = None

    def use(self, spec: BackboneSpec) -> "Method":
        """Load the backbone as ``spec`` says (family and loader options); returns self."""
        if spec.family not in self.families:
            raise AmgError(f"method {self.name}: backbone {spec.family!r} unsupported; expected "
                           f"{' or '.join(self.families)}")
        self.spec = spec
        return self

    def load_backbone(self, folder: str | os.PathLike) -> Backbone:
        """Load the base ``folder`` with the chosen family (:meth:`use`) or this method's first family."""
        if self.spec is not None:
            return BackboneSpec(self.spec.family, str(folder), dict(self.spec.options)).load()
        return load_backbone(self.families[0], folder)

    @abc.abstractmethod
    def setup(self, folder: str | os.PathLike, device: torch.device, dtype: torch.dtype, seed: int) -> None:
        """Load the backbone from ``folder``, attach this method's modules, move frozen parts to ``device``/``dtype``."""

    @abc.abstractmethod
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Mark and return the parameters that train (everything else frozen)."""

    @abc.abstractmethod
    def dataset(self, manifest: str | os.PathLike, clips: ClipSettings) -> torch.utils.data.Dataset:
        """Samples of the clips in ``manifest``."""

    def check_data(self, manifest: str | os.PathLike, clips: ClipSettings) -> None:
        """Raise :class:`AmgError` for clips that cannot be read, before any model loads or output is written.

        Default: a clip manifest (jsonl file or folder), every listed clip and avatar video present
        (:class:`finetune.data.ClipDataset`). Methods that read other folders check those instead.
        """
        from ..data import ClipDataset

        ClipDataset(manifest, num_frames=clips.num_frames, height=clips.height, width=clips.width, fps=clips.fps)

    @abc.abstractmethod
    def collate(self, samples: list):
        """A batch from a list of samples."""

    @abc.abstractmethod
    def loss(self, batch, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The scalar training loss of ``batch``; random draws come from ``gen`` (a CPU generator)."""

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the trainable weights (and what is needed to rebuild them) into ``directory``."""

    @abc.abstractmethod
    def restore(self, directory: str | os.PathLike) -> None:
        """Load weights written by :meth:`save` into the trained module."""

    def options(self) -> dict:
        """The method's own settings, recorded in ``meta.json``."""
        return {}

    def unwrapped(self) -> torch.nn.Module:
        """The trained module without accelerate's wrappers."""
        m = self.trained
        while hasattr(m, "module"):
            m = m.module
        return m
