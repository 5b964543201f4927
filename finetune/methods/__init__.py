"""Training methods, one file each, sharing :class:`finetune.methods.base.Method` and the one training loop."""

from .amg import AmgMethod
from .base import ClipSettings, Method, load_backbone

__all__ = ["Method", "ClipSettings", "load_backbone", "AmgMethod"]
