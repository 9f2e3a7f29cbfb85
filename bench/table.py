"""The one table row format the benchmarks print: median, min, max, and a ratio against a baseline."""

from __future__ import annotations

import statistics


def row(label: str, values: list[float], baseline: list[float] | None = None, width: int = 48) -> str:
    ratio = f"{statistics.median(values) / statistics.median(baseline):.2f}x" if baseline else ""
    return (f"{label:<{width}} | {statistics.median(values):>8.2f} | {min(values):>6.2f} | {max(values):>6.2f} "
            f"| {ratio:>6}")


def header(width: int = 48) -> str:
    return f"{'figure':<{width}} | {'median':>8} | {'min':>6} | {'max':>6} | {'ratio':>6}"
