"""What a per-key concurrency limit costs a drain, and whether a busy key holds the others back.

    .venv/bin/python benchmarks/per_key.py --backend sqlite
    .venv/bin/python benchmarks/per_key.py --backend postgresql
    .venv/bin/python benchmarks/per_key.py --backend postgresql --concurrency 100,10 --repeat 3

One engine in this process drains queued no-op async jobs with ``workoff()`` at queue
concurrency C (``--concurrency``, default 100), timed from the call to the last stored
completion (the ``job.completed`` event, as ``ours.py`` times a drain), on uvloop. Each
scenario is measured against the same jobs in the same queue with no per-key limit, in the
same run, alternately (each figure the median of ``--repeat`` rounds):

  distinct  10,000 jobs of 10,000 distinct keys, ``concurrency_per_key=1``: the limit never
            binds, so this is what the keyed claim costs. Printed: jobs/s keyed and
            unlimited, and keyed / unlimited (the issue's target: >= 50 %).
  100 keys  10,000 jobs over 100 keys (100 jobs each), ``concurrency_per_key=1``.
  busy key  5,000 jobs of one key enqueued first, then 5,000 jobs of 5,000 distinct keys,
            ``concurrency_per_key=1``. Printed: the time until the 5,000 distinct keys' jobs
            had all completed, keyed and unlimited (unlimited, they wait behind the busy
            key's jobs, in claim order: that drain runs to its end), and how many of the busy
            key's jobs had completed by then. The keyed drain then goes on for
            ``--busy-tail`` more of the busy key's jobs (default 200), which run one at a
            time: their rate is printed, and the drain is stopped (the rest of the busy key
            would take minutes). The most of the busy key's jobs seen running at once is
            checked to be 1.

The database is the benchmark's own: a SQLite file in the temporary folder, or a PostgreSQL
database created on the server at $AIOJOBS_TEST_POSTGRES_URL (default: the local one) and
dropped at the end. Jobs are deleted between drains, and PostgreSQL is vacuumed after each
fill (``VACUUM ANALYZE``, as autovacuum would have done: see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiojobs_engine import Engine, EventKind, JobEvent

QUEUE = "bench"
BUSY = "busy"


@dataclass
class Drain:
    """What one drain measured."""

    seconds: float = 0.0  # from the workoff() call to the last stored completion
    jobs: int = 0  # completed
    distinct_done: float = 0.0  # busy key: when the last job of another key completed
    busy_done_by_then: int = 0  # busy key: its jobs completed by that moment
    busy_tail_per_s: float = 0.0  # keyed busy key: its jobs a second, one at a time, after that
    busy_most_at_once: int = 0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds


@dataclass
class _Watch:
    """Stamps stored completions (the ``job.completed`` event) and counts the busy key's;
    ``enough`` is set once every job completed, or (``tail``) that many of the busy key's
    completed after the last job of another key."""

    started: float
    distinct_left: int
    total: int
    tail: int | None = None
    done: int = 0
    last: float = 0.0
    busy_done: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    drain: Drain = field(default_factory=Drain)

    def __call__(self, event: JobEvent) -> None:
        now = time.perf_counter()
        self.done += 1
        self.last = now
        if event.job is not None and event.job.concurrency_key == BUSY:
            self.busy_done += 1
            if self.tail is not None and self.distinct_left == 0 and (
                    self.busy_done - self.drain.busy_done_by_then == self.tail):
                self.drain.busy_tail_per_s = self.tail / (now - self.started - self.drain.distinct_done)
                self.enough.set()
        else:
            self.distinct_left -= 1
            if self.distinct_left == 0:
                self.drain.distinct_done = now - self.started
                self.drain.busy_done_by_then = self.busy_done
        if self.done == self.total:
            self.enough.set()


def keys_for(scenario: str, jobs: int) -> list[str]:
    if scenario == "distinct":
        return [f"k{n}" for n in range(jobs)]
    if scenario == "100 keys":
        return [f"k{n % 100}" for n in range(jobs)]
    half = jobs // 2
    return [BUSY] * half + [f"k{n}" for n in range(jobs - half)]


async def drain(url: str, scenario: str, keyed: bool, concurrency: int, jobs: int,
                vacuum: Callable[[], Awaitable[None]] | None, args_tail: int) -> Drain:
    engine = Engine(url, queues=[QUEUE], poll_interval=0.5)
    running: dict[str, int] = {BUSY: 0}
    most = [0]

    @engine.job(queue=QUEUE)
    async def noop(key: str) -> None:
        if key == BUSY:
            running[BUSY] += 1
            most[0] = max(most[0], running[BUSY])
            await asyncio.sleep(0)  # a point where a second job of the key could interleave
            running[BUSY] -= 1

    keys = keys_for(scenario, jobs)
    async with engine:
        await engine.clear()
        await engine.set_queue(QUEUE, concurrency=concurrency, concurrency_per_key=1 if keyed else None)
        for start in range(0, jobs, 2000):
            await engine.enqueue_many([noop.options(concurrency_key=key).new(key) for key in keys[start:start + 2000]])
        if vacuum is not None:
            await vacuum()
        tail = args_tail if keyed and scenario == "busy key" else None
        watch = _Watch(time.perf_counter(), sum(1 for key in keys if key != BUSY), jobs, tail)
        engine.subscribe(watch, kinds={EventKind.JOB_COMPLETED})
        watch.started = time.perf_counter()
        working, enough = asyncio.create_task(engine.workoff()), asyncio.create_task(watch.enough.wait())
        await asyncio.wait([working, enough], return_when=asyncio.FIRST_COMPLETED)
        enough.cancel()
        if watch.done < jobs:
            await engine.stop()  # the busy key's tail was measured: the rest would take minutes
        ran = await working
        if tail is None and (ran != jobs or watch.done != jobs):
            raise RuntimeError(f"{scenario}: workoff ran {ran} attempts ({watch.done} completions), expected {jobs}")
        result = watch.drain
        result.seconds = watch.last - watch.started
        result.jobs = watch.done
        result.busy_most_at_once = most[0]
        if keyed and scenario == "busy key" and most[0] != 1:
            raise RuntimeError(f"the busy key ran {most[0]} jobs at once under concurrency_per_key=1")
    return result


@contextmanager
def database(backend: str) -> Iterator[tuple[str, Callable[[], Awaitable[None]] | None]]:
    """The benchmark's own database: its URL, and how to vacuum it (PostgreSQL)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench_per_key_") as folder:
            yield f"sqlite:///{Path(folder) / 'jobs.db'}", None
        return
    import asyncpg

    from aiojobs_engine.pytest_plugin import postgres_test_database

    server = os.environ.get("AIOJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with postgres_test_database(server, prefix="bench_per_key") as url:

        async def vacuum() -> None:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                await conn.execute("VACUUM ANALYZE")
            finally:
                await conn.close()

        yield url, vacuum


def _median(drains: Sequence[Drain], figure: Callable[[Drain], float]) -> float:
    return statistics.median(figure(d) for d in drains)


async def measure(url: str, vacuum: Callable[[], Awaitable[None]] | None, args: argparse.Namespace) -> list[str]:
    results: dict[tuple[str, int, bool], list[Drain]] = {}
    for _round in range(args.repeat):
        for concurrency in args.concurrency:
            for scenario in args.scenarios:
                # Alternately, first one then the other, so a change in the machine's load falls on both.
                for keyed in (False, True) if _round % 2 == 0 else (True, False):
                    drain_ = await drain(url, scenario, keyed, concurrency, args.jobs, vacuum, args.busy_tail)
                    results.setdefault((scenario, concurrency, keyed), []).append(drain_)
    lines = []
    for concurrency in args.concurrency:
        for scenario in args.scenarios:
            free, keyed = results[scenario, concurrency, False], results[scenario, concurrency, True]
            free_rate, keyed_rate = (_median(free, lambda d: d.jobs_per_s), _median(keyed, lambda d: d.jobs_per_s))
            line = (f"{scenario:<9} c{concurrency:<4} unlimited {free_rate:>7,.0f} jobs/s   per-key 1 "
                    f"{keyed_rate:>7,.0f} jobs/s   keyed/unlimited {keyed_rate / free_rate:6.1%}")
            if scenario == "busy key":
                distinct = args.jobs - args.jobs // 2
                line = (f"{scenario:<9} c{concurrency:<4} the distinct keys' {distinct:,} jobs done after: unlimited "
                        f"{_median(free, lambda d: d.distinct_done):.2f} s (the whole drain: "
                        f"{_median(free, lambda d: d.jobs_per_s):,.0f} jobs/s), per-key 1 "
                        f"{_median(keyed, lambda d: d.distinct_done):.2f} s, with "
                        f"{_median(keyed, lambda d: d.busy_done_by_then):,.0f} of the busy key's jobs done by then; "
                        f"then the busy key alone, one at a time: "
                        f"{_median(keyed, lambda d: d.busy_tail_per_s):,.0f} jobs/s "
                        f"(most at once: {max(d.busy_most_at_once for d in keyed)})")
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[100],
                        help="queue concurrencies, comma-separated (default 100)")
    parser.add_argument("--scenarios", type=lambda text: text.split(","), default=["distinct", "100 keys", "busy key"],
                        help='comma-separated, of "distinct", "100 keys", "busy key" (default: all)')
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each figure is the median")
    parser.add_argument("--busy-tail", type=int, default=200,
                        help="busy key: its jobs timed after the other keys' are done (default 200)")
    args = parser.parse_args()
    import uvloop

    began = time.perf_counter()
    with database(args.backend) as (url, vacuum):
        lines = uvloop.run(measure(url, vacuum, args))
    print(f"per-key limits, {args.backend}, {args.jobs:,} no-op jobs, one engine, median of {args.repeat} "
          f"({time.perf_counter() - began:.0f} s)")
    for line in lines:
        print(f"  {line}")


if __name__ == "__main__":
    main()
