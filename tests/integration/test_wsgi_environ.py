"""The WSGI environ and proxy trust over real sockets (TCP and unix).

Five servers run the same ``envapp`` (wrapped in ``wsgiref.validate``, warnings are errors),
which answers with its environ as JSON:

* ``main``: TCP, one worker, trusts 127.0.0.1 (``forwarded_allow_ips`` given explicitly so the
  caller's ``FORWARDED_ALLOW_IPS`` cannot leak in), default ``forwarder_headers``;
* ``untrusted``: TCP and a unix socket, ``--forwarded-allow-ips 10.9.9.9`` (loopback untrusted;
  unix peers are trusted anyway), ``--forwarder-headers SCRIPT_NAME,PATH_INFO,REMOTE_USER``;
* ``cidr``: ``--forwarded-allow-ips 127.0.0.0/8``, same forwarder headers;
* ``star``: ``--forwarded-allow-ips '*'``, two workers, ``SCRIPT_NAME=/app`` in its environment;
* ``rawenv``: ``-e SCRIPT_NAME=/viaflag`` (``raw_env``, which Gunicorn puts in the environment too).

The five run once with the ``sync`` worker and once with ``gthread`` (one thread, the app inline on
the loop); responses are read by their framing, as the gthread worker keeps connections alive.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from serving import (
    WORKER_ARGS,
    Server,
    free_port,
    parse_response,
    pronghorn_cmd,
    read_responses,
    running,
)

ENV_APP = r'''
import io, json, warnings
from wsgiref.validate import validator

warnings.simplefilter("error")


def report(environ, start_response):
    out = {k: v for k, v in environ.items() if isinstance(v, (str, bool))}
    out["wsgi.version"] = repr(environ["wsgi.version"])
    stream = environ["wsgi.input"].input  # the server's object, under validate's InputWrapper
    out["input_methods"] = all(callable(getattr(stream, m, None)) for m in ("read", "readline", "readlines", "__iter__"))
    out["body"] = environ["wsgi.input"].read(1 << 16).decode("latin-1")
    errors = environ["wsgi.errors"]
    errors.write("errors-probe " + environ["QUERY_STRING"] + "\n")
    errors.flush()
    out["file_wrapper"] = b"".join(environ["wsgi.file_wrapper"](io.BytesIO(b"wrapped bytes"), 4)).decode()
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(report)
'''


@dataclass
class Servers:
    main: int
    untrusted: int
    untrusted_unix: str
    cidr: int
    star: int
    rawenv: int
    logs: dict[str, Server]


@pytest.fixture(scope="module", params=["sync", "gthread"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    worker = WORKER_ARGS[request.param]
    cwd = tmp_path_factory.mktemp("wsgi-environ")
    (cwd / "envapp.py").write_text(ENV_APP)
    ports = {name: free_port() for name in ("main", "untrusted", "cidr", "star", "rawenv")}
    unix_path = str(cwd / "untrusted.sock")
    forwarders = ["--forwarder-headers", "SCRIPT_NAME,PATH_INFO,REMOTE_USER"]
    args = {
        "main": ["--forwarded-allow-ips", "127.0.0.1", *worker],
        "untrusted": ["-b", f"unix:{unix_path}", "--forwarded-allow-ips", "10.9.9.9", *forwarders, *worker],
        "cidr": ["--forwarded-allow-ips", "127.0.0.0/8", *forwarders, *worker],
        "star": ["--forwarded-allow-ips", "*", "-w", "2", *worker],
        "rawenv": ["-e", "SCRIPT_NAME=/viaflag", *worker],
    }
    env = {"star": {"SCRIPT_NAME": "/app"}}
    with running(pronghorn_cmd("envapp:app", "-b", f"127.0.0.1:{ports['main']}", *args["main"]), cwd=cwd,
                 port=ports["main"]) as main, \
         running(pronghorn_cmd("envapp:app", "-b", f"127.0.0.1:{ports['untrusted']}", *args["untrusted"]), cwd=cwd,
                 port=ports["untrusted"]) as untrusted, \
         running(pronghorn_cmd("envapp:app", "-b", f"127.0.0.1:{ports['cidr']}", *args["cidr"]), cwd=cwd,
                 port=ports["cidr"]) as cidr, \
         running(pronghorn_cmd("envapp:app", "-b", f"127.0.0.1:{ports['star']}", *args["star"]), cwd=cwd,
                 port=ports["star"], env=env["star"]) as star, \
         running(pronghorn_cmd("envapp:app", "-b", f"127.0.0.1:{ports['rawenv']}", *args["rawenv"]), cwd=cwd,
                 port=ports["rawenv"]) as rawenv:
        yield Servers(ports["main"], ports["untrusted"], unix_path, ports["cidr"], ports["star"], ports["rawenv"],
                      {"main": main, "untrusted": untrusted, "cidr": cidr, "star": star, "rawenv": rawenv})


def exchange(address: int | str, raw: bytes, count: int = 1) -> tuple[bytes, tuple[str, int] | None]:
    """Send ``raw`` over TCP (a port) or a unix socket (a path); (response, our address if TCP).

    Reads until ``count`` responses are complete by their framing, or the server closes.
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address if isinstance(address, str) else ("127.0.0.1", address))
        local = sock.getsockname() if family == socket.AF_INET else None
        sock.sendall(raw)
        data = read_responses(sock, count)
    return data, local


