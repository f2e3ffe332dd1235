"""Settings of ASGI applications: the event loop, lifespan, disconnects, WebSockets (``root_path``,
a "Server Mechanics" setting, is declared with the other request-shaping ones in ``security``)."""

from __future__ import annotations

from pronghorn.config import validators
from pronghorn.config.setting import Setting

SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="asgi_loop",
        section="Worker Processes",
        cli=("--asgi-loop",),
        meta="STRING",
        validator=validators.event_loop,
        default="auto",
        desc="The event loop of ASGI workers: auto (uvloop when installed), asyncio or uvloop.",
        details=(
            "`uvloop` without uvloop installed stops start-up. WSGI apps on the default worker always "
            "use uvloop when it is installed.",
        ),
    ),
    Setting(
        name="asgi_lifespan",
        section="Worker Processes",
        cli=("--asgi-lifespan",),
        meta="STRING",
        validator=validators.choice("auto", "on", "off"),
        default="auto",
        desc="ASGI lifespan events: auto (if the app takes them), on (required) or off.",
        details=(
            "Each worker runs the app's startup before it accepts a connection and its shutdown "
            "when it stops; what startup puts in the lifespan `state` is copied into every "
            "request's scope. An app that answers `lifespan.startup.failed` stops the server (the "
            "worker exits with status 3) in `auto` and `on`; with `on`, so does an app that fails "
            "any other way, while `auto` then takes it as an app without lifespan support.",
        ),
    ),
    Setting(
        name="asgi_disconnect_grace_period",
        section="Worker Processes",
        cli=("--asgi-disconnect-grace-period",),
        meta="INT",
        validator=validators.positive_integer,
        default=3,
        desc="Seconds an ASGI request's app call may go on after its client went away, before it is cancelled.",
        details=(
            "The app sees `http.disconnect` at once (and a `send` fails); this is how long it gets "
            "to finish on its own. 0 cancels it at once.",
        ),
    ),
    Setting(
        name="websocket_max_message_size",
        section="Worker Processes",
        cli=("--websocket-max-message-size",),
        meta="INT",
        validator=validators.positive_integer,
        default=16777216,
        desc="Largest WebSocket message (in bytes) an ASGI app is given; 0 means no limit.",
        details=(
            "A larger frame, or a fragmented message that grows past it, closes the connection with "
            "status 1009 (message too big) without buffering the rest.",
        ),
    ),
)
