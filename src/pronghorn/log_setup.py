"""How the error and access logs are set up from the settings: plain handlers, syslog, and the
``logging.config`` files and dictionaries (``logconfig``, ``logconfig_json``, ``logconfig_dict``).

Kept apart from ``logs.py`` (the logger the server calls) because it runs once per start and per
reload, never per request, and because its failures must name the setting at fault: a broken
logging configuration stops start-up with one line, and on HUP keeps the previous one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, TextIO

from pronghorn.errors import ConfigError

ERROR_LOGGER = "pronghorn.error"
ACCESS_LOGGER = "pronghorn.access"
# Configurations written for Gunicorn name its loggers: they configure ours.
GUNICORN_NAMES = {"gunicorn.error": ERROR_LOGGER, "gunicorn.access": ACCESS_LOGGER}
ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"


def dict_config_defaults() -> dict[str, Any]:
    """What ``logconfig_dict`` and ``logconfig_json`` are laid over, key by top-level key (as in
    Gunicorn): our two loggers on the console, the error log on standard error. Handlers and
    formatters are merged by name instead, so that the defaults' root logger still finds its
    console handler when a dictionary brings its own handlers (Gunicorn fails there)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            ERROR_LOGGER: {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
            "error_console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
        },
        "formatters": {"generic": {"format": ERROR_FORMAT, "datefmt": DATE_FORMAT}},
    }


def file_handler(target: str, dash: TextIO, fmt: str, setting: str) -> logging.Handler:
    """A handler writing to ``target`` ("-": ``dash``), formatted with ``fmt``."""
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(dash)
    else:
        directory = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(directory):
            raise ConfigError(f"Invalid value for {setting}: {target!r} (the directory {directory!r} does not exist)")
        try:
            handler = logging.FileHandler(target)
        except OSError as exc:
            raise ConfigError(f"Invalid value for {setting}: {target!r} ({exc.strerror})") from None
    handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
    return handler


def syslog_handler(cfg: Any, kind: str) -> logging.Handler:
    """A handler sending to ``syslog_addr``, tagged ``pronghorn.<prefix>.<kind>``."""
    import logging.handlers  # (only with syslog: what the master imports, every worker carries)
    address, socktype = parse_syslog_address(cfg.syslog_addr)
    facility = logging.handlers.SysLogHandler.facility_names.get(str(cfg.syslog_facility).lower())
    if facility is None:
        raise ConfigError(f"Invalid value for syslog_facility: {cfg.syslog_facility!r} (expected one of "
                          f"{', '.join(sorted(logging.handlers.SysLogHandler.facility_names))})")
    try:
        handler = logging.handlers.SysLogHandler(address, facility, socktype)
    except OSError as exc:
        raise ConfigError(f"Invalid value for syslog_addr: {cfg.syslog_addr!r} ({exc.strerror or exc})") from None
    prefix = cfg.syslog_prefix or cfg.proc_name_or_default.replace(":", ".")
    handler.setFormatter(logging.Formatter(f"pronghorn.{prefix}.{kind}[%(process)d]: [%(levelname)s] %(message)s"))
    return handler


