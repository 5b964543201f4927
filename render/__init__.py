"""3D -> 2D: cameras and camera paths, Gaussian and mesh rasterizers, conditions, video I/O.

The bottom package: it knows cameras, primitives and images, not humans, and imports none of the others.
"""

from .camera import Camera, CameraPath
from .errors import AmgError

__all__ = ["Camera", "CameraPath", "AmgError"]
