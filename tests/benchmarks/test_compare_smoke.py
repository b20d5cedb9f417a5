"""The peer comparison harness runs (tiny numbers, our engine only) so it does not rot.

It needs neither the peers' virtual environment nor the network: with ``--quick`` and no
peers' environment, the peers are reported as skipped. Figures are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import compare


def _run(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    output = tmp_path / "results"
    code = compare.main(["--quick", "--jobs", "40", "--samples", "2", "--cpu-jobs", "10", "--rows", "500",
                         "--peers-venv", str(tmp_path / "no-peers-venv"), "--output", str(output), *argv])
    return code, json.loads((output / "latest.json").read_text())


@pytest.mark.timeout(120)
def test_quick_comparison_of_our_engine_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = _run(tmp_path, "--backends", "sqlite")
    out = capsys.readouterr().out
    assert code == 0, data["errors"]
    measured = {(r["scenario"], r["engine"]) for r in data["records"]}
    for key in ("enqueue-single", "enqueue-bulk", "drain-c10", "drain-c100", "pickup-p50", "pickup-p95",
                "rss-c10", "rss-c100", "claim-small", "claim-waiting", "claim-finished", "claim-churned", "cpu"):
        assert (key, compare.OURS) in measured, key
    assert ("drain-c10", compare.RAW) in measured
    assert ("cpu", compare.BASELINE) in measured
    skipped = {s["engine"] for s in data["skipped"]}
    assert {"procrastinate", "pgqueuer", "arq", "saq", "oban"} <= skipped
    for heading in ("1a. Enqueue", "2b. Drain", "3a. Pickup latency", "4. Claim cost", "5a. Peak RSS",
                    "6. CPU-bound", "7. Raw ceilings", "Not measured"):
        assert heading in out


@pytest.mark.timeout(120)
def test_quick_comparison_of_our_engine_on_postgresql(tmp_path: Path, postgres_database: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if postgres_database is None:
        pytest.skip("no PostgreSQL server answers")
    admin = postgres_database.rsplit("/", 1)[0] + "/postgres"
    monkeypatch.setenv("AIOJOBS_BENCH_POSTGRES_URL", admin)
    monkeypatch.setattr(compare, "ADMIN_URL", admin)
    code, data = _run(tmp_path, "--backends", "postgresql", "--only", "enqueue,latency,raw")
    assert code == 0, data["errors"]
    measured = {(r["scenario"], r["engine"], r["backend"]) for r in data["records"]}
    for engine in (compare.OURS, compare.RAW):
        assert ("enqueue-bulk", engine, "postgresql") in measured
        assert ("pickup-p50", engine, "postgresql") in measured
