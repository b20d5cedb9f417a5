"""Worker groups: the value, its validation messages, worker ids, and the max_attempts default."""

from __future__ import annotations

import pytest

from aiojobs_engine import ConfigurationError, Engine, EngineSettings, WorkerGroup
from aiojobs_engine._groups import available_cores, check_groups, host_label, max_attempts_default, worker_id


def test_a_group_keeps_what_it_was_given() -> None:
    group = WorkerGroup("mail", queues=["email", "sms"], processes=2, concurrency=5, max_attempts=3,
                        poll_interval=0.5, completed_retention=3600, failed_retention=None)
    assert (group.name, group.queues, group.processes, group.concurrency, group.max_attempts) == (
        "mail", ("email", "sms"), 2, 5, 3)
    assert dict(group.settings) == {"poll_interval": 0.5, "completed_retention": 3600, "failed_retention": None}
    assert group.process_count == 2
    assert repr(group) == ("WorkerGroup('mail', queues=['email', 'sms'], processes=2, concurrency=5, max_attempts=3, "
                           "poll_interval=0.5, completed_retention=3600, failed_retention=None)")
    assert group == WorkerGroup("mail", queues=["email", "sms"], processes=2, concurrency=5, max_attempts=3,
                                poll_interval=0.5, completed_retention=3600, failed_retention=None)
    assert hash(group) == hash(WorkerGroup("mail", queues=["email", "sms"], processes=2, concurrency=5,
                                           max_attempts=3))
    with pytest.raises(AttributeError):
        group.processes = 3  # type: ignore[misc]


def test_defaults_one_process_per_core_and_the_engines_queues() -> None:
    group = WorkerGroup("all")
    assert group.queues is None and group.processes is None and group.process_count == available_cores() >= 1
    settings = group.engine_settings(EngineSettings(poll_interval=2.0), "h:all:0")
    assert (settings.poll_interval, settings.worker_id) == (2.0, "h:all:0")


