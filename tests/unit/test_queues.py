"""How much the queue manager asks a claim for: free slots, plus claims parked ahead."""

from __future__ import annotations

from aiojobs_engine._runtime._queues import _Queue

BATCH = 100
AHEAD_UNDER = 0.05


def _queue(concurrency: int, running: int = 0, parked: int = 0, recent: float | None = None,
           cap: int | None = None) -> _Queue:
    return _Queue("q", concurrency=concurrency, running=running, parked=parked, recent_seconds=recent,
                  global_concurrency=cap)


def test_without_a_pace_only_free_slots_are_claimed() -> None:
    assert _queue(10).claimable(BATCH, AHEAD_UNDER) == 10
    assert _queue(10, running=7).claimable(BATCH, AHEAD_UNDER) == 3
    assert _queue(10, running=10).claimable(BATCH, AHEAD_UNDER) == 0


def test_slow_jobs_and_capped_queues_never_claim_ahead() -> None:
    assert _queue(10, running=10, recent=0.5).claimable(BATCH, AHEAD_UNDER) == 0
    assert _queue(10, running=10, recent=0.001, cap=20).claimable(BATCH, AHEAD_UNDER) == 0
    assert _queue(10, running=10, recent=0.001).claimable(BATCH, 0.0) == 0  # claiming ahead disabled


def test_jobs_that_take_no_time_are_claimed_a_full_batch_at_a_time() -> None:
    assert _queue(10, recent=0.0001).claimable(BATCH, AHEAD_UNDER) == BATCH
    assert _queue(1, running=1, recent=0.0001).claimable(BATCH, AHEAD_UNDER) == BATCH
    # Topped up once half the parked claims have started, not one claim per freed slot.
    assert _queue(10, running=10, parked=60, recent=0.0001).claimable(BATCH, AHEAD_UNDER) == 0
    assert _queue(10, running=10, parked=50, recent=0.0001).claimable(BATCH, AHEAD_UNDER) == 50
    assert _queue(10, running=10, parked=BATCH, recent=0.0001).claimable(BATCH, AHEAD_UNDER) == 0


def test_quick_jobs_park_what_their_slots_start_within_the_window() -> None:
    # 10 slots, 10 ms a job: 50 start within 50 ms.
    assert _queue(10, running=10, recent=0.01).claimable(BATCH, AHEAD_UNDER) == 50
    # 1 slot, 40 ms a job: at least one batch of its concurrency is parked.
    assert _queue(1, running=1, recent=0.04).claimable(BATCH, AHEAD_UNDER) == 1
    assert _queue(1, running=1, parked=1, recent=0.04).claimable(BATCH, AHEAD_UNDER) == 0
