"""What a benchmark figure is: a value beside its baseline from the same run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a latency someone actually waited."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Goal:
    """A target printed beside a figure, never asserted (the machine is shared)."""

    text: str
    met_by: Callable[[Figure], bool]


@dataclass(frozen=True)
class Figure:
    label: str
    value: float
    baseline: float
    unit: str
    baseline_is: str
    higher_is_better: bool
    goal: Goal | None = None

    @property
    def ratio(self) -> float:
        """How the figure compares with its baseline; above 1 is better than the baseline."""
        over, under = (self.value, self.baseline) if self.higher_is_better else (self.baseline, self.value)
        if under == 0:  # a figure that is zero by design (no 500s): equal is 1, else unbounded
            return 1.0 if over == 0 else math.inf
        return over / under

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met_by(self)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "goal": None if self.goal is None else self.goal.text,
            "met": self.met,
            "unit": self.unit,
            "baseline_is": self.baseline_is,
        }


def ratio_at_least(minimum: float) -> Goal:
    return Goal(f"ratio >= {minimum:g}", lambda f: f.ratio >= minimum)


def value_below(limit: float, unit: str) -> Goal:
    return Goal(f"< {limit:g} {unit}", lambda f: f.value < limit)
