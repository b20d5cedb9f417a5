"""The benchmark code runs (on tiny numbers) so it does not rot; its figures are not checked."""

from __future__ import annotations

import asyncio

from benchmarks import bench


def test_benchmark_runs_on_both_backends(postgres_database: str | None) -> None:
    backends = ["sqlite"] + (["postgresql"] if postgres_database else [])
    results = asyncio.run(bench.run(120, backends))
    assert set(results) == set(backends)
    for figures in results.values():
        assert set(figures) == {"enqueue-single", "enqueue-bulk", "drain-c10", "drain-c100", "raw-ceiling"}
        assert all(value > 0 for value in figures.values())
    assert "drain-c10" in bench.report(results)
