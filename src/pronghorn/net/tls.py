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


def check(cfg: Any) -> None:
    """In the master, before anything is bound: the SSL settings make a context, or ``ConfigError``
    naming the setting at fault."""
    if not enabled(cfg):
        return
    if not cfg.certfile:
        raise ConfigError(f"Invalid value for keyfile: {cfg.keyfile!r} (certfile must be set with it)")
    if cfg.proxy_protocol != "off":  # the header precedes the handshake: the TLS layer would read it
        raise ConfigError(f"Invalid value for proxy_protocol: {cfg.proxy_protocol!r} (not available yet together "
                          "with TLS; use 'off')")
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
