"""Sampling pipelines, one readable ``__call__`` per method and backbone."""
