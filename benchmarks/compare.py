"""aiojobs_engine against its peers, in one run on one machine: the one command of issue 7.

    python benchmarks/compare.py                       # everything, 10,000 jobs (about 10 minutes)
    python benchmarks/compare.py --quick               # tiny numbers, a smoke run (seconds)
    python benchmarks/compare.py --only drain,latency  # some scenarios
    python benchmarks/compare.py --repeat 3            # each throughput figure the median of 3 runs

It creates (or reuses) a virtual environment for the peer engines at benchmarks/.venv-peers,
with the pinned versions below, and runs every measurement in a fresh process: ours in the
project's own virtual environment (benchmarks/ours.py), each peer in the peers' one
(benchmarks/peers/peer_*.py), each printing one JSON object. Each process's peak RSS is
its own VmHWM. Tables go to standard output, progress to standard error; the figures are
saved to benchmarks/results/latest.json and drawn in benchmarks/results/latest.png (with
matplotlib, from the peers' environment: the project gains no dependency).

Scenarios (--only takes these names):
  enqueue  1. N jobs enqueued one by one from one task, and in bulk
  drain    2. N queued no-op async jobs drained by one engine process, concurrency 10 and 100
           5. the peak RSS of that process (comes with drain)
  latency  3. pickup latency of an idle engine: enqueue one job, time until its body starts
  claim    4. claim cost with 10k waiting, 1M waiting, 10k waiting + 1M finished rows, and 10k
              waiting after 1M ran through the table with no vacuum since (ours)
  cpu      6. CPU-bound jobs through our supervised process pool vs a plain ProcessPoolExecutor
  raw      7. the raw SQL ceilings: INSERT loop, bulk INSERT, claim-and-complete, NOTIFY floor

PostgreSQL is the server at $AIOJOBS_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
each engine creates and drops a database of its own. arq and saq use the Redis at
127.0.0.1:6379, each in a database number of its own (--redis-dbs, default 14,15), which must
be empty and is emptied afterwards. Needs: Linux, Python 3.11+, the project's .venv (see the
README's test command), and PyPI for the first run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
DEFAULT_PEERS_VENV = BENCH / ".venv-peers"
RESULTS = BENCH / "results"
ADMIN_URL = os.environ.get("AIOJOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Exact versions, installed and run on this machine (2026-11-24). Bump them together with a
# run of this script, and say so in benchmarks/README.md.
PEER_REQUIREMENTS = [
    "procrastinate==3.10.0",
    "psycopg[binary,pool]==3.3.9",
    "psycopg-binary==3.3.9",
    "psycopg-pool==3.3.3",
    "pgqueuer[asyncpg]==1.6.0",
    "asyncpg==0.32.0",
    "arq==0.28.0",
    "saq[redis,hiredis]==0.26.4",
    "redis[hiredis]==5.3.1",
    "hiredis==3.5.0",
    "uvloop==0.23.0",
    "matplotlib==3.11.2",
]
PEER_ENGINES = {  # name: (backend, runner)
    "procrastinate": ("postgresql", "peer_procrastinate.py"),
    "pgqueuer": ("postgresql", "peer_pgqueuer.py"),
    "arq": ("redis", "peer_arq.py"),
    "saq": ("redis", "peer_saq.py"),
}
NOT_RUN = {
    "oban": "oban (oban-py) is on PyPI, but every release (0.5.0 to 0.7.0) requires Python >= 3.12; "
            "this machine has Python 3.11 only (Debian 12), so it cannot be installed here",
}
SCENARIOS = ["enqueue", "drain", "latency", "claim", "cpu", "raw"]
OURS = "aiojobs_engine"
RAW = "raw SQL"
TIMES = "\u00d7"  # the multiplication sign
BASELINE = "ProcessPoolExecutor"


# -- one measurement ---------------------------------------------------------------------------


@dataclass
class Target:
    """One engine on one backend, and how to run its runner."""

    engine: str
    backend: str
    python: str
    script: Path
    db: str = ""
    redis_db: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.engine} ({self.backend})"

    def command(self, scenario: str, **options: Any) -> list[str]:
        argv = [self.python, str(self.script), scenario, "--backend", self.backend, "--db", self.db,
                "--redis-db", str(self.redis_db)]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        return argv


class RunError(RuntimeError):
    pass


def byte_compile_project() -> None:
    """Compile the project's modules once, as pip does when it installs a package.

    The peers run from their virtual environment, byte-compiled at install; this project runs
    from its source tree, and every step runs with PYTHONDONTWRITEBYTECODE. Without this,
    each of our steps would compile its modules from source: slower to start, and the
    compiler's memory (1-2 MiB) would count in our peak RSS.
    """
    subprocess.run([our_python(), "-m", "compileall", "-q", str(ROOT / "aiojobs_engine"), str(ROOT / "benchmarks")],
                   cwd=ROOT, check=True, timeout=300, stdout=subprocess.DEVNULL)


def run_step(target: Target, scenario: str, timeout: float = 900, **options: Any) -> dict[str, Any]:
    """Run one scenario of one target in a fresh process; return the JSON object it printed last."""
    started = time.monotonic()
    proc = subprocess.run(target.command(scenario, **options), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise RunError(f"{target.label} {scenario} exited {proc.returncode}:\n{tail}")
    try:
        figures = json.loads(lines[-1])
    except ValueError as exc:
        raise RunError(f"{target.label} {scenario} printed no JSON: {lines[-1][:200]}") from exc
    figures["wall_s"] = time.monotonic() - started
    return dict(figures)


def settle(target: Target) -> None:
    """After a fill: vacuum a PostgreSQL target's database (see ``_common.vacuum``), as
    autovacuum would have between two bursts of work on a server that runs it."""
    if target.backend != "postgresql":
        return
    proc = subprocess.run([our_python(), str(PEERS / "_common.py"), "vacuum", target.db], cwd=ROOT, check=False,
                          timeout=300, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"{target.label} vacuum exited {proc.returncode}: {proc.stderr.strip()[-500:]}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- environments ------------------------------------------------------------------------------


def our_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _base_python() -> str:
    """The interpreter the project's venv was made from, so both environments run the same Python."""
    try:
        out = subprocess.run([our_python(), "-c", "import sys; print(sys._base_executable)"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.strip()
        return out or sys.executable
    except (OSError, subprocess.SubprocessError):
        return sys.executable


def peers_python(venv: Path, *, install: bool) -> tuple[str | None, str]:
    """The peers' interpreter, creating or updating the environment when allowed; or None and why not."""
    python = venv / "bin" / "python"
    stamp = venv / "aiojobs-bench-requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python), "ready"
    if not install:
        return None, f"the peers' environment {venv} is absent or out of date (run without --quick to install it)"
    log(f"· installing the peer engines into {venv} (once) ...")
    try:
        if not python.exists():
            subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=300)
        with open(venv / "install.log", "w") as output:
            subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *PEER_REQUIREMENTS],
                           check=True, timeout=1800, stdout=output, stderr=subprocess.STDOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not install the peer engines into {venv} (see its install.log): {exc}"
    stamp.write_text(wanted)
    return str(python), "installed"


