"""TLS for every worker: the server context made from the SSL settings and the ``ssl_context`` hook.

TLS is on when ``certfile`` or ``keyfile`` is set, and then on every listener. The master checks at
start-up (and on HUP) that the files load, so a missing or unreadable one is a one-line error naming
its setting; each worker makes its own context after the fork, so new workers (HUP) read renewed
certificates from disk without a restart.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from pronghorn.errors import ConfigError

ALPN_PROTOCOLS = ["http/1.1"]  # h2 joins it with HTTP/2
RECORD_SIZE = 16 * 1024  # the most plain bytes one TLS record carries: one read takes a record


def enabled(cfg: Any) -> bool:
    return bool(cfg.certfile or cfg.keyfile)


def default_context(cfg: Any) -> ssl.SSLContext:
    """The context the SSL settings describe (what ``default_ssl_context_factory()`` returns)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.ca_certs)
    context.load_cert_chain(certfile=cfg.certfile, keyfile=cfg.keyfile)
    context.verify_mode = ssl.VerifyMode(cfg.cert_reqs)
    if cfg.ciphers:
        context.set_ciphers(cfg.ciphers)
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


def server_context(cfg: Any) -> ssl.SSLContext | None:
    """In a worker: the ``ssl_context`` hook's answer, given the default factory; None without TLS."""
    if not enabled(cfg):
        return None
    context = cfg.ssl_context(cfg, lambda: default_context(cfg))
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"the ssl_context hook returned {type(context).__name__}, not an ssl.SSLContext")
    return context


def check(cfg: Any, worker_class: type) -> None:
    """In the master, before anything is bound: the SSL settings make a context, or ``ConfigError``
    naming the setting at fault."""
    if not enabled(cfg):
        return
    if not cfg.certfile:
        raise ConfigError(f"Invalid value for keyfile: {cfg.keyfile!r} (certfile must be set with it)")
    if cfg.proxy_protocol != "off" and not getattr(worker_class, "proxy_header_before_tls", False):
        # The header precedes the handshake; this worker's TLS socket would take it for a handshake.
        raise ConfigError(f"Invalid value for proxy_protocol: {cfg.proxy_protocol!r} (not available together "
                          f"with TLS on the {worker_class.__name__}; use 'off' or the default worker)")
    for name in ("certfile", "keyfile", "ca_certs"):
        path = getattr(cfg, name)
        if path and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable"
            raise ConfigError(f"Invalid value for {name}: {path!r} ({why})")
    if cfg.cert_reqs not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
        raise ConfigError(f"Invalid value for cert_reqs: {cfg.cert_reqs!r} (expected 0, 1 or 2)")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.ca_certs)
    except ssl.SSLError as exc:
        raise ConfigError(f"Invalid value for ca_certs: {cfg.ca_certs!r} ({_reason(exc)})") from None
    try:
        context.load_cert_chain(certfile=cfg.certfile, keyfile=cfg.keyfile)
    except ssl.SSLError as exc:
        name, path = ("keyfile", cfg.keyfile) if cfg.keyfile else ("certfile", cfg.certfile)
        raise ConfigError(
            f"Invalid value for {name}: {path!r} (the certificate and key do not load: {_reason(exc)})"
        ) from None
    if cfg.ciphers:
        try:
            context.set_ciphers(cfg.ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"Invalid value for ciphers: {cfg.ciphers!r} ({_reason(exc)})") from None


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's words: ``str()`` of an SSLError made from one string shows a tuple."""
    return str(exc.strerror or (exc.args[-1] if exc.args else exc))


class TlsStream:
    """One connection's TLS on memory buffers, for a protocol that does its own socket I/O.

    The event-loop worker feeds it what the socket received and gets plain bytes back, and has it
    encrypt what goes out; the bytes to send (handshake messages, alerts, records) are taken with
    ``take_output``. One call per direction per batch, through the C object behind ``ssl.SSLObject``
    (no Python frame, no exception for "no more data" in the usual case): the same OpenSSL work as
    an ``ssl=`` transport for about half the interpreter's part (bench/tls_records.py). The PROXY
    header, which comes before the handshake, is read by the connection before it gets here.
    """

    __slots__ = ("_incoming", "_outgoing", "_ssl", "established", "peer_closed")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        wrapped = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # ``SSLObject`` forwards every call to this object; it has the same methods.
        self._ssl: Any = getattr(wrapped, "_sslobj", wrapped)
        self.established = False  # the handshake completed
        self.peer_closed = False  # close_notify came: no more bytes from the peer

    def receive(self, data: bytes) -> bytes:
        """The plain bytes in what the peer sent (b"" while the handshake runs or a record is
        incomplete); ``peer_closed`` tells when close_notify came after them. Raises ``ssl.SSLError``
        on a failure, when ``take_output`` may hold the alert to send."""
        incoming = self._incoming
        incoming.write(data)
        tls = self._ssl
        if not self.established:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        chunks = []
        while True:
            try:
                chunk = tls.read(RECORD_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            chunks.append(chunk)
            if not incoming.pending and not tls.pending():
                break  # everything received is decrypted: another read would only say "want read"
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, data: bytes | memoryview) -> bytes:
        """The records carrying ``data``, with anything else waiting to go out before them."""
        self._ssl.write(data)
        return self._outgoing.read()

    def encrypt_parts(self, parts: list[bytes]) -> bytes:
        tls = self._ssl
        for part in parts:
            tls.write(part)
        return self._outgoing.read()

    def take_output(self) -> bytes:
        """Bytes TLS itself has to send (handshake, tickets, alerts, key updates); b"" if none."""
        outgoing = self._outgoing
        return outgoing.read() if outgoing.pending else b""

    def close_notify(self) -> None:
        """End TLS for our side (the alert goes with ``take_output``); the peer's is not waited for."""
        if self.established:
            try:
                self._ssl.shutdown()
            except ssl.SSLError:
                pass  # "want read": the peer's close_notify, which nothing waits for

