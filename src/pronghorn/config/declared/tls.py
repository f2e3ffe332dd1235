"""Settings of the "SSL" section: serving HTTPS directly from pronghorn.

TLS is on when ``certfile`` or ``keyfile`` is set. Anything these settings cannot express is done in
the ``ssl_context`` hook (see ``hooks.py``), which gets the context built from them.
"""

from __future__ import annotations

import ssl

from pronghorn.config import validators
from pronghorn.config.setting import Setting

SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="keyfile",
        section="SSL",
        cli=("--keyfile",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="File holding the server's TLS private key (PEM).",
    ),
    Setting(
        name="certfile",
        section="SSL",
        cli=("--certfile",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="File holding the server's TLS certificate chain (PEM); setting it (or keyfile) turns TLS on.",
    ),
    Setting(
        name="ssl_version",
        section="SSL",
        cli=("--ssl-version",),
        validator=validators.integer,
        default=int(ssl.PROTOCOL_TLS),
        default_doc="`2` (`ssl.PROTOCOL_TLS`)",
        deprecated="ignored, as in Gunicorn; choose protocol versions in the ssl_context hook",
        desc="Deprecated and ignored; kept so that old configurations still load.",
        details=(
            "To restrict protocol versions, set `minimum_version` on the context in the `ssl_context` "
            "hook.",
            "Differs from Gunicorn: the value must be an integer (an `ssl.PROTOCOL_*` constant); "
            "Gunicorn accepts anything here.",
        ),
    ),
    Setting(
        name="cert_reqs",
        section="SSL",
        cli=("--cert-reqs",),
        validator=validators.positive_integer,
        default=int(ssl.CERT_NONE),
        default_doc="`0` (`ssl.CERT_NONE`)",
        desc="Whether clients must present a certificate: 0 never asks, 1 asks (optional), 2 requires one.",
        details=("The numbers are Python's `ssl.CERT_NONE`, `ssl.CERT_OPTIONAL` and `ssl.CERT_REQUIRED`.",),
    ),
    Setting(
        name="ca_certs",
        section="SSL",
        cli=("--ca-certs",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="File of CA certificates (PEM) used to check client certificates.",
    ),
    Setting(
        name="suppress_ragged_eofs",
        section="SSL",
        cli=("--suppress-ragged-eofs",),
        action="store_true",
        validator=validators.boolean,
        default=True,
        desc="Treat a TLS connection closed without a close_notify alert as a normal end of data.",
        details=(
            "Off, such a close is an error: the connection is dropped at once, and a request it "
            "carried that has not been answered yet is not answered (a truncation attack could have "
            "cut it). Most clients close without close_notify after their last response, which is "
            "harmless either way.",
            "On by default; the flag cannot turn it off, only a config file can "
            "(`suppress_ragged_eofs = False`).",
        ),
    ),
    Setting(
        name="do_handshake_on_connect",
        section="SSL",
        cli=("--do-handshake-on-connect",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Complete the TLS handshake as soon as a connection is accepted rather than on first read.",
        details=(
            "The `sync` worker passes it to `ssl.SSLContext.wrap_socket`, as Gunicorn does. Either "
            "way the handshake completes before a request is read, under `timeout` on `sync` and "
            "`header_timeout` on the default worker, whose event loop always runs it as the client's "
            "bytes arrive (never on an application thread).",
        ),
    ),
    Setting(
        name="ciphers",
        section="SSL",
        cli=("--ciphers",),
        validator=validators.string,
        default=None,
        desc="OpenSSL cipher list for TLS 1.2 and older, e.g. 'ECDHE+AESGCM'; None keeps Python's defaults.",
        details=("TLS 1.3 suites are not affected by this string.",),
    ),
)
