"""Humans: body model, motion, appearance, Gaussian avatars bound to the body."""
