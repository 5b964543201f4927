"""Video -> people: 2D pose, tracking, SMPL fitting, importers and captioning.

``extract_people(frames, fps, camera=None)`` is the entry point; ``video.prepare_clips`` cuts videos into
clips, ``trace.load_trace`` imports TRACE results and ``caption`` describes people and scenes.
"""

from .extract import ExtractionResult, extract_people

__all__ = ["extract_people", "ExtractionResult"]
