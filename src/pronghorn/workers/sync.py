"""The sync worker: one blocking request per connection, as Gunicorn's ``sync``.

How this works: the listeners are non-blocking; the worker accepts until none is waiting, then
sleeps in ``select()`` on the listeners and its signal wake-up pipe (at most ``timeout`` seconds,
refreshing its heartbeat each turn). Each accepted connection is served on a blocking socket:
the HTTP core parses the request, ``RequestCycle`` runs the app, the response is sent with
``Connection: close`` and the socket is closed.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
from typing import IO, Any

from pronghorn.apps.wsgi import ClientDisconnected, ParserBody
from pronghorn.http import CONNECTION_CLOSED, NEED_DATA, ProtocolError, RequestHead, RequestParser
from pronghorn.net.listeners import Listener
from pronghorn.net.proxy_protocol import ProxyInfo
from pronghorn.workers.base import Worker

_IGNORED_SEND_ERRORS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)
RECV_SIZE = 65536
DRAIN_LIMIT = 1 << 20
# Where the accept-queue length cannot be read (unix sockets): how many queued connections to take.
UNKNOWN_BACKLOG_DRAIN = 64


class _SocketSink:
    """A blocking socket with a send timeout (``timeout``): always ready, every write waits for the client."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def ready(self) -> bool:
        return True

    def wait_for_room(self) -> None:
        """Nothing to wait for: each write blocks (bounded by the socket timeout) until sent."""

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def write_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self.sock.sendall(part)

    write_last = write_parts

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        self.sock.sendfile(file, offset, count)


