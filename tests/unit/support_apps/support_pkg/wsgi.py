"""Nested module, for dotted references."""

from __future__ import annotations

from typing import Any, Callable, Iterable


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"nested"]
