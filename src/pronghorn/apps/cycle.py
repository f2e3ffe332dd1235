"""The one request cycle every worker runs.

``pre_request`` hook → environ → the WSGI app → pull the body into the response → ``close()`` →
access log → ``post_request`` hook. Workers bring the parsed request head, a body source and a
response sink; they never call the application themselves.

One request is an ``Exchange``, driven by ``step()``: the first call runs the app, later calls pull
more of its response iterable. A step stops pulling while the sink is not ``ready()`` (the client is
not taking what was written) and returns False; the worker calls ``step()`` again once the client has
caught up. So a blocking worker runs a request in one step, and an event-loop worker parks a response
to a slow reader without holding a thread or buffering more than one item ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from time import monotonic  # a module global: no attribute look-up per call
from typing import Any

from pronghorn import SERVER_SOFTWARE
from pronghorn.apps.environ import build_environ, shared_environ
from pronghorn.apps.forwarding import AllowedPeers, ForwardingPolicy
from pronghorn.apps.wsgi import NO_BODY, BodySource, ClientDisconnected, FileWrapper, InputStream, Response, ResponseSink
from pronghorn.http import Limits, ProtocolError, RequestHead, ResponseFramer
from pronghorn.net.proxy_protocol import NO_HEADER, ForbiddenProxyRequest, ProxyInfo, read_proxy_header

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# ``wsgi.input`` of every request without a body: nothing to read, so it never changes.
EMPTY_INPUT = InputStream(NO_BODY)
_END = object()  # what next() gives once a response iterable is exhausted


class RequestTimedOut(Exception):
    """The application ran past ``request_timeout``; the request is answered 504 if still possible."""


class WorkerAborted(BaseException):
    """The master aborted this worker (``timeout``) while the application ran a request on the worker's
    own thread: the request is answered 500 if still possible, then the worker exits. A BaseException,
    so an application's ``except Exception`` does not swallow it."""


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

    __slots__ = ("peer", "remote", "trusted", "limits", "url_scheme", "environ", "addresses")

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
        self.addresses: tuple[Any, Any] | None = None  # an ASGI scope's "client" and "server", once worked out


class CycleSettings:
    """The settings the request cycle reads, taken from the configuration once per worker."""

    __slots__ = (
        "multiprocess", "script_name", "sendfile", "forwarding", "untrusted_limits", "trusted_limits", "proxy_mode",
        "proxy_peers",
    )

    def __init__(self, cfg: Any) -> None:
        self.multiprocess: bool = cfg.workers > 1
        # As Gunicorn: SCRIPT_NAME from the environment, where ``raw_env`` (-e) entries win.
        self.script_name: str = cfg.env.get("SCRIPT_NAME", cfg.environ.get("SCRIPT_NAME", ""))
        self.sendfile: bool = cfg.sendfile_enabled
        self.forwarding = ForwardingPolicy(cfg.forwarded_allow_ips, cfg.secure_scheme_headers, cfg.forwarder_headers)
        self.proxy_mode: str = cfg.proxy_protocol  # "off": no connection is looked at for a PROXY header
        self.proxy_peers = AllowedPeers(cfg.proxy_allow_ips)
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
        self.untrusted_limits = Limits.from_settings(**limits)
        self.trusted_limits = Limits.from_settings(**limits, forwarder_headers=cfg.forwarder_headers)


class CycleHooks:
    """The per-request hooks and logs, each None when nothing would happen (the default hooks)."""

    __slots__ = ("pre_request", "post_request", "access", "metrics")

    def __init__(
        self,
        pre_request: Callable[[Request], None] | None = None,
        post_request: Callable[[Request, dict[str, Any], Response], None] | None = None,
        access: Callable[[Response, Request, dict[str, Any], timedelta], None] | None = None,
        metrics: Any = None,
    ) -> None:
        self.pre_request = pre_request
        self.post_request = post_request
        self.access = access
        self.metrics = metrics  # a ``pronghorn.metrics.Metrics``


