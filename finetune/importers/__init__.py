"""Importers for other code bases' checkpoints (ModelScope / VGen and the official AMG release)."""