def test_group_settings_apply_over_the_engines() -> None:
    group = WorkerGroup("reports", queues=["reports"], shutdown_grace=20, completed_retention=60)
    settings = group.engine_settings(EngineSettings(poll_interval=2.0), "h:reports:1")
    assert (settings.poll_interval, settings.shutdown_grace, settings.completed_retention) == (2.0, 20, 60)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "a:b"}, "worker group name must be 1-40 letters, digits, '_', '.' or '-', not starting with a "
                      "punctuation mark; got 'a:b'"),
    ({"name": "x" * 41}, "worker group name must be 1-40"),
    ({"name": "m", "queues": "email"}, "worker group 'm': queues must be a list of queue names (or None for the "
                                       "engine's), got 'email'"),
    ({"name": "m", "queues": []}, "worker group 'm': queues must name at least one queue"),
    ({"name": "m", "queues": ["a", "a"]}, "worker group 'm': queues lists a queue twice: ['a', 'a']"),
    ({"name": "m", "queues": ["bad name"]}, "worker group 'm': queue must be 1-128 characters"),
    ({"name": "m", "processes": 0}, "worker group 'm': processes must be between 1 and 1024, got 0"),
    ({"name": "m", "processes": True}, "worker group 'm': processes must be an integer, got True"),
    ({"name": "m", "concurrency": 5}, "worker group 'm': concurrency is set per queue: name the queues "
                                      "(queues=[...])"),
    ({"name": "m", "queues": ["a"], "concurrency": 0}, "worker group 'm': concurrency must be between 1 and "
                                                       "100000, got 0"),
    ({"name": "m", "max_attempts": 0}, "worker group 'm': max_attempts must be between 1 and 1000000, got 0"),
    ({"name": "m", "worker_id": "x"}, "worker group 'm': worker_id cannot be set for a group: each of its "
                                      "processes is <host>:<group>:<index>"),
    ({"name": "m", "pol_interval": 1}, "worker group 'm': unknown setting(s) 'pol_interval'; accepted: queues, "
                                       "processes, concurrency, max_attempts, auto_migrate,"),
    ({"name": "m", "poll_interval": 0}, "worker group 'm': poll_interval must be > 0 seconds, got 0"),
    ({"name": "m", "completed_retention": -1}, "worker group 'm': completed_retention (seconds, or None to keep "
                                               "for ever) must be >= 0 seconds, got -1"),
])
def test_validation_messages(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        WorkerGroup(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message), str(caught.value)


def test_heartbeat_and_stale_after_are_checked_together_with_the_engines() -> None:
    group = WorkerGroup("m", heartbeat_interval=10)  # fits an engine whose stale_after is 60 s
    assert group.engine_settings(EngineSettings(stale_after=60), "h:m:0").heartbeat_interval == 10
    with pytest.raises(ConfigurationError, match=r"^worker group 'm': stale_after must be at least 3 x "
                                                 r"heartbeat_interval \(30s\), got 15s"):
        group.engine_settings(EngineSettings(), "h:m:0")
    with pytest.raises(ConfigurationError, match="stale_after must be at least 3 x heartbeat_interval"):
        WorkerGroup("m", heartbeat_interval=10, stale_after=20)


def test_worker_ids_are_stable_and_valid() -> None:
    assert worker_id("web-1.example.com", "mail", 3) == "web-1.example.com:mail:3"
    assert worker_id("-odd host name!", "mail", 0) == "odd-host-name-:mail:0"
    assert host_label("") == "host" and len(host_label("h" * 300)) == 60
    long_id = worker_id("h" * 300, "g" * 40, 99_999)
    assert len(long_id) <= 128
    with pytest.raises(ConfigurationError, match="worker index"):
        worker_id("h", "mail", -1)


def test_a_set_of_groups_is_checked_as_a_whole() -> None:
    mail = WorkerGroup("mail", queues=["email"], concurrency=5, max_attempts=3)
    with pytest.raises(ConfigurationError, match="two worker groups are named 'mail'"):
        check_groups([mail, WorkerGroup("mail")])
    with pytest.raises(ConfigurationError, match=r"worker groups 'mail' and 'more' both work queue 'email' with "
                                                 r"different concurrency \(5 and 2\)"):
        check_groups([mail, WorkerGroup("more", queues=["email"], concurrency=2)])
    with pytest.raises(ConfigurationError, match=r"both give queue 'email' a max_attempts default, and different "
                                                 r"ones \(3 and 4\)"):
        check_groups([mail, WorkerGroup("more", queues=["email", "x"], max_attempts=4)])
    with pytest.raises(ConfigurationError, match="both give every queue a max_attempts default"):
        check_groups([WorkerGroup("a", max_attempts=2), WorkerGroup("b", max_attempts=3)])
    with pytest.raises(ConfigurationError, match="groups must be a list of WorkerGroup"):
        check_groups(mail)  # type: ignore[arg-type]
    # sharing a queue is fine when they agree (or only one of them says)
    assert len(check_groups([mail, WorkerGroup("more", queues=["email"], concurrency=5)])) == 2


def test_max_attempts_default_prefers_the_group_naming_the_queue() -> None:
    groups = (WorkerGroup("all", max_attempts=9), WorkerGroup("mail", queues=["email"], max_attempts=3),
              WorkerGroup("plain", queues=["plain"]))
    assert max_attempts_default(groups, "email") == 3
    assert max_attempts_default(groups, "plain") == 9
    assert max_attempts_default(groups, "other") == 9
    assert max_attempts_default(groups[1:], "other") is None


def test_engine_declares_groups() -> None:
    mail = WorkerGroup("mail", queues=["email"], processes=2)
    engine = Engine("sqlite:///:memory:", groups=[mail])
    engine.add_group(WorkerGroup("reports", queues=["reports"], processes=1))
    assert [g.name for g in engine.groups] == ["mail", "reports"]
    with pytest.raises(ConfigurationError, match="two worker groups are named 'mail'"):
        engine.add_group(WorkerGroup("mail"))
    engine.configure(groups=[WorkerGroup("only")])
    assert [g.name for g in engine.groups] == ["only"]
    with pytest.raises(ConfigurationError, match="groups must be WorkerGroup values, got 'mail'"):
        Engine(groups=["mail"])  # type: ignore[list-item]


async def test_group_max_attempts_is_the_default_of_jobs_enqueued_to_its_queues(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, groups=[WorkerGroup("mail", queues=["email"], max_attempts=3),
                                        WorkerGroup("rest", max_attempts=8)])

    @engine.job(queue="email")
    async def send() -> None: ...

    @engine.job(queue="email", max_attempts=2)
    async def declared() -> None: ...

    async with engine:
        assert (await send.enqueue()).max_attempts == 3  # type: ignore[union-attr]
        assert (await send.options(max_attempts=11).enqueue()).max_attempts == 11  # type: ignore[union-attr]
        assert (await declared.enqueue()).max_attempts == 2  # type: ignore[union-attr]
        assert (await send.options(queue="other").enqueue()).max_attempts == 8  # type: ignore[union-attr]
        assert (await engine.enqueue("send")).max_attempts == 3  # type: ignore[union-attr]
        assert (await engine.options(queue="x").enqueue("unknown")).max_attempts == 8  # type: ignore[union-attr]
        records = await engine.enqueue_many([send.new(), declared.new()])
        assert [r.max_attempts for r in records if r] == [3, 2]
