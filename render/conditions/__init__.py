"""Conditions of the trajectory-guided video models, derived from one render.

- :mod:`.bbox3d`: oriented 3D boxes of people, projected and drawn (the 3D-aware trajectory thesis).
- :mod:`.levitor`: K-means control points with instance ids and depth, the heatmap control tensor and
  the 3D object move (LeviTor).
- :mod:`.flow`: Gaussian-filtered sparse trajectory flow maps (Image Conductor, MotionCtrl, DragNUWA)
  and the motion-weighted sparse track sampler.
- :mod:`.traj_image`: trajectory images and the region-aware sampler (the thesis / PoseTraj).

Small pure functions, numpy arrays in and out, each following the public implementation its docstring
names, so a render loop can call them per clip.
"""

from .bbox3d import draw_boxes, heading_yaw, oriented_boxes, project_boxes, save_boxes, write_box_video
from .flow import gaussian_kernel, resample_track, sample_tracks, sparse_flow, trajectory_flow
from .levitor import (ObjectMove, control_tensor, disparity_from_depth, encode_depth, heatmap_template,
                      inverse_disparity, kmeans_points, move_object, num_clusters, reproject)
from .traj_image import region_tracks, trajectory_frames

__all__ = [
    "oriented_boxes", "heading_yaw", "project_boxes", "draw_boxes", "save_boxes", "write_box_video",
    "heatmap_template", "num_clusters", "kmeans_points", "control_tensor", "encode_depth",
    "inverse_disparity", "disparity_from_depth", "reproject", "ObjectMove", "move_object",
    "resample_track", "gaussian_kernel", "sparse_flow", "trajectory_flow", "sample_tracks",
    "trajectory_frames", "region_tracks",
]
