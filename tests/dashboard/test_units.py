"""The pure parts: chart layout, formatting, link building."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiojobs_engine.dashboard._charts import activity_series, chart, empty_series, window_start
from aiojobs_engine.dashboard._format import call_preview, duration, notice, per_key, relative, when
from aiojobs_engine.dashboard._render import Urls

NOW = datetime(2030, 1, 1, 12, 30, 20, tzinfo=UTC)


@dataclass(frozen=True)
class Bucket:
    queue: str
    start: datetime
    completed: int
    failed: int


def test_the_window_ends_with_the_current_bucket() -> None:
    start = window_start(NOW, span=3600, step=60)
    assert start == datetime(2030, 1, 1, 11, 31, tzinfo=UTC)
    assert len(empty_series(now=NOW).values) == 60


def test_series_put_each_bucket_in_its_slot_and_sum_queues() -> None:
    buckets = [
        Bucket("email", datetime(2030, 1, 1, 12, 30, tzinfo=UTC), 4, 1),
        Bucket("email", datetime(2030, 1, 1, 11, 31, tzinfo=UTC), 2, 0),
        Bucket("default", datetime(2030, 1, 1, 12, 30, tzinfo=UTC), 1, 0),
        Bucket("default", datetime(2030, 1, 1, 11, 0, tzinfo=UTC), 9, 9),  # before the window
    ]
    per_queue, total = activity_series(buckets, now=NOW)
    assert per_queue["email"].values[-1] == (4, 1) and per_queue["email"].values[0] == (2, 0)
    assert total.values[-1] == (5, 1) and sum(d for d, _ in total.values) == 7


def test_bars_stack_failed_above_completed_scaled_to_the_peak() -> None:
    per_queue, _ = activity_series([Bucket("q", NOW.replace(second=0), 3, 1),
                                    Bucket("q", NOW.replace(second=0) - timedelta(minutes=1), 2, 0)], now=NOW)
    drawn = chart(per_queue["q"], width=600, height=41)
    assert (drawn.completed, drawn.failed, drawn.peak) == (5, 1, 4)
    last, before = drawn.bars[-1], drawn.bars[-2]
    assert last.completed_height == 30 and last.completed_y == 11
    assert last.failed_height == 10 and last.failed_y == 1
    assert before.completed_height == 20 and before.failed_height == 0
    assert last.label == "12:30 UTC: 3 completed, 1 failed"
    assert drawn.bars[0].x == 1 and drawn.bars[0].width == 8
    assert all(bar.completed_height == 0 for bar in chart(empty_series(now=NOW)).bars)


def test_times_and_durations_read_naturally() -> None:
    assert when(NOW) == "2030-01-01 12:30:20 UTC" and when(None) == "—"
    assert [duration(s) for s in (0.42, 12, 300, 7200, 7500, 86400 * 3)] == [
        "0.4 s", "12 s", "5 min", "2 h", "2 h 5 min", "3 d"]
    assert relative(NOW - timedelta(minutes=3), NOW) == "3 min ago"
    assert relative(NOW + timedelta(seconds=30), NOW) == "in 30 s"
    assert relative(NOW, NOW) == "now"


def test_per_key_limits_read_as_written() -> None:
    assert per_key(2, (5, 1.0)) == "2 at once, 5/1s"
    assert (per_key(2, None), per_key(None, (5, 0.5)), per_key(None, None)) == ("2 at once", "5/500ms", "none")


def test_argument_previews_are_short_json() -> None:
    assert call_preview([1, "a"], {"to": [1, 2]}) == '1, "a", to=[1, 2]'
    assert len(call_preview(["x" * 500], {})) == 80


def test_notices_carry_a_fixed_text_and_a_number_at_most() -> None:
    assert notice("retried", "42") is not None and notice("retried", "42").text == "Job 42 will run again now."  # type: ignore[union-attr]
    assert notice("retried", "٤٢").text == "Job ? will run again now."  # type: ignore[union-attr]
    assert notice("anything", "1") is None and notice(None, None) is None


def test_links_follow_the_prefix_and_only_own_paths_are_targets() -> None:
    urls = Urls("/ops")
    assert urls("/jobs", state="failed", queue=None, name="") == "/ops/jobs?state=failed"
    assert urls.job(7) == "/ops/jobs/7" and urls.queue("a.b:c", "pause") == "/ops/queues/a.b%3Ac/pause"
    assert urls.static("dashboard.js").startswith("/ops/static/dashboard.js?v=")
    assert urls.is_own("/ops/jobs?state=failed")
    for target in ("/opsx", "/other", "//evil/ops/", "https://evil/ops/", "/ops/\\evil", "/ops/\nx", ""):
        assert not urls.is_own(target), target
