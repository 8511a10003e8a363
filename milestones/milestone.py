"""What every milestone script shares: its command line, a clock, where plots go and the final verdict."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # milestones save their plots; they never need a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

import tinytorch

__all__ = ["Latency", "Run", "latencies", "latency", "plt", "start"]


@dataclass
class Run:
    """One milestone run: its name, the plot folder, the seed, its command line, and a stopwatch."""

    name: str
    out: Path
    seed: int
    quick: bool = False
    args: argparse.Namespace = field(default_factory=argparse.Namespace)
    started: float = field(default_factory=time.perf_counter)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def save(self, figure: Figure) -> Path:
        path = self.out / f"{self.name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        return path

    def finish(self, result: str, reached: bool, plot: Path) -> int:
        """Print the verdict, the time and the plot; the exit status says whether the target was reached."""
        verdict = "REACHED" if reached else "NOT REACHED"
        print(f"{self.name}: {result} -> {verdict} ({self.seconds():.1f} s)")
        print(f"plot: {plot}")
        return 0 if reached else 1


@dataclass(frozen=True)
class Latency:
    """The median and interquartile range of repeated timings, in seconds."""

    median: float
    q1: float
    q3: float

    def __str__(self) -> str:
        unit, scale = ("ms", 1e3) if self.median < 1 else ("s", 1.0)
        return f"{self.median * scale:.3g} {unit} [{self.q1 * scale:.3g}-{self.q3 * scale:.3g}]"


def latencies(calls: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Latency]:
    """Time each of ``calls`` ``repeats`` times with ``time.perf_counter``, in interleaved rounds (one call of
    each per round, after ``warmup`` untimed rounds), so that a machine slowing down part way (other programs
    on a shared machine) slows every call alike and their ratios stay fair."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            begin = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - begin)
    found = {}
    for name, times in seconds.items():
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        found[name] = Latency(float(median), float(q1), float(q3))
    return found


def latency(call: Callable[[], object], repeats: int, warmup: int = 1) -> Latency:
    """Time ``repeats`` calls of ``call`` (after ``warmup`` untimed ones) with ``time.perf_counter``."""
    return latencies({"call": call}, repeats, warmup)["call"]


def start(
    name: str,
    description: str,
    quick: str | None = None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Run:
    """Parse ``--out``, ``--seed`` (and ``--quick`` when the milestone has a short run, described by
    ``quick``; and the milestone's own ``options``, added to the parser by that function and found in
    ``Run.args``), say which tinytorch runs, and start the clock."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/milestones"), help="folder for the plot")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if options is not None:
        options(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{name} with tinytorch from {Path(tinytorch.__file__).parent}")
    return Run(name, args.out, args.seed, quick=bool(getattr(args, "quick", False)), args=args)
