"""bench/run.py's bookkeeping, without starting anything: the rows a workload runs, the servers'
command lines, how rounds combine, wrk's output, and the targets checked per pronghorn row (which
decide "met")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402
import run  # noqa: E402
import targets  # noqa: E402
from servers import DEFAULT_VARIANTS, Server, TlsFiles, Variant, parse_variants  # noqa: E402

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


def _servers(worker: str = "gthread", names: tuple[str, ...] = ("pronghorn", "granian", "gunicorn")) -> dict[str, Server]:
    return {name: Server(name, "python", worker=worker) for name in names}


EVERY_SERVER = ("pronghorn", "granian", "gunicorn", "waitress", "uvicorn")


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


def test_an_asgi_workload_runs_each_asgi_server_once_and_wsgi_workloads_leave_uvicorn_out() -> None:
    variants = parse_variants(DEFAULT_VARIANTS)
    servers = _servers(names=EVERY_SERVER)
    args = run.parse_args([])
    loads = {w.name: w for w in run.workloads(args)}
    asgi = run.matrix_rows(loads["asgi"], variants, servers)
    assert [(r.variant, r.slot, r.threads, r.label) for r in asgi] == [
        ("pronghorn-asgi", 0, 1, "pronghorn -k asgi"), ("granian-asgi", 2, 1, "granian ASGI"),
        ("gunicorn-asgi", 4, 1, "gunicorn -k asgi"), ("uvicorn-asgi", 6, 1, "uvicorn (httptools, uvloop)")]
    assert all(r.asgi for r in asgi)
    assert [r.variant for r in run.matrix_rows(loads["asgi-sleep"], variants, servers)] == [
        "pronghorn-asgi", "granian-asgi", "gunicorn-asgi", "uvicorn-asgi"]
    # The WSGI rows are those of before uvicorn: the six default variants, waitress included.
    assert [r.variant for r in run.matrix_rows(loads["hello"], variants, servers)] == [
        "pronghorn-1", "pronghorn-4", "granian-1", "granian-4", "gunicorn-4", "waitress-4"]
    assert not any(r.asgi for r in run.matrix_rows(loads["hello"], variants, servers))
    # Variants of servers with no row in the chosen workloads are dropped (so are their columns).
    assert [v.server for v in run.needed_variants(variants, [loads["hello"]])] == [
        "pronghorn", "pronghorn", "granian", "granian", "gunicorn", "waitress"]
    assert [v.server for v in run.needed_variants(variants, [loads["asgi"]])] == [
        "pronghorn", "pronghorn", "granian", "granian", "gunicorn", "uvicorn"]


def test_the_summary_has_a_column_per_variant_for_wsgi_and_one_per_server_for_asgi() -> None:
    variants = parse_variants(DEFAULT_VARIANTS)
    servers = _servers(names=EVERY_SERVER)
    wsgi = run.summary_columns(variants, servers, asgi=False)
    assert [slot for slot, _, _ in wsgi] == [0, 1, 2, 3, 4, 5]
    assert wsgi[0][2] == "pronghorn inline" and wsgi[3][2] == "granian, 4 blocking threads"
    asgi = run.summary_columns(variants, servers, asgi=True)
    assert asgi == [(0, "pronghorn", "pronghorn -k asgi"), (2, "granian", "granian ASGI"),
                    (4, "gunicorn", "gunicorn -k asgi"), (6, "uvicorn", "uvicorn (httptools, uvloop)")]
    results = [{**_row("asgi", "pronghorn", 1, 30000, 2.0), "slot": 0},
               {**_row("asgi", "uvicorn", 1, 20000, 3.0), "slot": 6}]
    line = report.summary_table(results, [("asgi", "ASGI hello")], asgi).splitlines()[-1]
    assert line == "| ASGI hello | 30,000 · p99 2.0 ms | — | — | 20,000 · p99 3.0 ms |"
    # A server without a row shows "—", a server's later variant in a fixed-threads workload "=".
    sleep = [{**_row("sleep", "pronghorn", 32, 6000, 40.0), "slot": 0}]
    assert report.summary_table(sleep, [("sleep", "sleep")], wsgi).splitlines()[-1].endswith(
        "| = | — | — | — | — |")


def test_asgi_command_lines() -> None:
    tls = TlsFiles(Path("c.pem"), Path("k.pem"))
    pronghorn = Server("pronghorn", "py", worker="gthread").command(8000, 1, asgi=True)
    assert pronghorn[:4] == ["py", "-m", "pronghorn", "apps:asgi_app"]
    assert "-k asgi" in " ".join(pronghorn) and "--threads" not in pronghorn
    gunicorn = Server("gunicorn", "gunicorn").command(8000, 1, asgi=True)
    assert "apps:asgi_app -b 127.0.0.1:8000 -w 2 -k asgi" in " ".join(gunicorn) and "--threads" not in gunicorn
    granian = Server("granian", "granian").command(8000, 1, tls, asgi=True)
    assert granian[-1] == "apps:asgi_app" and "--interface asgi" in " ".join(granian)
    assert "--http 1 --no-ws" in " ".join(granian) and "--blocking-threads" not in granian
    assert "--ssl-certificate c.pem --ssl-keyfile k.pem" in " ".join(granian)
    uvicorn = Server("uvicorn", "uvicorn").command(8000, 1, tls, asgi=True)
    assert " ".join(uvicorn) == (
        "uvicorn apps:asgi_app --host 127.0.0.1 --port 8000 --workers 2 --http httptools --loop uvloop "
        "--no-access-log --log-level warning --lifespan off --ssl-certfile c.pem --ssl-keyfile k.pem")
    with pytest.raises(ValueError):
        Server("waitress", "waitress-serve").command(8000, 4, asgi=True)
    with pytest.raises(ValueError):
        Server("uvicorn", "uvicorn").command(8000, 1)
    # The WSGI command lines are unchanged.
    assert Server("granian", "granian").command(8000, 4)[:3] == ["granian", "--interface", "wsgi"]
    assert "apps:app" in Server("gunicorn", "gunicorn").command(8000, 4)


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
    asgi = workload.startswith("asgi")
    return {"workload": workload, "server": server, "threads": threads,
            "variant": f"{server}-asgi" if asgi else f"{server}-{threads}", "interface": "asgi" if asgi else "wsgi",
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


def test_asgi_hello_is_held_to_uvicorn_and_granian_asgi_and_asgi_sleep_has_no_rate_target() -> None:
    results = [_row("asgi", "pronghorn", 1, 12000, 3.0, rss=18.0), _row("asgi", "granian", 1, 11000, 2.5),
               _row("asgi", "uvicorn", 1, 10500, 4.0), _row("asgi", "gunicorn", 1, 6000, 9.0, rss=25.0),
               _row("asgi-sleep", "pronghorn", 1, 9000, 30.0, errors=2), _row("asgi-sleep", "granian", 1, 9000, 15.0)]
    checks = targets.check(results)
    hello = [c for c in checks if c.workload == "asgi"]
    # 12000 / 10500 = 1.14 < 1.2 against uvicorn; 1.09 ≥ 1.0 against Granian's ASGI.
    assert [(c.measured.split(" (")[0], c.met) for c in hello if c.kind == "throughput"] == [
        ("1.14× uvicorn", False), ("1.09× granian ASGI", True)]
    assert [c.met for c in hello if c.kind in ("p99", "errors", "memory")] == [True, True, True]
    sleep = [c for c in checks if c.workload == "asgi-sleep"]
    assert [c.kind for c in sleep] == ["p99", "errors", "memory"]
    assert [c.met for c in sleep] == [False, False, None]  # 2× Granian's p99, 2 errors, no Gunicorn row
    results[2]["rps"] = 9000  # 1.33× uvicorn
    assert _verdicts(targets.check(results), "pronghorn-asgi", "throughput") == [True, True]
    assert "pronghorn-asgi" not in {c.variant for c in targets.check(results[1:4])}  # only pronghorn rows


def test_the_default_command_line_is_pinned() -> None:
    args = run.parse_args([])
    assert run._cpus(args) == ("0", "1")
    assert run._cpus(run.parse_args(["--unpinned"])) == ("", "")
    assert isinstance(args, argparse.Namespace) and len(args.variant_list) == 7  # uvicorn: ASGI rows only
    assert args.workloads.split(",") == list(run.WORKLOADS) and {"asgi", "asgi-sleep"} <= set(run.WORKLOADS)
    assert run.parse_args(["--workloads", "asgi"]).workloads == "asgi"
    with pytest.raises(SystemExit):
        run.parse_args(["--workloads", "hello,nope"])
