"""Side-by-side timing: calibrated ``timeit`` loops, interleaved rounds, medians."""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable, Mapping

__all__ = ["Settings", "compare"]


class Settings:
    """How long to measure: ``min_time`` seconds per loop, ``rounds`` loops per call."""

    def __init__(self, *, quick: bool) -> None:
        self.quick = quick
        # Many short rounds: the median shrugs off bursts of a shared machine.
        self.rounds = 7 if quick else 25
        self.min_time = 0.01 if quick else 0.04


def _calibrate(timer: timeit.Timer, min_time: float) -> int:
    # timeit's autorange, but with our own target duration.
    number = 1
    while True:
        if timer.timeit(number) >= min_time:
            return number
        number *= 2 if number < 8 else 4


def compare(
    fns: Mapping[str, Callable[[], object]], settings: Settings
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median seconds per call of each function, measured in interleaved rounds.

    Returns the medians and every round's time per call (rounds line up across
    functions, so that differences can be taken round by round).

    Each function is warmed up (JIT compilation, caches) and calibrated on its own,
    then round ``r`` times every function once, in an order that rotates with ``r``,
    so slow phases of a shared machine fall on all of them.
    """
    timers = {}
    numbers = {}
    for name, fn in fns.items():
        fn()
        fn()
        timers[name] = timeit.Timer(fn)
        numbers[name] = _calibrate(timers[name], settings.min_time)
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            n = numbers[name]
            samples[name].append(timers[name].timeit(n) / n)
    return {name: statistics.median(s) for name, s in samples.items()}, samples
