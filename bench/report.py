"""Tables, target checks and the chart for ``bench/run.py``'s results.

A result is a dict: ``workload``, ``server`` (name), ``label``, and either ``error`` (the run failed)
or the measurements ``rps``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``errors``, ``rss_mib`` and, for the
idle workload, ``idle`` (what the idle-connection helper reported).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

Result = dict[str, Any]

# (workload, peer, minimum pronghorn ÷ peer requests/s)
RPS_TARGETS = [
    ("hello", "gunicorn", 5.0),
    ("hello", "granian", 1.0),
    ("sleep", "granian", 0.95),
    ("big", "granian", 1.0),
    ("upload", "granian", 1.0),
]
DOCS_BEGIN = "<!-- bench:results:begin -->"
DOCS_END = "<!-- bench:results:end -->"


def _find(results: list[Result], workload: str, server: str) -> Result | None:
    for r in results:
        if r["workload"] == workload and r["server"] == server and "error" not in r:
            return r
    return None


def ratio(results: list[Result], workload: str, server: str) -> float | None:
    """pronghorn's requests/s divided by ``server``'s, for one workload."""
    mine, theirs = _find(results, workload, "pronghorn"), _find(results, workload, server)
    if not mine or not theirs or not theirs["rps"]:
        return None
    return float(mine["rps"] / theirs["rps"])


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def results_table(results: list[Result], descriptions: dict[str, str]) -> str:
    rows = ["| workload | server | req/s | pronghorn ÷ server | p50 ms | p90 ms | p99 ms | errors | peak RSS/worker MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        workload = descriptions.get(r["workload"], r["workload"])
        if "error" in r:
            rows.append(f"| {workload} | {r['label']} | failed: {r['error']} | | | | | | |")
            continue
        rat = ratio(results, r["workload"], r["server"])
        cells = [workload, r["label"], _num(r["rps"]), "—" if rat is None else f"{rat:.2f}",
                 _num(r["p50_ms"], 2), _num(r["p90_ms"], 2), _num(r["p99_ms"], 2),
                 str(r["errors"]), _num(r["rss_mib"], 1)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summary_table(results: list[Result], workloads: list[tuple[str, str]], servers: list[tuple[str, str]]) -> str:
    """Requests/s, one row per workload, one column per server; peers also show pronghorn ÷ peer."""
    rows = ["| workload | " + " | ".join(label for _, label in servers) + " |", "|---|" + "---:|" * len(servers)]
    for w, title in workloads:
        cells = []
        for name, _ in servers:
            r, rat = _find(results, w, name), ratio(results, w, name)
            cell = "failed" if r is None else _num(r["rps"])
            if r is not None and name != "pronghorn" and rat is not None:
                cell += f" ({rat:.2f}×)"
            cells.append(cell)
        rows.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_table(results: list[Result], workloads: list[str], peers: list[tuple[str, str]]) -> str:
    """pronghorn ÷ peer requests/s, one row per workload; ``peers`` is [(name, label)]."""
    if not peers:
        return "(no peer ran)"
    rows = ["| workload | " + " | ".join(f"vs {label}" for _, label in peers) + " |",
            "|---|" + "---:|" * len(peers)]
    for w in workloads:
        cells = []
        for name, _ in peers:
            rat = ratio(results, w, name)
            cells.append("—" if rat is None else f"{rat:.2f}×")
        rows.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def targets_table(results: list[Result]) -> str:
    rows = ["| target | measured | met |", "|---|---:|:---:|"]
    for workload, peer, want in RPS_TARGETS:
        rat = ratio(results, workload, peer)
        got = "—" if rat is None else f"{rat:.2f}×"
        met = "—" if rat is None else ("yes" if rat >= want else "**no**")
        rows.append(f"| {workload}: pronghorn ≥ {want:g}× {peer} req/s | {got} | {met} |")
    mine = [r for r in results if r["server"] == "pronghorn"]
    failed = [r for r in mine if "error" in r]
    errors = sum(r["errors"] for r in mine if "error" not in r)
    rows.append(f"| zero errors (pronghorn, all workloads) | {errors} errors"
                f"{f', {len(failed)} failed runs' if failed else ''} | {'yes' if not errors and not failed else '**no**'} |")
    worse = []
    compared = 0
    for r in mine:
        theirs = _find(results, r["workload"], "gunicorn")
        if "error" in r or not theirs:
            continue
        compared += 1
        if r["rss_mib"] > theirs["rss_mib"]:
            worse.append(f"{r['workload']} {r['rss_mib']:.1f} > {theirs['rss_mib']:.1f}")
    if compared:
        rows.append(f"| peak RSS per worker ≤ gunicorn's (each workload) | "
                    f"{'; '.join(worse) if worse else f'≤ in {compared} of {compared}'} | {'**no**' if worse else 'yes'} |")
    return "\n".join(rows)


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


def chart(results: list[Result], workloads: list[tuple[str, str]], servers: list[tuple[str, str]], title: str,
          path: Path) -> str | None:
    """Grouped bars of requests/s relative to pronghorn, labelled with absolute requests/s.

    ``workloads`` is [(name, tick label)], ``servers`` [(name, legend label)].
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not importable: no chart (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(11, 5.2), dpi=110)
    width = 0.8 / max(1, len(servers))
    colours = ["#1b7f5b", "#4c72b0", "#dd8452", "#8172b3", "#937860"]
    tallest = 1.0
    for i, (name, label) in enumerate(servers):
        xs, heights, texts = [], [], []
        for j, (w, _) in enumerate(workloads):
            r, mine = _find(results, w, name), _find(results, w, "pronghorn")
            x = j + (i - (len(servers) - 1) / 2) * width
            if not r or not mine or not mine["rps"]:
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                continue
            xs.append(x)
            heights.append(r["rps"] / mine["rps"])
            texts.append(f"{r['rps'] / 1000:.1f}k" if r["rps"] >= 1000 else f"{r['rps']:.0f}")
        tallest = max([tallest, *heights])
        bars = ax.bar(xs, heights, width, label=label, color=colours[i % len(colours)])
        for bar, text in zip(bars, texts):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), text, ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="#444", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(workloads)), [tick for _, tick in workloads], fontsize=8)
    ax.set_ylabel("requests/s relative to pronghorn (= 1.0)\nlabels: absolute requests/s")
    ax.set_ylim(0, tallest * 1.15)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=len(servers), loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def update_docs(path: Path, section: str) -> bool:
    """Replace the text between the results markers of ``path``; False if the markers are missing."""
    text = path.read_text()
    pattern = re.compile(re.escape(DOCS_BEGIN) + r".*?" + re.escape(DOCS_END), re.DOTALL)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda _: f"{DOCS_BEGIN}\n{section}\n{DOCS_END}", text))
    return True
