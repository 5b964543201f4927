"""Video -> people: 2D pose, tracking, SMPL fitting, importers and captioning.

``extract_people(frames, fps, camera=None)`` is the entry point (``extract.extract_clip`` for a prepared
clip: detection at the source resolution, crop around the subjects); ``video.prepare_clips`` cuts videos into
clips, ``pose`` finds people, ``track`` follows them and tells subjects from bystanders, ``camera_motion``
recovers the camera's rotation and the floor, ``fit`` fits SMPL (``keypoints`` and ``align`` hold its
kinematics and PA-MPJPE), ``parts`` labels the pixels of each body part, ``trace.load_trace`` imports TRACE
results and ``caption`` describes people and scenes.
"""

from .extract import ExtractionResult, extract_people

__all__ = ["extract_people", "ExtractionResult"]
