"""What the training tests share: a training config for tiny models and clips."""

from finetune.train import TrainConfig


def small_config(**kw) -> TrainConfig:
    """A :class:`TrainConfig` for tiny clips (2 frames of 16x16), 2 steps, quiet; ``kw`` overrides fields."""
    base = dict(steps=2, lr=1e-3, num_frames=2, height=16, width=16, checkpoint_every=2, progress=False,
                tensorboard=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)
