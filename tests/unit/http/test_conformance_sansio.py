"""Replay the shared conformance corpus (cases.jsonl) through RequestParser, sans-IO.

The corpus is read at run time from ``<repo>/../shared/conformance/cases.jsonl``
and never copied into the repository.  Every case is replayed with several
splits of its bytes (whole, per line, per byte, three seeded random splits)
and judged by the corpus rules, transposed to the parser:

* ``reject``: no request may complete before a ProtocolError (an
  IncompleteMessage at EOF counts) or a clean close;
* ``accept``: the completed requests match ``requests`` in order (fewer only
  when the last one closes the connection; errors after them are tolerated);
* ``either``: anything but a non-ProtocolError exception.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from http_replay import Replay, replay, split_bytes, split_lines, split_random, split_whole

from pronghorn.http import Limits, ProtocolError, url_scheme_from_headers

CASES_PATH = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "cases.jsonl"

# Gunicorn defaults the harness relies on: it connects from 127.0.0.1, which is
# in the default forwarded_allow_ips, so secure-scheme headers are checked and
# the default forwarder_headers keep SCRIPT_NAME / PATH_INFO.
SECURE_SCHEME_HEADERS = {
    b"X-FORWARDED-PROTOCOL": b"ssl",
    b"X-FORWARDED-PROTO": b"https",
    b"X-FORWARDED-SSL": b"on",
}
DEFAULT_FORWARDER_HEADERS = ("SCRIPT_NAME", "PATH_INFO")

_INT_FLAGS = {
    "--limit-request-line": "limit_request_line",
    "--limit-request-fields": "limit_request_fields",
    "--limit-request-field_size": "limit_request_field_size",
    "--limit-request-field-size": "limit_request_field_size",
}
_BOOL_FLAGS = {
    "--permit-obsolete-folding": "permit_obsolete_folding",
    "--strip-header-spaces": "strip_header_spaces",
    "--permit-unconventional-http-method": "permit_unconventional_http_method",
    "--permit-unconventional-http-version": "permit_unconventional_http_version",
    "--casefold-http-method": "casefold_http_method",
}
_SKIP_FLAGS = {"--proxy-protocol": "PROXY protocol is handled by pronghorn.net, not the HTTP parser"}


class CaseSetup:
    def __init__(self, limits: Limits, trusted: bool) -> None:
        self.limits = limits
        self.trusted = trusted


def setup_from_flags(flags: list[str]) -> CaseSetup:
    """Map gunicorn CLI flags to Limits; pytest.skip for features outside the parser."""
    kwargs: dict[str, Any] = {}
    trusted = True
    forwarder: tuple[str, ...] = DEFAULT_FORWARDER_HEADERS
    args = list(flags)
    while args:
        flag = args.pop(0)
        if flag in _SKIP_FLAGS:
            pytest.skip(_SKIP_FLAGS[flag])
        if flag in _BOOL_FLAGS:
            kwargs[_BOOL_FLAGS[flag]] = True
        elif flag in _INT_FLAGS:
            kwargs[_INT_FLAGS[flag]] = int(args.pop(0))
        elif flag == "--header-map":
            kwargs["header_map"] = args.pop(0)
        elif flag == "--forwarded-allow-ips":
            allowed = args.pop(0)
            trusted = allowed == "*" or "127.0.0.1" in allowed.split(",")
        elif flag == "--forwarder-headers":
            forwarder = tuple(args.pop(0).split(","))
        else:
            raise AssertionError(f"unmapped conformance flag {flag!r}: extend setup_from_flags")
    if trusted:
        kwargs["forwarder_headers"] = forwarder
    return CaseSetup(Limits.from_settings(**kwargs), trusted)


def load_cases() -> list[dict[str, Any]]:
    if not CASES_PATH.is_file():
        return []
    with CASES_PATH.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


CASES = load_cases()
SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": split_whole,
    "lines": split_lines,
    "bytes": split_bytes,
    "rand0": lambda raw: split_random(raw, 0),
    "rand1": lambda raw: split_random(raw, 1),
    "rand2": lambda raw: split_random(raw, 2),
}


def _params() -> list[Any]:
    if not CASES:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"corpus not found: {CASES_PATH}"))]
    return [
        pytest.param(case, split, id=f"{case['id']}[{split}]")
        for case in CASES
        for split in SPLITS
    ]


def run_case(case: dict[str, Any], split: str) -> tuple[CaseSetup, Replay]:
    setup = setup_from_flags(case["flags"])
    raw = base64.b64decode(case["raw_b64"])
    result = replay(SPLITS[split](raw), setup.limits)
    if setup.trusted and result.error is None:
        # The request cycle checks trusted scheme headers when it builds the
        # environ, i.e. before the app runs and before the body is read.
        for index, head in enumerate(result.heads):
            try:
                url_scheme_from_headers(head.headers, SECURE_SCHEME_HEADERS)
            except ProtocolError as exc:
                result.completed = result.completed[:index]  # completed[i] belongs to heads[i]
                result.error = exc
                break
    return setup, result


def _expected_headers(req: dict[str, Any], limits: Limits) -> list[tuple[str, str]]:
    out = []
    for name, value in req["headers"]:
        upper = name.upper()
        keep = "_" not in upper or limits.header_map != "drop"
        if upper.encode("latin-1") in limits.underscore_names_allowed:
            keep = True
        if keep:
            out.append((upper, value))
    return out


def _check_request(got: Any, req: dict[str, Any], limits: Limits) -> None:
    head = got.head
    assert head.method.decode("latin-1") == req["method"]
    assert head.target.decode("latin-1") == req["target"]
    assert head.http_version == req["version"]
    assert [(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers] == _expected_headers(req, limits)
    assert got.body == base64.b64decode(req["body_b64"])
    echo = req["expected_echo"]
    assert head.http_version == echo["protocol"]
    if head.method != b"CONNECT":
        assert unquote_to_bytes(head.path).decode("latin-1") == echo["path"]
        assert head.query.decode("latin-1") == echo["query"]


@pytest.mark.parametrize(("case", "split"), _params())
def test_conformance_case(case: dict[str, Any], split: str) -> None:
    setup, result = run_case(case, split)
    expect = case["expect"]
    if expect == "either":
        return  # only ProtocolError may escape run_case; anything else already failed
    if expect == "reject":
        assert not result.completed, (
            f"{case['id']}: accepted {len(result.completed)} request(s) before rejecting "
            f"(note: {case['note']}); error={result.error!r}"
        )
        assert result.error is not None or result.closed
        return
    wanted = case["requests"]
    assert len(result.completed) <= len(wanted), f"desync: {len(result.completed)} requests completed"
    for got, req in zip(result.completed, wanted):
        _check_request(got, req, setup.limits)
    if len(result.completed) < len(wanted):
        assert result.completed and not result.completed[-1].head.keep_alive, (
            f"{case['id']}: only {len(result.completed)}/{len(wanted)} requests; error={result.error!r}"
        )
