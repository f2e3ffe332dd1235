"""Validators: each takes a raw value and returns the normalised one or raises ``ValueError``.

The ``ValueError`` message says what was expected; ``Config.set`` adds the setting name and value,
so the user sees one line such as ``Invalid value for workers: 'x' (expected a non-negative integer)``.
The rules follow Gunicorn's (``int(x, 0)`` for integers, "true"/"false" strings for booleans...).
"""

from __future__ import annotations

import grp
import importlib
import importlib.util
import inspect
import os
import pwd
from collections.abc import Callable
from typing import Any

from pronghorn.config.setting import Validator
from pronghorn.ip_literals import needs_ipaddress, packed_address


def boolean(value: Any) -> bool:
    """True or False, or the strings "true"/"false"; None (Gunicorn accepts it: falsy) is False."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    raise ValueError("expected true or false")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise ValueError("expected an integer")


def integer(value: Any) -> int:
    """Any integer (limits where zero or negative has a meaning)."""
    return _integer(value)


def positive_integer(value: Any) -> int:
    """A non-negative integer, as Gunicorn's ``validate_pos_int``."""
    try:
        number = _integer(value)
    except ValueError:
        raise ValueError("expected a non-negative integer") from None
    if number < 0:
        raise ValueError("expected a non-negative integer")
    return number


def number(value: Any) -> float:
    """A non-negative number of seconds (int or float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            pass
        else:
            if parsed >= 0:
                return int(parsed) if parsed.is_integer() else parsed
    raise ValueError("expected a non-negative number")


def string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


def list_of_strings(value: Any) -> list[str]:
    """A list of strings; a single string becomes a one-item list."""
    if not value:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return [v.strip() for v in value]


def comma_list(value: Any) -> list[str]:
    """A comma-separated string (or a list) becomes a list of non-empty items."""
    if not value:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list_of_strings(value)


def address_list(value: Any) -> list[str]:
    """IP addresses or CIDR networks, or ``*`` (kept as strings, like Gunicorn)."""
    items = comma_list(value)
    for item in items:
        if item == "*":
            continue
        if needs_ipaddress(item):
            import ipaddress  # only for networks and scoped addresses (pronghorn.ip_literals)

            try:
                ipaddress.ip_network(item)
                continue
            except ValueError:
                pass
        elif packed_address(item) is not None:
            continue
        raise ValueError(f"expected IP addresses or networks separated by commas, or '*' ({item!r} is neither)")
    return items


def choice(*options: str) -> Validator:
    """A case-insensitive choice among ``options``."""

    def validate(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in options:
            return value.strip().lower()
        raise ValueError("expected one of " + ", ".join(options))

    return validate


def dictionary(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a dict")
    return dict(value)


def octal_or_int(value: Any) -> int:
    """``umask``: ``int(x, 0)`` on strings ("0o22" works, "0022" does not)."""
    return positive_integer(value)


def auto_int(text: str) -> int:
    """CLI type for ``--umask``: a leading 0 means octal, as on Gunicorn's command line."""
    if len(text) > 1 and text[0] == "0" and text[1] in "01234567":
        return int(text, 8)
    return int(text, 0)


def directory(value: Any) -> str:
    """An existing directory, made absolute (``chdir``)."""
    path = string(value)
    if not path:
        raise ValueError("expected a directory")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ValueError("expected an existing directory")
    return path


def files_or_patterns(value: Any) -> list[str]:
    """Paths that must exist, or glob patterns (kept; expanded when watched)."""
    items = list_of_strings(value)
    for item in items:
        if not any(ch in item for ch in "*?[") and not os.path.exists(item):
            raise ValueError(f"expected existing files or glob patterns ({item!r} does not exist)")
    return items