def request(address: int | str, target: str = "/", headers: str = "Host: t\r\n", *, method: str = "GET",
            version: str = "HTTP/1.1", body: bytes = b"") -> tuple[int, dict[str, Any]]:
    raw = f"{method} {target} {version}\r\n{headers}\r\n".encode("latin-1") + body
    data, local = exchange(address, raw)
    status, _, payload = parse_response(data)
    environ = json.loads(payload) if status == 200 else {}
    if local is not None and environ:
        environ["_client_port"] = local[1]
    return status, environ


def ok(address: int | str, target: str = "/", headers: str = "Host: t\r\n", **kw: Any) -> dict[str, Any]:
    status, environ = request(address, target, headers, **kw)
    assert status == 200, status
    return environ


# --- 1. environ ------------------------------------------------------------------------------------------


def test_raw_uri_and_percent_decoded_path_info(servers: Servers) -> None:
    env = ok(servers.main, "/a%20b/caf%C3%A9/x%2Fy/%FF;p=1?q=%41&r=")
    assert env["RAW_URI"] == "/a%20b/caf%C3%A9/x%2Fy/%FF;p=1?q=%41&r="
    assert env["PATH_INFO"] == "/a b/caf\u00c3\u00a9/x/y/\u00ff;p=1"  # the decoded bytes, read as latin-1
    assert env["QUERY_STRING"] == "q=%41&r="
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_METHOD"] == "GET" and env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_absolute_form_target(servers: Servers) -> None:
    env = ok(servers.main, "http://example.com/p%41th?x=1")
    assert env["RAW_URI"] == "http://example.com/p%41th?x=1"
    assert env["PATH_INFO"] == "/pAth" and env["QUERY_STRING"] == "x=1"


@pytest.mark.parametrize(("target", "path_info"), [("/app/x/y", "/x/y"), ("/app", ""), ("/app/", "/"),
                                                   ("/app/a%2Fb", "/a/b")])
def test_script_name_from_the_server_environment(servers: Servers, target: str, path_info: str) -> None:
    env = ok(servers.star, target)
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == path_info


def test_script_name_from_raw_env(servers: Servers) -> None:
    env = ok(servers.rawenv, "/viaflag/x")
    assert env["SCRIPT_NAME"] == "/viaflag" and env["PATH_INFO"] == "/x"
    assert request(servers.rawenv, "/x")[0] == 500


# Gunicorn only checks ``path.startswith(SCRIPT_NAME)``, which would hand "/application" to an app
# mounted at "/app" with PATH_INFO "lication"; pronghorn requires a path-segment boundary.
@pytest.mark.parametrize("target", ["/other", "/", "/application", "/ap"])
def test_request_outside_script_name_is_500(servers: Servers, target: str) -> None:
    status, _ = request(servers.star, target)
    assert status == 500


def test_script_name_header_from_trusted_peer_is_honoured(servers: Servers) -> None:
    env = ok(servers.main, "/mount/y", "Host: t\r\nSCRIPT_NAME: /mount\r\n")
    assert env["SCRIPT_NAME"] == "/mount" and env["PATH_INFO"] == "/y"


def test_script_name_header_from_untrusted_peer_is_ignored(servers: Servers) -> None:
    env = ok(servers.untrusted, "/mount/y", "Host: t\r\nSCRIPT_NAME: /mount\r\n")
    assert env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/mount/y"
    assert "HTTP_SCRIPT_NAME" not in env


