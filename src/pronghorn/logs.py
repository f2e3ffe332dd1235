"""Error and access logs, with Gunicorn's access-log atoms.

The error log uses the format ``[time] [pid] [LEVEL] message``; the access log renders
``access_log_format`` (Apache-style ``%(atom)s`` placeholders) for every request. Files are opened
in append mode and reopened on USR1 so that log rotation works.
"""

from __future__ import annotations

import binascii
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Protocol

from pronghorn import log_setup
from pronghorn.config import Config
from pronghorn.errors import ConfigError
from pronghorn.log_setup import ACCESS_LOGGER, ERROR_FORMAT, ERROR_LOGGER

MICROSECOND = timedelta(microseconds=1)
# The JSON access log (``access_log_json``): a field per atom, named for log pipelines.
JSON_FIELDS = (
    ("remote_addr", "h"), ("user", "u"), ("time", "t"), ("request", "r"), ("method", "m"), ("path", "U"),
    ("query", "q"), ("protocol", "H"), ("status", "s"), ("bytes", "B"), ("referer", "f"), ("user_agent", "a"),
    ("duration_us", "D"), ("pid", "p"),
)
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class AccessRequest(Protocol):
    headers: list[tuple[str, str]]


class AccessResponse(Protocol):
    @property
    def status(self) -> str | None: ...

    @property
    def sent(self) -> int: ...

    @property
    def headers(self) -> list[tuple[str, str]]: ...


class _SafeAtoms(dict[str, Any]):
    """Atoms for ``%``-formatting: unknown atoms render as ``-``; ``{name}i/o/e`` look up headers."""

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{"):
            key = key.lower()
        return super().get(key, "-")


# Gunicorn's names for its logger classes: a configuration that names one gets ours.
LOGGER_ALIASES = ("simple", "gunicorn.glogging.Logger", "gunicorn.instrument.statsd.Statsd", "pronghorn.logs.Logger")


def make_logger(cfg: Config) -> Any:
    """An instance of ``logger_class`` (``ConfigError`` naming the setting if it cannot be made)."""
    value = cfg.logger_class
    if isinstance(value, str) and value in LOGGER_ALIASES:
        return Logger(cfg)
    cls = value
    if isinstance(value, str):
        import importlib

        module_name, _, name = value.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"Invalid value for logger_class: {value!r} (cannot load it: {exc})") from None
    if not isinstance(cls, type):
        raise ConfigError(f"Invalid value for logger_class: {value!r} (expected a class)")
    return cls(cfg)


