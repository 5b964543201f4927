"""AMG's clip: 16 frames at 8 fps, 256x256 pixels (the paper's training and sampling size).

The one place these numbers live in Python; the apps read them from ``conf/shared/amg_clip.yaml``, which a
test keeps equal to these. Camera paths, prep's clips and the training config take their defaults here.
"""

AMG_NUM_FRAMES = 16
AMG_SIZE = 256
AMG_FPS = 8.0
