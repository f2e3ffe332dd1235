"""Settings of the "Server Mechanics" and "Process Naming" sections that shape the processes.

Process set-up (preload, working directory, environment, pid file, privileges, umask), trust in
front-end proxies, and process titles. The HTTP parsing switches that Gunicorn also files under
"Server Mechanics" live in ``security.py``; they follow these in Gunicorn's order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pronghorn.config import validators
from pronghorn.config.setting import Setting



def start_directory(environ: Mapping[str, str]) -> str:
    """The working directory at start-up, spelled as ``$PWD`` when that names the same directory.

    ``$PWD`` keeps the path the user typed (through symlinks), which ``os.getcwd()`` resolves away.
    """
    cwd = os.getcwd()
    pwd = environ.get("PWD")
    if pwd:
        try:
            if os.path.samefile(pwd, cwd):
                return pwd
        except OSError:
            pass
    return cwd


def effective_uid(environ: Mapping[str, str]) -> int:
    return os.geteuid()


def effective_gid(environ: Mapping[str, str]) -> int:
    return os.getegid()


def default_forwarded_allow_ips(environ: Mapping[str, str]) -> str:
    return environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


PROCESS_SETUP = (
    Setting(
        name="preload_app",
        section="Server Mechanics",
        cli=("--preload",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Import the application once in the master, before the workers are forked.",
        details=(
            "Workers then share the loaded code through copy-on-write memory, and an application that "
            "fails to import stops the server before any worker starts. The price: new code needs a "
            "full restart, because reloading the workers reuses what the master loaded.",
        ),
    ),
    Setting(
        name="sendfile",
        section="Server Mechanics",
        cli=("--no-sendfile",),
        action="store_const",
        const=False,
        validator=validators.boolean,
        default=None,
        default_doc="`None`: sendfile is used, unless the `SENDFILE` environment variable is set to a value "
        "other than `y`, `1`, `yes` or `true`",
        desc="Whether file responses may be sent with the sendfile() system call; --no-sendfile turns it off.",
        details=(
            "Turn it off when files live on a filesystem where sendfile misbehaves, such as some "
            "network or virtual-machine shares. TLS connections never use sendfile.",
        ),
    ),
    Setting(
        name="reuse_port",
        section="Server Mechanics",
        cli=("--reuse-port",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Set SO_REUSEPORT on the listening TCP sockets, so that another server can bind the same port.",
        details=(
            "The master binds each socket and its workers share it, with or without this setting: "
            "another server on the same port (a new release started beside the old one) then takes "
            "its share of new connections, and the old one can stop gracefully.",
            "Differs from Gunicorn: Gunicorn 27 has each worker bind its own socket instead. When a "
            "socket in a SO_REUSEPORT group closes, Linux resets the connections waiting in its "
            "queue (98 of 200 in a test here, with the default `net.ipv4.tcp_migrate_req = 0`), so "
            "every worker restart (HUP, `max_requests`, a stop) would drop requests; pronghorn's "
            "workers share the master's sockets and spread connections between them instead.",
        ),
    ),
    Setting(
        name="chdir",
        section="Server Mechanics",
        cli=("--chdir",),
        validator=validators.directory,
        env_default=start_directory,
        default_doc="the working directory at start-up",
        desc="Directory to change into before the application is loaded; it is also put first on sys.path.",
        details=(
            "A relative path is taken against the directory pronghorn was started in. The directory "
            "must exist.",
        ),
    ),
    Setting(
        name="daemon",
        section="Server Mechanics",
        cli=("-D", "--daemon"),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Detach from the terminal and keep running in the background.",
        details=(
            "Under a process supervisor (systemd, Docker, runit...) leave this off: the supervisor "
            "wants the server in the foreground.",
        ),
    ),
    Setting(
        name="raw_env",
        section="Server Mechanics",
        cli=("-e", "--env"),
        meta="ENV",
        action="append",
        validator=validators.list_of_strings,
        default=[],
        desc="Environment variable to set for the application, as KEY=VALUE (repeatable).",
        details=(
            "For example `-e DJANGO_SETTINGS_MODULE=mysite.settings`. In a config file give a list: "
            "`raw_env = ['KEY=value', ...]`. An entry without `=` is a configuration error.",
        ),
    ),
    Setting(
        name="pidfile",
        section="Server Mechanics",
        cli=("-p", "--pid"),
        meta="FILE",
        validator=validators.string,
        default=None,
        desc="File to write the master's process id to; None writes none.",
        details=("The file is removed again when the master exits.",),
    ),
    Setting(
        name="worker_tmp_dir",
        section="Server Mechanics",
        cli=("--worker-tmp-dir",),
        meta="DIR",
        validator=validators.string,
        default=None,
        desc="Directory for the small per-worker file that carries the heartbeat; None uses the system temp dir.",
        details=(
            "Each worker updates the time stamp of an already-unlinked file to show the master it is "
            "alive. If the temporary directory sits on a disk that can stall, a stalled update looks "
            "like a hung worker: a memory-backed directory such as `/dev/shm` avoids that.",
        ),
    ),
    Setting(
        name="user",
        section="Server Mechanics",
        cli=("-u", "--user"),
        meta="USER",
        validator=validators.user_id,
        env_default=effective_uid,
        default_doc="the effective user id of the process that starts pronghorn",
        desc="User the workers run as: a user name or a numeric uid.",
        details=("Switching user needs the master to be started with enough privilege (usually root).",),
    ),
    Setting(
        name="group",
        section="Server Mechanics",
        cli=("-g", "--group"),
        meta="GROUP",
        validator=validators.group_id,
        env_default=effective_gid,
        default_doc="the effective group id of the process that starts pronghorn",
        desc="Group the workers run as: a group name or a numeric gid.",
    ),
    Setting(
        name="umask",
        section="Server Mechanics",
        cli=("-m", "--umask"),
        meta="INT",
        cli_type=validators.auto_int,
        validator=validators.octal_or_int,
        default=0,
        desc="File-mode mask for the files and Unix sockets the server creates.",
        details=(
            "On the command line a leading zero means octal (`-m 022`), as do `0o22` and `0x12` forms. "
            "In a config file write a Python integer (`umask = 0o22`) or a string Python's `int(x, 0)` "
            "accepts: the string `'0022'` is rejected there.",
        ),
    ),
    Setting(
        name="initgroups",
        section="Server Mechanics",
        cli=("--initgroups",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="When switching user, also give the workers every supplementary group of that user.",
    ),
    Setting(
        name="tmp_upload_dir",
        section="Server Mechanics",
        meta="DIR",
        validator=validators.string,
        default=None,
        desc="Directory where large request bodies are spooled to disk; None uses the system temp dir.",
        details=("Gunicorn 27 still validates this setting but no longer reads it.",),
    ),
)

PROXY_TRUST_SETTINGS = (
    Setting(
        name="secure_scheme_headers",
        section="Server Mechanics",
        validator=validators.dictionary,
        default={"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        desc="Headers, with the value each must have, by which a trusted proxy says the client used HTTPS.",
        details=(
            "A dict from upper-case header name to value. When a request from an address in "
            "`forwarded_allow_ips` carries one of these headers, the request's scheme is `https` if the "
            "value matches and `http` otherwise; headers that contradict each other make the request "
            "a 400. Set it to `{}` to ignore such headers entirely. Config file only.",
        ),
    ),
    Setting(
        name="forwarded_allow_ips",
        section="Server Mechanics",
        cli=("--forwarded-allow-ips",),
        meta="STRING",
        validator=validators.address_list,
        env_default=default_forwarded_allow_ips,
        default_doc="`'127.0.0.1,::1'`, or the `FORWARDED_ALLOW_IPS` environment variable when it is set",
        desc="Proxy addresses (IPs or CIDR networks, comma-separated, or '*') whose forwarding headers are believed.",
        details=(
            "Only requests from these peers may set the scheme through `secure_scheme_headers` or the "
            "variables listed in `forwarder_headers`. Peers on a Unix socket are always trusted. `*` "
            "trusts everyone: use it only when nothing but your proxy can reach the server.",
        ),
    ),
    Setting(
        name="pythonpath",
        section="Server Mechanics",
        cli=("--pythonpath",),
        meta="STRING",
        validator=validators.comma_list,
        default=None,
        desc="Comma-separated directories put at the front of sys.path, e.g. '/home/app,/home/lib'.",
        details=(
            "The directories are added in the order given, before the application is loaded.",
            "Differs from Gunicorn: the value is kept as a list of directories (Gunicorn keeps the "
            "comma-separated string and splits it when used).",
        ),
    ),
    Setting(
        name="proxy_protocol",
        section="Server Mechanics",
        cli=("--proxy-protocol",),
        meta="MODE",
        nargs="?",
        const="auto",
        validator=validators.choice_or_switch("off", "v1", "v2", "auto", on="auto", off="off"),
        default="off",
        desc="Read a HAProxy PROXY protocol header at the start of each connection: off, v1, v2 or auto.",
        details=(
            "`v1` expects the text form, `v2` the binary form and `auto` either one. The flag given "
            "without a value means `auto`, and so does `True` in a config file (`False` means `off`). "
            "The header is looked for only before the first request of a connection, and only from "
            "peers in `proxy_allow_ips`.",
        ),
    ),
    Setting(
        name="proxy_allow_ips",
        section="Server Mechanics",
        cli=("--proxy-allow-from",),
        validator=validators.address_list,
        default="127.0.0.1,::1",
        desc="Addresses (IPs or CIDR networks, comma-separated, or '*') allowed to send a PROXY protocol header.",
        details=("A PROXY header from any other peer is answered with 403 Forbidden.",),
    ),
)

PROCESS_NAMING = (
    Setting(
        name="proc_name",
        section="Process Naming",
        cli=("-n", "--name"),
        meta="STRING",
        validator=validators.string,
        default=None,
        desc="Name shown for the server's processes in ps and top; None uses default_proc_name.",
        details=(
            "Titles need the optional `setproctitle` package (`pip install pronghorn[setproctitle]`). "
            "The name also tells apart several servers running on one machine.",
        ),
    ),
    Setting(
        name="default_proc_name",
        section="Process Naming",
        validator=validators.string,
        default="pronghorn",
        desc="Process name used when proc_name is not set; pronghorn fills in the application reference.",
        details=(
            "Mostly internal: the command-line application sets it to the `APP_MODULE` it was given. "
            "Config file only.",
            "Differs from Gunicorn: the built-in value is `'pronghorn'` instead of `'gunicorn'`.",
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = PROCESS_SETUP + PROXY_TRUST_SETTINGS + PROCESS_NAMING