def postgres_reachable() -> bool:
    parsed = urllib.parse.urlparse(ADMIN_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def redis_info(host: str = "127.0.0.1", port: int = 6379) -> str | None:
    """The Redis server's version, or None when none answers."""
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"INFO server\r\n")
            data = b""
            while b"redis_version" not in data or not data.endswith(b"\r\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > 1 << 16:
                    break
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "unknown" if data else None


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Settings:
    jobs: int
    cpu_jobs: int
    samples: int
    gap: float
    warmup: int
    rows: int
    rounds: int
    repeat: int
    only: list[str]
    backends: list[str]
    quick: bool


class Results:
    """Flat records: (scenario key, engine, backend) -> value, plus the runners' details."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, key: str, engine: str, backend: str, value: float, details: dict[str, Any]) -> None:
        self.records.append({"scenario": key, "engine": engine, "backend": backend, "value": value,
                             "details": details})

    def get(self, key: str, engine: str, backend: str) -> float | None:
        for record in self.records:
            if (record["scenario"], record["engine"], record["backend"]) == (key, engine, backend):
                return float(record["value"])
        return None

    def rows(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["scenario"] == key]

    def fail(self, target: Target, scenario: str, error: Exception) -> None:
        log(f"  ! {error}")
        self.errors.append({"engine": target.engine, "backend": target.backend, "scenario": scenario,
                            "error": str(error)})


Step = tuple[Target, str, str]  # the target, the engine its figures are filed under, the runner's scenario


def _measure(results: Results, steps: list[Step], settings: Settings, *, primary: str = "",
             fill: int = 0, **options: Any) -> list[tuple[Step, dict[str, Any]]]:
    """Run each step; with a ``primary`` figure, ``settings.repeat`` rounds over all the steps (round
    robin, so a change in the machine's load falls on every engine alike), keeping each step's
    median run. ``fill`` queues that many jobs (in a process of its own) before each run."""
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(steps))}
    failed: set[int] = set()
    for _ in range(max(1, settings.repeat if primary else 1)):
        for i, (target, _engine, scenario) in enumerate(steps):
            if i in failed:
                continue
            try:
                if fill:
                    run_step(target, "fill", jobs=fill)
                    settle(target)
                runs[i].append(run_step(target, scenario, **options))
            except (RunError, subprocess.TimeoutExpired) as exc:
                results.fail(target, scenario, exc)
                failed.add(i)
    chosen = []
    for i, step in enumerate(steps):
        if i in failed or not runs[i]:
            continue
        ordered = sorted(runs[i], key=lambda r: r[primary]) if primary else runs[i]
        figures = ordered[len(ordered) // 2]
        if primary and len(ordered) > 1:
            figures["repeats"] = [r[primary] for r in runs[i]]
        chosen.append((step, figures))
    return chosen


def _show(label: str, text: str) -> None:
    log(f"  {label:<30} {text}")


def _run_enqueue(settings: Settings, targets: list[Target], results: Results) -> None:
    log(f"1. enqueue {settings.jobs:,} jobs")
    steps = [(t, t.engine, "enqueue") for t in targets]
    if "raw" in settings.only:
        steps += [(t, RAW, "raw-enqueue") for t in targets if t.engine == OURS]
    for (t, engine, _), figures in _measure(results, steps, settings, primary="single_jobs_per_s", jobs=settings.jobs):
        results.add("enqueue-single", engine, t.backend, figures["single_jobs_per_s"], figures)
        results.add("enqueue-bulk", engine, t.backend, figures["bulk_jobs_per_s"], figures)
        _show(f"{engine} ({t.backend})",
              f"{figures['single_jobs_per_s']:>9,.0f} one by one {figures['bulk_jobs_per_s']:>9,.0f} bulk")


def _run_drain(settings: Settings, targets: list[Target], results: Results) -> None:
    jobs = settings.jobs
    for concurrency in (10, 100):
        log(f"2. drain {jobs:,} no-op jobs, concurrency {concurrency}")
        steps = [(t, t.engine, "drain") for t in targets]
        for (t, _, _), figures in _measure(results, steps, settings, primary="jobs_per_s", fill=jobs, jobs=jobs,
                                           concurrency=concurrency):
            results.add(f"drain-c{concurrency}", t.engine, t.backend, figures["jobs_per_s"], figures)
            results.add(f"rss-c{concurrency}", t.engine, t.backend, figures["peak_rss_mib"], figures)
            _show(t.label, f"{figures['jobs_per_s']:>9,.0f} jobs/s  peak RSS {figures['peak_rss_mib']:.1f} MiB")
    if "raw" in settings.only:
        steps = [(t, RAW, "raw-drain") for t in targets if t.engine == OURS]
        for (t, _, _), figures in _measure(results, steps, settings, primary="jobs_per_s", jobs=jobs):
            for concurrency in (10, 100):
                results.add(f"drain-c{concurrency}", RAW, t.backend, figures["jobs_per_s"], figures)
            _show(f"{RAW} ({t.backend})", f"{figures['jobs_per_s']:>9,.0f} jobs/s")


def _run_latency(settings: Settings, targets: list[Target], results: Results) -> None:
    log(f"3. pickup latency, {settings.samples} samples")
    steps = [(t, t.engine, "latency") for t in targets]
    if "raw" in settings.only:
        steps += [(t, RAW, "raw-latency") for t in targets if t.engine == OURS and t.backend == "postgresql"]
    for (t, engine, _), figures in _measure(results, steps, settings, samples=settings.samples, gap=settings.gap,
                                            warmup=settings.warmup):
        results.add("pickup-p50", engine, t.backend, figures["p50_ms"], figures)
        results.add("pickup-p95", engine, t.backend, figures["p95_ms"], figures)
        _show(f"{engine} ({t.backend})", f"p50 {figures['p50_ms']:8.2f} ms  p95 {figures['p95_ms']:8.2f} ms")


def _run_claim(settings: Settings, targets: list[Target], results: Results) -> None:
    log(f"4. claim cost, {settings.rows:,} rows")
    steps = [(t, t.engine, "claim") for t in targets if t.engine == OURS]
    for (t, _, _), figures in _measure(results, steps, settings, timeout=3600, rows=settings.rows,
                                       rounds=settings.rounds):
        for state, ms in figures["ms"].items():
            results.add(f"claim-{state}", t.engine, t.backend, ms, figures)
        _show(t.label, "  ".join(f"{k} {v:.2f} ms" for k, v in figures["ms"].items()))


def _run_cpu(settings: Settings, targets: list[Target], results: Results) -> None:
    log(f"6. {settings.cpu_jobs:,} CPU-bound jobs")
    steps = [(t, t.engine, "cpu") for t in targets if t.engine == OURS]
    for (t, _, _), figures in _measure(results, steps, settings, primary="jobs_per_s", jobs=settings.cpu_jobs):
        results.add("cpu", t.engine, t.backend, figures["jobs_per_s"], figures)
        results.add("cpu", BASELINE, t.backend, figures["baseline_jobs_per_s"], figures)
        _show(t.label, f"{figures['jobs_per_s']:>8,.0f} jobs/s, baseline {figures['baseline_jobs_per_s']:,.0f}: "
                       f"{figures['overhead_us_per_job']:.0f} us per job")


RUNNERS = {"enqueue": _run_enqueue, "drain": _run_drain, "latency": _run_latency, "claim": _run_claim,
           "cpu": _run_cpu}


def run_all(settings: Settings, targets: list[Target], results: Results) -> None:
    for scenario, runner in RUNNERS.items():
        if scenario in settings.only:
            runner(settings, targets, results)


# -- tables ------------------------------------------------------------------------------------

# key: (title, unit, higher is better)
MEASURES: dict[str, tuple[str, str, bool]] = {
    "enqueue-single": ("1a. Enqueue {jobs:,} jobs one by one from one task", "jobs/s", True),
    "enqueue-bulk": ("1b. Enqueue {jobs:,} jobs in bulk", "jobs/s", True),
    "drain-c10": ("2a. Drain {jobs:,} queued no-op jobs, one process, concurrency 10", "jobs/s", True),
    "drain-c100": ("2b. Drain {jobs:,} queued no-op jobs, one process, concurrency 100", "jobs/s", True),
    "pickup-p50": ("3a. Pickup latency of an idle engine, p50 of {samples} samples", "ms", False),
    "pickup-p95": ("3b. Pickup latency of an idle engine, p95 of {samples} samples", "ms", False),
    "rss-c10": ("5a. Peak RSS of the process draining at concurrency 10", "MiB", False),
    "rss-c100": ("5b. Peak RSS of the process draining at concurrency 100", "MiB", False),
}
ENGINE_ORDER = [OURS, "procrastinate", "pgqueuer", "arq", "saq", RAW, BASELINE]
BACKEND_ORDER = ["sqlite", "postgresql", "redis"]


def better(ours: float, other: float, higher: bool) -> float:
    """How many times better ours is (> 1: ours better; < 1: ours worse)."""
    if ours <= 0 or other <= 0:
        return float("nan")
    return ours / other if higher else other / ours


def ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}" if ratio >= 0.095 else f"{ratio:.3f}"


def _fmt(value: float, unit: str) -> str:
    if unit == "jobs/s":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value < 100 else f"{value:,.1f}"


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(r: dict[str, Any]) -> tuple[int, int]:
        engine = ENGINE_ORDER.index(r["engine"]) if r["engine"] in ENGINE_ORDER else 99
        return (engine, BACKEND_ORDER.index(r["backend"]) if r["backend"] in BACKEND_ORDER else 9)
    return sorted(rows, key=rank)


def measure_table(results: Results, key: str, settings: Settings) -> str:
    title, unit, higher = MEASURES[key]
    rows = _sorted(results.rows(key))
    if not rows:
        return ""
    ours = {b: results.get(key, OURS, b) for b in ("postgresql", "sqlite")}
    direction = "higher" if higher else "lower"
    lines = [f"{title.format(jobs=settings.jobs, samples=settings.samples)} ({unit}, {direction} is better)",
             f"  {'engine':<16} {'backend':<11} {unit:>10}   {TIMES + ' better: ours on pg':>21} "
             f"{'ours on sqlite':>15}"]
    for r in rows:
        value = r["value"]
        cells = []
        if r["engine"] == RAW:
            mine = ours.get(r["backend"])
            note = f"(ours = {mine / value:.2f} of it)" if mine and higher else (
                f"(ours = {mine / value:.1f}{TIMES} it)" if mine else "")
            lines.append(f"  {'raw SQL':<16} {r['backend']:<11} {_fmt(value, unit):>10}   {note}")
            continue
        if r["engine"] != OURS:
            for backend in ("postgresql", "sqlite"):
                mine = ours.get(backend)
                cells.append(ratio_text(better(mine, value, higher)) if mine else "-")
        else:
            cells = ["", ""]
        lines.append(f"  {r['engine']:<16} {r['backend']:<11} {_fmt(value, unit):>10}   {cells[0]:>21} {cells[1]:>15}")
    return "\n".join(lines)


def claim_table(results: Results, settings: Settings) -> str:
    labels = {"small": f"{min(10_000, settings.rows):,} waiting", "waiting": f"{settings.rows:,} waiting",
              "finished": f"{min(10_000, settings.rows):,} waiting + {settings.rows:,} finished",
              "churned": f"{min(10_000, settings.rows):,} waiting after {settings.rows:,} ran, unvacuumed"}
    lines = []
    for backend in BACKEND_ORDER:
        small = results.get("claim-small", OURS, backend)
        if small is None:
            continue
        for state, label in labels.items():
            value = results.get(f"claim-{state}", OURS, backend)
            if value is not None:
                lines.append(f"  {OURS:<16} {backend:<11} {label:<46} {value:>8.2f} ms {value / small:>9.2f}")
    if not lines:
        return ""
    return "\n".join([
        f"4. Claim cost as the table grows: one claim of 10 + start + completion, median of {settings.rounds} (ms, "
        "flat is good)",
        f"  {'engine':<16} {'backend':<11} {'table':<46} {'claim+done':>11} {'vs small':>9}", *lines])


def cpu_table(results: Results) -> str:
    lines = []
    for backend in BACKEND_ORDER:
        mine = results.get("cpu", OURS, backend)
        base = results.get("cpu", BASELINE, backend)
        if mine is None or base is None:
            continue
        details = next(r["details"] for r in results.rows("cpu") if r["backend"] == backend and r["engine"] == OURS)
        lines.append(f"  {OURS:<16} {backend:<11} {mine:>9,.0f} {base:>11,.0f} {mine / base:>10.2f} "
                     f"{details['overhead_us_per_job']:>12,.0f} µs")
    if not lines:
        return ""
    details = results.rows("cpu")[0]["details"]
    return "\n".join([
        f"6. CPU-bound jobs: {details['jobs']:,} jobs of {details['job_ms_alone']:.2f} ms each, {details['workers']} "
        "worker processes, cold pools (jobs/s, higher is better)",
        f"  {'engine':<16} {'backend':<11} {'ours':>9} {'stdlib pool':>11} {'ours÷pool':>10} {'overhead/job':>15}",
        *lines])


def raw_table(results: Results) -> str:
    lines = []
    for backend in BACKEND_ORDER:
        cells = []
        for key, unit in (("enqueue-single", "jobs/s"), ("enqueue-bulk", "jobs/s"), ("drain-c10", "jobs/s"),
                          ("pickup-p50", "ms")):
            value = results.get(key, RAW, backend)
            cells.append(_fmt(value, unit) if value is not None else "-")
        if any(c != "-" for c in cells):
            lines.append(f"  {backend:<11} {cells[0]:>14} {cells[1]:>12} {cells[2]:>18} {cells[3]:>16}")
    if not lines:
        return ""
    return "\n".join([
        "7. Raw ceilings: the least SQL each step needs, from a hand-written loop (our schema)",
        f"  {'backend':<11} {'INSERT jobs/s':>14} {'bulk jobs/s':>12} {'claim+done jobs/s':>18} "
        f"{'NOTIFY p50 ms':>16}", *lines])


def report(results: Results, settings: Settings) -> str:
    parts = [f"'{TIMES} better': how many times better our figure is than that row's (ours ÷ theirs for "
             "throughput, theirs ÷ ours for latency and memory); below 1.00 we lose. Each peer is compared "
             "with ours on PostgreSQL and with ours on SQLite."]
    for key in ("enqueue-single", "enqueue-bulk", "drain-c10", "drain-c100", "pickup-p50", "pickup-p95"):
        parts.append(measure_table(results, key, settings))
    parts.append(claim_table(results, settings))
    for key in ("rss-c10", "rss-c100"):
        parts.append(measure_table(results, key, settings))
    parts.append(cpu_table(results))
    parts.append(raw_table(results))
    notes = [f"  {s['engine']}: {s['reason']}" for s in results.skipped]
    notes += [f"  {e['engine']} ({e['backend']}) {e['scenario']}: {e['error'].splitlines()[0]}" for e in results.errors]
    if notes:
        parts.append("Not measured:\n" + "\n".join(notes))
    return "\n\n".join(p for p in parts if p)


# -- main --------------------------------------------------------------------------------------


def _targets(args: argparse.Namespace, settings: Settings, folder: Path, results: Results,
             meta: dict[str, Any]) -> list[Target]:
    tag = f"{os.getpid()}"
    targets: list[Target] = []
    has_pg = "postgresql" in settings.backends and postgres_reachable()
    redis_version = redis_info() if "redis" in settings.backends else None
    meta["redis"] = redis_version
    if "postgresql" in settings.backends and not has_pg:
        results.skipped.append({"engine": "PostgreSQL", "reason": f"no server answers at {ADMIN_URL}"})
    for backend in ("sqlite", "postgresql"):
        if backend not in settings.backends or (backend == "postgresql" and not has_pg):
            continue
        db = str(folder / "ours.db") if backend == "sqlite" else f"aiojobs_cmp_ours_{tag}"
        targets.append(Target(OURS, backend, our_python(), BENCH / "ours.py", db=db))
    if args.no_peers:
        results.skipped.append({"engine": "peers", "reason": "--no-peers"})
        return targets
    return targets + _peer_targets(args, settings, results, meta, has_pg, redis_version, tag)


def _peer_targets(args: argparse.Namespace, settings: Settings, results: Results, meta: dict[str, Any],
                  has_pg: bool, redis_version: str | None, tag: str) -> list[Target]:
    targets: list[Target] = []
    python, status = peers_python(Path(args.peers_venv), install=not settings.quick)
    meta["peers_venv"] = status
    if python is None:
        for name in PEER_ENGINES:
            results.skipped.append({"engine": name, "reason": status})
        return targets
    redis_dbs = iter(int(x) for x in args.redis_dbs.split(","))
    for name, (backend, script) in PEER_ENGINES.items():
        if backend == "redis":
            number = next(redis_dbs)
            if "redis" not in settings.backends:
                continue
            if redis_version is None:
                results.skipped.append({"engine": name, "reason": "no Redis answers at 127.0.0.1:6379"})
                continue
            targets.append(Target(name, backend, python, PEERS / script, redis_db=number))
        elif has_pg:
            targets.append(Target(name, backend, python, PEERS / script, db=f"aiojobs_cmp_{name}_{tag}"))
        elif "postgresql" in settings.backends:
            results.skipped.append({"engine": name, "reason": f"no PostgreSQL server answers at {ADMIN_URL}"})
    return targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, help="jobs per throughput scenario (default 10,000; --quick: 100)")
    p.add_argument("--quick", action="store_true",
                   help="tiny numbers; never installs: peers run only if their environment is already there")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    p.add_argument("--backends", default="sqlite,postgresql,redis", help="comma-separated backends to include")
    p.add_argument("--no-peers", action="store_true", help="measure our engine only")
    p.add_argument("--repeat", type=int, default=1, help="run each throughput measurement R times, keep the median")
    p.add_argument("--samples", type=int, help="pickup latency samples (default 50; --quick: 3)")
    p.add_argument("--rows", type=int, help="claim cost: rows of the large tables (default 1,000,000; --quick: 2,000)")
    p.add_argument("--cpu-jobs", type=int, help="CPU-bound jobs (default: min(jobs, 2,000))")
    p.add_argument("--peers-venv", default=str(DEFAULT_PEERS_VENV), help="the peers' virtual environment")
    p.add_argument("--redis-dbs", default="14,15", help="Redis database numbers for arq and saq")
    p.add_argument("--output", default=str(RESULTS), help="folder for latest.json and latest.png")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS) - {"rss"}
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: still drop the databases and empty the Redis databases used


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    jobs = args.jobs or (100 if quick else 10_000)
    only = ["drain" if s == "rss" else s for s in args.only.split(",")]
    settings = Settings(
        jobs=jobs, cpu_jobs=args.cpu_jobs or min(jobs, 2000), samples=args.samples or (3 if quick else 50),
        gap=0.1 if quick else 1.0, warmup=1 if quick else 2, rows=args.rows or (2000 if quick else 1_000_000),
        rounds=5 if quick else 300,
        repeat=args.repeat, only=only, backends=args.backends.split(","), quick=quick)
    results = Results()
    results.skipped += [{"engine": name, "reason": reason} for name, reason in NOT_RUN.items()]
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": settings.__dict__,
    }
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="aiojobs-compare-"))
    targets: list[Target] = []
    ready: list[Target] = []
    try:
        byte_compile_project()
        targets = _targets(args, settings, folder, results, meta)
        for t in targets:
            try:
                t.info = run_step(t, "setup")
                ready.append(t)
            except (RunError, subprocess.TimeoutExpired) as exc:
                results.fail(t, "setup", exc)
        meta["versions"] = {t.engine: t.info.get("version") for t in ready if t.info.get("version")}
        meta["servers"] = {t.backend: t.info.get("server") for t in ready if t.info.get("server")}
        if meta.get("redis"):
            meta["servers"]["redis"] = f"Redis {meta['redis']}"
        run_all(settings, ready, results)
    finally:
        for t in ready:
            try:
                run_step(t, "teardown", timeout=120)
            except (RunError, subprocess.TimeoutExpired) as exc:
                results.fail(t, "teardown", exc)
        shutil.rmtree(folder, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - started, 1)
    text = report(results, settings)
    header = (f"aiojobs_engine vs peers, {meta['date']}, {meta['machine']['cores']} cores, Python "
              f"{meta['machine']['python']}, " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
              + "; " + ", ".join(meta.get("servers", {}).values()) + f"; {meta['seconds']:.0f} s")
    print(header + "\n\n" + text)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    data = {**meta, "records": results.records, "skipped": results.skipped, "errors": results.errors,
            "report": header + "\n\n" + text}
    (output / "latest.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    log(f"· saved {output / 'latest.json'}")
    chart(args, output)
    return 1 if results.errors else 0


def chart(args: argparse.Namespace, output: Path) -> None:
    python = Path(args.peers_venv) / "bin" / "python"
    if args.no_peers or not python.exists():
        log(f"· chart not drawn: it needs matplotlib from the peers' environment ({args.peers_venv})")
        return
    proc = subprocess.run([str(python), str(PEERS / "chart.py"), str(output / "latest.json"),
                           str(output / "latest.png")], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        log(f"· chart failed: {proc.stderr.strip().splitlines()[-1:]}")
    else:
        log(f"· saved {output / 'latest.png'}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
