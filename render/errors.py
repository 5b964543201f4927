"""The project's one exception type for errors a user can cause.

Raised with a one-line message that names the input (a path, an argument, a config key) and what was
expected. The command-line apps print it without a traceback and exit non-zero.
"""


class AmgError(ValueError):
    """Bad input: a path, file, argument or config value that is not what the stage expects."""
