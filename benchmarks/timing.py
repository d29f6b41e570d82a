"""Interleaved timing: one call of every contender per round, in rotating order.

The machines are shared and noisy; interleaving spreads a burst of noise over
all contenders alike instead of over whichever ran during it, and the median
of the rounds drops the outliers. Ratios of medians from one run are what the
report compares.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(contenders: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1) -> dict:
    """Times each contender `repeats` times, interleaved; returns per-name statistics in milliseconds.

    A contender is a callable that does one unit of work. If it returns a
    float, that is taken as its own measurement in seconds (a subprocess that
    times itself, without the cost of talking to it); otherwise the wall time
    of the call counts.

    Returns:
        `{name: {"median_ms", "min_ms", "samples_ms"}}`.
    """
    for call in contenders.values():
        for _ in range(warmup):
            call()
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = contenders[name]()
            elapsed = time.perf_counter() - start
            samples[name].append(result if isinstance(result, float) else elapsed)
    return {
        name: {
            "median_ms": 1e3 * statistics.median(values),
            "min_ms": 1e3 * min(values),
            "samples_ms": [round(1e3 * v, 3) for v in values],
        }
        for name, values in samples.items()
    }
