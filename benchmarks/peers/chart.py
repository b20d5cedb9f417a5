"""Draw benchmarks/results/latest.json as one PNG: a panel per scenario, ratios at a glance.

    benchmarks/.venv-peers/bin/python benchmarks/peers/chart.py latest.json latest.png

Run by compare.py with the peers' environment (matplotlib lives there, not in the project).
Each bar is "how many times better ours is" than one peer (ours ÷ theirs for throughput,
theirs ÷ ours for latency and memory), on a log scale around 1: green right of the line, we
win; red left of it, we lose. The dark bar compares with ours on PostgreSQL, the light one
with ours on SQLite. Grey bars are the raw SQL ceiling: the share of it we reach.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

OURS, RAW = "aiojobs_engine", "raw SQL"
TIMES = "\u00d7"  # the multiplication sign
PEERS = ["procrastinate", "pgqueuer", "arq", "saq"]
PANELS = [  # key, title, unit, higher is better
    ("enqueue-single", "1a. enqueue one by one", "jobs/s", True),
    ("enqueue-bulk", "1b. enqueue in bulk", "jobs/s", True),
    ("drain-c10", "2a. drain, concurrency 10", "jobs/s", True),
    ("drain-c100", "2b. drain, concurrency 100", "jobs/s", True),
    ("pickup-p50", "3a. pickup latency p50", "ms", False),
    ("pickup-p95", "3b. pickup latency p95", "ms", False),
    ("rss-c10", "5a. peak RSS, drain c=10", "MiB", False),
    ("rss-c100", "5b. peak RSS, drain c=100", "MiB", False),
]
WIN, LOSE, WIN_LIGHT, LOSE_LIGHT, GREY = "#2e7d32", "#c62828", "#a5d6a7", "#ef9a9a", "#9e9e9e"


def _value(records: list[dict[str, Any]], key: str, engine: str, backend: str) -> float | None:
    for r in records:
        if (r["scenario"], r["engine"], r["backend"]) == (key, engine, backend):
            return float(r["value"])
    return None


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "jobs/s" or value >= 100 else f"{value:,.2f} {unit}"


def _bars(records: list[dict[str, Any]], key: str, unit: str, higher: bool) -> list[tuple[str, float, str]]:
    ours = {b: _value(records, key, OURS, b) for b in ("postgresql", "sqlite")}
    bars = []
    for peer in PEERS:
        for r in records:
            if r["scenario"] != key or r["engine"] != peer:
                continue
            theirs = float(r["value"])
            for backend, light in (("postgresql", False), ("sqlite", True)):
                mine = ours[backend]
                if not mine or theirs <= 0:
                    continue
                ratio = mine / theirs if higher else theirs / mine
                colour = (WIN_LIGHT if light else WIN) if ratio >= 1 else (LOSE_LIGHT if light else LOSE)
                bars.append((f"vs {peer} ({r['backend']}, {_fmt(theirs, unit)})\nours on {backend}", ratio, colour))
    for backend in ("postgresql", "sqlite"):
        raw, mine = _value(records, key, RAW, backend), ours[backend]
        if raw and mine:
            ratio = mine / raw if higher else raw / mine
            bars.append((f"raw SQL ({backend}, {_fmt(raw, unit)})\nours on {backend}", ratio, GREY))
    return bars


def _panel(ax: Any, title: str, bars: list[tuple[str, float, str]], subtitle: str) -> None:
    ax.set_title(f"{title}\n{subtitle}", fontsize=10, loc="left")
    if not bars:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color=GREY)
        ax.set_axis_off()
        return
    labels = [b[0] for b in bars][::-1]
    ratios = [b[1] for b in bars][::-1]
    colours = [b[2] for b in bars][::-1]
    shown = [max(r, 1e-3) for r in ratios]  # a bar from 1 to the ratio: right, we win; left, we lose
    ax.barh(range(len(bars)), [r - 1 for r in shown], left=1, color=colours)
    ax.set_xscale("log")
    ax.set_xlim(min(min(shown), 1.0) / 2.2, max(max(shown), 1.0) * 2.2)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(bars)), labels, fontsize=7)
    for y, ratio in enumerate(shown):
        text = f"{ratios[y]:.2f}{TIMES}" if ratios[y] >= 0.095 else f"{ratios[y]:.3f}{TIMES}"
        ax.text(ratio * (1.06 if ratio >= 1 else 1 / 1.06), y, text, va="center",
                ha="left" if ratio >= 1 else "right", fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{TIMES}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", which="major", alpha=0.3)


def _ours(records: list[dict[str, Any]], key: str, unit: str) -> str:
    parts = [f"{backend} {_fmt(v, unit)}" for backend in ("postgresql", "sqlite")
             if (v := _value(records, key, OURS, backend)) is not None]
    return "ours: " + ", ".join(parts) if parts else "ours: not measured"


def draw(data: dict[str, Any], target: Path) -> None:
    records = data["records"]
    extra = [k for k in ("claim", "cpu") if any(r["scenario"].startswith(k) for r in records)]
    count = len(PANELS) + len(extra)
    rows = math.ceil(count / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.6 * rows))
    flat = list(axes.flat)
    for ax, (key, title, unit, higher) in zip(flat, PANELS, strict=False):
        _panel(ax, title, _bars(records, key, unit, higher), _ours(records, key, unit))
    rest = flat[len(PANELS):]
    if "claim" in extra:
        ax = rest.pop(0)
        bars = []
        for backend in ("postgresql", "sqlite"):
            small = _value(records, "claim-small", OURS, backend)
            for state, label in (("waiting", "large waiting table"), ("finished", "+ large finished table"),
                                 ("churned", "after a large table ran,\nno vacuum since")):
                value = _value(records, f"claim-{state}", OURS, backend)
                if small and value:
                    ratio = small / value  # > 1: cheaper than on the small table
                    bars.append((f"{label}\nours on {backend} ({value:.2f} vs {small:.2f} ms)", ratio,
                                 WIN if ratio >= 0.8 else LOSE))
        _panel(ax, "4. claim cost as the table grows (small ÷ large)", bars,
               f"1.00{TIMES} = flat, as it must be; below: a dead row's index entry costs until a vacuum")
    if "cpu" in extra:
        ax = rest.pop(0)
        bars = []
        for backend in ("postgresql", "sqlite"):
            mine = _value(records, "cpu", OURS, backend)
            base = _value(records, "cpu", "ProcessPoolExecutor", backend)
            if mine and base:
                bars.append((f"vs plain ProcessPoolExecutor ({base:,.0f} jobs/s)\nours on {backend} "
                             f"({mine:,.0f} jobs/s)", mine / base, WIN if mine >= base else LOSE))
        _panel(ax, "6. CPU-bound jobs through the supervised pool", bars, "ours ÷ stdlib pool (no database)")
    for ax in rest:
        ax.set_axis_off()
    fig.suptitle(f"aiojobs_engine vs peers — {data.get('date', '')}, {data.get('machine', {}).get('cores')} cores, "
                 f"{data.get('settings', {}).get('jobs', 0):,} jobs.  Bars: {TIMES} better (right of 1 = ours better)",
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(target, dpi=90)


def main() -> int:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    draw(json.loads(source.read_text()), target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
