"""The gevent worker: a greenlet per connection, as Gunicorn's ``gevent`` (``pip install 'pronghorn[gevent]'``).

How this works: the worker monkey-patches the standard library as soon as it is forked (before the
app is loaded; a config file that patched already is fine), then runs an accept greenlet per
listener, which waits for room in a pool of ``worker_connections`` greenlets and hands each new
connection to one. A connection greenlet serves requests one after another on the same blocking
socket code as the ``sync`` worker (the same sans-IO parser and request cycle), keeping the
connection alive between them. The main greenlet refreshes the heartbeat; on a graceful stop it
stops accepting, takes what waits in the listen queue, and waits up to ``graceful_timeout`` for the
connections to finish (each answers its request in hand with ``Connection: close``).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from pronghorn.apps.cycle import RequestTimedOut
from pronghorn.apps.wsgi import ClientDisconnected, ParserBody
from pronghorn.errors import ConfigError
from pronghorn.http import ProtocolError, RequestHead, RequestParser
from pronghorn.net.listeners import Listener
from pronghorn.workers.sync import (
    _IGNORED_SEND_ERRORS,
    DRAIN_LIMIT,
    RECV_SIZE,
    UNKNOWN_BACKLOG_DRAIN,
    SyncWorker,
    _SocketSink,
)

try:
    import gevent
    import gevent.pool
    from gevent import monkey
except ImportError:  # named when the worker class is resolved, at start-up
    raise ConfigError("Invalid value for worker_class: 'gevent' (needs the gevent package: "
                      "pip install 'pronghorn[gevent]')") from None

HEARTBEAT_EVERY = 0.5  # seconds: how often the main greenlet notifies and looks at ``alive``


class GeventWorker(SyncWorker):
    """Gunicorn's ``gevent`` worker class, on pronghorn's HTTP core."""

    def init_process(self) -> None:
        # Before anything else runs in this process (the app, its imports, the TLS context), so
        # that they get the cooperative socket, ssl, time and threading. Patching twice is harmless.
        monkey.patch_all()
        super().init_process()

    def handle(self, listener: Listener, client: socket.socket, addr: Any) -> None:
        self._handle(listener, client, addr)  # (the gauges are the main greenlet's: many connections at once)

    def run(self) -> None:
        self.in_flight = 0
        self.pool = gevent.pool.Pool(self.cfg.worker_connections or None)
        servers = [(listener, _cooperative(listener.socket)) for listener in self.sockets]
        acceptors = [gevent.spawn(self._accept_loop, listener, sock) for listener, sock in servers]
        try:
            while self.alive:
                self.notify()
                if self.metrics is not None:
                    self.metrics.gauges(self.in_flight, len(self.pool))
                if not self.parent_alive():
                    self.alive = False
                    break
                gevent.sleep(HEARTBEAT_EVERY)
        finally:
            gevent.killall(acceptors)
        for listener, sock in servers:
            if self.draining:
                self._take_backlog(listener, sock)
            sock.close()
        self.close_listeners()
        self._wait_for_connections()

    def _accept_loop(self, listener: Listener, sock: socket.socket) -> None:
        while self.alive:
            self.pool.wait_available()
            try:
                client, addr = sock.accept()
            except OSError as exc:
                if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    self.log.warning("accept() failed: %s", exc)
                    gevent.sleep(0.5)  # out of descriptors, say: try again later instead of spinning
                continue
            self.notify()
            self.pool.spawn(self._connection, listener, client, addr)

    def _take_backlog(self, listener: Listener, sock: socket.socket) -> None:
        """After TERM: serve the connections already queued instead of resetting them."""
        queued = listener.queued_connections()
        for _ in range(queued if queued is not None else UNKNOWN_BACKLOG_DRAIN):
            if not _readable(sock):
                break
            try:
                client, addr = sock.accept()
            except OSError:
                break
            self.pool.spawn(self._connection, listener, client, addr)

    def _wait_for_connections(self) -> None:
        graceful = self.cfg.graceful_timeout
        while len(self.pool) and graceful > 0:
            self.notify()
            step = min(HEARTBEAT_EVERY, graceful)
            self.pool.join(timeout=step)
            graceful -= step
        self.pool.kill(block=True, timeout=1)

    def _connection(self, listener: Listener, client: socket.socket, addr: Any) -> None:
        try:
            self.handle(listener, client, addr)
        finally:
            client.close()

    def _serve(self, listener: Listener, client: socket.socket, peer: Any) -> None:
        """Requests one after another on one connection, kept alive between them."""
        assert self.cycle is not None
        cfg = self.cfg
        try:
            client.settimeout(cfg.header_timeout or None)
            proxy, first_bytes = self._read_proxy_header(client, peer)
            connection = self.cycle.connection(peer, listener.server_name, url_scheme=self.url_scheme, sock=client,
                                               multithread=True, proxy=proxy)
            parser = RequestParser(connection.limits)
            if first_bytes:
                parser.feed(first_bytes)
            kept_alive = False
            while True:
                head = self._next_head(client, parser, kept_alive)
                if head is None:
                    return
                if not self._answer(client, parser, head, connection):
                    return
                parser.start_next_request()
                kept_alive = True
        except ProtocolError as exc:
            self.log.warning("Invalid request from ip=%s: %s", peer[0] if isinstance(peer, tuple) else peer, exc)
            if exc.respond:
                self._send_quietly(client, exc.to_response())
        except (socket.timeout, gevent.Timeout):
            self.log.debug("Client %s timed out", peer)
        except OSError as exc:
            if exc.errno not in _IGNORED_SEND_ERRORS:
                self.log.exception("Socket error processing request.")

    def _next_head(self, client: socket.socket, parser: RequestParser, kept_alive: bool) -> RequestHead | None:
        """The next request's head: after a response the client may idle ``keepalive`` seconds before
        it starts, and then has ``header_timeout`` for the whole head (None: the connection ended)."""
        cfg = self.cfg
        if kept_alive and not parser.buffered:
            client.settimeout(cfg.keepalive or None)
            try:
                data = client.recv(RECV_SIZE)
            except socket.timeout:
                return None
            if not data:
                return None
            parser.feed(data)
        client.settimeout(cfg.header_timeout or None)
        with gevent.Timeout(cfg.header_timeout or None):
            return self._read_head(client, parser)

    def _answer(self, client: socket.socket, parser: RequestParser, head: RequestHead, connection: Any) -> bool:
        """Run one request; True if the connection goes on to the next."""
        assert self.cycle is not None
        cfg = self.cfg
        client.settimeout(cfg.header_timeout or None)  # between body chunks, as on the event loop
        body = ParserBody(parser, lambda: client.recv(RECV_SIZE))
        keep_alive = bool(cfg.keepalive) and self.alive
        timeout = gevent.Timeout(cfg.request_timeout or None,
                                 RequestTimedOut(f"Request timed out after {cfg.request_timeout}s"))
        timeout.start()
        self.in_flight += 1
        try:
            response = self.cycle.run(head, body, _SocketSink(client), connection, keep_alive=keep_alive)
        finally:
            timeout.close()
            self.in_flight -= 1
        self.handled_request()
        # A response that said keep-alive is followed by a next request even if the worker is
        # stopping now: that one is answered with "Connection: close" (closing here would reset it).
        if body.broken or response.failed or not response.keep_alive:
            return False
        try:
            return body.drain(DRAIN_LIMIT)  # what the app left of the body, up to the next request
        except (ProtocolError, ClientDisconnected):
            return False


def _cooperative(sock: socket.socket) -> socket.socket:
    """The master's listening socket as a (patched) socket of this worker's own descriptor."""
    return socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))


def _readable(sock: socket.socket) -> bool:
    from gevent import select

    return bool(select.select([sock], [], [], 0)[0])

