"""Settings of the config file, the listening sockets and the worker processes.

Sections "Config File", "Server Socket" and the process-count and lifetime part of "Worker
Processes" (``http_parser``, also in "Worker Processes", sits with the parsing switches in
``security.py``). Order within a section is Gunicorn's.
"""

from __future__ import annotations

from collections.abc import Mapping

from pronghorn.config import validators
from pronghorn.config.setting import Setting



def default_bind(environ: Mapping[str, str]) -> list[str]:
    """All IPv4 interfaces on ``$PORT`` when the platform assigns a port, else local port 8000."""
    port = environ.get("PORT")
    return [f"0.0.0.0:{port}"] if port else ["127.0.0.1:8000"]


def default_workers(environ: Mapping[str, str]) -> str | int:
    """``$WEB_CONCURRENCY`` when set (validated like any other value), else one worker."""
    return environ.get("WEB_CONCURRENCY") or 1


CONFIG_FILE = (
    Setting(
        name="config",
        section="Config File",
        cli=("-c", "--config"),
        meta="CONFIG",
        validator=validators.string,
        default="./pronghorn.conf.py",
        desc="Config file to read: PATH, file:PATH or python:MODULE (default ./pronghorn.conf.py, else ./gunicorn.conf.py).",
        details=(
            "A config file is plain Python: every module-level name that matches a setting sets it, and "
            "other names are ignored. `python:MODULE` imports a module from `sys.path` instead of "
            "reading a file.",
            "When `-c` is not given, pronghorn looks in the working directory for `pronghorn.conf.py` "
            "and then for `gunicorn.conf.py`, so an existing Gunicorn project needs no renaming.",
            "Only `-c` on the command line or inside `PRONGHORN_CMD_ARGS` picks the file; assigning "
            "`config` inside a config file or from an application's `init()` loads nothing. When both "
            "name a file, the command line wins.",
            "Differs from Gunicorn: the default file is `./pronghorn.conf.py`, with `./gunicorn.conf.py` "
            "as a fallback (Gunicorn only looks for `./gunicorn.conf.py`).",
        ),
    ),
    Setting(
        name="wsgi_app",
        section="Config File",
        meta="STRING",
        validator=validators.string,
        default=None,
        desc="Application to serve when the command line names none, e.g. 'myproject.wsgi:application'.",
        details=(
            "Takes the same forms as the positional `APP_MODULE` argument: `module` (uses its "
            "`application` attribute), `module:name`, or `module:factory(...)` with literal arguments. "
            "An application named on the command line takes precedence.",
        ),
    ),
)

SERVER_SOCKET = (
    Setting(
        name="bind",
        section="Server Socket",
        cli=("-b", "--bind"),
        meta="ADDRESS",
        action="append",
        validator=validators.list_of_strings,
        env_default=default_bind,
        default_doc="`['127.0.0.1:8000']`, or `['0.0.0.0:$PORT']` when the `PORT` environment variable is set",
        desc="Address to listen on; give the flag several times to listen on several addresses.",
        details=(
            "Accepted forms: `HOST`, `HOST:PORT`, `[IPV6]`, `[IPV6]:PORT`, `tcp://HOST:PORT`, "
            "`unix:PATH` (or `unix://PATH`) and `fd://N` for a socket inherited as file descriptor N. "
            "A missing port means 8000.",
            "The `PORT` default suits hosting platforms that tell the process which port to use.",
        ),
    ),
    Setting(
        name="backlog",
        section="Server Socket",
        cli=("--backlog",),
        meta="INT",
        validator=validators.positive_integer,
        default=2048,
        desc="Maximum number of connections the kernel queues for each listening socket before accept().",
        details=(
            "Clients beyond the queue get errors or retries, depending on the OS. The kernel may lower "
            "the value (on Linux, to `net.core.somaxconn`).",
        ),
    ),
)

