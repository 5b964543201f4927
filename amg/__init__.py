"""amg: avatar-conditioned human video.

The front door: Hydra apps (generate, render, prep, train, evaluate) that compose the other packages.
"""

from render.errors import AmgError

__version__ = "0.1.0"
__all__ = ["AmgError", "__version__"]
