"""Library motions against the goals of natural motion: foot skate, ground contact, knee range, gait.

For each motion (and each person of the two-person motions) prints the mean and worst stance-foot slide
per frame (goal <= 0.5 cm for walk, run, dance, box, fence, turn_around and the interactions built from
them), the lowest foot point (goal >= -1 cm), the knee flexion range in degrees (walk about 5-65, run up
to about 110) and, for the gaits, cadence (steps/min), stride (m) and speed (m/s). A stance foot is one
whose heel or toe joint is within 3 cm of its flat-foot height, so a sliding foot still counts, for at
least 0.1 s (a swing foot skims the floor for less); a foot's
slide is the smaller travel of its heel and toe points that stay down. Run:
``python benchmarks/motion.py [--fps 30] [--seconds 4] [--names walk,run]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatars import motion_library  # noqa: E402
from avatars.body import default_body  # noqa: E402
from avatars.contact import flat_foot_heights, foot_contacts, foot_slide, knee_angles  # noqa: E402

SKATE_GOAL_CM = 0.5
FLOOR_GOAL_CM = -1.0
KNEE_GOALS = {"walk": (5.0, 65.0), "run": (None, 110.0)}  # (straightest, most bent); None: no goal
SKATE_CHECKED = {"walk", "run", "dance", "box", "fence", "turn_around", "dance_pair", "box_pair", "handshake"}


def _touch_downs(down: torch.Tensor, gap: int = 3) -> int:
    """Foot strikes: contact onsets after at least ``gap`` frames off the ground (a heel-toe flicker is
    not a step)."""
    n, off = 0, 0  # a foot already down in the first frame is no new strike
    for d in down.tolist():
        if d:
            n += off >= gap
            off = 0
        else:
            off += 1
    return n


def measure(m, body) -> dict:
    """Skate, floor, knee and gait numbers of one Motion on ``body``."""
    with torch.no_grad():
        out = body(betas=m.betas[None], global_orient=m.global_orient, body_pose=m.body_pose, transl=m.transl)
    J = out.joints
    h = flat_foot_heights(body, m.betas)
    min_frames = max(2, round(0.1 * m.fps))  # a stance lasts; a swing foot skims the floor briefly
    contacts = foot_contacts(J, h, min_frames=min_frames)
    slide = foot_slide(J, h, min_frames=min_frames) * 100
    ok = ~torch.isnan(slide)
    knees = knee_angles(J)
    steps = sum(_touch_downs(contacts[:, s], gap=max(3, round(0.15 * m.fps))) for s in range(2))
    seconds = len(m) / m.fps
    travel = float((m.transl[-1, [0, 2]] - m.transl[0, [0, 2]]).norm())
    return {"slide_mean": float(slide[ok].mean()) if ok.any() else 0.0,
            "slide_max": float(slide[ok].max()) if ok.any() else 0.0,
            "floor": float(out.vertices[..., 1].min()) * 100, "knee_min": float(knees.min()),
            "knee_max": float(knees.max()), "cadence": steps / seconds * 60, "speed": travel / seconds,
            "stride": travel / max(steps / 2, 1e-9)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--names", default=",".join(motion_library.names()))
    args = ap.parse_args()
    body = default_body()
    print(f"{'motion':<14}{'slide cm/frame':>16}{'worst':>8}{'floor cm':>10}{'knee deg':>12}"
          f"{'steps/min':>11}{'stride m':>10}{'m/s':>7}  goals")
    failed = []
    for name in args.names.split(","):
        for i, m in enumerate(motion_library.make_people(name, seconds=args.seconds, fps=args.fps)):
            r = measure(m, body)
            verdict = []
            if name in SKATE_CHECKED:
                verdict.append("skate ok" if r["slide_mean"] <= SKATE_GOAL_CM else "SKATES")
            verdict.append("floor ok" if r["floor"] >= FLOOR_GOAL_CM else "SINKS")
            if name in KNEE_GOALS:
                lo, hi = KNEE_GOALS[name]
                good = (lo is None or r["knee_min"] <= lo + 5) and abs(r["knee_max"] - hi) <= 15
                goal = f"{lo:.0f}-{hi:.0f}" if lo is not None else f"up to {hi:.0f}"
                verdict.append(f"knee ok ({goal})" if good else f"KNEE off ({goal})")
            if not all(v.endswith("ok") or "ok (" in v for v in verdict):
                failed.append(f"{name}/{i}")
            gait = (f"{r['cadence']:>11.0f}{r['stride']:>10.2f}{r['speed']:>7.2f}" if name in ("walk", "run")
                    else f"{'':>28}")
            print(f"{name + ('/' + str(i) if i else ''):<14}{r['slide_mean']:>16.3f}{r['slide_max']:>8.2f}"
                  f"{r['floor']:>10.2f}{r['knee_min']:>6.0f}-{r['knee_max']:<5.0f}{gait}  {', '.join(verdict)}")
    print("all goals met" if not failed else f"goals missed: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