class SyncWorker(Worker):
    def run(self) -> None:
        for listener in self.sockets:
            listener.socket.setblocking(False)
        wait = min(self.timeout, 1.0) if self.timeout > 0 else 1.0
        while self.alive:
            self.notify()
            if self.metrics is not None:
                self.metrics.gauges(0, 0)  # (and counts reach the master while no request comes)
            if not self.parent_alive():
                return
            for listener in self._wait_ready(wait):
                self._accept_all(listener)
                if not self.alive:
                    break
        if self.draining:
            self._serve_backlog()

    def _serve_backlog(self) -> None:
        """After TERM: answer the connections queued at that moment instead of resetting them.

        Only those: under steady traffic the queue never empties, and a worker being replaced
        (HUP, max_requests) must not keep serving new arrivals forever.
        """
        for listener in self.sockets:
            queued = listener.queued_connections()
            limit = queued if queued is not None else UNKNOWN_BACKLOG_DRAIN
            self._accept_all(listener, draining=True, limit=limit)

    def _wait_ready(self, timeout: float) -> list[Listener]:
        try:
            waitables: list[Listener | int] = [*self.sockets, self.wake_fd]
            ready, _, _ = select.select(waitables, [], [], timeout)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return []
            raise
        if self.wake_fd in ready:
            try:
                while os.read(self.wake_fd, 4096):
                    pass
            except BlockingIOError:
                pass
        return [r for r in ready if isinstance(r, Listener)]

    def _accept_all(self, listener: Listener, *, draining: bool = False, limit: int = -1) -> None:
        """Accept and serve until nothing waits, ``limit`` connections were taken, or (unless
        draining) the worker must stop."""
        while (self.alive or draining) and limit != 0:
            limit -= 1
            try:
                client, addr = listener.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            self.notify()
            try:
                self.handle(listener, client, addr)
            finally:
                client.close()

    def handle(self, listener: Listener, client: socket.socket, addr: Any) -> None:
        if self.metrics is None:
            self._handle(listener, client, addr)
            return
        self.metrics.gauges(1, 1)  # one connection, one request at a time
        try:
            self._handle(listener, client, addr)
        finally:
            self.metrics.gauges(0, 0)

    def _handle(self, listener: Listener, client: socket.socket, addr: Any) -> None:
        client.setblocking(True)
        if self.cfg.timeout:
            client.settimeout(self.cfg.timeout)
        peer = (addr[0], addr[1]) if isinstance(addr, tuple) else (addr or None)
        if self.tls is not None:
            client = self._handshake(client, peer)
            if client is None:
                return
        try:
            self._serve(listener, client, peer)
        finally:
            client.close()  # the TLS socket when there is one (the plain one is closed by the caller)

    def _handshake(self, client: socket.socket, peer: Any) -> ssl.SSLSocket | None:
        """TLS before the request, under the socket's timeout; None if it did not complete."""
        assert self.tls is not None
        try:
            tls_client = self.tls.wrap_socket(client, server_side=True,
                                              do_handshake_on_connect=self.cfg.do_handshake_on_connect,
                                              suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            self.log.debug("TLS handshake with %s failed: %s", peer, exc)
            return None
        try:
            tls_client.do_handshake()  # (done already when do_handshake_on_connect is set)
        except (OSError, ValueError) as exc:
            self.log.debug("TLS handshake with %s failed: %s", peer, exc)
            tls_client.close()
            return None
        return tls_client

    def _serve(self, listener: Listener, client: socket.socket, peer: Any) -> None:
        assert self.cycle is not None
        url_scheme = self.url_scheme
        try:
            proxy, first_bytes = self._read_proxy_header(client, peer)
            connection = self.cycle.connection(peer, listener.server_name, url_scheme=url_scheme, sock=client,
                                               proxy=proxy)
            parser = RequestParser(connection.limits)
            if first_bytes:  # (feeding b"" would mean the end of input)
                parser.feed(first_bytes)
            head = self._read_head(client, parser)
            if head is None:
                return
            body = ParserBody(parser, lambda: client.recv(RECV_SIZE))
            # sync answers one request per connection
            self.cycle.run(head, body, _SocketSink(client), connection, keep_alive=False)
            self.handled_request()
            if not body.broken:
                # Read what the app left of a small body, so closing does not reset the connection
                # (a reset can discard the response before the client has read it) -- also after
                # an app error, whose 500 would otherwise be lost the same way.
                client.settimeout(1.0)
                try:
                    body.drain(DRAIN_LIMIT)
                except (ProtocolError, ClientDisconnected):
                    pass  # the response is out; the connection closes either way
        except ProtocolError as exc:
            self.log.warning("Invalid request from ip=%s: %s", peer[0] if isinstance(peer, tuple) else peer, exc)
            if exc.respond:
                self._send_quietly(client, exc.to_response())
        except socket.timeout:
            self.log.debug("Client %s timed out", peer)
        except ssl.SSLError as exc:  # a forged record, or (suppress_ragged_eofs off) an end without close_notify
            self.log.debug("TLS with %s failed: %s", peer, exc)
        except OSError as exc:
            if exc.errno not in _IGNORED_SEND_ERRORS:
                self.log.exception("Socket error processing request.")

    @property
    def url_scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def _read_proxy_header(self, client: socket.socket, peer: Any) -> tuple[ProxyInfo | None, bytes]:
        """The PROXY header, if the settings look for one and it came; and the bytes after it."""
        assert self.cycle is not None
        data = b""
        while (found := self.cycle.proxy_header(data, peer)) is None:
            chunk = client.recv(RECV_SIZE)
            if not chunk:
                return None, data  # the parser sees the same end of input
            data += chunk
        info, used = found
        return info, data[used:]

    @staticmethod
    def _read_head(client: socket.socket, parser: RequestParser) -> RequestHead | None:
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                parser.feed(client.recv(RECV_SIZE))
            elif event is CONNECTION_CLOSED:
                return None
            elif isinstance(event, RequestHead):
                return event
            else:
                raise AssertionError(f"unexpected event before a request head: {event!r}")

    @staticmethod
    def _send_quietly(client: socket.socket, data: bytes) -> None:
        try:
            client.sendall(data)
        except OSError:
            pass