def test_server_name_and_port_come_from_the_tcp_listener(servers: Servers) -> None:
    env = ok(servers.main, "/", "Host: example.com:8080\r\n")
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(servers.main)
    assert env["HTTP_HOST"] == "example.com:8080"


@pytest.mark.parametrize(("headers", "version", "name", "port"), [
    ("Host: example.com:8080\r\n", "HTTP/1.1", "example.com", "8080"),
    ("Host: example.com\r\n", "HTTP/1.1", "example.com", "80"),
    ("Host: example.com\r\nX-Forwarded-Proto: https\r\n", "HTTP/1.1", "example.com", "443"),
    ("Host: [::1]:9000\r\n", "HTTP/1.1", "[::1]", "9000"),  # RFC 3875 section 4.1.14 keeps the brackets
    ("", "HTTP/1.0", "", ""),
])
def test_server_name_and_port_come_from_host_on_a_unix_socket(servers: Servers, headers: str, version: str,
                                                               name: str, port: str) -> None:
    env = ok(servers.untrusted_unix, "/", headers, version=version)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)


def test_remote_addr_and_port(servers: Servers) -> None:
    env = ok(servers.main)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] == str(env["_client_port"])
    unix = ok(servers.untrusted_unix)
    assert unix["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in unix  # as Gunicorn: a unix peer has no address


def test_http_headers_duplicates_and_content_keys(servers: Servers) -> None:
    headers = ("Host: t\r\nX-Dup: a\r\nx-dup: b\r\nX-DUP:  c \r\nAccept: text/html\r\nAccept: */*\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nX-Under_Score: 1\r\n")
    env = ok(servers.main, "/", headers, method="POST", body=b"hello")
    assert env["HTTP_X_DUP"] == "a,b,c"
    assert env["HTTP_ACCEPT"] == "text/html,*/*"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8" and env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert not any("UNDER" in key for key in env)  # header_map=drop: names with "_" never arrive
    assert env["body"] == "hello"


def test_wsgi_keys(servers: Servers) -> None:
    env = ok(servers.main, "/?probe-main")
    assert env["wsgi.version"] == "(1, 0)"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False and env["wsgi.input_terminated"] is True
    assert env["input_methods"] is True
    assert env["file_wrapper"] == "wrapped bytes"
    assert env["SERVER_SOFTWARE"].startswith("pronghorn")
    servers.logs["main"].wait_for_output("errors-probe probe-main")  # wsgi.errors reaches the error log


def test_multiprocess_true_with_two_workers(servers: Servers) -> None:
    env = ok(servers.star, "/app")
    assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is False


# --- 10. proxy trust --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["main", "cidr", "star", "untrusted_unix"])
def test_forwarded_proto_from_trusted_peer_sets_https(servers: Servers, which: str) -> None:
    target = "/app" if which == "star" else "/"
    env = ok(getattr(servers, which), target, "Host: t\r\nX-Forwarded-Proto: https\r\n")
    assert env["wsgi.url_scheme"] == "https"


def test_forwarded_proto_from_untrusted_peer_is_ignored(servers: Servers) -> None:
    env = ok(servers.untrusted, "/", "Host: t\r\nX-Forwarded-Proto: https\r\n")
    assert env["wsgi.url_scheme"] == "http"
    # Contradictions are not even looked at when the peer is not trusted.
    env = ok(servers.untrusted, "/", "Host: t\r\nX-Forwarded-Proto: https\r\nX-Forwarded-SSL: off\r\n")
    assert env["wsgi.url_scheme"] == "http"


def test_contradictory_scheme_headers_from_trusted_peer_are_400(servers: Servers) -> None:
    # Waiting for a second response means reading until the close, which must follow the 400.
    data, _ = exchange(servers.main, b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: https\r\n"
                                     b"X-Forwarded-SSL: off\r\n\r\n", count=2)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.count(b"HTTP/1.1 ") == 1


def test_remote_user_from_trusted_peer_with_forwarder_header(servers: Servers) -> None:
    env = ok(servers.cidr, "/", "Host: t\r\nREMOTE_USER: alice\r\n")
    assert env["REMOTE_USER"] == "alice"


@pytest.mark.parametrize("which", ["untrusted", "main"])  # untrusted peer; trusted but not a forwarder header
def test_remote_user_header_is_dropped_otherwise(servers: Servers, which: str) -> None:
    env = ok(getattr(servers, which), "/", "Host: t\r\nREMOTE_USER: alice\r\n")
    assert "REMOTE_USER" not in env and "HTTP_REMOTE_USER" not in env
