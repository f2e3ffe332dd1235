"""The one request cycle every worker runs.

``pre_request`` hook → environ → the WSGI app → iterate the body into the response → ``close()`` →
access log → ``post_request`` hook. Workers bring the parsed request head, a body source and a
response sink; they never call the application themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pronghorn import SERVER_SOFTWARE
from pronghorn.apps.environ import build_environ, shared_environ
from pronghorn.apps.forwarding import ForwardingPolicy
from pronghorn.apps.wsgi import NO_BODY, BodySource, ClientDisconnected, FileWrapper, InputStream, Response, ResponseSink
from pronghorn.http import Limits, ProtocolError, RequestHead, ResponseFramer

if TYPE_CHECKING:
    from pronghorn.workers.base import Worker

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# ``wsgi.input`` of every request without a body: nothing to read, so it never changes.
EMPTY_INPUT = InputStream(NO_BODY)


class RequestTimedOut(Exception):
    """The application ran past ``request_timeout``; the request is answered 504 if still possible."""


class Request:
    """The request as hooks see it (``pre_request(worker, req)``), with Gunicorn's attribute names."""

    def __init__(self, head: RequestHead, peer: Any, scheme: str, body: InputStream | None = None) -> None:
        self.head = head
        self.method = head.method.decode("ascii")
        self.uri = head.target.decode("latin-1")
        self.path = head.path.decode("latin-1")
        self.query = head.query.decode("latin-1")
        self.fragment = head.fragment.decode("latin-1")
        self.version = head.version
        self.headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers]
        self.scheme = scheme
        self.peer_addr = peer
        self.remote_addr = peer
        self.body = body

    def should_close(self) -> bool:
        return not self.head.keep_alive


class ClientConnection:
    """One client connection as the request cycle sees it (the same for all its requests)."""

    __slots__ = ("peer", "remote", "trusted", "limits", "url_scheme", "environ")

    def __init__(
        self,
        peer: tuple[str, int] | str | None,
        remote: tuple[str, str | None],
        trusted: bool,
        limits: Limits,
        url_scheme: str,
        environ: dict[str, Any],
    ) -> None:
        self.peer = peer
        self.remote = remote  # REMOTE_ADDR and REMOTE_PORT
        self.trusted = trusted  # a proxy in forwarded_allow_ips: its scheme and forwarder headers count
        self.limits = limits  # for this connection's parser
        self.url_scheme = url_scheme
        self.environ = environ  # the entries every request's environ starts from (shared by a listener's connections)


def _path(head: RequestHead, environ: dict[str, Any] | None) -> str:
    return environ["PATH_INFO"] if environ is not None else head.path.decode("latin-1")


