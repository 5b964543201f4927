"""Seconds per 16-frame clip through the whole prep (clips -> tracks -> captions -> avatars -> render).

Renders two short videos of avatars with the project, runs ``amg.prep`` on them in this process and prints
the seconds per clip of each stage and in total, the ratio to the goal (10 s per clip), and the ratio to a
baseline measured in the same run: decoding the clip and writing it back as MP4 (the I/O every stage pays).

    python benchmarks/prep.py [--clips 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

GOAL_SECONDS = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2, help="videos to prepare (one 16-frame clip each)")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    from amg.prep import run as prep
    from amg.render import run as render
    from render.video import read_video, write_video

    conf = str(ROOT / "conf")
    motions = ["wave", "box", "walk", "dance"][: args.clips]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = []
        for m in motions:
            with initialize_config_dir(config_dir=conf, version_base=None):
                cfg = compose(config_name="render", overrides=[f"motion={m}", "camera=static", "num_frames=16",
                                                                "width=320", "height=256", "progress=false"])
            render(cfg, tmp / m)
            videos.append(tmp / m / "avatar.mp4")
        t0 = time.perf_counter()
        for v in videos:
            frames, fps = read_video(v)
            write_video(tmp / f"copy-{v.parent.name}.mp4", frames, fps=fps)
        baseline = (time.perf_counter() - t0) / len(videos)
        with initialize_config_dir(config_dir=conf, version_base=None):
            cfg = compose(config_name="prep", overrides=[f"video=[{','.join(map(str, videos))}]",
                                                         f"out_dir={tmp / 'prep'}", "progress=false"])
        t0 = time.perf_counter()
        summary = prep(cfg, "bench")
        total = time.perf_counter() - t0
        clips = max(summary["clips_kept"], 1)
        stage = {}
        for f in (tmp / "prep").glob("clips/*/*/tracks/meta.json"):
            for k, v in json.loads(f.read_text()).get("seconds", {}).items():
                stage[k] = stage.get(k, 0.0) + v / clips
    per_clip = total / clips
    print(f"prep: {summary['clips_kept']} clips kept, {summary['clips_dropped']} dropped")
    print("reconstruction stages per clip: " + ", ".join(f"{k} {v:.2f} s" for k, v in stage.items()))
    print(f"seconds per 16-frame clip: {per_clip:.2f} (goal {GOAL_SECONDS:.0f} s, ratio {per_clip / GOAL_SECONDS:.2f})")
    print(f"ratio to decoding + re-encoding the clip ({baseline * 1000:.0f} ms): {per_clip / baseline:.1f}x")


if __name__ == "__main__":
    main()
