"""Request limits and HTTP/1 parsing switches.

The "Security" section (size limits, including pronghorn's own ``limit_request_body``) plus the
parser settings Gunicorn files elsewhere: ``http_parser`` ("Worker Processes") and the leniency
switches, ``forwarder_headers`` and ``header_map`` ("Server Mechanics"). All of them reach the
parser through one ``Limits`` value.
"""

from __future__ import annotations

from pronghorn.config import validators
from pronghorn.config.setting import Setting

PARSER_CHOICE = (
    Setting(
        name="http_parser",
        section="Worker Processes",
        cli=("--http-parser",),
        meta="STRING",
        validator=validators.choice("auto", "fast", "python"),
        default="auto",
        pending="pronghorn has one built-in parser, which `auto` selects",
        desc="Which HTTP/1 parser implementation to use: auto, fast or python.",
        details=(
            "Gunicorn chooses between a compiled parser and a pure-Python one. pronghorn has one "
            "parser, strict by construction: `auto` selects it, and the other values stop start-up "
            "instead of being ignored.",
        ),
    ),
)

REQUEST_LIMITS = (
    Setting(
        name="limit_request_line",
        section="Security",
        cli=("--limit-request-line",),
        meta="INT",
        validator=validators.positive_integer,
        default=4094,
        desc="Largest request line (method, target and version) accepted, in bytes; longer ones get 414.",
        details=(
            "A guard against oversized requests. Values of 8190 and above are lowered to 8190. "
            "0 removes the limit.",
            "Differs from Gunicorn: with 0, pronghorn still refuses request lines over 1 MiB.",
        ),
    ),
    Setting(
        name="limit_request_fields",
        section="Security",
        cli=("--limit-request-fields",),
        meta="INT",
        validator=validators.positive_integer,
        default=100,
        desc="Most header fields one request may carry; more get 431.",
        details=("Values above 32768, and 0, mean 32768.",),
    ),
    Setting(
        name="limit_request_field_size",
        section="Security",
        cli=("--limit-request-field_size",),
        meta="INT",
        validator=validators.positive_integer,
        default=8190,
        desc="Largest single header line accepted, in bytes, counting its line ending; larger ones get 431.",
        details=(
            "0 means the default, 8190. The flag is spelled with an underscore, "
            "`--limit-request-field_size`, exactly as in Gunicorn.",
        ),
    ),
    Setting(
        name="limit_request_body",
        section="Security",
        cli=("--limit-request-body",),
        meta="INT",
        validator=validators.positive_integer,
        default=1073741824,
        default_doc="`1073741824` (1 GiB)",
        desc="Largest request body accepted, in bytes (0 = no limit); larger ones get 413 and the connection closes.",
        details=(
            "New in pronghorn: Gunicorn has no such setting and accepts bodies of any size. Every worker "
            "class enforces it. A request whose Content-Length is over the limit is refused as soon as "
            "its head arrives, before any `100 Continue` and before any of its body is read. A chunked "
            "body is counted after de-chunking and refused at the chunk that would take it over the "
            "limit, so no more than the limit ever reaches a temporary file or the application.",
        ),
    ),
)

PARSING_SWITCHES = (
    Setting(
        name="permit_obsolete_folding",
        section="Server Mechanics",
        cli=("--permit-obsolete-folding",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Accept header values continued on an indented next line, joining them with a space.",
        details=(
            "RFC 9112 section 5.2 deprecates this line folding; without this switch such a request gets 400. "
            "The folded lines count toward `limit_request_field_size`.",
        ),
    ),
    Setting(
        name="strip_header_spaces",
        section="Server Mechanics",
        cli=("--strip-header-spaces",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Tolerate spaces or tabs between a header name and its colon by removing them (unsafe).",
        details=(
            "Deprecated, as in Gunicorn: proxies that read such a header differently can be used to "
            "smuggle requests. By default these headers are rejected with 400.",
        ),
    ),
    Setting(
        name="permit_unconventional_http_method",
        section="Server Mechanics",
        cli=("--permit-unconventional-http-method",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Accept request methods outside the usual shape (lower case, '#', shorter than 3 or longer than 20).",
        details=("Any method must still be a valid token (RFC 9110 section 9.1).",),
    ),
    Setting(
        name="permit_unconventional_http_version",
        section="Server Mechanics",
        cli=("--permit-unconventional-http-version",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Accept HTTP versions other than 1.0 and 1.1 (still of the form HTTP/d.d).",
    ),
    Setting(
        name="casefold_http_method",
        section="Server Mechanics",
        cli=("--casefold-http-method",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Turn lower-case request methods into upper case instead of refusing them (legacy, deprecated).",
    ),
    Setting(
        name="forwarder_headers",
        section="Server Mechanics",
        cli=("--forwarder-headers",),
        validator=validators.comma_list,
        default="SCRIPT_NAME,PATH_INFO",
        desc="Comma-separated header names with '_' that a trusted proxy may send to set WSGI variables.",
        details=(
            "Only requests from `forwarded_allow_ips` may use them; a header named here sets the WSGI "
            "variable of the same name (for example `SCRIPT_NAME` or `REMOTE_USER`). Every other "
            "header containing `_` is handled as `header_map` says.",
        ),
    ),
    Setting(
        name="header_map",
        section="Server Mechanics",
        cli=("--header-map",),
        validator=validators.choice("drop", "refuse", "dangerous"),
        default="drop",
        desc="What to do with request headers whose names contain '_': drop, refuse or dangerous.",
        details=(
            "In the WSGI environ `X-Forwarded-For` and `X_Forwarded_For` look the same, so a client "
            "could forge a header a proxy set. `drop` silently discards underscore headers (they "
            "still count toward the limits), `refuse` answers 400, and `dangerous` keeps them.",
        ),
    ),
    Setting(
        name="root_path",
        section="Server Mechanics",
        cli=("--root-path",),
        meta="STRING",
        validator=validators.string,
        default="",
        desc="The path an ASGI app is mounted under behind a proxy (the scope's root_path).",
        details=(
            "Given as `/api`, a request the proxy forwards as `/users` reaches the app with path "
            "`/api/users` and root_path `/api`, as ASGI frameworks expect. WSGI apps take the same "
            "from `SCRIPT_NAME`.",
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = PARSER_CHOICE + REQUEST_LIMITS + PARSING_SWITCHES
