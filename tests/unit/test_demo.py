"""The built-in demo app, called through wsgiref's validator with warnings turned into errors."""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

import pronghorn
from pronghorn.demo import app


def call(**environ_overrides: Any) -> tuple[str, dict[str, str], bytes]:
    body = environ_overrides.pop("body", b"")
    environ: dict[str, Any] = {
        "wsgi.input": io.BytesIO(body), "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
    }
    environ.update(environ_overrides)
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, dict(headers)
        return lambda data: None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = validator(app)(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            result.close()  # type: ignore[attr-defined]
    return captured["status"], captured["headers"], payload


def test_html_page() -> None:
    status, headers, body = call(
        PATH_INFO="/hello", QUERY_STRING="a=1&b=2", REMOTE_ADDR="10.0.0.7", REMOTE_PORT="5555",
        HTTP_USER_AGENT="tester/1.0",
    )
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    page = body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert f"pronghorn {pronghorn.__version__}" in page
    assert f"pid {os.getpid()}" in page
    for fragment in ("GET", "/hello", "a=1&amp;b=2", "HTTP/1.0", "10.0.0.7:5555", "User-Agent",
                     "tester/1.0"):
        assert fragment in page


def test_html_escapes_everything_from_the_request() -> None:
    _, _, body = call(PATH_INFO="/<script>", QUERY_STRING="x=<b>", HTTP_X_EVIL='"><img src=x>')
    page = body.decode("utf-8")
    assert "<script>" not in page and "<b>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&quot;&gt;&lt;img src=x&gt;" in page


def test_json_by_accept_header() -> None:
    status, headers, body = call(
        REQUEST_METHOD="POST", PATH_INFO="/submit", CONTENT_TYPE="text/plain", CONTENT_LENGTH="11",
        body=b"hello world", HTTP_ACCEPT="text/html;q=0.5, application/json;q=0.9",
    )
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    report = json.loads(body)
    assert report["method"] == "POST"
    assert report["path"] == "/submit"
    assert report["body_length"] == 11
    assert report["pid"] == os.getpid()
    assert report["server"] == f"pronghorn {pronghorn.__version__}"
    assert report["headers"]["Content-Type"] == "text/plain"
    assert report["headers"]["Content-Length"] == "11"
    assert report["headers"]["Accept"].startswith("text/html")


def test_json_by_path() -> None:
    _, headers, body = call(PATH_INFO="/json", QUERY_STRING="q=%C3%A9")
    assert headers["Content-Type"] == "application/json"
    report = json.loads(body)
    assert report["query"] == "q=%C3%A9"
    assert report["body_length"] == 0
    assert report["protocol"] == "HTTP/1.0"


def test_utf8_path_is_decoded_for_display() -> None:
    path = "/caf\u00e9".encode("utf-8").decode("latin-1")  # how WSGI delivers URL bytes
    _, _, body = call(PATH_INFO=path, HTTP_ACCEPT="application/json")
    assert json.loads(body)["path"] == "/caf\u00e9"


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_large_body_is_counted_in_chunks(method: str) -> None:
    data = b"x" * 200_000
    _, _, body = call(REQUEST_METHOD=method, CONTENT_LENGTH=str(len(data)), body=data,
                      HTTP_ACCEPT="application/json")
    assert json.loads(body)["body_length"] == len(data)


def test_body_without_length_read_only_when_input_is_terminated() -> None:
    _, _, body = call(REQUEST_METHOD="POST", body=b"abc", HTTP_ACCEPT="application/json",
                      **{"wsgi.input_terminated": True})
    assert json.loads(body)["body_length"] == 3
    _, _, body = call(REQUEST_METHOD="POST", body=b"abc", HTTP_ACCEPT="application/json")
    assert json.loads(body)["body_length"] == 0


def test_loadable_by_reference() -> None:
    from pronghorn.apps.loading import import_app

    assert import_app("pronghorn.demo:app") is app
