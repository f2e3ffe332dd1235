"""Tables and the chart for ``bench/run.py``'s results (the targets are in ``targets.py``).

A result is one row of the matrix, a dict: ``workload``, ``server`` (name), ``threads``, ``variant``
(``server-threads``, or ``server-asgi``), ``label``, ``slot`` (the index of the configured variant it
stands for), ``interface`` (``wsgi`` or ``asgi``: the ASGI rows have one Granian row, no threads), and
either ``error`` (the run failed) or the measurements ``rps``, ``p50_ms``, ``p90_ms``, ``p99_ms``,
``errors``, ``rss_mib``, ``workers``, ``cpu_us_per_request``, ``cpu_share`` and, for the idle workload, ``idle`` (what the helper reported).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from targets import REFERENCE, find

Result = dict[str, Any]

DOCS_MARKERS = {"pinned": "bench:results", "unpinned": "bench:unpinned"}


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _rows(results: list[Result], workload: str) -> list[Result]:
    return [r for r in results if r["workload"] == workload]


def _references(results: list[Result], workload: str) -> list[Result]:
    """The Granian rows of ``workload``, fewest threads first: what every row is divided by."""
    return sorted((r for r in _rows(results, workload) if r["server"] == REFERENCE and "error" not in r),
                  key=lambda r: r["threads"])


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×" if reference else "—"


def _reference_name(ref: Result) -> str:
    """How a column names a Granian row: by its threads, or, in an ASGI workload (one Granian row,
    no threads), as Granian's ASGI interface."""
    return f"{REFERENCE} ASGI" if ref.get("interface") == "asgi" else f"{REFERENCE} {ref['threads']}t"


