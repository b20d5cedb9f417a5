"""The process-count benchmark runs (on tiny numbers) so it does not rot; its figures are not checked."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import processes


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_process_benchmark_runs_on_both_backends(postgres_database: str | None) -> None:
    backends = ["sqlite"] + (["postgresql"] if postgres_database else [])
    results = asyncio.run(processes.run(60, [1, 2], backends))
    assert set(results) == set(backends)
    for by_count in results.values():
        assert set(by_count) == {1, 2}
        for figures in by_count.values():
            assert figures["jobs_per_s"] > 0
            assert set(figures) == {"jobs_per_s", "worker_rss_mib_max", "worker_rss_mib_mean", "supervisor_rss_mib"}
    assert "worker peak RSS" in processes.report(results, 60)
