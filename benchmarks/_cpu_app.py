"""The CPU-bound body of the comparison's scenario 6, importable by spawned worker processes."""

from __future__ import annotations


def crunch(n: int) -> int:
    """About n loop iterations of pure-Python arithmetic (n=10,000: about half a millisecond)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
