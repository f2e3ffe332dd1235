"""The base worker: what every worker class does around serving requests.

A worker object is created in the master (so the master holds its heartbeat), then the master
forks and the child calls ``init_process()``: signals, app loading, ``post_worker_init``, ``run()``.
Subclasses implement ``run()`` and use ``notify()``, ``alive`` and ``handled_request()``.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from pronghorn.apps.cycle import CycleHooks, CycleSettings, Request, RequestCycle
from pronghorn.apps.loading import is_asgi_app
from pronghorn.apps.wsgi import Response
from pronghorn import build
from pronghorn.config import Config
from pronghorn.errors import APP_LOAD_ERROR, WORKER_BOOT_ERROR, AppImportError, AppModuleNotFound
from pronghorn.logs import Logger
from pronghorn.net import tls
from pronghorn.net.listeners import Listener
from pronghorn.workers.allocator import keep_freed_memory
from pronghorn.workers.connection_board import BoardSeat
from pronghorn.workers.heartbeat import Heartbeat
from pronghorn.workers.privileges import chown_for, switch_user

if TYPE_CHECKING:
    from pronghorn.app.base import BaseApplication
    from pronghorn.workers.reloader import Reloader

# Signals the master may have left with handlers; the child starts from default dispositions.
_RESET_SIGNALS = ("SIGABRT", "SIGHUP", "SIGQUIT", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCHLD")


# Reading /proc costs a few microseconds; twice a second is plenty to catch a leak.
MEMORY_CHECK_INTERVAL = 0.5
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _random_below(n: int) -> int:
    """A random integer in [0, n), without the ``random`` module (~0.1 MiB each worker would inherit)."""
    return int.from_bytes(os.urandom(8), "big") % n


def resident_memory_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; ru_maxrss elsewhere, a peak value)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE / 1048576
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Worker:
    """One worker process. ``timeout`` is the heartbeat interval (half the master's ``timeout``)."""

    # Reads a PROXY header from the raw connection before the TLS handshake (both settings at once).
    proxy_header_before_tls = False

    def __init__(
        self,
        age: int,
        ppid: int,
        sockets: Sequence[Listener],
        app: BaseApplication,
        timeout: float,
        cfg: Config,
        log: Logger,
    ) -> None:
        self.age = age
        self.pid: int | str = "[booting]"
        self.ppid = ppid
        self.sockets = list(sockets)
        self.app = app
        self.timeout = timeout
        self.cfg = cfg
        self.log = log
        self.booted = False
        self.aborted = False
        self.alive = True
        self.draining = False
        self.nr = 0
        jitter = _random_below(cfg.max_requests_jitter + 1) if cfg.max_requests_jitter > 0 else 0
        self.max_requests = cfg.max_requests + jitter if cfg.max_requests > 0 else sys.maxsize
        self.tmp = Heartbeat(cfg.worker_tmp_dir)
        self.board_seat: BoardSeat | None = None  # given by the master before the fork
        chown_for(self.tmp.fileno(), cfg.user, cfg.group)  # a worker running as another user must touch it
        self._next_memory_check = 0.0
        self.max_worker_memory = cfg.max_worker_memory  # read once: handled_request() is per request
        self.wsgi: Callable[..., Any] | None = None
        self.tls: ssl.SSLContext | None = None  # made in the child (init_process): HUP re-reads the files
        self.cycle: RequestCycle | None = None
        self.reloader: Reloader | None = None
        self.metrics: Any = None  # a ``pronghorn.metrics.Metrics`` given by the master before the fork
        self._wake_read, self._wake_write = -1, -1

    def __str__(self) -> str:
        return f"<Worker {self.pid}>"

    # --- life cycle ---

    def notify(self) -> None:
        """Tell the master this worker is alive."""
        self.tmp.notify()

    def init_process(self) -> None:
        """Runs in the child after the fork; does not return until the worker ends."""
        self.pid = os.getpid()
        os.environ.update(self.cfg.env)
        keep_freed_memory()
        switch_user(self.cfg.user, self.cfg.group, initgroups=self.cfg.initgroups, log=self.log.warning)
        if "random" in sys.modules:  # imported by the app or a hook before the fork: not the master's sequence
            sys.modules["random"].seed()
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._wake_read, self._wake_write):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self.log.close_on_exec()
        self.init_signals()
        if self.cfg.reload:
            from pronghorn.workers.reloader import make_reloader  # only with reload (ctypes, glob, ...)

            self.reloader = make_reloader(self.cfg.reload_engine, self.cfg.reload_extra_files, self._source_changed)
            self.reloader.start()
        try:
            self.tls = tls.server_context(self.cfg)
        except Exception:
            self.log.exception("Could not set up TLS")
            sys.exit(WORKER_BOOT_ERROR)
        uncompiled = build.uncompiled_warning()
        if uncompiled:
            self.log.warning(uncompiled)
        self.load_wsgi()
        assert self.wsgi is not None
        self.cycle = self.make_cycle()
        self.cfg.post_worker_init(self)
        self.booted = True
        self.tmp.mark_ready()
        self.run()

    def load_wsgi(self) -> None:
        """Load the application; a failure ends the worker with exit status 4 or 3 (the master halts).

        With ``reload`` on, a syntax error instead serves its traceback until the file is fixed.
        """
        try:
            self.wsgi = self.app.wsgi()
        except SyntaxError as exc:
            if self.reloader is None:
                self.log.exception("Failed to load the application")
                sys.exit(WORKER_BOOT_ERROR)
            self.log.exception("Application has a syntax error; serving the traceback until it is fixed")
            if exc.filename:
                self.reloader.add_extra_file(exc.filename)
            from pronghorn.workers.reloader import app_serving_traceback

            self.wsgi = app_serving_traceback(exc)
        # Gunicorn's exit statuses: 4 when the reference does not give an application, 3 (a boot
        # error) when the module cannot be imported or raises; either halts the master.
        except AppImportError as exc:
            self.log.error("Failed to load the application: %s", exc)
            sys.exit(APP_LOAD_ERROR)
        except AppModuleNotFound as exc:
            self.log.error("Failed to load the application: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        except Exception:
            self.log.exception("Failed to load the application")
            sys.exit(WORKER_BOOT_ERROR)

    def run(self) -> None:
        raise NotImplementedError

    def make_cycle(self) -> RequestCycle:
        """The request cycle of the loaded app. This worker class serves WSGI apps: an ASGI app
        stops the server (exit status 4) with a line saying which worker serves it."""
        assert self.wsgi is not None
        if is_asgi_app(self.wsgi):
            self.log.error("Failed to load the application: it is an ASGI application (an async callable), which "
                           "the %s worker cannot serve; use the default worker class or worker_class = 'asgi'",
                           self.__class__.__name__)
            sys.exit(APP_LOAD_ERROR)
        return RequestCycle(self.wsgi, CycleSettings(self.cfg), self.log, self.cycle_hooks())

    def cycle_hooks(self) -> CycleHooks:
        """The request cycle's hooks, bound to this worker (Gunicorn's signatures). A hook left at its
        default costs nothing per request (the default pre_request only logs at debug level)."""
        cfg = self.cfg

        def configured(name: str) -> bool:
            bound = cfg.settings[name]
            return bool(bound.value is not bound.setting.default)

        def pre_request(req: Request) -> None:
            self.call_hook("pre_request", self, req)

        def post_request(req: Request, environ: dict[str, Any], response: Response) -> None:
            self.call_hook("post_request", self, req, environ, response)

        return CycleHooks(
            pre_request=pre_request if configured("pre_request") or cfg.loglevel == "debug" else None,
            post_request=post_request if configured("post_request") else None,
            access=self.log.access if self.log.access_enabled else None,
            metrics=self.metrics,
        )

    def _source_changed(self, path: str) -> None:
        """Reloader callback (watcher thread): stop after the current request; the master respawns."""
        self.log.info("Worker reloading: %s modified", path)
        self._leave_because(3)
        self.call_hook("worker_int", self)
        try:
            os.write(self._wake_write, b"!")  # wake the main loop out of select()
        except OSError:
            pass

    def handled_request(self) -> None:
        """Count a finished request; past ``max_requests`` or ``max_worker_memory`` the worker ends."""
        self.nr += 1
        self.check_limits()

    def check_limits(self) -> None:
        """End the worker after its current requests once ``nr`` reached ``max_requests``, or its memory
        passed ``max_worker_memory`` (read at most every ``MEMORY_CHECK_INTERVAL``)."""
        if not self.alive:
            return
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self._leave_because(1)
        elif self.max_worker_memory and time.monotonic() >= self._next_memory_check:
            self._next_memory_check = time.monotonic() + MEMORY_CHECK_INTERVAL
            rss = resident_memory_mib()
            if rss > self.max_worker_memory:
                self.log.info(
                    "Autorestarting worker: resident memory %.1f MiB is over max_worker_memory (%s MiB).",
                    rss,
                    self.max_worker_memory,
                )
                self._leave_because(2)

    def _leave_because(self, reason: int) -> None:
        """Stop after the current requests, for a ``Metrics.exit_reason``."""
        self.alive = False
        if self.metrics is not None:
            self.metrics.exit_reason(reason)

    def close_listeners(self) -> None:
        """A stopping worker's copies of the listening sockets, once it took its share of the queue:
        when every worker has closed them, a server going away refuses new connections at once."""
        for listener in self.sockets:
            listener.socket.close()

    def parent_alive(self) -> bool:
        if os.getppid() != self.ppid:
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    @property
    def wake_fd(self) -> int:
        """Readable when a signal arrived, so a worker blocked in select() wakes up."""
        return self._wake_read

    # --- signals ---

    @staticmethod
    def detach_master_signals() -> None:
        """Right after the fork, before the worker is set up: stop acting on the master's handlers.

        Stop signals get their default action (a worker still booting just ends), the others are
        ignored until ``init_signals()`` installs the worker's own handlers.
        """
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)

    def init_signals(self) -> None:
        for name in _RESET_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.signal(signal.SIGWINCH, self.handle_winch)
        # A graceful stop lets the current recv()/send() finish instead of interrupting it.
        signal.siginterrupt(signal.SIGTERM, False)
        signal.siginterrupt(signal.SIGUSR1, False)
        signal.set_wakeup_fd(self._wake_write)

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        # Graceful stop: finish what is in hand and what already waits in the listen backlog.
        self.alive = False
        self.draining = True

    def handle_quit(self, signum: int, frame: FrameType | None) -> None:
        self.alive = False
        self.call_hook("worker_int", self)
        time.sleep(0.1)
        sys.exit(0)

    def handle_abort(self, signum: int, frame: FrameType | None) -> None:
        self.alive = False
        self.call_hook("worker_abort", self)
        sys.exit(1)

    def handle_usr1(self, signum: int, frame: FrameType | None) -> None:
        self.log.reopen_files()

    def handle_winch(self, signum: int, frame: FrameType | None) -> None:
        self.log.debug("worker: SIGWINCH ignored.")

    def call_hook(self, name: str, *args: Any) -> None:
        """Run a server hook; an exception is logged, never raised into the worker."""
        try:
            getattr(self.cfg, name)(*args)
        except Exception:
            self.log.exception("Exception in %s hook", name)
