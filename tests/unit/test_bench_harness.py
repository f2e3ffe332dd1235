"""bench/run.py's bookkeeping, without starting anything: the rows a workload runs, how rounds
combine, wrk's output, and the targets checked per pronghorn row (which decide "met")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run  # noqa: E402
import targets  # noqa: E402
from servers import Server, Variant, parse_variants  # noqa: E402

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/
  2 threads and 50 connections
  Latency Distribution
     50%  420.00us
     75%  800.00us
     90%    1.50ms
     99%    2.10s
  123456 requests in 5.00s, 15.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  24691.20
"""


def test_parse_wrk_reads_rate_percentiles_and_every_kind_of_error() -> None:
    parsed = run.parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == pytest.approx(24691.2)
    assert parsed["p50_ms"] == pytest.approx(0.42)
    assert parsed["p90_ms"] == pytest.approx(1.5)
    assert parsed["p99_ms"] == pytest.approx(2100.0)
    assert parsed["requests"] == 123456
    assert parsed["errors"] == 2 + 3 + 4


def test_parse_variants_keeps_order_drops_repeats_and_names_a_bad_item() -> None:
    assert parse_variants("pronghorn:1, granian:4,pronghorn:1") == [Variant("pronghorn", 1), Variant("granian", 4)]
    for bad in ("nginx:4", "granian", "granian:0", "granian:x"):
        with pytest.raises(ValueError, match=bad):
            parse_variants(f"pronghorn:1,{bad}")


def _servers(worker: str = "gthread") -> dict[str, Server]:
    return {name: Server(name, "python", worker=worker) for name in ("pronghorn", "granian", "gunicorn")}


def test_a_workload_with_fixed_threads_runs_each_server_once_under_its_first_variant() -> None:
    variants = parse_variants("pronghorn:1,pronghorn:4,granian:1,granian:4,gunicorn:4")
    own = run.Workload("hello", "hello", "/", 50)
    fixed = run.Workload("sleep", "sleep", "/sleep", 200, threads=32)
    assert [(r.variant, r.slot) for r in run.matrix_rows(own, variants, _servers())] == [
        ("pronghorn-1", 0), ("pronghorn-4", 1), ("granian-1", 2), ("granian-4", 3), ("gunicorn-4", 4)]
    assert [(r.variant, r.slot) for r in run.matrix_rows(fixed, variants, _servers())] == [
        ("pronghorn-32", 0), ("granian-32", 2), ("gunicorn-32", 4)]
    # -k sync never gets threads, so its two variants are one row.
    assert [r.variant for r in run.matrix_rows(own, variants, _servers("sync"))][:2] == ["pronghorn-1", "granian-1"]


def test_rounds_combine_into_medians_summed_errors_and_the_highest_rss() -> None:
    def one(rps: float, p99: float, errors: int, rss: float) -> dict[str, Any]:
        return {"workload": "hello", "server": "pronghorn", "variant": "pronghorn-1", "rps": rps, "p50_ms": 1.0,
                "p90_ms": 2.0, "p99_ms": p99, "errors": errors, "rss_mib": rss, "cpu_us_per_request": 10.0,
                "cpu_share": 1.0}
    combined = run.combine_rounds([one(300, 9.0, 0, 20.0), one(100, 1.0, 2, 22.0), one(200, 5.0, 1, 21.0),
                                   {"workload": "hello", "variant": "pronghorn-1", "error": "boom"}])
    assert combined["rps"] == 200 and combined["p99_ms"] == 5.0
    assert combined["errors"] == 3 and combined["rss_mib"] == 22.0
    assert "1 of 4 rounds failed" in combined["note"]


def _row(workload: str, server: str, threads: int, rps: float, p99: float, rss: float = 20.0,
         errors: int = 0) -> dict[str, Any]:
    return {"workload": workload, "server": server, "threads": threads, "variant": f"{server}-{threads}",
            "label": f"{server} {threads}", "rps": rps, "p99_ms": p99, "rss_mib": rss, "errors": errors, "workers": 2}


def _verdicts(checks: list[targets.Check], variant: str, kind: str) -> list[bool | None]:
    return [c.met for c in checks if c.variant == variant and c.kind == kind]


def test_hello_targets_compare_inline_with_both_granian_rows_and_the_pool_with_granian_4() -> None:
    results = [_row("hello", "pronghorn", 1, 1250, 3.0), _row("hello", "pronghorn", 4, 990, 1.6, rss=21.0),
               _row("hello", "granian", 1, 1000, 2.0), _row("hello", "granian", 4, 1000, 1.0),
               _row("hello", "gunicorn", 4, 200, 9.0, rss=20.5)]
    checks = targets.check(results)
    assert _verdicts(checks, "pronghorn-1", "throughput") == [True, True]  # 1.25× ≥ 1.2; 1.25× ≥ 1.0
    assert _verdicts(checks, "pronghorn-4", "throughput") == [False]  # 0.99× < 1.0
    # p99 against Granian with the same threads: 3.0 / 2.0 = 1.5 is within, 1.6 / 1.0 is not.
    assert _verdicts(checks, "pronghorn-1", "p99") == [True]
    assert _verdicts(checks, "pronghorn-4", "p99") == [False]
    assert _verdicts(checks, "pronghorn-1", "memory") == [True]
    assert _verdicts(checks, "pronghorn-4", "memory") == [False]


def test_the_sleep_target_is_a_share_of_the_thread_ceiling_and_a_missing_reference_is_not_met() -> None:
    results = [_row("sleep", "pronghorn", 32, 6100, 40.0), _row("big", "pronghorn", 1, 500, 3.0, errors=1)]
    checks = targets.check(results)
    assert _verdicts(checks, "pronghorn-32", "throughput") == [True]  # 6100 / (2 × 32 × 100) = 95.3 %
    assert [c.met for c in checks if c.workload == "big" and c.kind == "throughput"] == [None, None]
    assert [c.met for c in checks if c.workload == "big" and c.kind == "errors"] == [False]
    results[0]["rps"] = 6000  # 93.75 %
    assert _verdicts(targets.check(results), "pronghorn-32", "throughput") == [False]
    assert "not measured" in targets.table(results, checks, {})


def test_the_default_command_line_is_pinned() -> None:
    args = run.parse_args([])
    assert run._cpus(args) == ("0", "1")
    assert run._cpus(run.parse_args(["--unpinned"])) == ("", "")
    assert isinstance(args, argparse.Namespace) and len(args.variant_list) == 6
