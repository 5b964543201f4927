"""Cameras and camera paths: the project's one camera convention.

Convention (OpenCV): camera x right, y down, z forward. ``K`` is 3x3 in pixels; extrinsics are the
world-to-camera rotation ``R (3,3)`` and translation ``t (3,)``, so ``x_cam = R @ x_world + t``. A pixel
``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``; a centred
camera has ``cx = W/2, cy = H/2``. With this half-pixel convention resizing scales ``K`` exactly and
cropping shifts the principal point.

World is Y-up in metres (SMPL canonical frame; a body in rest pose faces +Z).

Conversions to other conventions live here and nowhere else: OpenGL / pyrender / nerfstudio camera-to-world
matrices (x right, y up, z backward) and TUM trajectories (camera-to-world pose of the OpenCV optical frame).

Tensors and arrays: geometry is torch. Cameras hold float64 tensors; ``project``, ``unproject`` and
``world_to_camera`` take points and pixels as tensors, numpy arrays or nested lists and return tensors
(float tensors keep their dtype, everything else becomes float64); anything else raises
:class:`~render.errors.AmgError`. Images and conditions are numpy on their way to files (``uint8 (H,W,3)``
frames, ``float32`` depth): :mod:`render.video`, :mod:`render.io` and the condition writers take numpy.

Modules: :mod:`.core` (``Camera`` and conversions), :mod:`.path` (``CameraPath``), :mod:`.generators`
(orbit, zoom, dolly, pan, follow, keyframes, the static look-at), :mod:`.formats` (files and validators).
"""

from .core import (_DTYPE, DEFAULT_EYE, DEFAULT_FOV_DEG, DEFAULT_TARGET, OPENCV_TO_OPENGL, Camera, _t, default_camera,
                   intrinsics_from_fov, look_at_rotation)
from .formats import _camera_from_entry, _check_keys, _check_rotation, _finite, _guess_format
from .generators import _check_frames, _default_camera, _ease, follow_framing, static_camera
from .path import CameraPath

__all__ = ["Camera", "CameraPath", "intrinsics_from_fov", "look_at_rotation", "default_camera", "static_camera",
           "OPENCV_TO_OPENGL", "follow_framing", "DEFAULT_EYE", "DEFAULT_TARGET", "DEFAULT_FOV_DEG"]