def parse_syslog_address(text: str) -> tuple[str | tuple[str, int], socket.SocketKind]:
    """``unix://PATH[#dgram|#stream]``, ``udp://HOST:PORT`` or ``tcp://HOST:PORT`` (port 514 if left
    out) as an address and socket type for ``SysLogHandler``."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("unix", "udp", "tcp"):
        raise ConfigError(f"Invalid value for syslog_addr: {text!r} (expected unix://PATH, udp://HOST:PORT or "
                          "tcp://HOST:PORT)")
    if scheme == "unix":
        path, _, kind = rest.partition("#")
        if kind not in ("", "dgram", "stream"):
            raise ConfigError(f"Invalid value for syslog_addr: {text!r} (the socket type is #dgram or #stream)")
        return path, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM
    host, port = rest, "514"
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, after = rest[1:].partition("]")
        if after:
            port = after[1:] if after.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    if not port.isdecimal() or not host:
        raise ConfigError(f"Invalid value for syslog_addr: {text!r} (expected HOST:PORT after {scheme}://)")
    return (host, int(port)), socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM


def apply_config_files(cfg: Any) -> bool:
    """Apply ``logconfig_dict``, else ``logconfig_json``, else ``logconfig``; True if one was."""
    if not (cfg.logconfig_dict or cfg.logconfig_json or cfg.logconfig):
        return False
    import json  # (only with a logging configuration: logging.config brings socketserver, pickle...)
    import logging.config

    if cfg.logconfig_dict:
        named = _dict_config(dict(cfg.logconfig_dict), "logconfig_dict", repr(cfg.logconfig_dict)[:60])
    elif cfg.logconfig_json:
        try:
            with open(cfg.logconfig_json, encoding="utf-8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Invalid value for logconfig_json: {cfg.logconfig_json!r} ({_reason(exc)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"Invalid value for logconfig_json: {cfg.logconfig_json!r} (expected a JSON object)")
        named = _dict_config(loaded, "logconfig_json", repr(cfg.logconfig_json))
    else:
        named = _file_config(cfg.logconfig)
    for theirs, ours in GUNICORN_NAMES.items():
        if theirs in named and ours not in named:
            _adopt(logging.getLogger(theirs), logging.getLogger(ours))
    return True


def _dict_config(config: dict[str, Any], setting: str, shown: str) -> set[str]:
    """Apply a ``dictConfig`` dictionary over the defaults; the names of the loggers it set up."""
    merged = dict_config_defaults()
    for key, value in config.items():
        if key in ("handlers", "formatters") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        logging.config.dictConfig(merged)
    except Exception as exc:  # noqa: BLE001 - dictConfig raises ValueError, TypeError, ImportError...
        raise ConfigError(f"Invalid value for {setting}: {shown} ({_reason(exc)})") from None
    loggers = merged.get("loggers")
    return set(loggers) if isinstance(loggers, dict) else set()


def _file_config(path: str) -> set[str]:
    """Apply a ``fileConfig`` INI file; the names of the loggers it set up."""
    import configparser

    if not os.path.exists(path):
        raise ConfigError(f"Invalid value for logconfig: {path!r} (no such file)")
    try:
        parser = configparser.ConfigParser(defaults={"__file__": path, "here": os.path.dirname(path)},
                                           interpolation=None)
        parser.read(path, encoding="utf-8")
        keys = [key.strip() for key in parser.get("loggers", "keys", fallback="").split(",") if key.strip()]
        named = {parser.get(f"logger_{key}", "qualname", fallback=key) for key in keys if key != "root"}
        logging.config.fileConfig(path, defaults={"__file__": path, "here": os.path.dirname(path)},
                                  disable_existing_loggers=False)
    except Exception as exc:  # noqa: BLE001 - fileConfig raises whatever the file leads to
        raise ConfigError(f"Invalid value for logconfig: {path!r} ({_reason(exc)})") from None
    return named


def _adopt(source: logging.Logger, target: logging.Logger) -> None:
    for handler in list(target.handlers):
        target.removeHandler(handler)
    for handler in source.handlers:
        target.addHandler(handler)
    target.setLevel(source.level or logging.INFO)
    target.propagate = source.propagate


def file_handlers() -> list[logging.FileHandler]:
    """Every file handler of every logger (each once)."""
    loggers = [logging.getLogger(), *(log for log in logging.Logger.manager.loggerDict.values()
                                      if isinstance(log, logging.Logger))]
    found: dict[int, logging.FileHandler] = {}
    for log in loggers:
        for handler in log.handlers:
            if isinstance(handler, logging.FileHandler):
                found.setdefault(id(handler), handler)
    return list(found.values())


def capture_output(cfg: Any) -> None:
    """``capture_output``: what the app prints goes to the error log file (nothing to do with "-")."""
    if not cfg.capture_output or cfg.errorlog == "-":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(cfg.errorlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, sys.stdout.fileno())
        os.dup2(fd, sys.stderr.fileno())
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text.strip() else type(exc).__name__