def _account_id(value: Any, kind: str, lookup: Callable[[str], int]) -> int:
    """A uid or gid given as a number, a digit string or a name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdecimal():
            return int(text)
        try:
            return lookup(text)
        except KeyError:
            raise ValueError(f"expected a {kind} name or {kind[0]}id (no {kind} {text!r})") from None
    raise ValueError(f"expected a {kind} name or {kind[0]}id")


def user_id(value: Any) -> int:
    """A uid; None (Gunicorn's "leave it as it is") is the effective uid."""
    if value is None:
        return os.geteuid()
    return _account_id(value, "user", lambda name: pwd.getpwnam(name).pw_uid)


def group_id(value: Any) -> int:
    """A gid; None is the effective gid."""
    if value is None:
        return os.getegid()
    return _account_id(value, "group", lambda name: grp.getgrnam(name).gr_gid)


def class_or_string(value: Any) -> Any:
    """A worker or logger class: a name, a dotted path, or the class itself (resolved later)."""
    if inspect.isclass(value):
        return value
    text = string(value)
    if not text:
        raise ValueError("expected a class or a dotted path to one")
    return text


def _resolve_dotted(text: str) -> Any:
    module_name, _, attribute = text.rpartition(".")
    if not module_name:
        raise ValueError("expected a callable or a dotted path 'module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"expected a callable or a dotted path 'module.function' ({exc})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"expected a callable or a dotted path 'module.function' (no {attribute!r} in {module_name})") from None


def _positional_arity(function: Callable[..., Any]) -> tuple[int, int | None]:
    """The (minimum, maximum) number of positional arguments ``function`` accepts; max None = any."""
    params = inspect.signature(function).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
    return required, None if variadic else len(positional)


def accepts(function: Callable[..., Any], count: int) -> bool:
    try:
        low, high = _positional_arity(function)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return True
    return low <= count and (high is None or count <= high)


def hook(arity: int) -> Validator:
    """A server hook: a callable (or "module.function") taking ``arity`` positional arguments."""

    def validate(value: Any) -> Callable[..., Any]:
        function = _resolve_dotted(value.strip()) if isinstance(value, str) else value
        plural = "argument" if arity == 1 else "arguments"
        if not callable(function) or not accepts(function, arity):
            raise ValueError(f"expected a callable taking {arity} {plural}")
        return function  # type: ignore[no-any-return]

    return validate


def post_request_hook(value: Any) -> Callable[..., Any]:
    """``post_request`` takes (worker, req), (worker, req, environ) or (worker, req, environ, resp)."""
    function = _resolve_dotted(value.strip()) if isinstance(value, str) else value
    if not callable(function):
        raise ValueError("expected a callable taking 2, 3 or 4 arguments")
    for count in (4, 3, 2):
        if accepts(function, count):
            break
    else:
        raise ValueError("expected a callable taking 2, 3 or 4 arguments")
    if count == 4:
        return function  # type: ignore[no-any-return]
    return _AdaptedPostRequest(function, count)


class _AdaptedPostRequest:
    """Calls a 2- or 3-argument ``post_request`` hook with the 4 arguments the server passes."""

    def __init__(self, function: Callable[..., Any], count: int) -> None:
        self.function = function
        self.count = count
        self.__qualname__ = getattr(function, "__qualname__", "post_request")

    def __call__(self, worker: Any, req: Any, environ: Any, resp: Any) -> Any:
        return self.function(*(worker, req, environ, resp)[: self.count])


def choice_or_switch(*options: str, on: str, off: str) -> Validator:
    """A case-insensitive choice among ``options`` that also takes an on/off switch.

    ``True`` (or "true", "1") means ``on``; ``False``, ``None`` (or "false", "0", "none") mean ``off``,
    as Gunicorn's ``proxy_protocol`` accepts them (``proxy_protocol = True`` is ``auto``).
    """
    expected = "expected one of " + ", ".join(options) + ", or true/false"

    def validate(value: Any) -> str:
        if value is None:
            return off
        if isinstance(value, bool):
            return on if value else off
        if isinstance(value, str):
            text = value.strip().lower()
            if text in options:
                return text
            if text in ("true", "1"):
                return on
            if text in ("false", "0", "none"):
                return off
        raise ValueError(expected)

    return validate


_STATSD_EXPECTED = "expected HOST:PORT (port 8125 when omitted), [IPV6]:PORT or unix://PATH"


def statsd_address(value: Any) -> str | None:
    """``statsd_host``: ``HOST[:PORT]``, ``[IPV6][:PORT]``, ``unix:PATH`` or ``unix://PATH``.

    The address is checked here and kept as the stripped string (empty means unset); the metrics
    layer turns it into a socket address, with port 8125 when none is given.
    """
    text = string(value)
    if not text:
        return None
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(_STATSD_EXPECTED)
        return text
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(_STATSD_EXPECTED)
        port = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            raise ValueError(_STATSD_EXPECTED)
        host, colon, port_text = text.partition(":")
        port = port_text if colon else None
        if not host:
            raise ValueError(_STATSD_EXPECTED)
    if port is not None and not (port and all(c in "0123456789" for c in port) and int(port) <= 65535):
        raise ValueError(_STATSD_EXPECTED)
    return text


def tcp_address(value: Any) -> str | None:
    """``metrics_bind``: ``HOST:PORT`` or ``[IPV6]:PORT``, the port given (empty means unset)."""
    text = string(value)
    if not text:
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        port = rest[1:] if bracket and rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
        if ":" in host:
            host = ""
    if not host or not (port and all(c in "0123456789" for c in port) and int(port) <= 65535):
        raise ValueError("expected HOST:PORT or [IPV6]:PORT")
    return text


def lowercase_string(value: Any) -> str:
    """A string compared without case (``loglevel``); None is the empty string."""
    return (string(value) or "").lower()


_LOOP_CHOICE = choice("auto", "asyncio", "uvloop")


def event_loop(value: Any) -> str:
    """``asgi_loop``: a choice, and ``uvloop`` only where it is installed."""
    loop: str = _LOOP_CHOICE(value)
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed (pip install uvloop); expected auto or asyncio")
    return loop
