"""Built-in WSGI app (``pronghorn pronghorn.demo:app``): every path answers with a page describing
the request and the worker that served it; JSON for ``/json`` or ``Accept: application/json``."""

from __future__ import annotations

import html
import json
import os
from typing import TYPE_CHECKING, Any, Iterable

import pronghorn

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["app"]

_CHUNK = 64 * 1024
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pronghorn {version}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; color: #222; }}
h1 {{ font-size: 1.6rem; margin-bottom: 0; }} p {{ color: #666; margin-top: .2rem; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; vertical-align: top; padding: .25rem .6rem; border-bottom: 1px solid #eee; }}
th {{ width: 11rem; color: #555; }} td {{ font-family: ui-monospace, monospace; word-break: break-all; }}
</style></head><body>
<h1>It works: this is pronghorn {version}</h1>
<p>Served by worker pid {pid}. Add <code>Accept: application/json</code> or visit
<code>/json</code> for this page as JSON.</p>
<h2>Request</h2><table>{request}</table>
<h2>Headers</h2><table>{headers}</table>
</body></html>
"""


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """WSGI entry point: describe the request as HTML or JSON."""
    report = _describe(environ)
    if _wants_json(environ):
        body = json.dumps(report, indent=2).encode("utf-8") + b"\n"
        content_type = "application/json"
    else:
        body = _render_html(report).encode("utf-8")
        content_type = "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _describe(environ: WSGIEnvironment) -> dict[str, Any]:
    remote = environ.get("REMOTE_ADDR", "")
    if environ.get("REMOTE_PORT"):
        remote = f"{remote}:{environ['REMOTE_PORT']}"
    return {
        "server": f"pronghorn {pronghorn.__version__}",
        "pid": os.getpid(),
        "method": environ.get("REQUEST_METHOD", ""),
        "path": _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
        "query": _text(environ.get("QUERY_STRING", "")),
        "protocol": environ.get("SERVER_PROTOCOL", ""),
        "remote_address": remote,
        "body_length": _read_body(environ),
        "headers": _headers(environ),
    }


def _text(value: str) -> str:
    # WSGI hands over URL bytes as latin-1 strings; most clients actually sent UTF-8.
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in sorted(environ.items()):
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key
        else:
            continue
        found["-".join(part.capitalize() for part in name.split("_"))] = _text(str(value))
    return found


def _read_body(environ: WSGIEnvironment) -> int:
    """Drain the body and return its length (without keeping it in memory)."""
    length_text = environ.get("CONTENT_LENGTH") or ""
    ascii_digits = bool(length_text) and all(c in "0123456789" for c in length_text)
    remaining = int(length_text) if ascii_digits else None
    if remaining is None and not environ.get("wsgi.input_terminated"):
        return 0  # no length and no end-of-input guarantee: reading could block forever
    stream, total = environ["wsgi.input"], 0
    while remaining is None or remaining > 0:
        chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            break
        total += len(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return total


def _wants_json(environ: WSGIEnvironment) -> bool:
    types = {item.split(";")[0].strip().lower() for item in environ.get("HTTP_ACCEPT", "").split(",")}
    return environ.get("PATH_INFO") == "/json" or "application/json" in types


def _rows(items: Iterable[tuple[str, Any]]) -> str:
    cells = "<tr><th>{}</th><td>{}</td></tr>"
    return "".join(cells.format(html.escape(str(k)), html.escape(str(v))) for k, v in items)


def _render_html(report: dict[str, Any]) -> str:
    fields = [(k.replace("_", " "), v) for k, v in report.items() if k not in ("headers", "server")]
    return _PAGE.format(
        version=html.escape(pronghorn.__version__), pid=report["pid"], request=_rows(fields),
        headers=_rows(report["headers"].items()) or "<tr><td>(none)</td></tr>",
    )
