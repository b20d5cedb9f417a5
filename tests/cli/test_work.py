"""`aiojobs work` and `aiojobs workoff`, in this process (see test_subprocess for signals)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pytest

from aiojobs_engine import Engine, JobState, QueueRecord
from aiojobs_engine._cli._progress import ProgressBar

from ._helpers import APP, Result, enqueue, get, with_engine

Cli = Callable[..., Result]


def stored_queue(url: str, name: str) -> QueueRecord:
    async def go(engine: Engine) -> QueueRecord:
        return {q.name: q for q in await engine.list_queues()}[name]

    return with_engine(url, go)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_workoff_runs_due_jobs_and_prints_the_attempts(cli: Cli, sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (3, 4), {"queue": "email"}), ("boom", (), {}),
                   ("add", (5, 6), {"delay": 3600}), ("add", (7, 8), {"queue": "paused"}))
    assert cli("queues", "pause", "paused", "--url", sqlite_url).code == 0
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    result = cli("workoff", "--app", APP, "--url", sqlite_url)
    assert (result.code, result.out) == (0, "ran 3 attempts\n"), terminal.getvalue()
    # the bar ends full; its total is what was due when first seen (the paused queue's job is not)
    assert re.search(r"\r\[#{30}\] ([123])/\1 jobs  [0-9.]+/s  ETA 0s *\n$", terminal.getvalue()), terminal.getvalue()
    assert [get(sqlite_url, j.id).state for j in jobs] == [
        JobState.COMPLETED, JobState.COMPLETED, JobState.FAILED, JobState.WAITING, JobState.WAITING,
    ]
    assert get(sqlite_url, jobs[0].id).result == 3


def test_workoff_json_and_queues(cli: Cli, sqlite_url: str) -> None:
    a, b = enqueue(sqlite_url, ("add", (1, 2), {"queue": "a"}), ("add", (1, 2), {"queue": "b"}))
    result = cli("workoff", "--app", APP, "--url", sqlite_url, "--queues", "a", "--concurrency", "2", "--json")
    assert (result.code, json.loads(result.out)) == (0, {"attempts": 1}), result.err
    assert (get(sqlite_url, a.id).state, get(sqlite_url, b.id).state) == (JobState.COMPLETED, JobState.WAITING)
    assert stored_queue(sqlite_url, "a").concurrency == 2


def test_workers_run_on_uvloop_when_installed(cli: Cli, sqlite_url: str) -> None:
    (job,) = enqueue(sqlite_url, ("loop_kind", (), {}))
    assert cli("workoff", "--app", APP, "--url", sqlite_url).code == 0
    try:
        import uvloop  # noqa: F401
    except ImportError:
        expected = "asyncio"
    else:
        expected = "uvloop"
    assert get(sqlite_url, job.id).result.startswith(expected)


@pytest.mark.timeout(20)
def test_work_runs_the_named_queues_until_stopped(cli: Cli, sqlite_url: str) -> None:
    first, stop, other = enqueue(
        sqlite_url,
        ("add", (1, 2), {"queue": "a", "priority": 0}),
        ("stop_worker", (), {"queue": "a", "priority": 100}),  # calls engine.stop() from inside
        ("add", (1, 2), {"queue": "b"}),
    )
    result = cli("work", "--app", APP, "--url", sqlite_url, "--queues", "a", "--concurrency", "1",
                 "--log-level", "error")
    assert result.code == 0, result.err
    (start,) = [line for line in result.err.splitlines() if line.startswith("aiojobs: engine ")]
    assert start.endswith(" working queue a; 5 jobs: add, boom, loop_kind, slow, stop_worker"), start
    assert get(sqlite_url, first.id).state is JobState.COMPLETED
    assert get(sqlite_url, stop.id).state is JobState.COMPLETED
    assert get(sqlite_url, other.id).state is JobState.WAITING
    assert stored_queue(sqlite_url, "a").concurrency == 1


@pytest.mark.parametrize("command", ["work", "workoff"])
def test_worker_option_errors(cli: Cli, sqlite_url: str, command: str) -> None:
    alone = cli(command, "--app", APP, "--url", sqlite_url, "--concurrency", "3")
    assert (alone.code, alone.err) == (2, "aiojobs: error: --concurrency is set per queue: name the queues with "
                                          "--queues\n")
    empty = cli(command, "--app", APP, "--url", sqlite_url, "--queues", " , ")
    assert (empty.code, empty.err) == (2, "aiojobs: error: --queues needs at least one queue name, got ' , '\n")
    zero = cli(command, "--app", APP, "--url", sqlite_url, "--queues", "a", "--concurrency", "0")
    assert (zero.code, zero.err) == (2, "aiojobs: error: concurrency must be between 1 and 100000, got 0\n")
    bad_name = cli(command, "--app", APP, "--url", sqlite_url, "--queues", "a,b c")
    assert bad_name.code == 2 and bad_name.err.startswith("aiojobs: error: queue must be")


def test_progress_bar_moves_forward_and_grows_with_rate_and_eta() -> None:
    stream = io.StringIO()
    times = iter([0.0, 0.0, 1.0, 2.0, 4.0, 5.0])  # the start, then one reading per frame
    bar = ProgressBar(stream, width=10, enabled=True, clock=lambda: next(times))
    bar.update(4)
    bar.update(2)
    bar.update(5)  # three more came due: the total grows, progress stays
    bar.update(3)
    bar.finish()
    frames = [frame.rstrip(" ") for frame in stream.getvalue().split("\r")[1:]]
    assert frames == [
        "[----------] 0/4 jobs  -/s  ETA -", "[#####-----] 2/4 jobs  2.0/s  ETA 1s",
        "[##--------] 2/7 jobs  1.0/s  ETA 5s", "[#####-----] 4/7 jobs  1.0/s  ETA 3s",
        "[##########] 7/7 jobs  1.4/s  ETA 0s\n",
    ]


def test_progress_durations() -> None:
    from aiojobs_engine._cli._progress import _duration

    assert [_duration(s) for s in (0.4, 59, 185, 7620)] == ["0s", "59s", "3m05s", "2h07m"]


def test_progress_bar_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.update(3)
    bar.finish()
    assert stream.getvalue() == "" and (bar.done, bar.total) == (3, 3)
