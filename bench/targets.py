"""The issue's "done means" targets, checked against one run of ``bench/run.py``.

Every pronghorn row of the matrix (a workload with one pronghorn variant) gets four checks:

- requests/s: against the Granian rows named below (hello, HTTPS hello, 1 MiB, uploads), or, for the 10 ms app,
  against its thread ceiling: workers × threads × (1 / 10 ms) requests/s; ASGI hello against uvicorn
  (≥ 1.2×) and Granian's ASGI interface (≥ 1.0×); the ASGI 10 ms app has no requests/s target;
- p99 latency ≤ 1.5× that of the Granian row with the same threads per worker (in an ASGI workload,
  the one Granian ASGI row);
- zero errors (wrk's socket errors plus non-2xx responses, summed over the rounds);
- peak RSS per worker ≤ that of the Gunicorn row.

A check whose reference row did not run (or failed) is reported as not measured, never as met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from apps import SLEEP_SECONDS

Result = dict[str, Any]

REFERENCE = "granian"  # the peer the throughput and latency targets name
MEMORY_REFERENCE = "gunicorn"
P99_LIMIT = 1.5  # pronghorn's p99 ÷ Granian's, at most
CEILING_SHARE = 0.95  # of the thread ceiling, for the app that sleeps


@dataclass(frozen=True)
class ThroughputTarget:
    """pronghorn with ``threads`` serves ``workload`` at ≥ ``at_least``× ``reference`` (Granian unless
    named) with ``granian_threads`` (the reference's threads; 1 in an ASGI workload)."""

    workload: str
    threads: int
    granian_threads: int
    at_least: float
    reference: str = REFERENCE


# Inline is held to both Granian rows; the pool to the pool of the same size.
THROUGHPUT_TARGETS = (
    ThroughputTarget("hello", 1, 1, 1.2),
    ThroughputTarget("hello", 1, 4, 1.0),
    ThroughputTarget("hello", 4, 4, 1.0),
    *(ThroughputTarget(workload, mine, theirs, 1.2)
      for workload in ("big", "upload") for mine, theirs in ((1, 1), (1, 4), (4, 4))),
    # Issue 13: HTTPS hello at least level with Granian's TLS.
    *(ThroughputTarget("https", mine, theirs, 1.0) for mine, theirs in ((1, 1), (1, 4), (4, 4))),
    # ASGI hello (one row per server, threads 1): ≥ 1.2× uvicorn (httptools, uvloop), ≥ 1.0× Granian's ASGI.
    ThroughputTarget("asgi", 1, 1, 1.2, reference="uvicorn"),
    ThroughputTarget("asgi", 1, 1, 1.0),
)
CEILING_WORKLOADS = ("sleep",)


@dataclass(frozen=True)
class Check:
    """One target checked on one pronghorn row: what was measured and whether it is met."""

    workload: str
    variant: str
    kind: str  # "throughput", "p99", "errors", "memory"
    measured: str
    met: bool | None  # None: the reference row is missing, so nothing was measured

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def find(results: list[Result], workload: str, server: str, threads: int | None = None) -> Result | None:
    """The successful row of ``server`` in ``workload`` (with ``threads``, when given)."""
    for r in results:
        if (r["workload"] == workload and r["server"] == server and "error" not in r
                and (threads is None or r["threads"] == threads)):
            return r
    return None


def _verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def _throughput(results: list[Result], row: Result) -> list[Check]:
    checks = []
    if row["workload"] in CEILING_WORKLOADS:
        ceiling = row["workers"] * row["threads"] / SLEEP_SECONDS
        share = row["rps"] / ceiling
        met = share >= CEILING_SHARE
        text = (f"{row['rps']:,.0f} = {share:.1%} of the ceiling {ceiling:,.0f} "
                f"({row['workers']} × {row['threads']} × {1 / SLEEP_SECONDS:g}), ≥ {CEILING_SHARE:.0%}: {_verdict(met)}")
        checks.append(Check(row["workload"], row["variant"], "throughput", text, met))
    for target in THROUGHPUT_TARGETS:
        if target.workload != row["workload"] or target.threads != row["threads"]:
            continue
        theirs = find(results, row["workload"], target.reference, target.granian_threads)
        name = _reference_name(row, target.reference, target.granian_threads)
        if theirs is None or not theirs["rps"]:
            checks.append(Check(row["workload"], row["variant"], "throughput", f"{name}: not measured", None))
            continue
        ratio = row["rps"] / theirs["rps"]
        met = ratio >= target.at_least
        text = f"{ratio:.2f}× {name} (≥ {target.at_least:g}: {_verdict(met)})"
        checks.append(Check(row["workload"], row["variant"], "throughput", text, met))
    return checks


def _reference_name(row: Result, server: str, threads: int) -> str:
    """How a check names the row it compares with: by its threads, except in an ASGI workload."""
    if row.get("interface") == "asgi":
        return f"{server} ASGI" if server == REFERENCE else server
    return f"{server} {threads}t"


def _p99(results: list[Result], row: Result) -> Check:
    theirs = find(results, row["workload"], REFERENCE, row["threads"])
    if theirs is None or not theirs["p99_ms"]:
        missing = (f"no {REFERENCE} ASGI row" if row.get("interface") == "asgi"
                   else f"no {REFERENCE} row with {row['threads']} threads")
        return Check(row["workload"], row["variant"], "p99", missing, None)
    ratio = row["p99_ms"] / theirs["p99_ms"]
    met = ratio <= P99_LIMIT
    text = f"{row['p99_ms']:.2f} vs {theirs['p99_ms']:.2f} ms = {ratio:.2f}× ({_verdict(met)})"
    return Check(row["workload"], row["variant"], "p99", text, met)


def _errors(row: Result) -> Check:
    met = row["errors"] == 0
    return Check(row["workload"], row["variant"], "errors", f"{row['errors']} ({_verdict(met)})", met)


def _memory(results: list[Result], row: Result) -> Check:
    theirs = find(results, row["workload"], MEMORY_REFERENCE)
    if theirs is None:
        return Check(row["workload"], row["variant"], "memory", f"no {MEMORY_REFERENCE} row", None)
    met = row["rss_mib"] <= theirs["rss_mib"]
    text = f"{row['rss_mib']:.1f} vs {theirs['rss_mib']:.1f} MiB ({_verdict(met)})"
    return Check(row["workload"], row["variant"], "memory", text, met)


def check(results: list[Result]) -> list[Check]:
    """Every target on every pronghorn row, in the order of ``results``."""
    checks: list[Check] = []
    for row in results:
        if row["server"] != "pronghorn":
            continue
        if "error" in row:
            checks.append(Check(row["workload"], row["variant"], "errors", f"the run failed: {row['error']}", False))
            continue
        checks += [*_throughput(results, row), _p99(results, row), _errors(row), _memory(results, row)]
    return checks


KINDS = (("throughput", "req/s target"), ("p99", f"p99 ≤ {P99_LIMIT:g}× {REFERENCE}'s (same threads; ASGI: its ASGI row)"),
         ("errors", "errors = 0"), ("memory", f"peak RSS/worker ≤ {MEMORY_REFERENCE}'s"))


def table(results: list[Result], checks: list[Check], titles: dict[str, str]) -> str:
    """One line per pronghorn row, one column per kind of target, and a count of what is met."""
    rows = ["| workload | row | " + " | ".join(title for _, title in KINDS) + " | all met |",
            "|---|---|" + "---|" * len(KINDS) + ":---:|"]
    labels = {r["variant"]: r["label"] for r in results}
    order = list(dict.fromkeys((c.workload, c.variant) for c in checks))
    for workload, variant in order:
        mine = [c for c in checks if (c.workload, c.variant) == (workload, variant)]
        cells = ["; ".join(c.measured for c in mine if c.kind == kind) or "—" for kind, _ in KINDS]
        verdict = "yes" if all(c.met for c in mine) else "**no**"
        rows.append(f"| {titles.get(workload, workload)} | {labels.get(variant, variant)} | "
                    + " | ".join(cells) + f" | {verdict} |")
    met = sum(1 for c in checks if c.met)
    missing = sum(1 for c in checks if c.met is None)
    rows += ["", f"Targets met: {met} of {len(checks)}" + (f" ({missing} not measured)" if missing else "") + "."]
    return "\n".join(rows)
