"""The arbiter: the master process that keeps the right number of workers alive.

How this works: signal handlers only put the signal number on a queue. The main loop waits on
that queue (at most a second), dispatches each signal to ``handle_<name>()``, then reaps exited
workers, aborts workers whose heartbeat went silent for ``timeout`` seconds, and forks or stops
workers until their number matches ``num_workers``. A worker that exits with code 3 (boot error)
or 4 (app load error) halts the whole server instead of being respawned in a loop.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from pronghorn import __version__
from pronghorn.errors import APP_LOAD_ERROR, ONE_LINE_LOAD_ERRORS, WORKER_BOOT_ERROR, ConfigError, HaltServer
from pronghorn.config import Config
from pronghorn.logs import make_logger
from pronghorn.master import reexec
from pronghorn.master.daemon import flush_stdio
from pronghorn.master.descriptors import raise_open_files_limit
from pronghorn.master.monitoring import Monitoring
from pronghorn.master.notify import ServiceNotifier
from pronghorn.net.addresses import parse_binds
from pronghorn.proctitle import master_title, set_proc_title, worker_title
from pronghorn.net.listeners import Listener, create_listeners, listeners_from_fds
from pronghorn.net import tls
from pronghorn.workers.base import Worker
from pronghorn.workers.connection_board import ConnectionBoard
from pronghorn.workers.registry import resolve_worker_class, worker_class_label

if TYPE_CHECKING:
    from pronghorn.app.base import BaseApplication
    from pronghorn.master.pidfile import Pidfile

QUICK_STOP_SECONDS = 2.0
KILLED_WORKER_REAP_SECONDS = 1.0  # how long stop() waits to reap (and log) the workers it SIGKILLed
HANDLED_SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")


class Arbiter:
    def __init__(self, app: BaseApplication) -> None:
        self.app = app
        self.cfg = app.cfg
        self.log = make_logger(self.cfg)
        self.pid = os.getpid()
        self.workers: dict[int, Worker] = {}
        self.listeners: list[Listener] = []
        self.monitoring = Monitoring(self.cfg, lambda: self.listeners)
        self.log.metrics = self.monitoring.master_metrics
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.worker_age = 0
        # Workers this master SIGKILLed, and why: the reap logs that instead of guessing "out of memory".
        self.killed_by_master: dict[int, str] = {}
        self._signal_numbers = {getattr(signal, "SIG" + name) for name in HANDLED_SIGNALS}
        self.pidfile: Pidfile | None = None
        self._num_workers: int | None = None
        # Binary upgrade state: our re-exec child, and (in a new master) the old master's pid.
        self.reexec_pid = 0
        self.master_pid = reexec.predecessor_pid(os.environ)
        self.systemd = reexec.from_systemd(os.environ, self.pid)
        self.notifier = ServiceNotifier(os.environ, self.log.warning)
        self.start_environ = dict(os.environ)
        self.start_cwd = str(self.cfg.settings["chdir"].default)
        self.worker_class = resolve_worker_class(self.cfg.worker_class, self.cfg.threads)
        self.board = ConnectionBoard()  # before any fork: every worker shares it
        self.addresses = parse_binds(self.cfg.bind)
        self.cfg.env  # noqa: B018 - validates raw_env before anything starts
        tls.check(self.cfg, self.worker_class)

    @staticmethod
    def check_settings(cfg: Config) -> None:
        """The checks that need more than one setting's validator (``--check-config`` runs them)."""
        worker_class = resolve_worker_class(cfg.worker_class, cfg.threads)
        parse_binds(cfg.bind)
        cfg.env  # noqa: B018
        tls.check(cfg, worker_class)

    # --- num_workers fires nworkers_changed on every assignment, as in Gunicorn ---

    @property
    def num_workers(self) -> int:
        return self._num_workers or 0

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        old, self._num_workers = self._num_workers, value
        self.call_hook("nworkers_changed", self, value, old)

    # --- start-up ---

    def start(self) -> None:
        self.log.info("Starting pronghorn %s", __version__)
        for line in getattr(self.app, "settings_sources", list)():
            self.log.info("%s", line)
        if self.cfg.pidfile:
            self.pidfile = _pidfile(self.cfg.pidfile + (".2" if self.master_pid else ""))
            self.pidfile.create(self.pid)
        self.call_hook("on_starting", self)
        self.init_signals()
        raise_open_files_limit(self.log)  # before any fork: workers inherit it
        if self.cfg.umask:
            os.umask(self.cfg.umask)
        inherited = reexec.inherited_fds(os.environ, self.pid)
        if inherited:
            self.listeners = listeners_from_fds(inherited, backlog=self.cfg.backlog)
            if self.systemd:
                self.log.info("Listening on the sockets systemd passed (LISTEN_FDS); bind is not used")
            for name in ("LISTEN_PID", "LISTEN_FDS", reexec.FD_VARIABLE):
                self.start_environ.pop(name, None)
        else:
            self.listeners = create_listeners(
                self.addresses, backlog=self.cfg.backlog, reuse_port=self.cfg.reuse_port, umask=self.cfg.umask,
                log=self.log.error,
            )
        for listener in self.listeners:
            self.log.info("Listening at: %s (%s)", listener, self.pid)
        self.log.info("Using worker: %s", worker_class_label(self.cfg.worker_class, self.worker_class))
        for message in self.cfg.startup_warnings():
            self.log.warning(message)
        if self.cfg.preload_app:
            self.preload()
        self.monitoring.start()
        self.notifier.ready("pronghorn master booted")
        self.call_hook("when_ready", self)

    def preload(self) -> None:
        try:
            self.app.wsgi()
            # Objects that exist now are shared with every forked worker; keeping the collector
            # away from them keeps those memory pages shared instead of copied on first GC.
            gc.freeze()
        # Exit status 1, as Gunicorn's master ends when it cannot load the app itself.
        except ONE_LINE_LOAD_ERRORS as exc:
            raise HaltServer(f"App failed to load: {exc}", 1) from None
        except Exception:
            self.log.exception("Failed to load the application")
            raise HaltServer("App failed to load.", 1) from None

    def init_signals(self) -> None:
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._enqueue_signal)

    def _enqueue_signal(self, signum: int, frame: FrameType | None) -> None:
        # Nothing but a queue put: logging or forking here could deadlock.
        self.signals.put(signum)

    # --- main loop ---

    def run(self) -> None:
        """Start, then supervise workers until a stop signal; exits the process."""
        try:
            self.start()
        except HaltServer as exc:
            self.halt(exc.reason, exc.exit_status)
        except (ConfigError, OSError, RuntimeError) as exc:
            self.log.error("%s", exc)  # a start-up failure: one clear line, no traceback
            self.halt(exit_status=1, quiet=True)
        set_proc_title(master_title(self.cfg.proc_name_or_default, reexec=bool(self.master_pid)))
        try:
            self.num_workers = self.cfg.workers
            self.manage_workers()
            while True:
                self.maybe_promote()
                for signum in self.wait_for_signals(timeout=1.0):
                    self.dispatch(signum)
                self.reap_workers()
                self.murder_workers()
                self.manage_workers()
                self.monitoring.tick(len(self.workers))
        except (StopIteration, KeyboardInterrupt):
            self.halt()
        except HaltServer as exc:
            self.halt(exc.reason, exc.exit_status)
        except SystemExit:
            raise
        except Exception:
            self.log.exception("Unhandled exception in main loop")
            self.stop(graceful=False)
            if self.pidfile is not None:
                self.pidfile.unlink()
            sys.exit(255)

    def wait_for_signals(self, timeout: float) -> list[int]:
        try:
            first = self.signals.get(timeout=timeout)
        except queue.Empty:
            return []
        pending = [first]
        while True:
            try:
                pending.append(self.signals.get_nowait())
            except queue.Empty:
                return pending

    def dispatch(self, signum: int) -> None:
        name = signal.Signals(signum).name[3:].lower()
        if name != "chld":
            self.log.info("Handling signal: %s", name)
        getattr(self, f"handle_{name}")()

    # --- signal handlers (run in the main loop, never in signal context) ---

    def handle_chld(self) -> None:
        self.reap_workers()

    def handle_term(self) -> None:
        raise StopIteration

    def handle_int(self) -> None:
        self.stop(graceful=False)
        raise StopIteration

    handle_quit = handle_int

    def handle_hup(self) -> None:
        self.log.info("Hang up: reloading the configuration and the application")
        self.notifier.reloading()
        try:
            self.reload()
        finally:
            self.notifier.ready("pronghorn master reloaded")

    def handle_ttin(self) -> None:
        self.num_workers += 1
        self.manage_workers()

    def handle_ttou(self) -> None:
        if self.num_workers > 1:
            self.num_workers -= 1
            self.manage_workers()

    def handle_usr1(self) -> None:
        self.log.reopen_files()
        self.signal_workers(signal.SIGUSR1)

    def handle_usr2(self) -> None:
        self.reexec()

    def handle_winch(self) -> None:
        """Only a daemonized master stops its workers on WINCH (a terminal resize must not)."""
        if not self.cfg.daemon:
            self.log.debug("SIGWINCH ignored: not daemonized.")
            return
        self.log.info("graceful stop of workers")
        self.num_workers = 0
        for pid in self.workers:
            self.monitoring.retiring(pid, None)
        self.signal_workers(signal.SIGTERM)

    # --- reload and binary upgrade ---

    def reload(self) -> None:
        """HUP: re-read the configuration, start new workers, retire the old ones once those serve.

        The listening sockets stay open throughout, so no connection is refused; old workers get
        TERM only after their replacements are ready, and finish what they are doing.
        """
        old_binds = list(self.cfg.bind)
        try:
            self.app.reload()
            new_class = resolve_worker_class(self.app.cfg.worker_class, self.app.cfg.threads)
            new_addresses = parse_binds(self.app.cfg.bind)
            tls.check(self.app.cfg, new_class)  # new workers read the certificates again: they must load
            self.monitoring.check(self.app.cfg)
            self.log.setup(self.app.cfg)  # a broken logging configuration puts the previous one back
        except Exception as exc:
            self.log.error("Reload failed, keeping the current configuration: %s", exc)
            return
        self.cfg = self.app.cfg
        self.worker_class = new_class
        self.monitoring.configure(self.cfg)
        self.log.metrics = self.monitoring.master_metrics
        if self.cfg.bind != old_binds:
            self._rebind(new_addresses)
        self._replace_pidfile()
        self.call_hook("on_reload", self)
        if self.cfg.preload_app:
            self.preload()
        old_workers = sorted(self.workers.items(), key=lambda item: item[1].age)
        self.num_workers = self.cfg.workers
        fresh = [self.spawn_worker() for _ in range(self.num_workers)]
        self._wait_until_ready(fresh, timeout=max(float(self.cfg.timeout or 30), 5.0))
        for pid, _ in old_workers:
            self.monitoring.retiring(pid, "reload")
            self.kill_worker(pid, signal.SIGTERM)

    def _rebind(self, addresses: list[Any]) -> None:
        """Listen on the new ``bind`` addresses; if that fails, keep serving on the old ones."""
        if self.systemd:
            self.log.warning("bind changed, but the sockets are systemd's (LISTEN_FDS): kept as they are")
            return
        try:
            listeners = create_listeners(addresses, backlog=self.cfg.backlog, reuse_port=self.cfg.reuse_port,
                                         umask=self.cfg.umask, log=self.log.error, attempts=1)
        except OSError as exc:
            self.log.error("Reload could not bind the new addresses, keeping the old ones: %s", exc)
            return
        for listener in self.listeners:
            listener.close(last_owner=self._sole_owner())
        self.addresses, self.listeners = addresses, listeners
        for listener in self.listeners:
            self.log.info("Listening at: %s (%s)", listener, self.pid)

    def _wait_until_ready(self, pids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reap_workers()
            waiting = [pid for pid in pids if pid in self.workers and not self.workers[pid].tmp.is_ready()]
            if not waiting:
                return
            time.sleep(0.05)
        self.log.warning("New workers not ready after %.0fs; stopping the old ones anyway.", timeout)

    def _replace_pidfile(self) -> None:
        path = self.cfg.pidfile and self.cfg.pidfile + (".2" if self.master_pid else "")
        if self.pidfile is not None and self.pidfile.path != path:
            self.pidfile.unlink()
            self.pidfile = None
        if path and self.pidfile is None:
            self.pidfile = _pidfile(path)
            self.pidfile.create(self.pid)

    def reexec(self) -> None:
        """USR2: fork and exec a new master that inherits the listening sockets."""
        if self.reexec_pid:
            self.log.warning("USR2 ignored: a new master (pid %s) is already running.", self.reexec_pid)
            return
        if self.master_pid:
            self.log.warning("USR2 ignored: this master is itself an upgrade not yet promoted.")
            return
        master_pid = os.getpid()
        flush_stdio()
        pid = os.fork()
        if pid != 0:
            self.reexec_pid = pid
            self.log.info("Started new master (pid %s) for a binary upgrade.", pid)
            return
        code = 1
        try:
            self.call_hook("pre_exec", self)
            reexec.exec_new_master(
                [listener.fileno() for listener in self.listeners],
                old_pid=master_pid,
                systemd=self.systemd,
                environ=self.start_environ,
                cwd=self.start_cwd,
            )
        except BaseException:
            self.log.exception("Could not start the new master")
        os._exit(code)

    def maybe_promote(self) -> None:
        """A new master whose predecessor has gone takes over the normal pidfile name."""
        if not self.master_pid or os.getppid() == self.master_pid:
            return
        self.log.info("Master %s has exited; this master (pid %s) takes over.", self.master_pid, self.pid)
        self.master_pid = 0
        self.start_environ.pop(reexec.PID_VARIABLE, None)
        self._replace_pidfile()
        set_proc_title(master_title(self.cfg.proc_name_or_default))

    # --- workers ---

    def manage_workers(self) -> None:
        while len(self.workers) < self.num_workers:
            self.spawn_worker()
            # Not ``random.random()``: the module would be in every worker (it is inherited from here).
            time.sleep(0.1 * int.from_bytes(os.urandom(2), "big") / 65536)
        if len(self.workers) > self.num_workers:
            oldest_first = sorted(self.workers.items(), key=lambda item: item[1].age)
            for pid, _ in oldest_first[: len(self.workers) - self.num_workers]:
                self.monitoring.retiring(pid, None)
                self.kill_worker(pid, signal.SIGTERM)

    def spawn_worker(self) -> int:
        self.worker_age += 1
        worker: Worker = self.worker_class(
            self.worker_age, self.pid, self.listeners, self.app, self.cfg.timeout / 2.0, self.cfg, self.log
        )
        worker.board_seat = self.board.seat_for()
        worker.metrics = self.monitoring.for_new_worker()
        self.call_hook("pre_fork", self, worker)
        flush_stdio()  # or what print() left buffered would be written again by every worker
        # Signals stay blocked across the fork: until the child has dropped the master's handlers,
        # a TERM would only be queued in the child's copy of the master's queue and lost.
        signal.pthread_sigmask(signal.SIG_BLOCK, self._signal_numbers)
        try:
            with self.monitoring.fork_guard():
                pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._signal_numbers)
            self.board.release(worker.board_seat)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._signal_numbers)
            worker.pid = pid
            self.workers[pid] = worker
            self.monitoring.forked(pid, worker.metrics)
            return pid
        worker.detach_master_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._signal_numbers)
        self._run_worker(worker)  # never returns
        raise AssertionError("unreachable")

    def _run_worker(self, worker: Worker) -> None:
        """The worker entry point, in the child process; ends the process with the worker's code."""
        code = 0
        try:
            for sibling in self.workers.values():
                sibling.tmp.close()
            self.monitoring.in_worker()
            worker.pid = os.getpid()
            set_proc_title(worker_title(self.cfg.proc_name_or_default, reexec=bool(self.master_pid)))
            self.log.info("Booting worker with pid: %s", worker.pid)
            self.cfg.post_fork(self, worker)
            worker.init_process()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            self.log.exception("Exception in worker process")
            code = 255 if worker.booted else WORKER_BOOT_ERROR
        finally:
            if worker.metrics is not None:
                worker.metrics.flush()
            self.log.info("Worker exiting (pid: %s)", worker.pid)
            try:
                worker.tmp.close()
                self.cfg.worker_exit(self, worker)
            except Exception:
                self.log.exception("Exception in worker_exit hook")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.reexec_pid:
                self.reexec_pid = 0  # the new master is gone (or failed to start)
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # not ours (e.g. we are PID 1): reaped quietly
            why_killed = self.killed_by_master.pop(pid, None)
            self._forget(worker)
            self.monitoring.reaped(pid, timed_out=worker.aborted)
            if os.WIFSIGNALED(status):
                sig = signal.Signals(os.WTERMSIG(status))
                if sig == signal.SIGKILL and why_killed is not None:
                    self.log.warning("Worker (pid:%s) killed: %s", pid, why_killed)
                elif sig == signal.SIGKILL:
                    self.log.error("Worker (pid:%s) was sent SIGKILL! Perhaps out of memory?", pid)
                elif sig == signal.SIGTERM:
                    self.log.info("Worker (pid:%s) was sent SIGTERM!", pid)
                else:
                    self.log.warning("Worker (pid:%s) was sent %s!", pid, sig.name)
            else:
                code = os.waitstatus_to_exitcode(status)
                if code == WORKER_BOOT_ERROR:
                    raise HaltServer("Worker failed to boot.", WORKER_BOOT_ERROR)
                if code == APP_LOAD_ERROR:
                    raise HaltServer("App failed to load.", APP_LOAD_ERROR)
                if code != 0:
                    self.log.error("Worker (pid:%s) exited with code %s.", pid, code)
            self.call_hook("child_exit", self, worker)

    def murder_workers(self) -> None:
        """Abort workers whose heartbeat is older than ``timeout``; kill them if that did not work."""
        if not self.cfg.timeout:
            return
        now = time.monotonic()
        for pid, worker in list(self.workers.items()):
            try:
                silent = now - worker.tmp.last_update()
            except (OSError, ValueError):
                continue
            if silent <= self.cfg.timeout:
                continue
            if not worker.aborted:
                self.log.critical("WORKER TIMEOUT (pid:%s)", pid)
                worker.aborted = True
                self.kill_worker(pid, signal.SIGABRT)
            else:
                why = f"it did not exit after WORKER TIMEOUT ({self.cfg.timeout:g}s) and SIGABRT"
                self.kill_worker_because(pid, why)

    def _forget(self, worker: Worker) -> None:
        """A worker is gone: close its heartbeat, free its seat on the connection board."""
        worker.tmp.close()
        self.board.release(worker.board_seat)

    def kill_worker_because(self, pid: int, why: str) -> None:
        """SIGKILL a worker, remembering why so that its reap logs that reason (the first one given)."""
        self.killed_by_master.setdefault(pid, why)
        self.kill_worker(pid, signal.SIGKILL)

    def kill_worker(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self.killed_by_master.pop(pid, None)
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._forget(worker)
                self.call_hook("worker_exit", self, worker)

    def signal_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            self.kill_worker(pid, sig)

    # --- stopping ---

    def stop(self, graceful: bool = True) -> None:
        """Close the listeners, ask workers to stop, wait up to ``graceful_timeout``, then kill."""
        if not self.reexec_pid:  # else the service goes on: the new master of an upgrade is its main pid
            self.notifier.stopping()
        for listener in self.listeners:
            listener.close(last_owner=self._sole_owner())
        self.listeners = []
        self.signal_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        quick_limit = f"the quick-stop limit ({QUICK_STOP_SECONDS:g}s)"
        limit = f"graceful_timeout ({self.cfg.graceful_timeout:g}s)" if graceful else quick_limit
        deadline = time.monotonic() + (self.cfg.graceful_timeout if graceful else QUICK_STOP_SECONDS)
        while self.workers and time.monotonic() < deadline:
            self._reap_quietly()
            if graceful and self._quick_stop_requested():
                self.log.info("Quick stop requested during a graceful one.")
                graceful = False
                self.signal_workers(signal.SIGQUIT)
                if time.monotonic() + QUICK_STOP_SECONDS < deadline:
                    limit, deadline = quick_limit, time.monotonic() + QUICK_STOP_SECONDS
            time.sleep(0.1)
        self._kill_remaining_workers(f"it did not stop within {limit}")

    def _sole_owner(self) -> bool:
        """The sockets end with this master: no other master of an upgrade, nor systemd, keeps them."""
        return not (self.reexec_pid or self.master_pid or self.systemd)

    def _kill_remaining_workers(self, why: str) -> None:
        for pid in list(self.workers):
            self.kill_worker_because(pid, why)
        # A killed process ends at once (barring uninterruptible I/O): reap it so the log says so.
        reap_deadline = time.monotonic() + KILLED_WORKER_REAP_SECONDS
        while True:
            self._reap_quietly()
            if not self.workers or time.monotonic() >= reap_deadline:
                return
            time.sleep(0.02)

    def _quick_stop_requested(self) -> bool:
        """Whether an INT or QUIT arrived (other signals wait: the master is on its way out)."""
        try:
            pending = [self.signals.get_nowait() for _ in range(self.signals.qsize())]
        except queue.Empty:
            return False
        return any(signum in (signal.SIGINT, signal.SIGQUIT) for signum in pending)

    def _reap_quietly(self) -> None:
        try:
            self.reap_workers()
        except HaltServer:
            pass  # already stopping

    def halt(self, reason: str | None = None, exit_status: int = 0, quiet: bool = False) -> None:
        self.stop()
        if not quiet:
            self.log.info("Shutting down: %s", "Master")
        if reason is not None:
            self.log.log("error" if exit_status else "info", "Reason: %s", reason)
        if self.pidfile is not None:
            self.pidfile.unlink()
        self.call_hook("on_exit", self)
        sys.exit(exit_status)

    def call_hook(self, name: str, *args: Any) -> None:
        """Run a server hook in the master; an exception is logged with its traceback, not raised."""
        try:
            getattr(self.cfg, name)(*args)
        except Exception:
            self.log.exception("Exception in %s hook", name)


def _pidfile(path: str) -> Pidfile:
    from pronghorn.master.pidfile import Pidfile  # here: only a server with --pid imports it

    return Pidfile(path)
