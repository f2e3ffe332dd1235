"""The master's metrics: the StatsD sender and the Prometheus exporter the settings ask for, what
each new worker reports to, and why each worker that went away was replaced.

A worker's restart reason: ``timeout`` if the master aborted it for a silent heartbeat, ``reload``
if the master retired it for a HUP (or it left itself because its code changed), ``max_requests``
or ``memory`` if it left itself for those limits, ``crash`` otherwise; a worker the master stopped
for good (TTOU, shutdown) is not a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from pronghorn.errors import ConfigError
from pronghorn.metrics import Fanout, StatsdSender


class Monitoring:
    def __init__(self, cfg: Any, listeners: Callable[[], list[Any]]) -> None:
        self.listeners = listeners
        self.statsd: StatsdSender | None = None
        self.exporter: Any = None  # a ``pronghorn.prometheus.Exporter``
        self._why_leaving: dict[int, str | None] = {}
        self.metrics_bind = cfg.metrics_bind
        self.configure(cfg)
        if cfg.metrics_bind:
            from pronghorn.prometheus import Exporter  # only with metrics_bind (threading, mmap, ...)

            self.exporter = Exporter(metrics_address(cfg.metrics_bind), listeners)

    def check(self, cfg: Any) -> None:
        """On HUP, before anything changes: ``metrics_bind`` cannot move without a restart."""
        if cfg.metrics_bind != self.metrics_bind:
            raise ConfigError(f"Invalid value for metrics_bind: {cfg.metrics_bind!r} (it was {self.metrics_bind!r} "
                              "at start, and only a restart changes it)")

    def configure(self, cfg: Any) -> None:
        """(Again after a HUP.) StatsD follows the settings."""
        self.backlog_metric = bool(cfg.enable_backlog_metric)
        if self.statsd is not None:
            self.statsd.sock.close()  # (workers forked with it keep their own descriptor)
        self.statsd = StatsdSender(cfg.statsd_host, cfg.statsd_prefix, cfg.dogstatsd_tags) if cfg.statsd_host else None

    def start(self) -> None:
        if self.exporter is not None:
            self.exporter.start()

    @property
    def master_metrics(self) -> StatsdSender | None:
        """What the master's own logger counts its messages into."""
        return self.statsd

    # --- workers ---

    def for_new_worker(self) -> Any:
        """Before a fork: what the new worker reports to (None: nothing is counted)."""
        targets: list[Any] = []
        if self.statsd is not None:
            targets.append(self.statsd)
        if self.exporter is not None:
            targets.append(self.exporter.new_block())
        if not targets:
            return None
        return targets[0] if len(targets) == 1 else Fanout(targets)

    def fork_guard(self) -> Any:
        """Held around a fork (see ``Exporter.fork_guard``)."""
        return self.exporter.fork_guard if self.exporter is not None else contextlib.nullcontext()

    def forked(self, pid: int, metrics: Any) -> None:
        if self.exporter is not None:
            block = metrics.targets[-1] if isinstance(metrics, Fanout) else metrics
            self.exporter.worker_started(pid, block)

    def in_worker(self) -> None:
        """In a new worker, right after the fork."""
        if self.exporter is not None:
            self.exporter.close_in_worker()

    def retiring(self, pid: int, reason: str | None) -> None:
        """The master is stopping this worker: replaced for ``reason``, or (None) for good."""
        self._why_leaving.setdefault(pid, reason)

    def reaped(self, pid: int, timed_out: bool) -> None:
        reason = self._why_leaving.pop(pid, "crash")
        if timed_out:
            reason = "timeout"
        if self.exporter is not None:
            self.exporter.worker_gone(pid, reason)

    def tick(self, workers: int) -> None:
        """Once per pass of the master's loop."""
        if self.statsd is not None:
            self.statsd.workers(workers)
            if self.backlog_metric:
                depths = [listener.queued_connections() for listener in self.listeners()]
                self.statsd.backlog(sum(depth for depth in depths if depth))


def metrics_address(text: str) -> tuple[str, int]:
    """``metrics_bind`` (checked by its validator) as a host and a port."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)
