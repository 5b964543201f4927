"""What the prep tests share: small clip settings and two short videos of avatars rendered by the project."""

from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
SMALL = ["clips.length=8", "clips.size=128", "clips.max_clips=1", "avatar.num_gaussians=3000", "progress=false"]


def render_videos(folder: Path) -> list[Path]:
    """Two 10-frame 160x128 videos in ``folder``: a waving man and a boxing woman, each alone."""
    from amg.render import run

    out = []
    for motion, text in (("wave", "a man in a red shirt and blue jeans"), ("box", "a woman in a green top and black pants")):
        with initialize_config_dir(config_dir=CONF, version_base=None):
            cfg = compose(config_name="render", overrides=[
                f"motion={motion}", "camera=static", "num_frames=10", "width=160", "height=128",
                f"avatar.appearance={text}", "avatar.num_gaussians=8000", "progress=false"])
        run(cfg, folder / motion)
        out.append(folder / motion / "avatar.mp4")
    return out
