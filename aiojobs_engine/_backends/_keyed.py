"""Claims of a queue with per-key limits, shared by the backends.

A queue with ``concurrency_per_key`` or ``rate_limit_per_key`` is claimed under its claim
lock (PostgreSQL's advisory lock, SQLite's one writer), so what each key holds and has
started is read and written by one claim at a time: the limits are exact across engines.

The claim reads due jobs in claim order (priority, availability, id), leaving out in SQL the
keys that are full (at their concurrency, or their window full), and takes each job whose
key still has room. A busy key never holds the others back: its jobs are skipped, not waited
on. The first look is bounded (the first ``BUDGET`` due jobs of the claim index); when that
many are all of full keys (a busy key's backlog), the claim walks an index of due keyed jobs
key by key instead, from where this backend's last walk of the queue stopped (so keys take
turns), and takes the first due jobs of free keys in key order: it costs the full keys it
steps over plus what it takes, not the depth of any backlog. Only there is claim order
(priority, then age) given up, for turns among keys. A page that yields too few jobs (its
keys filled up as it was read) is followed by another that leaves those keys out, a few
pages at most per claim (the next claim goes on).

Each backend supplies the statements (``KeyedSteps``); this module decides what to take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from ._protocol import QueueDemand
from ._shared import Moment, RateWindow

# Pages one claim reads at most: each leaves out the keys the previous one found full.
MAX_PAGES = 4
# Due jobs the first look reads at most before it looks key by key instead.
BUDGET = 1000
# Keys one page of the walk steps over at most (full ones included), so that a page's cost
# stays bounded however many keys are full.
WALK_STEPS = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due job of the queue: its id, its key (None: counted under no key), and how many
    jobs its key held when the page was read."""

    id: int
    key: str | None
    held: int


@dataclass(frozen=True, slots=True)
class Page:
    candidates: list[Candidate]
    examined: int | None = None  # due jobs a short bounded look read (None: a full page)
    walked_to: str | None = None  # a short walk: the last key it reached
    walk_ended: bool = False  # a short walk reached the last key (not its steps)


def statement_params(demand: QueueDemand, now: object, opened_after: object) -> dict[str, Any]:
    """The parameters the keyed statements share (both backends' ``KeyedSteps`` start from them)."""
    rate = demand.rate_limit_per_key
    limits = [n for n in (demand.concurrency_per_key, rate[0] if rate else None) if n is not None]
    return {
        "queue": demand.queue, "now": now, "per_key": demand.concurrency_per_key,
        "rate_n": rate[0] if rate else None, "opened_after": opened_after, "budget": BUDGET,
        "take": min(limits), "steps": WALK_STEPS,
    }


def page_from_rows(rows: Sequence[Sequence[Any]], *, walking: bool) -> Page:
    """A page from the rows of ``key_candidates`` (``walking``: ``key_candidates_loose``):
    (id, key, held), then a last row with a NULL id that says how far the look went."""
    found = [Candidate(row[0], row[1], row[2]) for row in rows if row[0] is not None]
    last = next((row for row in rows if row[0] is None), None)
    if last is None:
        return Page(found)
    if walking:
        return Page(found, walked_to=last[1], walk_ended=bool(last[2]))
    return Page(found, examined=last[2])


class KeyedSteps(Protocol[Moment]):
    """The statements of one keyed claim, in the claim's transaction."""

    async def candidates(self, excluded: Sequence[str], scan: int, *, after: str | None) -> Page:
        """Up to ``scan`` due jobs whose keys are not full nor ``excluded``: the first of the
        first ``BUDGET`` due jobs in claim order, or (``after`` given) key by key, from the
        first key after ``after``."""
        ...

    async def windows(self, keys: Sequence[str]) -> Mapping[str, Sequence[Moment]]:
        """The stored per-key windows of these keys (their start times)."""
        ...

    async def claim(self, ids: Sequence[int], start: bool) -> list[Any]:
        """Claim these jobs (those still pending) as rows; ``start``: straight into running."""
        ...

    async def write_windows(self, starts: Mapping[str, Sequence[Moment]]) -> None: ...

    async def holds_back(self) -> bool:
        """Is a due job of the queue still waiting?"""
        ...

    async def first_full_window(self) -> Moment | None:
        """The oldest start counted by a full per-key window (its leaving opens the window)."""
        ...


@dataclass(slots=True)
class KeyedClaim:
    """One keyed demand's claim: what it took, and when a key window that held due jobs
    back opens again (seconds, None: none did)."""

    rows: list[Any] = field(default_factory=list)
    wait: float | None = None
    unfinished: bool = False  # it stopped before its walk had looked at every key: claim again


