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


def test_claim_cost_benchmark_runs(postgres_database: str | None) -> None:
    from benchmarks import claim_cost

    backends = ["sqlite"] + (["postgresql"] if postgres_database else [])
    claim_cost.ROUNDS = 5
    results = asyncio.run(claim_cost.run(2000, backends))
    assert set(results) == set(backends)
    assert all(set(f) == {"small", "waiting", "finished", "churned"} for f in results.values())
    assert "finished" in claim_cost.report(results, 2000) and "unvacuumed" in claim_cost.report(results, 2000)


def test_cpu_per_job_benchmark_runs(tmp_path) -> None:
    """benchmarks/cpu_per_job.py, as the decision records run it (a subprocess, tiny numbers)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "cpu_per_job.py"), "--backend", "sqlite",
                             "--concurrency", "10", "--jobs", "50"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert "jobs/s" in result.stdout and "us CPU/job" in result.stdout


def test_sync_enqueue_benchmark_runs(tmp_path) -> None:
    """benchmarks/sync_enqueue.py, as its docstring runs it (a subprocess, tiny numbers)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "sync_enqueue.py"), "--backend", "sqlite",
                             "--jobs", "32"], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("jobs/s") == 4 and "engine running" in result.stdout


def test_per_key_benchmark_runs(tmp_path, postgres_database: str | None) -> None:
    """benchmarks/per_key.py, as its docstring runs it (a subprocess, tiny numbers)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for backend in ["sqlite"] + (["postgresql"] if postgres_database else []):
        result = subprocess.run([sys.executable, str(root / "benchmarks" / "per_key.py"), "--backend", backend,
                                 "--jobs", "200", "--concurrency", "10", "--busy-tail", "5"],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("keyed/unlimited") == 2 and "(most at once: 1)" in result.stdout, result.stdout