def workload_table(results: list[Result], workload: str) -> str:
    """One workload: a line per row with requests/s, its ratio to each Granian row, and latency."""
    refs = _references(results, workload)
    same_name = "ASGI" if any(r.get("interface") == "asgi" for r in _rows(results, workload)) else "(same threads)"
    head = ["row", "req/s", *(f"÷ {_reference_name(r)}" for r in refs), "p50 ms", "p99 ms",
            f"p99 ÷ {REFERENCE} {same_name}", "CPU µs/req", f"÷ {REFERENCE} {same_name}", "CPU",
            "errors", "peak RSS/worker MiB"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in _rows(results, workload):
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} |" + " |" * (len(head) - 2))
            continue
        same = find(results, workload, REFERENCE, r["threads"])
        cells = [r["label"], _num(r["rps"]), *(_ratio(r["rps"], ref["rps"]) for ref in refs),
                 _num(r["p50_ms"], 2), _num(r["p99_ms"], 2), "—" if same is None else _ratio(r["p99_ms"], same["p99_ms"]),
                 _num(r["cpu_us_per_request"], 1),
                 "—" if same is None else _ratio(r["cpu_us_per_request"], same["cpu_us_per_request"]),
                 f"{r['cpu_share']:.0%}", str(r["errors"]), _num(r["rss_mib"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def workload_tables(results: list[Result], workloads: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"**{title}**\n\n{workload_table(results, name)}" for name, title in workloads
                       if _rows(results, name))


def summary_table(results: list[Result], workloads: list[tuple[str, str]], columns: list[tuple[int, str, str]]) -> str:
    """Requests/s and p99, a line per workload, a column per configured variant (``columns``:
    (slot, server, header); run.py's ``summary_columns``).

    A workload that gives every variant the same threads (the 10 ms app) has fewer rows than there
    are variants; its row sits under the first variant of its server and the others show "=". A
    server without a row in a workload (waitress over HTTPS, or one that could not run) shows "—".
    """
    lines = ["| workload | " + " | ".join(header for _, _, header in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, title in workloads:
        rows = _rows(results, name)
        by_slot = {r["slot"]: r for r in rows}
        cells = []
        for slot, server, _ in columns:
            r = by_slot.get(slot)
            if r is None:
                cells.append("=" if any(o["server"] == server and o["slot"] < slot for o in rows) else "—")
            elif "error" in r:
                cells.append("failed")
            else:
                cells.append(f"{_num(r['rps'])} · p99 {r['p99_ms']:.1f} ms")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def idle_notes(results: list[Result]) -> list[str]:
    notes = []
    for r in results:
        idle = r.get("idle")
        if idle:
            notes.append(f"{r['label']}: {idle.get('opened', 0)} idle connections opened, "
                         f"{idle.get('kept', 0)} kept open after their response, {idle.get('alive', 0)} "
                         f"still open at the end; open fds per worker {idle.get('fds', [])}")
    return notes


def tail_notes(results: list[Result]) -> list[str]:
    """Cells whose p99 is far above their p50: some connections wait much longer than most."""
    return [f"{r['label']} / {r['workload']}: p99 {r['p99_ms']:,.0f} ms against p50 {r['p50_ms']:,.1f} ms "
            "(a few connections wait far longer than the rest)"
            for r in results if "error" not in r and r["p99_ms"] > max(100.0, 20 * r["p50_ms"])]


# -- chart ----------------------------------------------------------------------------------------

SHADES = {"pronghorn": ["#1b7f5b", "#6cc49a"], "granian": ["#c8651b", "#f0b27a"],
          "gunicorn": ["#4c72b0", "#9bb3da"], "waitress": ["#8172b3", "#bdb3dc"], "uvicorn": ["#c44e52", "#e8a0a2"]}


def _colours(slots: list[tuple[str, str]]) -> list[str]:
    """A colour per slot: a hue per server, lighter for its later variants."""
    seen: dict[str, int] = {}
    colours = []
    for server, _ in slots:
        shades = SHADES.get(server, ["#937860"])
        colours.append(shades[seen.get(server, 0) % len(shades)])
        seen[server] = seen.get(server, 0) + 1
    return colours


def _panel(ax: Any, results: list[Result], workloads: list[tuple[str, str]], slots: list[tuple[str, str]],
           value: Callable[[Result, Result], tuple[float, str]], colours: list[str]) -> float:
    """Grouped bars, one group per workload, one bar per slot; returns the tallest bar."""
    width = 0.8 / max(1, len(slots))
    tallest = 1.0
    for j, (name, _) in enumerate(workloads):
        refs = _references(results, name)
        by_slot = {r["slot"]: r for r in _rows(results, name) if "error" not in r}
        for slot, r in by_slot.items():
            x = j + (slot - (len(slots) - 1) / 2) * width
            if not refs:
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                continue
            height, text = value(r, refs[-1])
            tallest = max(tallest, height)
            ax.bar(x, height, width, color=colours[slot])
            ax.text(x, height, text, ha="center", va="bottom", fontsize=6)
    ax.axhline(1.0, color="#444", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(workloads)), ["\n".join(textwrap.fill(line, 26) for line in tick.splitlines())
                                          for _, tick in workloads], fontsize=8)
    return tallest


def _rps(row: Result, ref: Result) -> tuple[float, str]:
    return row["rps"] / ref["rps"], f"{row['rps'] / 1000:.1f}k" if row["rps"] >= 1000 else f"{row['rps']:.0f}"


def _p99(row: Result, ref: Result) -> tuple[float, str]:
    return row["p99_ms"] / ref["p99_ms"], f"{row['p99_ms']:.1f}"


def chart(results: list[Result], workloads: list[tuple[str, str]], slots: list[tuple[str, str]], title: str,
          path: Path) -> str | None:
    """Two panels of grouped bars, requests/s and p99 latency, each relative to the Granian row with
    the most threads in its workload, labelled with the absolute figure.

    ``workloads`` is [(name, tick label)], ``slots`` [(server, legend label)] for the configured variants.
    Returns a note instead when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not importable: no chart (pip install matplotlib)"
    colours = _colours(slots)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8.5), dpi=110)
    for ax, value, ylabel, log in ((top, _rps, "requests/s ÷ granian's\nlabels: requests/s", False),
                                   (bottom, _p99, "p99 latency ÷ granian's (lower is better)\nlabels: p99 ms", True)):
        tallest = _panel(ax, results, workloads, slots, value, colours)
        ax.set_ylabel(ylabel, fontsize=8)
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        else:
            ax.set_ylim(0, tallest * 1.15)
    top.set_title(title, fontsize=9)
    top.legend(handles=[Patch(color=c, label=label) for c, (_, label) in zip(colours, slots)], fontsize=7,
               ncols=min(len(slots), 6), loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def update_docs(path: Path, section: str, mode: str) -> bool:
    """Replace the text between the ``mode`` results markers of ``path``; False if they are missing."""
    begin, end = f"<!-- {DOCS_MARKERS[mode]}:begin -->", f"<!-- {DOCS_MARKERS[mode]}:end -->"
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda _: f"{begin}\n{section}\n{end}", text))
    return True