async def claim_keyed(
    demand: QueueDemand,
    limit: int,
    steps: KeyedSteps[Moment],
    walks: dict[str, str],
    *,
    moment: Moment | None,
    window_opened_after: Moment | None,
    seconds_until_open: Callable[[Moment], float],
    start: bool,
) -> KeyedClaim:
    """Claim up to ``limit`` jobs of ``demand``'s queue within its per-key limits.

    ``walks`` holds, per queue, the key where the last walk key by key stopped (the next
    starts after it). ``moment`` is the claim's time and ``window_opened_after`` that time
    less the per-key window (both None without a per-key rate limit); ``seconds_until_open`` turns a key's
    oldest counted start into the wait until its window opens. ``start``: the picks start
    at once (the queue is rate-limited, or each key is: the claim is the start it counts).
    """
    result = KeyedClaim()
    if limit <= 0:
        return result
    room = _KeyRoom[Moment](demand, window_opened_after)
    start = start or demand.rate_limit_per_key is not None
    look = _Look(walks, demand.queue)
    for _ in range(MAX_PAGES):
        want = limit - len(result.rows)
        scan = max(2 * want, 16)
        page = await steps.candidates(sorted(room.excluded), scan, after=look.after)
        await room.read_windows(page.candidates, steps)
        picks = room.pick(page.candidates, want)
        if picks:
            result.rows.extend(await steps.claim(picks, start))
        look.read(page, picks, want)
        if len(result.rows) >= limit or (len(page.candidates) < scan and not look.further(page)):
            break
    else:
        result.unfinished = look.after is not None and len(result.rows) < limit
    if moment is not None:
        changed = room.charge(result.rows)
        if changed:
            await steps.write_windows(changed)
        if room.rate is not None and len(result.rows) < limit and await steps.holds_back():
            oldest = await steps.first_full_window()
            if oldest is not None:
                result.wait = max(0.0, seconds_until_open(oldest))
    return result


class _Look:
    """Where a claim looks next: the bounded look first, then key by key from where the last
    walk of the queue stopped, on to the last key and once round from the first at most."""

    def __init__(self, walks: dict[str, str], queue: str) -> None:
        self._walks = walks
        self._queue = queue
        self.after: str | None = None  # None: the bounded look; a key: walking after it
        self._began = ""
        self._wrapped = False

    def read(self, page: Page, picks: Sequence[int], want: int) -> None:
        """The next walk goes on after the last key this one took when the claim had enough
        (the keys after it get their turn next), else after the last key it reached."""
        if self.after is None:
            return
        if len(picks) == want:
            chosen = set(picks)
            taken = [c.key for c in page.candidates if c.id in chosen]
            self.after = taken[-1] or self.after  # in the page's order: the database's collation
        elif page.walked_to is not None:
            self.after = page.walked_to
        elif page.candidates:
            self.after = page.candidates[-1].key or self.after
        self._walks[self._queue] = self.after

    def further(self, page: Page) -> bool:
        """This way ran dry: is there another? (Moves to it.)"""
        if self.after is None:
            if page.examined is None or page.examined < BUDGET:
                return False  # the bounded look saw every due job
            self.after = self._began = self._walks.get(self._queue, "")  # only full keys: walk
            return True
        if not page.walk_ended:
            return True  # the walk stopped on its steps: on from where it reached
        if self._wrapped or self._began == "":
            return False
        self.after = self._walks[self._queue] = ""  # it reached the last key: once more from the first
        self._wrapped = True
        return True


class _KeyRoom(Generic[Moment]):
    """What each key of one keyed claim may still take."""

    def __init__(self, demand: QueueDemand, window_opened_after: Moment | None) -> None:
        self.per_key = demand.concurrency_per_key
        self.rate = demand.rate_limit_per_key
        self.opened_after: Moment | None = window_opened_after
        self.excluded: set[str] = set()  # keys found full: left out of the next pages
        self.taken: dict[str, int] = {}  # picks per key, over the claim's pages
        self.windows: dict[str, RateWindow[Moment]] = {}

    async def read_windows(self, page: Sequence[Candidate], steps: KeyedSteps[Moment]) -> None:
        if self.rate is None or self.opened_after is None:
            return
        fresh = sorted({c.key for c in page if c.key is not None and c.key not in self.windows})
        stored = await steps.windows(fresh) if fresh else {}
        for key in fresh:
            self.windows[key] = RateWindow.read(stored.get(key, ()), self.rate[0], self.opened_after)

    def pick(self, page: Sequence[Candidate], want: int) -> list[int]:
        picks: list[int] = []
        on_page: dict[str, int] = {}  # a page's "held" already counts the claim's earlier pages
        for candidate in page:
            if len(picks) == want:
                break
            key = candidate.key
            if key is None:
                picks.append(candidate.id)
            elif key not in self.excluded and self._has_room(key, candidate.held + on_page.get(key, 0)):
                picks.append(candidate.id)
                on_page[key] = on_page.get(key, 0) + 1
                self.taken[key] = self.taken.get(key, 0) + 1
        return picks

    def _has_room(self, key: str, held: int) -> bool:
        if self.per_key is not None and held >= self.per_key:
            self.excluded.add(key)
            return False
        window = self.windows.get(key)
        if window is not None and window.room() <= self.taken.get(key, 0):
            self.excluded.add(key)
            return False
        return True

    def charge(self, rows: Sequence[Any]) -> dict[str, list[Moment]]:
        """Count the starts actually claimed (a pick canceled meanwhile was not), at the times
        they were stamped with, in their windows; the windows changed. (A pick's time is no
        earlier than the claim's: room counted at the claim's time is never too much.)"""
        changed: set[str] = set()
        for row in rows:
            key = row["concurrency_key"]
            if key in self.windows:
                self.windows[key].add(row["attempted_at"], 1)
                changed.add(key)
        return {key: self.windows[key].starts for key in changed}