class RequestCycle:
    """Runs requests through the worker's application; one instance per worker process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.cfg = worker.cfg
        self.log = worker.log
        cfg = worker.cfg
        self.multiprocess = cfg.workers > 1
        # As Gunicorn: SCRIPT_NAME from the environment, where ``raw_env`` (-e) entries win.
        self.script_name = cfg.env.get("SCRIPT_NAME", cfg.environ.get("SCRIPT_NAME", ""))
        self.server_header = SERVER_SOFTWARE.split("/")[0].encode("ascii")
        self.sendfile = cfg.sendfile_enabled
        # Hooks left at their defaults cost nothing per request (the default pre_request only logs
        # at debug level).
        self.pre_request = _configured_hook(cfg, "pre_request", keep_default=cfg.loglevel == "debug")
        self.post_request = _configured_hook(cfg, "post_request")
        self.needs_request = bool(self.pre_request or self.post_request or worker.log.access_enabled)
        self.forwarding = ForwardingPolicy(cfg.forwarded_allow_ips, cfg.secure_scheme_headers, cfg.forwarder_headers)
        limits = dict(
            limit_request_line=cfg.limit_request_line,
            limit_request_fields=cfg.limit_request_fields,
            limit_request_field_size=cfg.limit_request_field_size,
            limit_request_body=cfg.limit_request_body,
            permit_obsolete_folding=cfg.permit_obsolete_folding,
            strip_header_spaces=cfg.strip_header_spaces,
            permit_unconventional_http_method=cfg.permit_unconventional_http_method,
            permit_unconventional_http_version=cfg.permit_unconventional_http_version,
            casefold_http_method=cfg.casefold_http_method,
            header_map=cfg.header_map,
        )
        self._shared_environs: dict[tuple[Any, str, bool], dict[str, Any]] = {}
        self._untrusted_limits = Limits.from_settings(**limits)
        self._trusted_limits = Limits.from_settings(**limits, forwarder_headers=cfg.forwarder_headers)

    def connection(
        self,
        peer: tuple[str, int] | str | None,
        server: tuple[str, int] | str,
        *,
        url_scheme: str = "http",
        multithread: bool = False,
        sock: Any = None,
    ) -> ClientConnection:
        """What every request on a new connection shares, worked out once."""
        trusted = self.forwarding.trusts(peer)
        key = (server, url_scheme, multithread)
        environ = self._shared_environs.get(key)
        if environ is None:
            environ = self._shared_environs[key] = shared_environ(
                server=server, url_scheme=url_scheme, multithread=multithread, multiprocess=self.multiprocess
            )
        if sock is not None:  # Gunicorn's sync worker shows the socket to the app; one connection's own
            environ = {**environ, "pronghorn.socket": sock, "gunicorn.socket": sock}
        limits = self._trusted_limits if trusted else self._untrusted_limits
        remote = (peer[0], str(peer[1])) if isinstance(peer, tuple) else (peer or "", None)
        return ClientConnection(peer, remote, trusted, limits, url_scheme, environ)

    def run(
        self, head: RequestHead, body: BodySource, sink: ResponseSink, client: ClientConnection, *, keep_alive: bool = True
    ) -> Response:
        """Answer one request; returns the response (``keep_alive`` says if the connection may be reused).

        Raises ``ProtocolError`` before the app runs if the request cannot be accepted (contradictory
        scheme headers from a proxy); the worker answers it like a parse error.
        """
        started = time.monotonic() if self.needs_request else 0.0  # only the access log's %(T)s uses it
        if client.trusted:
            proxy_scheme, forwarded = self.forwarding.from_proxy(head)
            url_scheme = proxy_scheme or client.url_scheme
        else:
            url_scheme, forwarded = client.url_scheme, None
        framer = ResponseFramer(
            request_method=head.method,
            request_version=head.version,
            keep_alive=keep_alive and head.keep_alive,
            server_header=self.server_header,
        )
        response = Response(framer, sink)
        if head.chunked or head.content_length:
            stream = InputStream(body, self._continue_sender(head, response) if head.expect_continue else None)
        else:
            stream = EMPTY_INPUT  # most requests: nothing to read, nothing to allocate
        # The hook-facing request is only built when something will look at it.
        req = Request(head, client.peer, url_scheme, stream) if self.needs_request else None
        if self.pre_request is not None:
            self.worker.call_hook("pre_request", self.worker, req)
        environ: dict[str, Any] | None = None
        try:
            environ = build_environ(
                head,
                client.environ,
                remote=client.remote,
                body=stream,
                url_scheme=url_scheme,
                script_name=self.script_name,
                forwarded=forwarded,
            )
            environ["wsgi.early_hints"] = response.early_hints
            self._call_app(environ, response)
        # One name per handler: compiled (mypyc), a name keeps the type of its first handler.
        except ClientDisconnected as gone:
            response.failed = True
            self.log.debug("Client %s disconnected: %s", client.peer, gone)
        except ProtocolError as bad:  # the request body turned out to be malformed
            response.failed = True
            self.log.warning("Invalid request from ip=%s: %s", client.remote[0], bad)
            if bad.respond and not response.headers_sent:
                response.send_error(bad.status, bad.reason, str(bad))
        except RequestTimedOut as late:
            response.failed = True
            self.log.error("%s: %s %s", late, head.method.decode("ascii"), _path(head, environ))
            if not response.headers_sent:
                response.send_error(504, "Gateway Timeout", "The application did not answer in time.")
        except Exception:
            response.failed = True
            self.log.exception("Error handling request %s", head.target.decode("latin-1"))
            if not response.headers_sent:
                response.send_error(500, "Internal Server Error", "")
        finally:
            if req is not None:
                if environ is None:  # what the logs see if the environ itself could not be built
                    environ = {"RAW_URI": head.target.decode("latin-1"), "REQUEST_METHOD": head.method.decode("ascii")}
                if self.log.access_enabled:
                    self.log.access(response, req, environ, time.monotonic() - started)
                if self.post_request is not None:
                    self.worker.call_hook("post_request", self.worker, req, environ, response)
        return response

    def _call_app(self, environ: dict[str, Any], response: Response) -> None:
        assert self.worker.wsgi is not None
        result = self.worker.wsgi(environ, response.start_response)
        try:
            if not (self.sendfile and isinstance(result, FileWrapper) and response.send_file(result)):
                response.write_all(result)
            response.finish()
        finally:
            # Not asked of a list (the usual body): compiled, a missing attribute costs an exception.
            close = getattr(result, "close", None) if type(result) is not list else None
            if close is not None:
                close()

    @staticmethod
    def _continue_sender(head: RequestHead, response: Response) -> Callable[[], None]:
        def send_continue() -> None:
            # RFC 9110 §10.1.1: only worth sending while the final response has not started.
            if not response.headers_sent:
                response.send(CONTINUE)

        return send_continue


def _configured_hook(cfg: Any, name: str, keep_default: bool = False) -> Callable[..., Any] | None:
    """The hook if it was configured (or ``keep_default``), else None."""
    bound = cfg.settings[name]
    return bound.value if keep_default or bound.value is not bound.setting.default else None