class RequestCycle:
    """Runs requests through one worker's application."""

    def __init__(self, app: Callable[..., Any], settings: CycleSettings, log: Any, hooks: CycleHooks) -> None:
        self.app = app
        self.settings = settings
        self.log = log
        self.pre_request = hooks.pre_request
        self.post_request = hooks.post_request
        self.access = hooks.access
        self.metrics = hooks.metrics
        # The hook-facing request (and the clock) only when something will look at them.
        self.needs_request = bool(hooks.pre_request or hooks.post_request or hooks.access)
        self.timed = self.needs_request or hooks.metrics is not None
        self.server_header = SERVER_SOFTWARE.split("/")[0].encode("ascii")
        self.forwarding = settings.forwarding
        self._shared_environs: dict[tuple[Any, str, bool], dict[str, Any]] = {}

    def connection(
        self,
        peer: tuple[str, int] | str | None,
        server: tuple[str, int] | str,
        *,
        url_scheme: str = "http",
        multithread: bool = False,
        sock: Any = None,
        proxy: ProxyInfo | None = None,
    ) -> ClientConnection:
        """What every request on a new connection shares, worked out once (``proxy``: what its PROXY
        header said, which sets REMOTE_ADDR and the PROXY_* entries; trust stays the peer's own)."""
        trusted = self.forwarding.trusts(peer)
        key = (server, url_scheme, multithread)
        environ = self._shared_environs.get(key)
        if environ is None:
            environ = self._shared_environs[key] = shared_environ(
                server=server, url_scheme=url_scheme, multithread=multithread, multiprocess=self.settings.multiprocess
            )
        if sock is not None:  # Gunicorn's sync worker shows the socket to the app; one connection's own
            environ = {**environ, "pronghorn.socket": sock, "gunicorn.socket": sock}
        limits = self.settings.trusted_limits if trusted else self.settings.untrusted_limits
        remote = (peer[0], str(peer[1])) if isinstance(peer, tuple) else (peer or "", None)
        if proxy is not None:
            environ = {**environ, **proxy.environ()}
            if proxy.client is not None:
                remote = (proxy.client[0], str(proxy.client[1]))
        return ClientConnection(peer, remote, trusted, limits, url_scheme, environ)

    def proxy_header(self, data: bytes, peer: tuple[str, int] | str | None) -> tuple[ProxyInfo | None, int] | None:
        """A new connection's first bytes: None while more are needed, else the PROXY header (None if
        there is none, or the mode is off) and the bytes it took. ``ProtocolError`` for a malformed
        header (400) or one from a peer outside ``proxy_allow_ips`` (403)."""
        mode = self.settings.proxy_mode
        if mode == "off":
            return NO_HEADER
        found = read_proxy_header(data, mode)
        if found is not None and found[0] is not None and not self.settings.proxy_peers.allows(peer):
            raise ForbiddenProxyRequest(f"PROXY header from {peer[0] if isinstance(peer, tuple) else peer}, "
                                        "which is not in proxy_allow_ips")
        return found

    def start(
        self, head: RequestHead, body: BodySource, sink: ResponseSink, client: ClientConnection, *, keep_alive: bool = True
    ) -> Exchange:
        """One request, ready to run: its first ``step()`` calls the app.

        Raises ``ProtocolError`` if the request cannot be accepted (contradictory scheme headers from
        a proxy); the worker answers it like a parse error.
        """
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
        return Exchange(self, head, body, Response(framer, sink), client, url_scheme, forwarded)

    def run(
        self, head: RequestHead, body: BodySource, sink: ResponseSink, client: ClientConnection, *, keep_alive: bool = True
    ) -> Response:
        """Answer one request in one go (a sink that is always ready: the blocking worker's)."""
        exchange = self.start(head, body, sink, client, keep_alive=keep_alive)
        while not exchange.step():
            pass
        return exchange.response