class Logger:
    """The error log and the access log of one process (master or worker).

    The interface of Gunicorn's logger class (``logger_class`` may name a replacement with the same
    methods): ``setup(cfg)``, the error-log methods, ``access(resp, req, environ, request_time)``
    with a ``timedelta``, ``atoms()``, ``reopen_files()`` and ``close_on_exec()``. Counting log
    messages and ``extra={"metric": ...}`` go to the metrics (``pronghorn.metrics``), which this
    class only hands them to.
    """

    def __init__(self, cfg: Config, metrics: Any = None) -> None:
        self.cfg = cfg
        self.metrics = metrics  # a ``pronghorn.metrics.Metrics``, or None
        self.error_log = logging.getLogger(ERROR_LOGGER)
        self.error_log.propagate = False
        self.access_log = logging.getLogger(ACCESS_LOGGER)
        self.access_log.propagate = False
        self.access_log.setLevel(logging.INFO)
        self._access_json: Any = None  # json.dumps, with access_log_json
        self._applied: Config | None = None
        self.setup(cfg)

    def setup(self, cfg: Config) -> None:
        """Set the logs up from ``cfg``. A broken logging configuration raises ``ConfigError`` naming
        its setting, after putting back the one set up before (if any)."""
        try:
            self._apply(cfg)
        except ConfigError:
            if self._applied is not None:
                self._apply(self._applied)
            raise
        self._applied = self.cfg = cfg

    def _apply(self, cfg: Config) -> None:
        self.error_log.setLevel(LEVELS.get(cfg.loglevel, logging.INFO))
        self._set_handlers(self.error_log, log_setup.file_handler(cfg.errorlog, sys.stderr, ERROR_FORMAT, "errorlog")
                           if cfg.errorlog else None)
        self._set_handlers(self.access_log, log_setup.file_handler(cfg.accesslog, sys.stdout, "%(message)s",
                                                                   "accesslog") if cfg.accesslog else None)
        to_syslog = bool(cfg.syslog)
        if to_syslog:
            self.error_log.addHandler(log_setup.syslog_handler(cfg, "error"))
            if not cfg.disable_redirect_access_to_syslog:
                self.access_log.addHandler(log_setup.syslog_handler(cfg, "access"))
        configured = log_setup.apply_config_files(cfg)
        log_setup.capture_output(cfg)
        # As in Gunicorn: a logging configuration or syslog turns the access log on by itself.
        self._access_enabled = bool(cfg.accesslog or configured
                                    or (to_syslog and not cfg.disable_redirect_access_to_syslog))
        if cfg.access_log_json:
            import json  # (only then: every module the master imports is in every worker)

            self._access_json = json.dumps
        else:
            self._access_json = None

    @staticmethod
    def _set_handlers(log: logging.Logger, handler: logging.Handler | None) -> None:
        for old in list(log.handlers):
            log.removeHandler(old)
            old.close()  # (a StreamHandler leaves its stream open)
        log.addHandler(handler if handler is not None else logging.NullHandler())

    # --- error log ---

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.debug(msg, *args, **kwargs)
        self._extra_metric(kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.info(msg, *args, **kwargs)
        self._extra_metric(kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.warning(msg, *args, **kwargs)
        self._count("warning")

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.error(msg, *args, **kwargs)
        self._count("error")

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.critical(msg, *args, **kwargs)
        self._count("critical")

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.exception(msg, *args, **kwargs)
        self._count("exception")

    def log(self, level: int | str, msg: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(level, str):
            level = LEVELS.get(level.lower(), logging.INFO)
        self.error_log.log(level, msg, *args, **kwargs)
        self._extra_metric(kwargs)

    def _count(self, level: str) -> None:
        if self.metrics is not None:
            self.metrics.log_message(level)

    def _extra_metric(self, kwargs: dict[str, Any]) -> None:
        """``extra={"metric": name, "value": v, "mtype": "counter|gauge|histogram|timer"}``, as with
        Gunicorn's StatsD logger."""
        extra = kwargs.get("extra")
        if self.metrics is not None and extra and "metric" in extra and "value" in extra:
            self.metrics.custom(str(extra["metric"]), extra["value"], str(extra.get("mtype", "")))

    def reopen_files(self) -> None:
        """Reopen log files (USR1), so a rotated file is let go: ours, those of any logger a logging
        configuration set up, and (with ``capture_output``) the one standard output and error go to."""
        log_setup.capture_output(self.cfg)
        for handler in log_setup.file_handlers():
            handler.acquire()
            try:
                if handler.stream:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()

    def close_on_exec(self) -> None:
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if isinstance(handler, logging.FileHandler) and handler.stream:
                    os.set_inheritable(handler.stream.fileno(), False)

    # --- access log ---

    @property
    def access_enabled(self) -> bool:
        return self._access_enabled

    def access(self, resp: AccessResponse, req: AccessRequest, environ: Mapping[str, Any],
               request_time: timedelta) -> None:
        """Write one access-log line."""
        if not self.access_enabled:
            return
        try:
            if self._access_json is not None:  # the values as they are: JSON escapes them itself
                values = self.plain_atoms(resp, environ, request_time)
                line = self._access_json({name: values[atom] for name, atom in JSON_FIELDS})
            else:
                line = self.cfg.access_log_format % self.atoms(resp, req, environ, request_time)
            self.access_log.info(line)
        except Exception:
            self.exception("Failed to format the access log line")

    def now(self) -> str:
        """The ``t`` atom: local time as Apache writes it."""
        return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime())

    def atoms(self, resp: AccessResponse, req: AccessRequest, environ: Mapping[str, Any],
              request_time: timedelta) -> _SafeAtoms:
        """The atoms for ``access_log_format``: ``"`` escaped, None as ``-``, plus the lookups."""
        atoms = {key: _escape(value) for key, value in self.plain_atoms(resp, environ, request_time).items()}
        atoms.update(_lookups("i", req.headers))
        atoms.update(_lookups("o", resp.headers))
        atoms.update(_lookups("e", ((k, v) for k, v in environ.items() if isinstance(v, str))))
        return _SafeAtoms(atoms)

    def plain_atoms(self, resp: AccessResponse, environ: Mapping[str, Any], request_time: timedelta) -> dict[str, Any]:
        status = resp.status.split(None, 1)[0] if resp.status else "-"
        micros = request_time // MICROSECOND
        return {
            "h": environ.get("REMOTE_ADDR") or "-",
            "l": "-",
            "u": _basic_auth_user(environ) or "-",
            "t": self.now(),
            "r": f"{environ.get('REQUEST_METHOD', '-')} {environ.get('RAW_URI', '-')} {environ.get('SERVER_PROTOCOL', '-')}",
            "s": status,
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "q": environ.get("QUERY_STRING"),
            "H": environ.get("SERVER_PROTOCOL"),
            "b": str(resp.sent) if resp.sent is not None else "-",
            "B": resp.sent,
            "f": environ.get("HTTP_REFERER") or "-",
            "a": environ.get("HTTP_USER_AGENT") or "-",
            "T": micros // 1_000_000,
            "M": micros // 1000,
            "D": micros,
            "L": f"{micros // 1_000_000}.{micros % 1_000_000:06d}",
            "p": f"<{os.getpid()}>",
        }


def _escape(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace('"', '\\"')
    return value


def _lookups(kind: str, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {"{%s}%s" % (name.lower(), kind): _escape(value) for name, value in pairs}


def _basic_auth_user(environ: Mapping[str, Any]) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    import base64  # here: only requests with a Basic Authorization header need it

    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(":")
    return user if sep else None

