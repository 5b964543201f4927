"""The one timing loop of the benchmarks: median wall-clock and process-CPU seconds per call."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Timing:
    """Median seconds per call over ``repeats`` timed calls, after one untimed warm-up call.

    ``cpu`` is process CPU time (all threads together), steadier than ``wall`` on a shared machine;
    ``out`` is the last call's result.
    """

    wall: float
    cpu: float
    out: object


def timed(fn: Callable[[], object], repeats: int = 3, warmup: bool = True) -> Timing:
    """Call ``fn`` (once untimed when ``warmup``, for allocators, contexts, JIT and lazy imports), then
    ``repeats`` times timed; returns the medians."""
    out = fn() if warmup else None
    wall, cpu = [], []
    for _ in range(max(1, int(repeats))):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(statistics.median(wall), statistics.median(cpu), out)
