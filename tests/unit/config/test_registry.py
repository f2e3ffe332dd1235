"""The settings registry: complete against Gunicorn, consistent, and documented."""

from __future__ import annotations

import inspect
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from pronghorn.config import cli
from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.declared.logging import platform_syslog_addr
from pronghorn.config.deferred import DEFERRED_SETTINGS
from pronghorn.config.docs import render_settings_markdown
from pronghorn.config.setting import SECTIONS, Setting

BY_NAME = {setting.name: setting for setting in ALL_SETTINGS}
REPO = Path(__file__).resolve().parents[3]
DECLARED_DIR = REPO / "src" / "pronghorn" / "config" / "declared"
DOCS_PATH = REPO / "docs" / "settings.md"


class Hook:
    """A hook's Gunicorn default: a function with these parameter names."""

    def __init__(self, *parameters: str) -> None:
        self.parameters = parameters


PROCESS_DEPENDENT = object()  # chdir, user, group: the start directory, euid, egid
PLATFORM_DEPENDENT = object()  # syslog_addr

# Every Gunicorn 27.0 setting outside the deferred families, in documentation order (sections in
# SECTIONS order, Gunicorn's order inside a section), with Gunicorn's default as the reference
# gives it (env-dependent ones as they are with an empty environment).
GUNICORN_DEFAULTS: dict[str, Any] = {
    # Config File
    "config": "./gunicorn.conf.py",
    "wsgi_app": None,
    # Server Socket
    "bind": ["127.0.0.1:8000"],
    "backlog": 2048,
    # Worker Processes
    "workers": 1,
    "worker_class": "sync",
    "threads": 1,
    "worker_connections": 1000,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "timeout": 30,
    "graceful_timeout": 30,
    "keepalive": 2,
    "asgi_loop": "auto",
    "asgi_lifespan": "auto",
    "asgi_disconnect_grace_period": 3,
    "websocket_max_message_size": 16777216,
    "http_parser": "auto",
    # Security
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
    # Debugging
    "reload": False,
    "reload_engine": "auto",
    "reload_extra_files": [],
    "spew": False,
    "check_config": False,
    "print_config": False,
    # Server Mechanics
    "preload_app": False,
    "sendfile": None,
    "reuse_port": False,
    "chdir": PROCESS_DEPENDENT,
    "daemon": False,
    "raw_env": [],
    "pidfile": None,
    "worker_tmp_dir": None,
    "user": PROCESS_DEPENDENT,
    "group": PROCESS_DEPENDENT,
    "umask": 0,
    "initgroups": False,
    "tmp_upload_dir": None,
    "secure_scheme_headers": {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
    "forwarded_allow_ips": "127.0.0.1,::1",
    "pythonpath": None,
    "proxy_protocol": "off",
    "proxy_allow_ips": "127.0.0.1,::1",
    "permit_obsolete_folding": False,
    "strip_header_spaces": False,
    "permit_unconventional_http_method": False,
    "permit_unconventional_http_version": False,
    "casefold_http_method": False,
    "forwarder_headers": "SCRIPT_NAME,PATH_INFO",
    "header_map": "drop",
    "root_path": "",
    # Logging
    "accesslog": None,
    "disable_redirect_access_to_syslog": False,
    "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "errorlog": "-",
    "loglevel": "info",
    "capture_output": False,
    "logger_class": "gunicorn.glogging.Logger",
    "logconfig": None,
    "logconfig_dict": {},
    "logconfig_json": None,
    "syslog_addr": PLATFORM_DEPENDENT,
    "syslog": False,
    "syslog_prefix": None,
    "syslog_facility": "user",
    "enable_stdio_inheritance": False,
    "statsd_host": None,
    "dogstatsd_tags": "",
    "statsd_prefix": "",
    "enable_backlog_metric": False,
    # Process Naming
    "proc_name": None,
    "default_proc_name": "gunicorn",
    # SSL
    "keyfile": None,
    "certfile": None,
    "ssl_version": ssl.PROTOCOL_TLS,
    "cert_reqs": ssl.CERT_NONE,
    "ca_certs": None,
    "suppress_ragged_eofs": True,
    "do_handshake_on_connect": False,
    "ciphers": None,
    # Server Hooks
    "on_starting": Hook("server"),
    "on_reload": Hook("server"),
    "when_ready": Hook("server"),
    "pre_fork": Hook("server", "worker"),
    "post_fork": Hook("server", "worker"),
    "post_worker_init": Hook("worker"),
    "worker_int": Hook("worker"),
    "worker_abort": Hook("worker"),
    "pre_exec": Hook("server"),
    "pre_request": Hook("worker", "req"),
    "post_request": Hook("worker", "req", "environ", "resp"),
    "child_exit": Hook("server", "worker"),
    "worker_exit": Hook("server", "worker"),
    "nworkers_changed": Hook("server", "new_value", "old_value"),
    "on_exit": Hook("server"),
    "ssl_context": Hook("config", "default_ssl_context_factory"),
}

# Defaults pronghorn changes on purpose; each is explained under "Differs from Gunicorn" in the docs.
DELIBERATE_DIFFERENCES = {
    "config": "./pronghorn.conf.py",
    "worker_class": "gthread",
    "logger_class": "pronghorn.logs.Logger",
    "default_proc_name": "pronghorn",
}

# Settings whose mechanism has not landed. This list may only shrink as features land.
PENDING = frozenset({"http_parser"})

# Families that come in later rounds: none of these may be declared yet.
DEFERRED_PREFIXES = ("dirty_", "control_socket", "http2_")
DEFERRED_NAMES = frozenset({
    "on_dirty_starting", "http_protocols", "protocol", "uwsgi_allow_ips", "paste", "raw_paste_global_conf",
})


def test_names_are_unique() -> None:
    names = [setting.name for setting in ALL_SETTINGS]
    assert len(names) == len(set(names))


def test_cli_flags_are_unique_and_leave_version_free() -> None:
    flags = [flag for setting in ALL_SETTINGS for flag in setting.cli]
    assert len(flags) == len(set(flags)), sorted(f for f in flags if flags.count(f) > 1)
    assert "-v" not in flags and "--version" not in flags


def test_every_setting_has_a_one_line_desc_and_a_known_section() -> None:
    for setting in ALL_SETTINGS:
        assert setting.desc and "\n" not in setting.desc, setting.name
        assert setting.section in SECTIONS, setting.name


def test_append_settings_default_to_a_list() -> None:
    appended = [s for s in ALL_SETTINGS if s.action == "append"]
    assert {s.name for s in appended} == {"bind", "reload_extra_files", "raw_env"}
    for setting in appended:
        assert isinstance(setting.default_for({}), list), setting.name
        assert setting.env_default is not None or isinstance(setting.default, list), setting.name


def test_hooks_and_dicts_have_no_flag() -> None:
    for setting in ALL_SETTINGS:
        if setting.section == "Server Hooks" or isinstance(setting.default, dict):
            assert setting.cli == (), setting.name


def test_gunicorn_quirks_are_kept() -> None:
    assert BY_NAME["limit_request_field_size"].cli == ("--limit-request-field_size",)
    assert BY_NAME["errorlog"].cli == ("--error-logfile", "--log-file")
    assert BY_NAME["raw_env"].cli == ("-e", "--env")
    sendfile = BY_NAME["sendfile"]
    assert (sendfile.cli, sendfile.action, sendfile.const, sendfile.default) == (
        ("--no-sendfile",), "store_const", False, None)
    proxy = BY_NAME["proxy_protocol"]
    assert (proxy.nargs, proxy.const) == ("?", "auto")
    ragged = BY_NAME["suppress_ragged_eofs"]
    assert (ragged.action, ragged.default) == ("store_true", True)


def test_every_non_deferred_gunicorn_setting_is_declared_in_documentation_order() -> None:
    assert [s.name for s in ALL_SETTINGS if s.name not in PRONGHORN_SETTINGS] == list(GUNICORN_DEFAULTS)


# Settings of pronghorn's own (Gunicorn has none of these names); each documents itself as new.
PRONGHORN_SETTINGS = frozenset({
    "max_worker_memory", "header_timeout", "request_timeout", "limit_request_body", "access_log_json", "metrics_bind",
})


def test_own_settings_are_declared_and_say_they_are_new() -> None:
    for name in PRONGHORN_SETTINGS:
        assert name in BY_NAME and "New in pronghorn" in " ".join(BY_NAME[name].details)


@pytest.mark.parametrize("name", list(GUNICORN_DEFAULTS))
def test_default_matches_gunicorn(name: str) -> None:
    setting = BY_NAME[name]
    expected = GUNICORN_DEFAULTS[name]
    actual = setting.default_for({})
    if name in DELIBERATE_DIFFERENCES:
        assert actual == DELIBERATE_DIFFERENCES[name] != expected
        assert any(line.startswith("Differs from Gunicorn:") for line in setting.details)
    elif isinstance(expected, Hook):
        assert setting.cli == () and callable(actual)
        assert tuple(inspect.signature(actual).parameters) == expected.parameters
    elif expected is PROCESS_DEPENDENT:
        assert actual == {"chdir": os.getcwd(), "user": os.geteuid(), "group": os.getegid()}[name]
        assert setting.default_doc
    elif expected is PLATFORM_DEPENDENT:
        assert setting.default_doc
    elif expected is None:
        assert actual is None
    else:
        assert actual == setting.validator(expected)
        assert isinstance(actual, bool) == isinstance(expected, bool)  # False == 0, but not for us


def test_env_dependent_defaults() -> None:
    assert BY_NAME["bind"].default_for({"PORT": "5000"}) == ["0.0.0.0:5000"]
    assert BY_NAME["workers"].default_for({"WEB_CONCURRENCY": "4"}) == 4
    assert BY_NAME["forwarded_allow_ips"].default_for({"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}) == ["10.0.0.0/8"]
    assert BY_NAME["forwarded_allow_ips"].default_for({"FORWARDED_ALLOW_IPS": ""}) == []
    for name in ("bind", "workers", "forwarded_allow_ips", "chdir", "user", "group", "sendfile", "syslog_addr"):
        assert BY_NAME[name].default_doc, name


def test_chdir_default_prefers_pwd_naming_the_same_directory(tmp_path: Path) -> None:
    cwd = os.getcwd()
    link = tmp_path / "link"
    link.symlink_to(cwd, target_is_directory=True)
    assert BY_NAME["chdir"].default_for({"PWD": str(link)}) == str(link)
    assert BY_NAME["chdir"].default_for({"PWD": str(tmp_path)}) == cwd
    assert BY_NAME["chdir"].default_for({"PWD": str(tmp_path / "missing")}) == cwd


def test_syslog_default_by_platform() -> None:
    assert platform_syslog_addr("linux") == "udp://localhost:514"
    assert platform_syslog_addr("darwin") == "unix:///var/run/syslog"
    assert platform_syslog_addr("freebsd14") == "unix:///var/run/log"
    assert platform_syslog_addr("dragonfly6") == "unix:///var/run/log"
    assert platform_syslog_addr("openbsd7") == "unix:///dev/log"


def test_default_hooks_behave() -> None:
    logged: list[tuple[Any, ...]] = []

    class Log:
        def debug(self, *args: Any) -> None:
            logged.append(args)

    class Worker:
        log = Log()

    class Request:
        method, path = "GET", "/x"

    BY_NAME["pre_request"].default(Worker(), Request())
    assert logged == [("%s %s", "GET", "/x")]
    assert BY_NAME["ssl_context"].default(None, lambda: "context") == "context"


def test_pending_settings_are_exactly_the_pinned_set() -> None:
    assert {s.name for s in ALL_SETTINGS if s.pending} == PENDING
    # Gunicorn itself ignores ssl_version (with a warning); it is the one setting accepted and ignored.
    assert {s.name for s in ALL_SETTINGS if s.deprecated} == {"ssl_version"}


def test_no_deferred_family_is_declared() -> None:
    for setting in ALL_SETTINGS:
        assert not setting.name.startswith(DEFERRED_PREFIXES), setting.name
        assert setting.name not in DEFERRED_NAMES, setting.name
    assert not {s.name for s in ALL_SETTINGS} & set(DEFERRED_SETTINGS)
    assert DEFERRED_NAMES <= set(DEFERRED_SETTINGS)
    flags = {flag for setting in ALL_SETTINGS for flag in setting.cli}
    assert not flags & {"--paste", "--paster", "--paste-global", "--protocol", "--http-protocols"}


def test_docs_file_is_up_to_date() -> None:
    assert DOCS_PATH.exists(), "docs/settings.md is missing: run `python -m pronghorn.config.docs --write`"
    assert DOCS_PATH.read_text(encoding="utf-8") == render_settings_markdown(), (
        "docs/settings.md is stale: run `python -m pronghorn.config.docs --write`"
    )


def test_docs_show_pending_reasons_and_differences() -> None:
    text = render_settings_markdown()
    for setting in ALL_SETTINGS:
        assert f"### `{setting.name}`" in text
        if setting.pending:
            assert f"Not available yet: {setting.pending}. Setting it stops start-up." in text
        if setting.deprecated:
            assert f"Deprecated: {setting.deprecated}." in text
    assert text.count("Differs from Gunicorn:") >= len(DELIBERATE_DIFFERENCES)


def test_docs_do_not_depend_on_the_machine() -> None:
    text = render_settings_markdown()
    assert os.getcwd() not in text
    assert " at 0x" not in text  # no function reprs


def test_declarations_build_a_working_parser() -> None:
    parser = cli.build_parser(prog="pronghorn")
    given = cli.given_options(parser.parse_args([
        "--no-sendfile", "--proxy-protocol", "-m", "022", "-b", "a:1", "--bind", "b:2",
        "--limit-request-field_size", "10", "--log-file", "x.log", "-e", "A=1",
    ]))
    assert given == {
        "sendfile": False, "proxy_protocol": "auto", "umask": 0o22, "bind": ["a:1", "b:2"],
        "limit_request_field_size": "10", "errorlog": "x.log", "raw_env": ["A=1"],
    }
    for name, value in given.items():
        BY_NAME[name].validator(value)


def test_declaration_modules_stay_small() -> None:
    for path in DECLARED_DIR.glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) < 600, path.name


def test_setting_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BY_NAME["workers"].default = 2  # type: ignore[misc]
    assert isinstance(BY_NAME["workers"], Setting)
