"""Server hooks: functions the server calls at fixed points, and what runs when none is set.

A hook is set in a config file, either by defining a module-level function with the hook's name or
by assigning a callable or a "module.function" string. Hooks have no command-line flag. The
validator checks that the callable takes the number of positional arguments the server passes.
The functions below are the defaults; their parameter names are the documented ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pronghorn.config import validators
from pronghorn.config.setting import Setting

SECTION = "Server Hooks"
ARBITER = "arrives with the arbiter's full process model (reload, daemon, privileges)"
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


SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="on_starting",
        section=SECTION,
        validator=validators.hook(1),
        default=on_starting,
        default_doc=NOTHING,
        desc="Called once as the master starts, before it opens the listening sockets.",
        details=(IN_MASTER + " The pid file has already been written.",),
    ),
    Setting(
        name="on_reload",
        section=SECTION,
        validator=validators.hook(1),
        default=on_reload,
        default_doc=NOTHING,
        pending=ARBITER,
        desc="Called when a HUP makes the master reload, after the new configuration is read.",
        details=(IN_MASTER + " It runs before the replacement workers are started.",),
    ),
    Setting(
        name="when_ready",
        section=SECTION,
        validator=validators.hook(1),
        default=when_ready,
        default_doc=NOTHING,
        desc="Called once the master is listening, just before it starts the first workers.",
        details=(IN_MASTER,),
    ),
    Setting(
        name="pre_fork",
        section=SECTION,
        validator=validators.hook(2),
        default=pre_fork,
        default_doc=NOTHING,
        desc="Called just before a worker process is forked.",
        details=(IN_MASTER + " The worker object exists but has no process id yet.",),
    ),
    Setting(
        name="post_fork",
        section=SECTION,
        validator=validators.hook(2),
        default=post_fork,
        default_doc=NOTHING,
        desc="Called in a new worker right after the fork, before it sets itself up.",
        details=(IN_WORKER + " The application is not loaded yet.",),
    ),
    Setting(
        name="post_worker_init",
        section=SECTION,
        validator=validators.hook(1),
        default=post_worker_init,
        default_doc=NOTHING,
        desc="Called when a worker has loaded the application, just before it starts serving.",
        details=(IN_WORKER,),
    ),
    Setting(
        name="worker_int",
        section=SECTION,
        validator=validators.hook(1),
        default=worker_int,
        default_doc=NOTHING,
        desc="Called when a worker receives SIGINT or SIGQUIT and is about to stop at once.",
        details=(IN_WORKER + " A good place to dump thread stacks when hunting a hang.",),
    ),
    Setting(
        name="worker_abort",
        section=SECTION,
        validator=validators.hook(1),
        default=worker_abort,
        default_doc=NOTHING,
        desc="Called when a worker receives SIGABRT, which the master sends when the worker timed out.",
        details=(IN_WORKER + " The worker exits with status 1 afterwards.",),
    ),
    Setting(
        name="pre_exec",
        section=SECTION,
        validator=validators.hook(1),
        default=pre_exec,
        default_doc=NOTHING,
        pending=ARBITER,
        desc="Called before a new master is executed during a binary upgrade (USR2).",
        details=("Runs in the freshly forked child of the old master, just before the new program starts.",),
    ),
    Setting(
        name="pre_request",
        section=SECTION,
        validator=validators.hook(2),
        default=pre_request,
        default_doc="logs the request's method and path at debug level",
        desc="Called before each request is handed to the application.",
        details=(IN_WORKER,),
    ),
    Setting(
        name="post_request",
        section=SECTION,
        validator=validators.post_request_hook,
        default=post_request,
        default_doc=NOTHING,
        desc="Called after each request, whether it succeeded or failed.",
        details=(
            IN_WORKER + " A function taking only `(worker, req)` or `(worker, req, environ)` is accepted "
            "too and called with those arguments.",
        ),
    ),
    Setting(
        name="child_exit",
        section=SECTION,
        validator=validators.hook(2),
        default=child_exit,
        default_doc=NOTHING,
        desc="Called after the master has reaped a worker that exited.",
        details=(IN_MASTER,),
    ),
    Setting(
        name="worker_exit",
        section=SECTION,
        validator=validators.hook(2),
        default=worker_exit,
        default_doc=NOTHING,
        desc="Called when a worker has stopped serving, just before its process ends.",
        details=(IN_WORKER,),
    ),
    Setting(
        name="nworkers_changed",
        section=SECTION,
        validator=validators.hook(3),
        default=nworkers_changed,
        default_doc=NOTHING,
        desc="Called whenever the wanted number of workers changes, with the new and the old count.",
        details=(IN_MASTER + " At start-up `old_value` is `None`.",),
    ),
    Setting(
        name="on_exit",
        section=SECTION,
        validator=validators.hook(1),
        default=on_exit,
        default_doc=NOTHING,
        desc="Called as the master shuts down, after the workers have stopped.",
        details=(IN_MASTER,),
    ),
    Setting(
        name="ssl_context",
        section=SECTION,
        validator=validators.hook(2),
        default=ssl_context,
        default_doc="returns `default_ssl_context_factory()` unchanged",
        pending="arrives with TLS support",
        desc="Returns the SSLContext for TLS connections; customise the one the factory builds.",
        details=(
            IN_WORKER + " Calling `default_ssl_context_factory()` gives a server context already set up "
            "from the SSL settings; adjust it (minimum version, ALPN, SNI callback...) and return it.",
        ),
    ),
)
