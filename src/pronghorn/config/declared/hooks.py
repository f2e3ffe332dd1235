"""Server hooks: functions the server calls at fixed points, and what runs when none is set.

A hook is set in a config file, either by defining a module-level function with the hook's name or
by assigning a callable or a "module.function" string. Hooks have no command-line flag. The
validator checks that the callable takes the number of positional arguments the server passes.
The functions below are the defaults; their parameter names are the documented ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pronghorn.config import validators
from pronghorn.config.setting import Setting

SECTION = "Server Hooks"
IN_MASTER = "Runs in the master process."
IN_WORKER = "Runs in the worker process."
NOTHING = "does nothing"


def on_starting(server: Any) -> None:
    """Default: nothing."""


def on_reload(server: Any) -> None:
    """Default: nothing."""


def when_ready(server: Any) -> None:
    """Default: nothing."""


def pre_fork(server: Any, worker: Any) -> None:
    """Default: nothing."""


def post_fork(server: Any, worker: Any) -> None:
    """Default: nothing."""


def post_worker_init(worker: Any) -> None:
    """Default: nothing."""


def worker_int(worker: Any) -> None:
    """Default: nothing."""


def worker_abort(worker: Any) -> None:
    """Default: nothing."""


def pre_exec(server: Any) -> None:
    """Default: nothing."""


def pre_request(worker: Any, req: Any) -> None:
    """Default: log the request's method and path at debug level."""
    worker.log.debug("%s %s", req.method, req.path)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Default: nothing."""


def child_exit(server: Any, worker: Any) -> None:
    """Default: nothing."""


def worker_exit(server: Any, worker: Any) -> None:
    """Default: nothing."""


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """Default: nothing."""


def on_exit(server: Any) -> None:
    """Default: nothing."""


def ssl_context(config: Any, default_ssl_context_factory: Callable[[], Any]) -> Any:
    """Default: the context pronghorn builds from the SSL settings, unchanged."""
    return default_ssl_context_factory()


def _hook(
    default: Callable[..., Any],
    desc: str,
    *,
    details: tuple[str, ...] = (),
    default_doc: str = NOTHING,
    pending: str | None = None,
    validator: Callable[[Any], Any] | None = None,
) -> Setting:
    """A hook setting named after its default function, validated for that function's arity."""
    arity = len(inspect.signature(default).parameters)
    return Setting(
        name=default.__name__,
        section=SECTION,
        validator=validator or validators.hook(arity),
        default=default,
        default_doc=default_doc,
        pending=pending,
        desc=desc,
        details=details,
    )


SETTINGS: tuple[Setting, ...] = (
    _hook(
        on_starting,
        "Called once as the master starts, before it opens the listening sockets.",
        details=(IN_MASTER + " The pid file has already been written.",),
    ),
    _hook(
        on_reload,
        "Called when a HUP makes the master reload, after the new configuration is read.",
        details=(IN_MASTER + " It runs before the replacement workers are started.",),
    ),
    _hook(
        when_ready,
        "Called once the master is listening, just before it starts the first workers.",
        details=(IN_MASTER,),
    ),
    _hook(
        pre_fork,
        "Called just before a worker process is forked.",
        details=(IN_MASTER + " The worker object exists but has no process id yet.",),
    ),
    _hook(
        post_fork,
        "Called in a new worker right after the fork, before it sets itself up.",
        details=(IN_WORKER + " The application is not loaded yet.",),
    ),
    _hook(
        post_worker_init,
        "Called when a worker has loaded the application, just before it starts serving.",
        details=(IN_WORKER,),
    ),
    _hook(
        worker_int,
        "Called when a worker receives SIGINT or SIGQUIT and is about to stop at once.",
        details=(IN_WORKER + " A good place to dump thread stacks when hunting a hang.",),
    ),
    _hook(
        worker_abort,
        "Called when a worker receives SIGABRT, which the master sends when the worker timed out.",
        details=(IN_WORKER + " The worker exits with status 1 afterwards.",),
    ),
    _hook(
        pre_exec,
        "Called before a new master is executed during a binary upgrade (USR2).",
        details=("Runs in the freshly forked child of the old master, just before the new program starts.",),
    ),
    _hook(
        pre_request,
        "Called before each request is handed to the application.",
        details=(IN_WORKER,),
        default_doc="logs the request's method and path at debug level",
    ),
    _hook(
        post_request,
        "Called after each request, whether it succeeded or failed.",
        details=(IN_WORKER + " A function taking only `(worker, req)` or `(worker, req, environ)` is accepted "
            "too and called with those arguments.",),
        validator=validators.post_request_hook,
    ),
    _hook(
        child_exit,
        "Called after the master has reaped a worker that exited.",
        details=(IN_MASTER,),
    ),
    _hook(
        worker_exit,
        "Called when a worker has stopped serving, just before its process ends.",
        details=(IN_WORKER,),
    ),
    _hook(
        nworkers_changed,
        "Called whenever the wanted number of workers changes, with the new and the old count.",
        details=(IN_MASTER + " At start-up `old_value` is `None`.",),
    ),
    _hook(
        on_exit,
        "Called as the master shuts down, after the workers have stopped.",
        details=(IN_MASTER,),
    ),
    _hook(
        ssl_context,
        "Returns the SSLContext for TLS connections; customise the one the factory builds.",
        details=(IN_WORKER + " Calling `default_ssl_context_factory()` gives a server context already set up "
            "from the SSL settings; adjust it (minimum version, ALPN, SNI callback...) and return it.",),
        default_doc="returns `default_ssl_context_factory()` unchanged",
    ),
)
