"""Keep mutmut's map of which tests reach which function true when tests share cached results.

While mutmut collects that map ("stats"), a cached result (a stack capture, a module-scoped fixture) would tie a
function to the first test that computed it only, and mutmut runs only the tied tests against that function's
mutants. So the calls made while computing a cached result are recorded once and counted again for every test
that reuses it. Outside that phase (every normal run, every mutant run) these do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_recorded_calls: dict[object, frozenset[str]] = {}


def collecting_stats() -> set[str] | None:
    """mutmut's set of functions called in the current test, while it collects stats; otherwise None."""
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return None
    from mutmut.state import state

    return state()._stats


@contextmanager
def calls_recorded(key: object) -> Iterator[None]:
    """Record, under ``key``, the functions called inside the block (kept in the current test's set too)."""
    calls = collecting_stats()
    if calls is None:
        yield
        return
    earlier = set(calls)
    calls.clear()
    try:
        yield
    finally:
        _recorded_calls[key] = frozenset(calls)
        calls.update(earlier)


def replay_calls(key: object) -> None:
    """Count the calls recorded under ``key`` for the current test too."""
    calls = collecting_stats()
    if calls is not None:
        calls.update(_recorded_calls.get(key, ()))
