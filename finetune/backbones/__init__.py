"""Backbone loaders, one per diffusers family, sharing :class:`Backbone` and its helpers."""

from .animatediff import load_animatediff
from .base import Backbone, BackboneSpec, decode_frames, encode_frames, freeze
from .cogvideox import load_cogvideox
from .modelscope import load_modelscope
from .svd import load_svd
from .wan import load_wan

__all__ = ["Backbone", "BackboneSpec", "freeze", "encode_frames", "decode_frames", "load_modelscope", "load_svd",
           "load_animatediff", "load_wan", "load_cogvideox", "LOADERS"]

LOADERS = {"modelscope": load_modelscope, "svd": load_svd, "animatediff": load_animatediff, "wan": load_wan,
           "cogvideox": load_cogvideox}