class Exchange:
    """One request and its response, from the app call to the last log line (see the module doc)."""

    __slots__ = (
        "cycle", "head", "client", "response", "stream", "url_scheme", "forwarded", "req", "environ",
        "started", "result", "iterator", "called", "sent_file", "done",
    )

    def __init__(
        self,
        cycle: RequestCycle,
        head: RequestHead,
        body: BodySource,
        response: Response,
        client: ClientConnection,
        url_scheme: str,
        forwarded: Any,
    ) -> None:
        self.cycle = cycle
        self.head = head
        self.client = client
        self.response = response
        self.url_scheme = url_scheme
        self.forwarded = forwarded
        if head.chunked or head.content_length:
            self.stream = InputStream(body, _continue_sender(response) if head.expect_continue else None)
        else:
            self.stream = EMPTY_INPUT  # most requests: nothing to read, nothing to allocate
        self.req: Request | None = None
        self.environ: dict[str, Any] | None = None
        self.started = 0.0
        self.result: Any = None
        self.iterator: Iterator[bytes] | None = None
        self.called = False  # the app has been called
        self.sent_file = False  # the body is a file the sink sends (step() waits for it before close())
        self.done = False

    def step(self) -> bool:
        """Run the app (first call) or pull more of its body while the sink is ready; True once the
        response is complete and the request logged, False if it waits for the client."""
        response = self.response
        try:
            if not self.called:
                self.called = True
                self._call_app()
            iterator = self.iterator
            sink = response.sink
            if iterator is not None:
                while sink.ready():
                    chunk = next(iterator, _END)
                    if chunk is _END:
                        self.iterator = None
                        break
                    if chunk or not response.headers_sent:
                        response.write(chunk)  # type: ignore[arg-type]
                else:
                    return False
            elif self.sent_file and not sink.ready():  # the file is still being sent: close() waits
                return False
            response.finish()
        # One name per handler: compiled (mypyc), a name keeps the type of its first handler.
        except ClientDisconnected as gone:
            response.failed = True
            self.cycle.log.debug("Client %s disconnected: %s", self.client.peer, gone)
        except ProtocolError as bad:  # the request body turned out to be malformed
            response.failed = True
            self.cycle.log.warning("Invalid request from ip=%s: %s", self.client.remote[0], bad)
            if bad.respond and not response.headers_sent:
                response.send_error(bad.status, bad.reason, str(bad))
        except RequestTimedOut as late:
            self.fail(504, "Gateway Timeout", str(late))
        except WorkerAborted:
            self.fail(500, "Internal Server Error", "Worker timed out (aborted by the master)")
        except Exception:
            response.failed = True
            self.cycle.log.exception("Error handling request %s %s", self.head.method.decode("ascii"),
                                     self.head.target.decode("latin-1"))
            if not response.headers_sent:
                response.send_error(500, "Internal Server Error", "")
        self.finalise()
        return True

    def fail(self, status: int, reason: str, why: str) -> None:
        """The request was cut short (a timeout): logged once, answered ``status`` if nothing was sent."""
        response = self.response
        response.failed = True
        head = self.head
        path = self.environ["PATH_INFO"] if self.environ is not None else head.path.decode("latin-1")
        self.cycle.log.error("%s: %s %s", why, head.method.decode("ascii"), path)
        if not response.headers_sent:
            try:
                response.send_error(status, reason, "The application did not answer in time.")
            except ClientDisconnected:
                pass

    def _call_app(self) -> None:
        cycle = self.cycle
        head = self.head
        response = self.response
        if cycle.timed:
            self.started = monotonic()  # only the access log's %(T)s and the metrics use it
        if cycle.needs_request:
            self.req = Request(head, self.client.peer, self.url_scheme, self.stream)
            if cycle.pre_request is not None:
                cycle.pre_request(self.req)
        environ = build_environ(
            head,
            self.client.environ,
            remote=self.client.remote,
            body=self.stream,
            url_scheme=self.url_scheme,
            script_name=cycle.settings.script_name,
            forwarded=self.forwarded,
        )
        self.environ = environ
        environ["wsgi.early_hints"] = response.early_hints
        result = self.result = cycle.app(environ, response.start_response)
        if cycle.settings.sendfile and isinstance(result, FileWrapper) and response.send_file(result):
            self.sent_file = True
            return
        if not response.write_whole(result):
            self.iterator = iter(result)

    def finalise(self) -> None:
        """``close()`` the body iterable, then the access log and ``post_request`` (once)."""
        if self.done:
            return
        self.done = True
        self.iterator = None
        cycle = self.cycle
        result = self.result
        try:
            # Not asked of a list (the usual body): compiled, a missing attribute costs an exception.
            close = getattr(result, "close", None) if result is not None and type(result) is not list else None
            if close is not None:
                close()
        except Exception:
            self.response.failed = True
            cycle.log.exception("Error closing the response of %s", self.head.target.decode("latin-1"))
        finally:
            took = monotonic() - self.started if cycle.timed else 0.0
            if cycle.metrics is not None:
                cycle.metrics.request(self.head.method, self.response.status_code, took)
            req = self.req
            if req is not None:
                environ = self.environ
                if environ is None:  # what the logs see if the environ itself could not be built
                    environ = {"RAW_URI": self.head.target.decode("latin-1"), "REQUEST_METHOD": self.head.method.decode("ascii")}
                if cycle.access is not None:
                    cycle.access(self.response, req, environ, timedelta(seconds=took))
                if cycle.post_request is not None:
                    cycle.post_request(req, environ, self.response)


def _continue_sender(response: Response) -> Callable[[], None]:
    def send_continue() -> None:
        # RFC 9110 §10.1.1: only worth sending while the final response has not started.
        if not response.headers_sent:
            response.send(CONTINUE)

    return send_continue