WORKER_PROCESSES = (
    Setting(
        name="workers",
        section="Worker Processes",
        cli=("-w", "--workers"),
        meta="INT",
        validator=validators.positive_integer,
        env_default=default_workers,
        default_doc="`1`, or the `WEB_CONCURRENCY` environment variable when it is set",
        desc="Number of worker processes the master keeps running.",
        details=(
            "Two to four per CPU core is a common starting point; the right number depends on the "
            "application, so measure. The count can be changed at run time with the TTIN and TTOU "
            "signals.",
        ),
    ),
    Setting(
        name="worker_class",
        section="Worker Processes",
        cli=("-k", "--worker-class"),
        meta="STRING",
        validator=validators.class_or_string,
        default="gthread",
        desc="Kind of worker: a registered name such as 'gthread' or 'sync', a dotted path to a worker class, or the class.",
        details=(
            "`gthread` runs an event loop in each worker: the loop does all socket work and hands the "
            "application whole requests, inline on the loop thread with `--threads 1` or on a pool of "
            "`threads` threads, so slow clients never hold an application thread. `sync` serves one "
            "request per connection at a time per process, as Gunicorn's does. `gevent` (`pip install "
            "'pronghorn[gevent]'`) serves each connection on a greenlet, monkey-patching the standard "
            "library before the app is loaded. Gunicorn's class paths (`gunicorn.workers.ggevent."
            "GeventWorker`, ...) select the same workers; `eventlet` and `tornado` are refused. A dotted "
            "path such as `mypackage.workers.MyWorker` loads a custom worker class.",
            "Differs from Gunicorn: the default is `'gthread'` (the event-loop worker) instead of `'sync'`.",
        ),
    ),
    Setting(
        name="threads",
        section="Worker Processes",
        cli=("--threads",),
        meta="INT",
        validator=validators.positive_integer,
        default=1,
        desc="Size of each worker's thread pool for running the application.",
        details=(
            "With `gthread`, 1 runs the application on the event loop's own thread (the fastest for "
            "applications that do not wait on I/O); more runs it on a pool of that many threads. As in "
            "Gunicorn, more than one thread with the `sync` worker class selects `gthread`.",
        ),
    ),
    Setting(
        name="worker_connections",
        section="Worker Processes",
        cli=("--worker-connections",),
        meta="INT",
        validator=validators.positive_integer,
        default=1000,
        desc="Most client connections one worker holds open at once (the event-loop and gevent workers).",
        details=(
            "Each connection is one open file. The master raises its soft open files limit to the hard "
            "limit at start, before forking workers, so thousands of connections per worker need no "
            "`ulimit -n`; a lower hard limit still caps them (raise it in the service manager).",
        ),
    ),
    Setting(
        name="max_requests",
        section="Worker Processes",
        cli=("--max-requests",),
        meta="INT",
        validator=validators.positive_integer,
        default=0,
        desc="Replace a worker after it has served this many requests; 0 never replaces it.",
        details=(
            "A blunt but effective cap on slow memory leaks in the application: the worker finishes "
            "its current request, exits, and the master starts a fresh one.",
        ),
    ),
    Setting(
        name="max_requests_jitter",
        section="Worker Processes",
        cli=("--max-requests-jitter",),
        meta="INT",
        validator=validators.positive_integer,
        default=0,
        desc="Add a random 0..N to each worker's max_requests so workers do not all restart together.",
    ),
    Setting(
        name="max_worker_memory",
        section="Worker Processes",
        cli=("--max-worker-memory",),
        meta="MIB",
        validator=validators.positive_integer,
        default=0,
        desc="Recycle a worker gracefully once its resident memory exceeds this many MiB (0 = never).",
        details=(
            "New in pronghorn (Gunicorn has no equivalent). The worker checks its resident set size "
            "after requests, at most twice a second; over the limit it finishes the request in hand, "
            "logs the reason and exits, and the master starts a fresh one.",
        ),
    ),
    Setting(
        name="header_timeout",
        section="Worker Processes",
        cli=("--header-timeout",),
        meta="SECONDS",
        validator=validators.positive_integer,
        default=30,
        desc="Seconds a client gets to send a request head, and between pieces of a request body.",
        details=(
            "New in pronghorn (gthread worker). A connection that has sent nothing of its request in "
            "time is closed quietly; one whose body stalls is answered 408 and closed.",
        ),
    ),
    Setting(
        name="request_timeout",
        section="Worker Processes",
        cli=("--request-timeout",),
        meta="SECONDS",
        validator=validators.positive_integer,
        default=0,
        desc="Answer 504 to a request the application has not finished after this many seconds (0 = off).",
        details=(
            "New in pronghorn (gthread worker). If the response has already started, the connection "
            "is aborted instead. The request is logged with its method and path, and the worker is "
            "recycled gracefully, since a running Python thread cannot be stopped.",
        ),
    ),
    Setting(
        name="timeout",
        section="Worker Processes",
        cli=("-t", "--timeout"),
        meta="INT",
        validator=validators.positive_integer,
        default=30,
        desc="Seconds a worker may stay silent before the master aborts and replaces it; 0 turns this off.",
        details=(
            "Workers signal they are alive at least every `timeout / 2` seconds. A worker that stays "
            "silent longer, for example because one request runs too long in the sync worker, is sent "
            "SIGABRT (which runs `worker_abort`), and SIGKILL if it is still there the next time the "
            "master looks.",
        ),
    ),
    Setting(
        name="graceful_timeout",
        section="Worker Processes",
        cli=("--graceful-timeout",),
        meta="INT",
        validator=validators.positive_integer,
        default=30,
        desc="Seconds workers get to finish in-flight requests after a graceful stop or restart, before SIGKILL.",
    ),
    Setting(
        name="keepalive",
        section="Worker Processes",
        cli=("--keep-alive",),
        meta="INT",
        validator=validators.positive_integer,
        default=2,
        desc="Seconds an idle persistent connection is kept open waiting for the next request.",
        details=(
            "The sync worker always closes the connection after one response, so this only matters for "
            "workers that keep connections open. Behind a load balancer, a value slightly above the "
            "balancer's idle timeout avoids races on reused connections.",
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = CONFIG_FILE + SERVER_SOCKET + WORKER_PROCESSES
