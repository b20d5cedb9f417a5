"""The public API of Engine: declaring, enqueueing, inspecting, validating — on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aiojobs_engine import (
    AiojobsError,
    ArgumentsError,
    ConfigurationError,
    DuplicateJobError,
    Engine,
    EngineStateError,
    ExponentialBackoff,
    Job,
    JobHandle,
    JobNotFoundError,
    JobRecord,
    JobState,
    JobStateError,
    QueueConfig,
    QueueNotEmptyError,
    Retry,
    SerializationError,
    Snooze,
)
from aiojobs_engine._url import DEFAULT_URL, ENV_VAR
from tests._waiting import eventually


async def test_enqueue_returns_a_waiting_record_with_every_field(make_engine) -> None:
    engine = make_engine()

    @engine.job(queue="email", max_attempts=3, timeout=30, meta={"team": "growth"})
    async def send_welcome(user_id: int, *, lang: str = "en") -> dict:
        return {"sent": user_id}

    assert isinstance(send_welcome, JobHandle)
    async with engine:
        before = datetime.now(UTC) - timedelta(seconds=5)
        record = await send_welcome.enqueue(42, lang="fr")
        assert isinstance(record, JobRecord)
        assert record.state is JobState.WAITING and record.state == "waiting"
        assert (record.queue, record.name, record.args) == ("email", "send_welcome", [42])
        assert record.kwargs == {"lang": "fr"}
        assert (record.priority, record.attempt, record.max_attempts, record.timeout) == (50, 0, 3, 30.0)
        assert record.constructor_args == [] and record.meta == {"team": "growth"} and record.errors == []
        assert record.inserted_at.tzinfo is not None and record.inserted_at >= before
        assert record.available_at == record.inserted_at
        for name in ("claimed_at", "attempted_at", "completed_at", "failed_at", "canceled_at", "claimed_by",
                     "result", "unique_key", "rescheduled_from"):
            assert getattr(record, name) is None, name
        assert await engine.get_job(record.id) == record


async def test_decorated_functions_and_classes_stay_usable(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def add(a: int, b: int) -> int:
        return a + b

    @engine.job()
    def multiply(a: int, b: int) -> int:
        return a * b

    @engine.job(queue="default")
    class ProcessUser(Job):
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        async def run(self, user_id: int) -> str:
            return f"{self.tenant}:{user_id}"

    assert await add(1, 2) == 3 and multiply(3, 4) == 12 and add.__name__ == "add"
    assert isinstance(ProcessUser, type) and await ProcessUser("acme").run(7) == "acme:7"
    assert add.engine is engine and add.options(queue="q").engine is engine
    assert ProcessUser.options().engine is engine
    async with engine:
        record = await ProcessUser.options(constructor_args=["acme"]).enqueue(7)
        assert record is not None and record.constructor_args == ["acme"] and record.args == [7]
        with pytest.raises(ArgumentsError, match="constructor"):
            await ProcessUser.enqueue(8)
        assert await engine.workoff() == 1
        done = await engine.get_job(record.id)
        assert done is not None and done.result == "acme:7"


async def test_a_class_job_without_its_own_constructor_takes_no_constructor_args(make_engine) -> None:
    engine = make_engine()

    @engine.job()
    class Plain(Job):
        async def run(self) -> str:
            return "ran"

    @engine.job()
    class Built(Job):
        def __new__(cls, tenant: str) -> Built:
            return super().__new__(cls)

        async def run(self) -> str:
            return "built"

    async with engine:
        with pytest.raises(ArgumentsError, match=r"the constructor of job 'Plain'\(\): too many"):
            await Plain.options(constructor_args=["x"]).enqueue()
        with pytest.raises(ArgumentsError, match="the constructor of job 'Built'"):
            await Built.enqueue()
        assert await engine.list_jobs() == []
        plain = await Plain.enqueue()
        built = await Built.options(constructor_args=["acme"]).enqueue()
        assert plain is not None and built is not None
        assert await engine.workoff() == 2
        results = [await engine.get_job(record.id) for record in (plain, built)]
        assert [(r.state, r.result) for r in results if r is not None] == [
            (JobState.COMPLETED, "ran"), (JobState.COMPLETED, "built")]


async def test_options_return_a_new_handle_and_layer_over_the_declaration(make_engine) -> None:
    engine = make_engine()

    @engine.job(queue="reports", priority=20, max_attempts=2)
    async def report(month: str) -> None: ...

    urgent = report.options(priority=1, delay=60)
    assert urgent is not report
    async with engine:
        plain = await report.enqueue("2026-01")
        fast = await urgent.enqueue("2026-02")
        assert plain is not None and fast is not None
        assert (plain.queue, plain.priority, plain.max_attempts) == ("reports", 20, 2)
        assert (fast.queue, fast.priority, fast.max_attempts) == ("reports", 1, 2)
        assert fast.available_at - fast.inserted_at == timedelta(seconds=60)
        at = datetime(2031, 5, 1, tzinfo=UTC)
        scheduled = await report.options(run_at=at).enqueue("2026-03")
        assert scheduled is not None and scheduled.available_at == at


async def test_enqueue_by_name_uses_the_declaration_when_known(make_engine) -> None:
    engine = make_engine()

    @engine.job(queue="email", max_attempts=7)
    async def send_welcome(user_id: int) -> None: ...

    async with engine:
        known = await engine.enqueue("send_welcome", 42)
        assert known is not None and (known.queue, known.max_attempts) == ("email", 7)
        moved = await engine.options(queue="urgent").enqueue("send_welcome", 43)
        assert moved is not None and (moved.queue, moved.max_attempts) == ("urgent", 7)
        foreign = await engine.enqueue("defined_elsewhere", {"x": 1})
        assert foreign is not None and (foreign.queue, foreign.name, foreign.args) == ("default", "defined_elsewhere",
                                                                                       [{"x": 1}])
        with pytest.raises(ArgumentsError):
            await engine.enqueue("send_welcome")  # known here, so its signature is checked


async def test_enqueue_many_is_one_transaction_validated_first(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def a(x: int) -> None: ...

    @engine.job(queue="other")
    async def b(x: int, y: int) -> None: ...

    async with engine:
        records = await engine.enqueue_many([a.new(1), b.new(2, 3), a.options(priority=5).new(4)])
        assert [(r.name, r.queue, r.args, r.priority) for r in records if r] == [
            ("a", "default", [1], 50), ("b", "other", [2, 3], 50), ("a", "default", [4], 5)]
        assert await engine.enqueue_many([]) == []
        with pytest.raises(ArgumentsError):
            await engine.enqueue_many([a.new(1), b.new(2)])  # fails at new(): nothing to insert
        with pytest.raises(ConfigurationError):
            await engine.enqueue_many([a.new(1), "not a request"])  # type: ignore[list-item]
        assert len(await engine.list_jobs()) == 3


async def test_bad_arguments_fail_at_enqueue_and_store_nothing(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def job(value: object) -> None: ...

    async with engine:
        for bad in (object(), {1, 2}, b"bytes", float("nan"), datetime.now(UTC)):
            with pytest.raises(SerializationError) as caught:
                await job.enqueue(bad)
            assert isinstance(caught.value, TypeError) and isinstance(caught.value, AiojobsError)
            assert "JSON" in str(caught.value)
        expected = r"arguments do not fit job 'job'\(value: object\) -> None: too many"
        with pytest.raises(ArgumentsError, match=expected) as caught_args:
            await job.enqueue(1, 2)
        assert isinstance(caught_args.value, TypeError)
        with pytest.raises(ArgumentsError):
            await job.enqueue(nope=1)
        assert await engine.list_jobs() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"delay": -1}, "delay must be >= 0 seconds"),
    ({"delay": 1e15}, "delay must be at most 3155760000 seconds (100 years), got 1000000000000000.0"),
    ({"delay": 10**400}, "delay must be at most 3155760000 seconds (100 years)"),
    ({"delay": float("inf")}, "delay must be at most 3155760000 seconds (100 years), got inf"),
    ({"delay": float("nan")}, "delay must be >= 0 seconds, got nan"),
    ({"delay": timedelta(days=365 * 101)}, "delay must be at most 3155760000 seconds (100 years)"),
    ({"run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))},
     "run_at must be between 0001-01-01 and 9999-12-31 in UTC, got 9999-12-31T23:00:00-05:00"),
    ({"max_attempts": 0}, "max_attempts must be between 1 and"),
    ({"priority": -5}, "priority must be between 0 and 10000, got -5"),
    ({"priority": "high"}, "priority must be an integer"),
    ({"queue": "bad queue!"}, "queue must be 1-128 characters"),
    ({"timeout": 0}, "timeout must be > 0 seconds"),
    ({"run_at": datetime(2030, 1, 1)}, "run_at must be timezone-aware"),
    ({"delay": 5, "run_at": datetime(2030, 1, 1, tzinfo=UTC)}, "either delay or run_at"),
    ({"queu": "x"}, "unknown job option(s) 'queu'"),
    ({"meta": {1: "x"}}, "meta must be a dict with string keys"),
    ({"retry": lambda attempt: 1.0}, "a callable is stored in no database"),
])
def test_invalid_options_raise_value_errors_before_io(options: dict, message: str) -> None:
    engine = Engine("sqlite:///:memory:")

    @engine.job
    async def job() -> None: ...

    with pytest.raises(ConfigurationError) as caught:
        job.options(**options)
    assert isinstance(caught.value, ValueError)
    assert message in str(caught.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"poll_interval": 0}, "poll_interval must be > 0 seconds"),
    ({"heartbeat_interval": 2, "stale_after": 5}, "stale_after must be at least 3 x heartbeat_interval (6s)"),
    ({"shutdown_grace": -1}, "shutdown_grace must be >= 0 seconds"),
    ({"pol_interval": 1}, "unknown engine setting(s) 'pol_interval'"),
    ({"cpu_workers": 0}, "cpu_workers must be between 1 and 1024"),
    ({"worker_id": "a b"}, "worker_id must be 1-128 characters"),
])
def test_invalid_settings_raise_value_errors(settings: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Engine("sqlite:///:memory:", **settings)
    assert message in str(caught.value)
    engine = Engine("sqlite:///:memory:")
    with pytest.raises(ConfigurationError):
        engine.configure(**settings)


def test_durations_may_be_timedeltas_and_are_kept_as_seconds() -> None:
    engine = Engine("sqlite:///:memory:", poll_interval=timedelta(milliseconds=250),
                    completed_retention=timedelta(days=1))
    assert engine.settings.poll_interval == 0.25
    assert engine.settings.completed_retention == 86_400.0


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://x", "unsupported database URL scheme 'mysql'"),
    ("jobs.db", "has no scheme"),
    ("sqlite://jobs.db", "must look like sqlite:///relative.db"),
    ("postgresql://h/db?schema=Bad-Name", "schema must be a lower-case SQL identifier"),
])
def test_invalid_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Engine(url)
    assert message in str(caught.value)


def test_job_declaration_errors() -> None:
    engine = Engine("sqlite:///:memory:")

    @engine.job
    async def twin() -> None: ...

    with pytest.raises(DuplicateJobError, match="already declared"):
        @engine.job(name="twin")
        async def other() -> None: ...

    with pytest.raises(ConfigurationError, match=r"must subclass aiojobs_engine\.Job"):
        @engine.job
        class NotAJob:
            def run(self) -> None: ...

    with pytest.raises(ConfigurationError, match="needs a plain"):
        @engine.job(cpu_bound=True)
        async def async_cpu() -> None: ...

    with pytest.raises(ConfigurationError, match="module level"):
        @engine.job(cpu_bound=True)
        def local_cpu() -> None: ...

    with pytest.raises(ConfigurationError, match="job name must be"):
        @engine.job(name="no spaces")
        async def named() -> None: ...

    class Undeclared(Job):
        async def run(self) -> None: ...

    with pytest.raises(ConfigurationError, match="not declared as a job"):
        Undeclared.new()
    with pytest.raises(ConfigurationError, match="not declared as a job"):
        Undeclared.enqueue_sync()
    # Looking the methods up is fine (hasattr, inspect, mocks do): only calling them is refused.
    assert all(hasattr(Undeclared, name) for name in ("options", "new", "enqueue", "enqueue_sync"))


async def test_database_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert Engine().url == DEFAULT_URL
    async with Engine() as engine:
        await engine.enqueue("x")
    assert (tmp_path / "aiojobs.sqlite3").exists()
    monkeypatch.setenv(ENV_VAR, "sqlite:///from-env.db")
    assert Engine().url == "sqlite:///from-env.db"
    given = Engine("sqlite:///given.db")
    assert given.url == "sqlite:///given.db"
    given.configure(url="sqlite:///configured.db")
    assert given.url == "sqlite:///configured.db"
    async with given:
        await given.enqueue("x")
    assert (tmp_path / "configured.db").exists() and not (tmp_path / "given.db").exists()
    assert Engine("postgresql://u:secret@h/db").url == "postgresql://u:***@h/db"


async def test_configure_only_while_closed(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)
    async with engine:
        with pytest.raises(EngineStateError, match="closed engine"):
            engine.configure(poll_interval=2)
    engine.configure(poll_interval=2, heartbeat_interval=0.5, stale_after=2)
    assert engine.settings.poll_interval == 2


def test_a_configure_that_fails_changes_nothing(sqlite_url: str) -> None:
    from aiojobs_engine import WorkerGroup

    engine = Engine(sqlite_url)
    with pytest.raises(ConfigurationError):
        engine.configure(url="bogus://x", groups=[WorkerGroup("g", queues=["q"])], poll_interval=3)
    assert engine.groups == () and engine.settings.poll_interval == 1.0
    assert engine.url.endswith(sqlite_url.rsplit("/", 1)[1])


async def test_url_follows_configure_once_closed(tmp_path: Path) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'first.db'}")
    async with engine:
        assert engine.url.endswith("first.db")
    engine.configure(url=f"sqlite:///{tmp_path / 'second.db'}")
    assert engine.url.endswith("second.db")


async def test_calls_on_a_closed_engine_say_what_to_do(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)

    @engine.job
    async def job() -> None: ...

    with pytest.raises(EngineStateError, match="async with engine"):
        await job.enqueue()
    with pytest.raises(EngineStateError):
        await engine.get_job(1)


async def test_memory_database_lives_while_the_engine_is_open() -> None:
    engine = Engine("sqlite:///:memory:")
    results = []

    @engine.job
    async def job(x: int) -> int:
        results.append(x)
        return x

    async with engine:
        record = await job.enqueue(5)
        assert await engine.workoff() == 1
        assert record is not None
        done = await engine.get_job(record.id)
        assert done is not None and done.result == 5 and results == [5]


async def test_get_wait_for_and_cancel(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def job() -> str:
        return "done"

    async with engine:
        assert await engine.get_job(10**9) is None
        assert await engine.cancel(10**9) is None
        with pytest.raises(JobNotFoundError):
            await engine.wait_for(10**9, timeout=1)
        record = await job.enqueue()
        assert record is not None
        with pytest.raises(TimeoutError):
            await engine.wait_for(record.id, timeout=0.05)
        waiter = asyncio.create_task(engine.wait_for(record.id, timeout=10))
        await engine.workoff()
        finished = await waiter
        assert finished.state is JobState.COMPLETED and finished.result == "done"
        other = await job.enqueue()
        assert other is not None
        canceled = await engine.cancel(other.id)
        assert canceled is not None and canceled.state is JobState.CANCELED and canceled.canceled_at is not None
        assert await engine.workoff() == 0
        again = await engine.cancel(other.id)
        assert again is not None and again.state is JobState.CANCELED
        with pytest.raises(ConfigurationError, match="job id must be"):
            await engine.get_job(0)


async def test_queue_control_is_stored(make_engine) -> None:
    engine = make_engine(queues={"email": QueueConfig(concurrency=2, priority=10)})
    async with engine:
        paused = await engine.pause_queue("email")
        assert paused.paused and paused.concurrency == 2
        changed = await engine.set_queue("email", concurrency=5, priority=1)
        assert (changed.concurrency, changed.priority, changed.paused) == (5, 1, True)
        resumed = await engine.resume_queue("email")
        assert not resumed.paused
        assert {q.name: q.concurrency for q in await engine.list_queues()}["email"] == 5
        with pytest.raises(ConfigurationError, match="concurrency must be between 1 and"):
            await engine.set_queue("email", concurrency=0)


async def test_delete_queue_only_when_it_holds_no_job(make_engine) -> None:
    engine = make_engine()
    async with engine:
        await engine.pause_queue("email")
        waiting = await engine.options(queue="email").enqueue("send", 1)
        canceled = await engine.options(queue="email").enqueue("send", 2)
        assert waiting is not None and canceled is not None
        await engine.cancel(canceled.id)
        with pytest.raises(QueueNotEmptyError) as caught:
            await engine.delete_queue("email")
        assert caught.value.counts == {"waiting": 1, "canceled": 1}
        assert str(caught.value) == ("queue 'email' still holds 2 job(s) (1 waiting, 1 canceled); cancel, clear "
                                     "or let them finish and be pruned first")
        assert [q.name for q in await engine.list_queues()] == ["email"]
        await engine.clear(queues=["email"])
        assert await engine.delete_queue("email")
        assert await engine.list_queues() == []
        assert not await engine.delete_queue("email")
        with pytest.raises(ConfigurationError, match="queue must be"):
            await engine.delete_queue("no way")


async def test_unknown_queue_settings_are_configuration_errors(make_engine) -> None:
    bogus: dict = {"bogus": 1}
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig(concurrency=2, **bogus)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == ("unknown queue setting(s) 'bogus'; accepted: concurrency, priority, "
                                 "global_concurrency, retention, rate_limit, concurrency_per_key, "
                                 "rate_limit_per_key")
    engine = make_engine()
    async with engine:
        with pytest.raises(ConfigurationError) as caught:
            await engine.set_queue("email", concurrency=2, **bogus)
        assert str(caught.value) == ("unknown queue setting(s) 'bogus'; accepted: concurrency, priority, "
                                     "global_concurrency, clear_global_concurrency, retention, clear_retention, "
                                     "rate_limit, concurrency_per_key, rate_limit_per_key")
        assert await engine.list_queues() == []  # refused before anything was stored


async def test_the_longest_delay_and_latest_run_at_are_stored(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def later() -> None: ...

    async with engine:
        longest = await later.options(delay=100 * 365.25 * 86_400).enqueue()
        assert longest and longest.available_at.year >= 2100
        end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
        latest = await later.options(run_at=end).enqueue()
        assert latest and latest.available_at == end
        assert [j.available_at for j in await engine.list_jobs()] == [end, longest.available_at]
        with pytest.raises(ConfigurationError, match="at most 3155760000 seconds"):
            await later.options(delay=100 * 365.25 * 86_400 + 1).enqueue()
    with pytest.raises(ConfigurationError, match="Snooze delay must be at most"):
        Snooze(1e12)
    with pytest.raises(ConfigurationError, match="Retry delay must be at most"):
        Retry(delay=timedelta(days=10**6))


async def _stored_state_is(engine: Engine, job_id: int, state: JobState) -> bool:
    current = await engine.get_job(job_id)
    return current is not None and current.state is state


async def test_snooze_puts_a_waiting_job_aside(make_engine) -> None:
    engine = make_engine()
    release = asyncio.Event()

    @engine.job
    async def job(n: int) -> int:
        await release.wait()
        return n

    async with engine:
        waiting = await job.enqueue(1)
        assert waiting
        before = datetime.now(UTC)
        snoozed = await engine.snooze(waiting.id, 3600)
        assert snoozed and snoozed.state is JobState.SNOOZED and snoozed.attempt == 0
        assert before + timedelta(seconds=3599) <= snoozed.available_at <= datetime.now(UTC) + timedelta(hours=1)
        again = await engine.snooze(waiting.id, timedelta(seconds=0))  # due again now
        assert again and again.state is JobState.SNOOZED and again.available_at <= datetime.now(UTC)
        assert await engine.snooze(424242, 10) is None
        with pytest.raises(ConfigurationError, match="snooze delay must be >= 0 seconds"):
            await engine.snooze(waiting.id, -1)
        with pytest.raises(ConfigurationError, match="snooze delay must be at most"):
            await engine.snooze(waiting.id, 1e12)
        async with engine.running():
            await eventually(lambda: _stored_state_is(engine, waiting.id, JobState.RUNNING))
            with pytest.raises(JobStateError, match=f"job {waiting.id} is running .* cannot be snoozed from outside"):
                await engine.snooze(waiting.id, 60)
            release.set()
            done = await engine.wait_for(waiting.id, timeout=10)
        assert done.state is JobState.COMPLETED and done.result == 1
        with pytest.raises(JobStateError, match=f"job {waiting.id} is completed; only waiting or snoozed jobs"):
            await engine.snooze(waiting.id, 60)
        assert isinstance(JobStateError("x"), RuntimeError)


async def test_queue_settings_from_the_engine_are_written_at_start_but_keep_the_pause(make_engine) -> None:
    first = make_engine()
    async with first:
        await first.set_queue("email", concurrency=3, priority=7)
        await first.pause_queue("email")
    second = make_engine(queues={"email": QueueConfig(concurrency=8)})
    async with second:
        await second.workoff()
        (queue,) = [q for q in await second.list_queues() if q.name == "email"]
        assert (queue.concurrency, queue.priority, queue.paused) == (8, 7, True)


def test_backoff_policies_validate() -> None:
    assert ExponentialBackoff().delay(1) == pytest.approx(1.0, rel=0.11)
    assert ExponentialBackoff(jitter=0).delay(4) == 8.0
    assert ExponentialBackoff(jitter=0).delay(100) == 3600.0
    with pytest.raises(ConfigurationError, match="factor must be between 1 and 100"):
        ExponentialBackoff(factor=0.5)


async def test_migrate_works_on_a_closed_engine_when_auto_migrate_is_off(make_engine) -> None:
    from aiojobs_engine import SchemaError

    engine = make_engine(auto_migrate=False)
    with pytest.raises(SchemaError, match=r"holds no aiojobs_engine tables yet .*`aiojobs migrate`"):
        await engine.open()
    applied = await engine.migrate()
    assert applied == list(range(1, len(applied) + 1)) and applied
    async with engine:
        assert await engine.migrate() == []


async def test_states_are_validated_and_clear_spares_held_jobs(make_engine) -> None:
    engine = make_engine()
    async with engine:
        with pytest.raises(ConfigurationError, match="unknown job state 'bogus'"):
            await engine.list_jobs(state="bogus")
        with pytest.raises(ConfigurationError, match="cannot delete claimed or running"):
            await engine.clear(states=["running"])
        assert await engine.list_jobs(state=["waiting", JobState.FAILED]) == []
