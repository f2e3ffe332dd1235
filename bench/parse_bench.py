"""Request-parsing throughput of ``pronghorn.http.RequestParser``, next to h11 and httptools.

How this works: each workload is one complete request as bytes.  A *run* parses that request
again and again for at least ``--min-time`` seconds, each time with a fresh parser, feeding the
whole request and pulling every event up to the end of the message (body included).  The figure
reported is the median of ``--runs`` runs, in requests per second, and its inverse in microseconds
per request.  h11 and httptools are measured in the same process and the same runs when they are
importable (``pip install h11 httptools``; neither is a dependency of pronghorn).  For httptools,
whose C parser reports through callbacks, the callbacks collect the URL, the header list and the
body, so every parser hands back the same information.

    PYTHONPATH=src python bench/parse_bench.py [--runs 7] [--min-time 0.3] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import pronghorn.http as ph
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import pronghorn.http as ph

# -- workloads ------------------------------------------------------------------------------------

MINIMAL_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

BROWSER_GET = (
    b"GET /articles/2024/pronghorn-release?ref=home HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7\r\n"
    b"Cookie: sessionid=7f3a9c2e5b1d4f6a8e0c2b4d6f8a0c2e; csrftoken=Qm9vX3Rva2VuX2V4YW1wbGVfMTIzNDU2; "
    b"theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
    b"\r\n"
)


def _chunked_post(chunks: int = 4, chunk_size: int = 1024) -> bytes:
    chunk = bytes(range(256)) * (chunk_size // 256)
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(chunks))
    return (
        b"POST /upload HTTP/1.1\r\n"
        b"Host: api.example.com\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"\r\n" + framed + b"0\r\n\r\n"
    )


CHUNKED_POST = _chunked_post()

WORKLOADS: dict[str, tuple[str, bytes, int, int]] = {
    # name: (description, bytes, header count, body length) -- the counts check every parser
    "minimal-get": ("GET / with Host only", MINIMAL_GET, 1, 0),
    "browser-get": ("GET with 12 Chrome-like headers", BROWSER_GET, 12, 0),
    "chunked-post": ("POST, 4 KiB body in 4 chunks", CHUNKED_POST, 3, 4096),
}

# -- one parse per parser: returns (header count, body length) --------------------------------------

Parse = Callable[[bytes], tuple[int, int]]


def parse_pronghorn(data: bytes) -> tuple[int, int]:
    parser = ph.RequestParser()
    parser.feed(data)
    headers = 0
    body = 0
    while True:
        event = parser.next_event()
        if isinstance(event, ph.RequestHead):
            headers = len(event.headers)
        elif isinstance(event, ph.BodyData):
            body += len(event.data)
        elif isinstance(event, ph.EndOfMessage):
            return headers, body
        else:
            raise RuntimeError(f"pronghorn: unexpected {event!r}")


def _h11_parser() -> Parse | None:
    try:
        import h11
    except ImportError:
        return None

    def parse_h11(data: bytes) -> tuple[int, int]:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        headers = 0
        body = 0
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                headers = len(event.headers)
            elif isinstance(event, h11.Data):
                body += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return headers, body
            else:
                raise RuntimeError(f"h11: unexpected {event!r}")

    return parse_h11


def _httptools_parser() -> Parse | None:
    try:
        import httptools
    except ImportError:
        return None

    class Collector:
        __slots__ = ("body", "done", "headers", "url")

        def __init__(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []
            self.done = False

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            self.done = True

    def parse_httptools(data: bytes) -> tuple[int, int]:
        collector = Collector()
        parser = httptools.HttpRequestParser(collector)
        parser.feed_data(data)
        parser.get_method()
        if not collector.done:
            raise RuntimeError("httptools: message not complete")
        return len(collector.headers), sum(len(part) for part in collector.body)

    return parse_httptools


def available_parsers() -> dict[str, Parse]:
    parsers: dict[str, Parse] = {"pronghorn": parse_pronghorn}
    for name, factory in (("h11", _h11_parser), ("httptools", _httptools_parser)):
        parse = factory()
        if parse is not None:
            parsers[name] = parse
    return parsers


def library_versions(parsers: dict[str, Parse]) -> dict[str, str]:
    versions = {"pronghorn": _version("pronghorn")}
    for name in parsers:
        if name != "pronghorn":
            versions[name] = _version(name)
    return versions


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except (ImportError, AttributeError):
        return "?"


# -- timing ---------------------------------------------------------------------------------------


def calibrate(parse: Parse, data: bytes, min_time: float) -> int:
    """Iterations needed for one run to last at least ``min_time`` seconds."""
    iterations = 64
    while True:
        start = time.perf_counter()
        for _ in range(iterations):
            parse(data)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 4:
            return max(iterations, int(iterations * min_time / elapsed))
        iterations *= 4


def one_run(parse: Parse, data: bytes, iterations: int) -> float:
    """Requests per second over ``iterations`` fresh-parser parses."""
    start = time.perf_counter()
    for _ in range(iterations):
        parse(data)
    return iterations / (time.perf_counter() - start)


def measure(runs: int, min_time: float, workloads: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    parsers = available_parsers()
    for workload in workloads:  # every parser must see the same request before it is timed
        _, data, headers, body = WORKLOADS[workload]
        for name, parse in parsers.items():
            got = parse(data)
            if got != (headers, body):
                raise SystemExit(f"{name} parsed {workload} as {got}, expected {(headers, body)}")
    plan = {(w, p): calibrate(parsers[p], WORKLOADS[w][1], min_time) for w in workloads for p in parsers}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in plan}
    for _ in range(runs):  # interleaved, so drift on the machine affects every parser alike
        for workload in workloads:
            for name, parse in parsers.items():
                samples[workload, name].append(one_run(parse, WORKLOADS[workload][1], plan[workload, name]))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for (workload, name), rates in samples.items():
        median = statistics.median(rates)
        results.setdefault(workload, {})[name] = {
            "requests_per_s": round(median),
            "us_per_request": round(1e6 / median, 2),
            "min_requests_per_s": round(min(rates)),
            "max_requests_per_s": round(max(rates)),
            "iterations_per_run": plan[workload, name],
        }
    for by_parser in results.values():
        ours = by_parser["pronghorn"]["requests_per_s"]
        for name, entry in by_parser.items():
            if name != "pronghorn":
                entry["pronghorn_ratio"] = round(ours / entry["requests_per_s"], 2)
    return results


# -- output ---------------------------------------------------------------------------------------


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    others = [name for name in ("h11", "httptools") if any(name in r for r in results.values())]
    header = ["workload", "bytes", "pronghorn req/s", "µs/req"]
    for name in others:
        header += [f"{name} req/s", f"{name} µs/req", f"pronghorn ÷ {name}"]
    rows = [header]
    for workload, by_parser in results.items():
        ours = by_parser["pronghorn"]
        row = [workload, str(len(WORKLOADS[workload][1])), f"{ours['requests_per_s']:,}", f"{ours['us_per_request']:.2f}"]
        for name in others:
            entry = by_parser.get(name)
            row += ([f"{entry['requests_per_s']:,}", f"{entry['us_per_request']:.2f}", f"{entry['pronghorn_ratio']:.2f}×"]
                    if entry else ["-", "-", "-"])
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per workload and parser (median reported)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per run (at least)")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS),
                        help="measure only this workload (repeatable); default: all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    workloads = args.workload or list(WORKLOADS)
    results = measure(args.runs, args.min_time, workloads)
    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": library_versions(available_parsers()),
        "runs": args.runs,
        "min_time_s": args.min_time,
        "workloads": {w: WORKLOADS[w][0] for w in workloads},
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        print(f"Python {meta['python']} ({meta['implementation']}); {versions}; "
              f"median of {args.runs} runs of >= {args.min_time}s, fresh parser per request")
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
