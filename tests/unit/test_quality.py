"""The project's own rules, checked like everything else: exports, lint, types, layers, docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import aiojobs_engine
from aiojobs_engine._log import ALL_EVENTS

ROOT = Path(__file__).resolve().parents[2]

EXPORTS = {
    "AiojobsError", "ArgumentsError", "BackendError", "BackendUnavailableError", "Cancel", "ClassJobHandle",
    "Clock", "Complete", "ConfigurationError", "ConstantBackoff", "Delete", "DuplicateJobError", "Engine",
    "EngineIdInUseError", "EngineRecord", "EngineSettings", "EngineStateError", "ExponentialBackoff", "Fail",
    "FrozenClock", "Job", "JobContext", "JobErrorInfo", "JobHandle", "JobNotFoundError", "JobRecord",
    "JobRequest", "JobSignal", "JobState", "JobTimeoutError", "LinearBackoff", "NamedEnqueuer",
    "PolynomialBackoff", "QueueConfig", "QueueRecord", "Retry", "SchemaError", "SerializationError", "Snooze",
    "SystemClock", "UnknownJobError", "WorkerCrashedError", "__version__", "current_job", "CronRecord",
    "RetentionDict", "UniqueConfig", "EventKind", "JobEvent", "WorkerGroup", "JobStateError",
    "UniqueConflictError", "QueueNotEmptyError", "MissingExtraError",
}


def test_public_names_are_pinned() -> None:
    assert set(aiojobs_engine.__all__) == EXPORTS
    for name in aiojobs_engine.__all__:
        assert hasattr(aiojobs_engine, name), name


def test_every_error_derives_from_the_base_class() -> None:
    errors = [getattr(aiojobs_engine, n) for n in EXPORTS if n.endswith("Error")]
    assert errors and all(issubclass(e, aiojobs_engine.AiojobsError) for e in errors)
    assert issubclass(aiojobs_engine.ConfigurationError, ValueError)
    assert issubclass(aiojobs_engine.SerializationError, TypeError)
    assert not issubclass(aiojobs_engine.JobSignal, aiojobs_engine.AiojobsError)


def test_every_log_event_is_documented_and_every_documented_event_exists() -> None:
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs" / "logging.md").read_text(), re.MULTILINE))
    assert documented == set(ALL_EVENTS)


def test_every_emitted_event_is_a_declared_one() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "aiojobs_engine").rglob("*.py"))
    literal_events = set(re.findall(r'"event": "([a-z_.]+)"', source))
    assert literal_events <= set(ALL_EVENTS), literal_events - set(ALL_EVENTS)


def test_package_is_typed() -> None:
    assert (ROOT / "aiojobs_engine" / "py.typed").exists()


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    result = _tool("ruff", "check", "aiojobs_engine", "tests", "examples", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mypy_strict_is_clean() -> None:
    result = _tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_layers_point_one_way() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
