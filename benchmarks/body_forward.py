"""Body forward: our LBS (avatars.lbs) against smplx's SMPL forward on the same body and inputs (CPU).

Prints, per batch size, the best-of-N time of each and the ratio ours/smplx (below 1 means ours is
faster), plus the largest vertex difference between the two. Run: ``python benchmarks/body_forward.py
[--body default|PATH] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatars.body import BodyModel  # noqa: E402


def timeit(fns, repeats: int) -> list[float]:
    """Best-of-``repeats`` seconds for each function, run interleaved so all see the same machine load
    (the minimum is the least disturbed run on a shared machine)."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return [min(t) for t in times]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--body", default="default")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 keeps torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    ours = BodyModel.load(args.body)
    load_s = time.perf_counter() - t0
    ref = BodyModel.load(args.body, backend="smplx")
    print(f"load {args.body}: {load_s * 1000:.0f} ms (goal well under a second; ratio to 1 s {load_s:.2f})")
    print(f"body {args.body}: {ours.num_vertices} vertices, {ours.num_betas} betas, "
          f"pose correctives {'on' if ours.has_posedirs else 'off (zero)'}; torch threads {torch.get_num_threads()}")
    print("smplx ms: BodyModel(backend='smplx') (smplx's SMPL forward plus its batch_rigid_transform for the "
          "per-joint transforms); raw: smplx's SMPL forward alone")
    print(f"{'batch':>5} {'ours ms':>9} {'smplx ms':>9} {'raw ms':>9} {'ratio':>7} {'ratio raw':>9} {'max |dv| m':>11}")
    g = torch.Generator().manual_seed(0)
    for B in (int(b) for b in args.batches.split(",")):
        x = dict(betas=torch.randn(B, ours.num_betas, generator=g), global_orient=torch.randn(B, 3, generator=g) * 0.5,
                 body_pose=torch.randn(B, 23, 3, generator=g) * 0.5, transl=torch.randn(B, 3, generator=g))
        with torch.no_grad():
            diff = (ours(**x).vertices - ref(**x).vertices).abs().max().item()
            raw = dict(betas=x["betas"], global_orient=x["global_orient"], body_pose=x["body_pose"].reshape(B, -1),
                       transl=x["transl"])
            t_ours, t_ref, t_raw = timeit([lambda: ours(**x), lambda: ref(**x), lambda: ref.smplx_model(**raw)],
                                          args.repeats)
        print(f"{B:>5} {t_ours * 1e3:>9.2f} {t_ref * 1e3:>9.2f} {t_raw * 1e3:>9.2f} {t_ours / t_ref:>7.3f} "
              f"{t_ours / t_raw:>9.3f} {diff:>11.2e}")


if __name__ == "__main__":
    main()
