"""Every validator the declared settings use: accepted values, normalisation, and the error text."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from pronghorn.config import validators
from pronghorn.config.declared import ALL_SETTINGS


def rejects(validator: Any, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        validator(value)
    assert str(caught.value) == message


def test_every_validator_used_is_covered_here() -> None:
    names = set()
    for setting in ALL_SETTINGS:
        names.add(getattr(setting.validator, "__qualname__", type(setting.validator).__name__).split(".")[0])
    covered = {
        "boolean", "integer", "positive_integer", "octal_or_int", "string", "list_of_strings", "comma_list",
        "address_list", "choice", "choice_or_switch", "dictionary", "directory", "files_or_patterns", "user_id",
        "group_id", "class_or_string", "hook", "post_request_hook", "statsd_address", "tcp_address", "lowercase_string",
        "event_loop",
    }
    assert names <= covered, names - covered


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("False", False), (" TRUE ", True),
])
def test_boolean(value: Any, expected: bool) -> None:
    assert validators.boolean(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", 1, 0.0, [], "0", "1", "yes", "on"])
def test_boolean_rejects(value: Any) -> None:
    rejects(validators.boolean, value, "expected true or false")


def test_integer() -> None:
    assert validators.integer(5) == 5
    assert validators.integer("-3") == -3
    assert validators.integer(" 0x10 ") == 16
    for bad in ("ten", True, 1.5, None, "1.0"):
        rejects(validators.integer, bad, "expected an integer")


def test_positive_integer() -> None:
    assert validators.positive_integer(0) == 0
    assert validators.positive_integer("4094") == 4094
    assert validators.positive_integer("0o22") == 18
    for bad in (-1, "-1", "many", "0022", False, None):
        rejects(validators.positive_integer, bad, "expected a non-negative integer")


def test_octal_or_int_for_umask() -> None:
    assert validators.octal_or_int(0o22) == 18
    assert validators.octal_or_int("0o22") == 18
    assert validators.octal_or_int("18") == 18
    # A config-file string goes through int(x, 0), which refuses a bare leading zero (as in Gunicorn).
    rejects(validators.octal_or_int, "0022", "expected a non-negative integer")


@pytest.mark.parametrize(("text", "expected"), [("022", 18), ("0o22", 18), ("0x12", 18), ("18", 18), ("0", 0)])
def test_auto_int_is_the_umask_cli_type(text: str, expected: int) -> None:
    assert validators.auto_int(text) == expected


def test_auto_int_rejects() -> None:
    with pytest.raises(ValueError):
        validators.auto_int("rw")


def test_string() -> None:
    assert validators.string("  app.log ") == "app.log"
    assert validators.string(None) is None
    rejects(validators.string, 3, "expected a string")


def test_list_of_strings() -> None:
    assert validators.list_of_strings("127.0.0.1:8000") == ["127.0.0.1:8000"]
    assert validators.list_of_strings([" a ", "b"]) == ["a", "b"]
    assert validators.list_of_strings(None) == []
    default: list[str] = []
    assert validators.list_of_strings(default) is not default  # a fresh list per Config
    rejects(validators.list_of_strings, [1], "expected a list of strings")
    rejects(validators.list_of_strings, 5, "expected a list of strings")


def test_comma_list() -> None:
    assert validators.comma_list("SCRIPT_NAME, PATH_INFO,") == ["SCRIPT_NAME", "PATH_INFO"]
    assert validators.comma_list(["a", "b"]) == ["a", "b"]
    assert validators.comma_list("") == []
    rejects(validators.comma_list, 7, "expected a list of strings")


def test_address_list() -> None:
    assert validators.address_list("127.0.0.1,::1") == ["127.0.0.1", "::1"]
    assert validators.address_list("10.0.0.0/8, *") == ["10.0.0.0/8", "*"]
    assert validators.address_list(["192.168.0.1"]) == ["192.168.0.1"]
    assert validators.address_list("") == []
    rejects(
        validators.address_list, "127.0.0.1,proxy",
        "expected IP addresses or networks separated by commas, or '*' ('proxy' is neither)",
    )
    # strict networks, as Gunicorn: host bits set are refused
    rejects(
        validators.address_list, "10.0.0.1/8",
        "expected IP addresses or networks separated by commas, or '*' ('10.0.0.1/8' is neither)",
    )


def test_choice() -> None:
    level = validators.choice("debug", "info", "warning", "error", "critical")
    assert level("INFO") == "info"
    assert level(" warning ") == "warning"
    rejects(level, "verbose", "expected one of debug, info, warning, error, critical")
    rejects(level, None, "expected one of debug, info, warning, error, critical")


@pytest.mark.parametrize(("value", "expected"), [
    ("off", "off"), ("V1", "v1"), ("v2", "v2"), ("auto", "auto"), (True, "auto"), (False, "off"),
    ("true", "auto"), ("1", "auto"), ("false", "off"), ("0", "off"), ("none", "off"), (None, "off"),
])
def test_choice_or_switch(value: Any, expected: str) -> None:
    mode = validators.choice_or_switch("off", "v1", "v2", "auto", on="auto", off="off")
    assert mode(value) == expected


def test_choice_or_switch_rejects() -> None:
    mode = validators.choice_or_switch("off", "v1", "v2", "auto", on="auto", off="off")
    for bad in ("v3", "yes", 2):
        rejects(mode, bad, "expected one of off, v1, v2, auto, or true/false")


def test_dictionary() -> None:
    default = {"X-FORWARDED-PROTO": "https"}
    value = validators.dictionary(default)
    assert value == default and value is not default
    rejects(validators.dictionary, [("a", "b")], "expected a dict")
    rejects(validators.dictionary, "x", "expected a dict")


def test_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert validators.directory(str(tmp_path)) == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert validators.directory("sub") == str(tmp_path / "sub")
    rejects(validators.directory, str(tmp_path / "missing"), "expected an existing directory")
    rejects(validators.directory, "", "expected a directory")
    rejects(validators.directory, 3, "expected a string")


def test_files_or_patterns(tmp_path: Path) -> None:
    existing = tmp_path / "settings.ini"
    existing.write_text("")
    pattern = str(tmp_path / "templates" / "*.html")
    assert validators.files_or_patterns([str(existing), pattern]) == [str(existing), pattern]
    assert validators.files_or_patterns(str(existing)) == [str(existing)]
    missing = str(tmp_path / "nope.txt")
    rejects(validators.files_or_patterns, [missing], f"expected existing files or glob patterns ({missing!r} does not exist)")


def test_user_id() -> None:
    me = pwd.getpwuid(os.geteuid())
    assert validators.user_id(me.pw_name) == me.pw_uid
    assert validators.user_id(str(me.pw_uid)) == me.pw_uid
    assert validators.user_id(1234) == 1234
    assert validators.user_id(None) == os.geteuid()  # Gunicorn: None leaves the user as it is
    rejects(validators.user_id, "no-such-user-pronghorn", "expected a user name or uid (no user 'no-such-user-pronghorn')")
    rejects(validators.user_id, 1.5, "expected a user name or uid")


def test_group_id() -> None:
    mine = grp.getgrgid(os.getegid())
    assert validators.group_id(mine.gr_name) == mine.gr_gid
    assert validators.group_id(str(mine.gr_gid)) == mine.gr_gid
    rejects(validators.group_id, "no-such-group-pronghorn", "expected a group name or gid (no group 'no-such-group-pronghorn')")
    rejects(validators.group_id, 1.5, "expected a group name or gid")


def test_class_or_string() -> None:
    assert validators.class_or_string(" sync ") == "sync"
    assert validators.class_or_string("pronghorn.logs.Logger") == "pronghorn.logs.Logger"
    assert validators.class_or_string(dict) is dict
    rejects(validators.class_or_string, "", "expected a class or a dotted path to one")
    rejects(validators.class_or_string, 3, "expected a string")


def test_hook_checks_the_arity() -> None:
    one = validators.hook(1)

    def on_starting(server: Any) -> None:
        pass

    def flexible(*args: Any) -> None:
        pass

    assert one(on_starting) is on_starting
    assert one(flexible) is flexible
    assert validators.hook(3)(lambda server, new, old=None: None) is not None
    rejects(one, lambda: None, "expected a callable taking 1 argument")
    rejects(one, lambda a, b: None, "expected a callable taking 1 argument")
    rejects(one, 42, "expected a callable taking 1 argument")


def test_hook_resolves_dotted_paths() -> None:
    from pronghorn.config.declared import hooks

    assert validators.hook(1)("pronghorn.config.declared.hooks.on_starting") is hooks.on_starting
    rejects(validators.hook(2), "pronghorn.config.declared.hooks.on_starting", "expected a callable taking 2 arguments")
    rejects(validators.hook(1), "no_dots", "expected a callable or a dotted path 'module.function'")
    with pytest.raises(ValueError, match="^expected a callable or a dotted path 'module.function' \\(no 'missing' in"):
        validators.hook(1)("pronghorn.config.declared.hooks.missing")
    with pytest.raises(ValueError, match="^expected a callable or a dotted path 'module.function' \\("):
        validators.hook(1)("pronghorn_no_such_module.hook")


def test_post_request_hook_adapts_shorter_signatures() -> None:
    seen: list[tuple[Any, ...]] = []

    def four(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        seen.append((worker, req, environ, resp))

    def three(worker: Any, req: Any, environ: Any) -> None:
        seen.append((worker, req, environ))

    def two(worker: Any, req: Any) -> None:
        seen.append((worker, req))

    assert validators.post_request_hook(four) is four
    for hook in (three, two):
        validators.post_request_hook(hook)("w", "r", "e", "s")
    assert seen == [("w", "r", "e"), ("w", "r")]
    rejects(validators.post_request_hook, lambda worker: None, "expected a callable taking 2, 3 or 4 arguments")
    rejects(validators.post_request_hook, 5, "expected a callable taking 2, 3 or 4 arguments")


@pytest.mark.parametrize("value", [
    "localhost:8125", "statsd", "10.0.0.1:9125", "[::1]:8125", "[::1]", "unix:///run/statsd.sock", "unix:/tmp/s",
    " metrics.internal:8125 ",
])
def test_statsd_address(value: str) -> None:
    assert validators.statsd_address(value) == value.strip()


def test_statsd_address_unset() -> None:
    assert validators.statsd_address(None) is None
    assert validators.statsd_address("") is None


@pytest.mark.parametrize("value", [
    "localhost:port", "::1", "[::1", "[]:8125", "[::1]8125", ":8125", "host:70000", "host:", "unix:", "unix://",
])
def test_statsd_address_rejects(value: str) -> None:
    rejects(validators.statsd_address, value, "expected HOST:PORT (port 8125 when omitted), [IPV6]:PORT or unix://PATH")


@pytest.mark.parametrize("value", ["127.0.0.1:9100", "localhost:9100", "[::1]:9100", " 0.0.0.0:9100 "])
def test_tcp_address(value: str) -> None:
    assert validators.tcp_address(value) == value.strip()
    assert validators.tcp_address(None) is None and validators.tcp_address("") is None


@pytest.mark.parametrize("value", ["localhost", ":9100", "host:", "host:port", "host:70000", "::1:9100", "[::1]",
                                   "[::1]9100", "unix:/tmp/metrics"])
def test_tcp_address_rejects(value: str) -> None:
    rejects(validators.tcp_address, value, "expected HOST:PORT or [IPV6]:PORT")


def test_none_where_gunicorn_takes_it() -> None:
    """Gunicorn's validate_bool, validate_user and validate_group take None; so do these."""
    assert validators.boolean(None) is False
    assert validators.user_id(None) == os.geteuid()
    assert validators.group_id(None) == os.getegid()
    assert validators.string(None) is None
    assert validators.list_of_strings(None) == []


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" 4 ", 4), ("0x10", 16), (5, 5)])
def test_integers_from_strings_as_gunicorn_converts_them(value: Any, expected: int) -> None:
    assert validators.positive_integer(value) == expected  # workers = os.getenv("WEB_CONCURRENCY", 3)


def test_bind_as_a_list_or_a_tuple() -> None:
    assert validators.list_of_strings(("127.0.0.1:8000", "unix:/tmp/s")) == ["127.0.0.1:8000", "unix:/tmp/s"]
    assert validators.list_of_strings("0.0.0.0:80") == ["0.0.0.0:80"]


def test_lowercase_string() -> None:
    assert validators.lowercase_string(" INFO ") == "info"
    assert validators.lowercase_string("warn") == "warn"  # not a level: info is used, with a warning at start
    assert validators.lowercase_string(None) == ""


def test_event_loop() -> None:
    assert validators.event_loop(" AsyncIO ") == "asyncio"
    assert validators.event_loop("auto") == "auto"
    rejects(validators.event_loop, "trio", "expected one of auto, asyncio, uvloop")
