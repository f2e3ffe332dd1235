"""Settings of the "Logging" section: error and access logs, syslog and StatsD."""

from __future__ import annotations

import sys

from pronghorn.config import validators
from pronghorn.config.setting import Setting

# Where the local syslog daemon listens, by platform (as Gunicorn picks it).
_SYSLOG_SOCKETS = {
    "darwin": "unix:///var/run/syslog",
    "freebsd": "unix:///var/run/log",
    "dragonfly": "unix:///var/run/log",
    "openbsd": "unix:///dev/log",
}


def platform_syslog_addr(platform: str) -> str:
    """The default ``syslog_addr`` for a ``sys.platform`` value ("freebsd14" counts as "freebsd")."""
    for prefix, address in _SYSLOG_SOCKETS.items():
        if platform.startswith(prefix):
            return address
    return "udp://localhost:514"


ERROR_AND_ACCESS = (
    Setting(
        name="accesslog",
        section="Logging",
        cli=("--access-logfile",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="File to write one line per request to; '-' means standard output, None turns the access log off.",
    ),
    Setting(
        name="disable_redirect_access_to_syslog",
        section="Logging",
        cli=("--disable-redirect-access-to-syslog",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Keep access-log lines out of syslog even when syslog is on.",
    ),
    Setting(
        name="access_log_format",
        section="Logging",
        cli=("--access-logformat",),
        meta="STRING",
        validator=validators.string,
        default='%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
        desc="Template of an access-log line, made of %(atom)s placeholders.",
        details=(
            "Atoms: `h` remote address, `l` always `-`, `u` user name from Basic authentication, "
            "`t` time of the request, `r` request line, `m` method, `U` path, `q` query string, `H` "
            "protocol, `s` status, `b` response length or `-`, `B` response length, `f` referer, `a` "
            "user agent, `T` duration in whole seconds, `M` in milliseconds, `D` in microseconds, `L` "
            "in decimal seconds, `p` process id, `{name}i` a request header, `{name}o` a response "
            "header and `{name}e` an environment variable.",
            "Unknown atoms print `-`. The default is the Apache \"combined\" layout.",
        ),
    ),
    Setting(
        name="access_log_json",
        section="Logging",
        cli=("--access-log-json",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Write each access-log line as a JSON object instead of access_log_format.",
        details=(
            "The fields: `remote_addr`, `user`, `time`, `request`, `method`, `path`, `query`, "
            "`protocol`, `status`, `bytes`, `referer`, `user_agent`, `duration_us` and `pid` (the "
            "atoms `h u t r m U q H s B f a D p`).",
            "New in pronghorn (Gunicorn has no such setting).",
        ),
    ),
    Setting(
        name="errorlog",
        section="Logging",
        cli=("--error-logfile", "--log-file"),
        meta="FILE",
        validator=validators.string,
        default="-",
        desc="File to write the server's own messages to; '-' means standard error.",
    ),
    Setting(
        name="loglevel",
        section="Logging",
        cli=("--log-level",),
        meta="LEVEL",
        validator=validators.lowercase_string,
        default="info",
        desc="Least severe messages written to the error log: debug, info, warning, error or critical.",
        details=(
            "Any case. An unknown level means `info`, as in Gunicorn, and pronghorn says so once at "
            "start (Gunicorn says nothing).",
        ),
    ),
    Setting(
        name="capture_output",
        section="Logging",
        cli=("--capture-output",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Send what the application prints to stdout and stderr into the error log file.",
    ),
    Setting(
        name="logger_class",
        section="Logging",
        cli=("--logger-class",),
        meta="STRING",
        validator=validators.class_or_string,
        default="pronghorn.logs.Logger",
        desc="Class that writes the error and access logs, as a dotted path (or the class itself).",
        details=(
            "A replacement usually subclasses `pronghorn.logs.Logger` and changes how lines are "
            "formatted or where they go.",
            "Differs from Gunicorn: the default is `'pronghorn.logs.Logger'` instead of "
            "`'gunicorn.glogging.Logger'`.",
        ),
    ),
    Setting(
        name="logconfig",
        section="Logging",
        cli=("--log-config",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="INI file handed to Python's logging.config.fileConfig to set up logging.",
    ),
    Setting(
        name="logconfig_dict",
        section="Logging",
        validator=validators.dictionary,
        default={},
        desc="Dictionary handed to Python's logging.config.dictConfig; wins over logconfig and logconfig_json.",
        details=("Config file only.",),
    ),
    Setting(
        name="logconfig_json",
        section="Logging",
        cli=("--log-config-json",),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="JSON file whose content is handed to Python's logging.config.dictConfig.",
    ),
)

SYSLOG = (
    Setting(
        name="syslog_addr",
        section="Logging",
        cli=("--log-syslog-to",),
        meta="SYSLOG_ADDR",
        validator=validators.string,
        default=platform_syslog_addr(sys.platform),
        default_doc="`'udp://localhost:514'`; on macOS `'unix:///var/run/syslog'`, on FreeBSD and DragonFly "
        "`'unix:///var/run/log'`, on OpenBSD `'unix:///dev/log'`",
        desc="Where syslog messages go: unix://PATH[#dgram|#stream], udp://HOST:PORT or tcp://HOST:PORT.",
    ),
    Setting(
        name="syslog",
        section="Logging",
        cli=("--log-syslog",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Also send log messages to syslog.",
    ),
    Setting(
        name="syslog_prefix",
        section="Logging",
        cli=("--log-syslog-prefix",),
        meta="SYSLOG_PREFIX",
        validator=validators.string,
        default=None,
        desc="Program name syslog entries are tagged with; None derives it from the process name.",
    ),
    Setting(
        name="syslog_facility",
        section="Logging",
        cli=("--log-syslog-facility",),
        meta="SYSLOG_FACILITY",
        validator=validators.string,
        default="user",
        desc="Syslog facility to log under, such as user, daemon or local0.",
    ),
    Setting(
        name="enable_stdio_inheritance",
        section="Logging",
        cli=("-R", "--enable-stdio-inheritance"),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Keep standard input and output open when running as a daemon.",
        details=(
            "Useful with the `PYTHONUNBUFFERED` environment variable, so that prints reach the "
            "inherited output right away.",
        ),
    ),
)

STATSD = (
    Setting(
        name="statsd_host",
        section="Logging",
        cli=("--statsd-host",),
        meta="STATSD_ADDR",
        validator=validators.statsd_address,
        default=None,
        desc="StatsD server to send metrics to: HOST:PORT (port 8125 if omitted) or unix://PATH.",
        details=(
            "Differs from Gunicorn: the value is kept as the string given (Gunicorn stores it parsed "
            "into a host and port).",
        ),
    ),
    Setting(
        name="dogstatsd_tags",
        section="Logging",
        cli=("--dogstatsd-tags",),
        meta="DOGSTATSD_TAGS",
        validator=validators.string,
        default="",
        desc="Comma-separated DogStatsD tags added to every metric, e.g. 'env:prod,app:shop'.",
    ),
    Setting(
        name="statsd_prefix",
        section="Logging",
        cli=("--statsd-prefix",),
        meta="STATSD_PREFIX",
        validator=validators.string,
        default="",
        desc="Prefix put before every metric name (a dot is added after it).",
    ),
    Setting(
        name="enable_backlog_metric",
        section="Logging",
        cli=("--enable-backlog-metric",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Report how many connections wait in the listen queue as a metric (Linux only).",
    ),
)

PROMETHEUS = (
    Setting(
        name="metrics_bind",
        section="Logging",
        cli=("--metrics-bind",),
        meta="ADDRESS",
        validator=validators.tcp_address,
        default=None,
        desc="HOST:PORT where the master serves Prometheus metrics at /metrics, for all workers together.",
        details=(
            "Requests by method and status, a request-duration histogram, requests in flight, open "
            "connections, live workers, worker restarts by reason and the listen queue's depth (Linux); "
            "counts survive worker restarts. Needs `pip install 'pronghorn[prometheus]'`. Set at start: "
            "a HUP that changes it is refused (the running configuration stays).",
            "New in pronghorn (Gunicorn has no such setting).",
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = ERROR_AND_ACCESS + SYSLOG + STATSD + PROMETHEUS
