"""The PEP 3333 environ of one request."""

from __future__ import annotations

import sys
from typing import IO, Any

from pronghorn import SERVER_SOFTWARE
from pronghorn.apps.wsgi import FileWrapper, InputStream
from pronghorn.http import RequestHead
from pronghorn.http.grammar import HEXDIG


_UNPREFIXED = {b"CONTENT-TYPE": "CONTENT_TYPE", b"CONTENT-LENGTH": "CONTENT_LENGTH"}
_FROM_SERVER = ("SERVER_NAME", "SERVER_PORT")
_PERCENT = 0x25  # "%" as an int: ``b"%" in path`` raises and clears a TypeError inside (performance.md)
# Environ key per header name as received (the same few names arrive on every request).
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 1024


def _environ_key(raw_name: bytes) -> str:
    key = _UNPREFIXED.get(raw_name) or "HTTP_" + raw_name.decode("latin-1").replace("-", "_")
    if len(_KEYS) >= _KEYS_MAX:  # bounded: a client sending ever new names must not grow it forever
        _KEYS.clear()
    _KEYS[raw_name] = key
    return key


def unquote_to_bytes(data: bytes) -> bytes:
    """``urllib.parse.unquote_to_bytes`` for bytes: "%XX" decoded, any other "%" kept as it is.

    Here rather than imported: ``urllib.parse`` costs every worker ~0.3 MiB for this one function.
    """
    first, *rest = data.split(b"%")
    if not rest:
        return data
    out = [first]
    for item in rest:
        pair = item[:2]
        if len(pair) == 2 and not pair.translate(None, HEXDIG):
            out.append(bytes((int(pair, 16),)))
            out.append(item[2:])
        else:
            out.append(b"%")
            out.append(item)
    return b"".join(out)


class ScriptNameMismatch(ValueError):
    """The request path is outside SCRIPT_NAME: a deployment problem, answered 500."""


def _split_host(host: str, url_scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host value (used for unix sockets, which have no port)."""
    if not host:
        return "", ""
    if host.startswith("["):  # [v6]:port
        name, _, rest = host.partition("]")
        name += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, sep, port = host.rpartition(":")
        if not sep:
            name, port = host, ""
    return name, port or ("443" if url_scheme == "https" else "80")


def shared_environ(
    *,
    server: tuple[str, int] | str,
    url_scheme: str,
    multithread: bool,
    multiprocess: bool,
    errors: IO[str] = sys.stderr,
) -> dict[str, Any]:
    """The environ entries every request on a listener shares; ``build_environ`` copies them."""
    environ: dict[str, Any] = {
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input_terminated": True,
        "wsgi.errors": errors,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    if isinstance(server, tuple):
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    return environ


def build_environ(
    head: RequestHead,
    shared: dict[str, Any],
    *,
    remote: tuple[str, str | None],
    body: InputStream,
    url_scheme: str,
    script_name: str,
    forwarded: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The PEP 3333 environ for one request: a fresh dict from the listener's ``shared`` entries.

    ``remote`` is REMOTE_ADDR and REMOTE_PORT (None for a unix socket, which has no port).

    ``script_name`` comes from the server's environment; ``forwarded`` holds what a trusted proxy
    set (``SCRIPT_NAME``, ``PATH_INFO``, ``REMOTE_USER``...), which wins.
    """
    if forwarded:
        script_name = forwarded.get("SCRIPT_NAME", script_name)
        path_info = forwarded.get("PATH_INFO") or unquote_to_bytes(head.path).decode("latin-1")
    else:
        path = head.path
        # Percent-decoding is only needed where there is a "%" (most paths have none).
        path_info = (unquote_to_bytes(path) if _PERCENT in path else path).decode("latin-1")
    script_name = script_name.rstrip("/")
    if script_name:
        if path_info != script_name and not path_info.startswith(script_name + "/"):
            raise ScriptNameMismatch(f"Request path {path_info!r} does not start with SCRIPT_NAME {script_name!r}")
        path_info = path_info[len(script_name) :]
    environ = shared.copy()
    environ["REQUEST_METHOD"] = head.method.decode("ascii")
    environ["SCRIPT_NAME"] = script_name
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = head.query.decode("latin-1")
    environ["RAW_URI"] = head.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if head.version == (1, 1) else head.http_version
    environ["wsgi.input"] = body
    if url_scheme != environ["wsgi.url_scheme"]:
        environ["wsgi.url_scheme"] = url_scheme
    host_header = ""
    for raw_name, raw_value in head.headers:
        value = raw_value.decode("latin-1")
        # Match the name as received: "Content_Length" (kept by header_map=dangerous) must stay an
        # HTTP_ variable and never become the CONTENT_LENGTH the body was framed by.
        key = _KEYS.get(raw_name) or _environ_key(raw_name)
        if raw_name == b"HOST":
            host_header = value
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if forwarded:
        environ.update(forwarded)
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = script_name, path_info
        for key in _FROM_SERVER:  # the socket's own addresses are not the proxy's to change
            if key in shared:
                environ[key] = shared[key]
    environ["REMOTE_ADDR"], port = remote
    if port is not None:
        environ["REMOTE_PORT"] = port
    if "SERVER_NAME" not in shared:  # a unix socket has no name or port: take them from Host
        environ["SERVER_NAME"], environ["SERVER_PORT"] = _split_host(host_header, url_scheme)
    return environ
