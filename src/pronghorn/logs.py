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
from typing import Any, Protocol, TextIO

from pronghorn.config import Config

ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"
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


class Logger:
    """The error log and the access log of one process (master or worker)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.error_log = logging.getLogger(f"pronghorn.error.{id(self)}")
        self.error_log.propagate = False
        self.access_log = logging.getLogger(f"pronghorn.access.{id(self)}")
        self.access_log.propagate = False
        self.access_log.setLevel(logging.INFO)
        self.setup(cfg)

    def setup(self, cfg: Config) -> None:
        self.cfg = cfg
        self._access_enabled = bool(cfg.accesslog)
        self.error_log.setLevel(LEVELS.get(cfg.loglevel, logging.INFO))
        self._replace_handler(self.error_log, cfg.errorlog, sys.stderr, ERROR_FORMAT)
        if cfg.accesslog:
            self._replace_handler(self.access_log, cfg.accesslog, sys.stdout, "%(message)s")
        else:
            self._replace_handler(self.access_log, None, sys.stdout, "%(message)s")

    @staticmethod
    def _replace_handler(log: logging.Logger, target: str | None, dash: TextIO, fmt: str) -> None:
        for old in list(log.handlers):
            log.removeHandler(old)
            if isinstance(old, logging.FileHandler):
                old.close()
        if target is None:
            log.addHandler(logging.NullHandler())
            return
        handler: logging.Handler
        if target == "-":
            handler = logging.StreamHandler(dash)
        else:
            directory = os.path.dirname(os.path.abspath(target))
            if not os.path.isdir(directory):
                raise OSError(f"log file directory {directory!r} does not exist")
            handler = logging.FileHandler(target)
        handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
        log.addHandler(handler)

    # --- error log ---

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.warning(msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.error(msg, *args, **kwargs)

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.critical(msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.error_log.exception(msg, *args, **kwargs)

    def log(self, level: int | str, msg: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(level, str):
            level = LEVELS.get(level.lower(), logging.INFO)
        self.error_log.log(level, msg, *args, **kwargs)

    def reopen_files(self) -> None:
        """Reopen log files (USR1), so a rotated file is let go."""
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if isinstance(handler, logging.FileHandler):
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

    def access(self, resp: AccessResponse, req: AccessRequest, environ: Mapping[str, Any], request_time: float) -> None:
        """Write one access-log line (``request_time`` in seconds)."""
        if not self.access_enabled:
            return
        try:
            line = self.cfg.access_log_format % self.atoms(resp, req, environ, request_time)
            self.access_log.info(line)
        except Exception:
            self.exception("Failed to format the access log line")

    def atoms(self, resp: AccessResponse, req: AccessRequest, environ: Mapping[str, Any], request_time: float) -> _SafeAtoms:
        status = resp.status.split(None, 1)[0] if resp.status else "-"
        micros = int(request_time * 1_000_000)
        atoms: dict[str, Any] = {
            "h": environ.get("REMOTE_ADDR") or "-",
            "l": "-",
            "u": _basic_auth_user(environ) or "-",
            "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime()),
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
        atoms = {key: _escape(value) for key, value in atoms.items()}
        atoms.update(_lookups("i", req.headers))
        atoms.update(_lookups("o", resp.headers))
        atoms.update(_lookups("e", ((k, v) for k, v in environ.items() if isinstance(v, str))))
        return _SafeAtoms(atoms)


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

