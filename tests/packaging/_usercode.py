"""User code that type-checks against aiojobs_engine as installed, outside this repository.

Shared by the tests (the README's editable install) and by .ci/release-check (a built wheel
in a fresh virtualenv), which loads this file by its path. ``BAD_LINES`` are the lines of
``bad.py`` a checker must report, each an argument of the wrong type to an enqueue: async and
sync, of a function job and of a class job (whose enqueue is typed from its ``run``).
"""

from __future__ import annotations

from pathlib import Path

GOOD = '''\
import asyncio
from datetime import timedelta

from aiojobs_engine import Engine, Job, JobRecord, JobRequest, JobState, current_job

engine = Engine("sqlite:///:memory:")


@engine.job(queue="email", max_attempts=3)
async def send_welcome(user_id: int, *, greeting: str = "hello") -> dict[str, str]:
    return {"to": str(user_id), "greeting": greeting, "attempt": str(current_job().attempt)}


@engine.job()
def resize_avatar(user_id: int, size: int = 128) -> str:
    return f"avatar-{user_id}-{size}.png"


@engine.job(queue="users")
class ProcessUser(Job):
    def __init__(self, tenant: str = "default") -> None:
        self.tenant = tenant

    async def run(self, user_id: int, *, notify: bool = False) -> str:
        return f"{self.tenant}:{user_id}:{notify}"


def from_a_sync_view(user_id: int) -> JobRecord | None:
    ProcessUser.enqueue_sync(user_id, notify=True)
    return send_welcome.enqueue_sync(user_id)


async def main() -> list[JobRecord]:
    async with engine:
        first = await send_welcome.enqueue(42, greeting="hi")
        later = await send_welcome.options(delay=timedelta(seconds=5), priority=1).enqueue(7)
        resized = await resize_avatar.enqueue(42, size=256)
        requests: list[JobRequest] = [send_welcome.new(i) for i in range(3)]
        requests.append(ProcessUser.new(5, notify=True))
        batch = await engine.enqueue_many(requests)
        await ProcessUser.enqueue(6)
        await ProcessUser.options(constructor_args=["acme"]).enqueue(7, notify=False)
        await engine.workoff()
        done = [r for r in (first, later, resized, *batch) if r is not None]
        assert all(r.state in (JobState.WAITING, JobState.COMPLETED) for r in done)
        return done


asyncio.run(main())
'''

BAD = '''\
from aiojobs_engine import Engine, Job

engine = Engine("sqlite:///:memory:")


@engine.job()
async def send_welcome(user_id: int) -> None: ...


@engine.job()
class ProcessUser(Job):
    async def run(self, user_id: int) -> None: ...


async def main() -> None:
    await send_welcome.enqueue("not an int")
    send_welcome.enqueue_sync("not an int")
    await ProcessUser.enqueue("not an int")
    ProcessUser.options(priority=1).enqueue_sync("not an int")
'''

BAD_LINES = [16, 17, 18, 19]


def write(directory: Path) -> tuple[Path, Path]:
    """Write good.py and bad.py into ``directory``; return their paths."""
    good, bad = directory / "good.py", directory / "bad.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    return good, bad
