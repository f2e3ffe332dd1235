"""Settings of the "Debugging" section: code reloading, tracing and configuration checks."""

from __future__ import annotations

from pronghorn.config import validators
from pronghorn.config.setting import Setting


SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="reload",
        section="Debugging",
        cli=("--reload",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Restart the workers whenever a Python source file they imported changes (for development).",
        details=(
            "Meant for development only: watching files costs CPU, and a restart drops the workers' "
            "state. Combine with `reload_extra_files` to also watch templates or data files.",
        ),
    ),
    Setting(
        name="reload_engine",
        section="Debugging",
        cli=("--reload-engine",),
        meta="STRING",
        validator=validators.choice("auto", "poll", "inotify"),
        default="auto",
        desc="How the reloader notices changes: auto, poll or inotify.",
        details=(
            "`poll` checks modification times every second; `inotify` asks the Linux kernel to report "
            "changes (through the C library, no extra package); `auto` uses inotify when it is available and "
            "polls otherwise.",
        ),
    ),
    Setting(
        name="reload_extra_files",
        section="Debugging",
        cli=("--reload-extra-file",),
        meta="FILES",
        action="append",
        validator=validators.files_or_patterns,
        default=[],
        desc="Extra files or glob patterns the reloader watches besides imported modules (repeatable).",
        details=(
            "A plain path must exist when the setting is read. A pattern containing `*`, `?` or `[` is "
            "kept as given and expanded again at every check, so files created later are picked up.",
        ),
    ),
    Setting(
        name="spew",
        section="Debugging",
        cli=("--spew",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Print every line of Python the server executes (extremely verbose; for debugging only).",
    ),
    Setting(
        name="check_config",
        section="Debugging",
        cli=("--check-config",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Check the configuration and that the application loads, then exit (0 on success, 1 on failure).",
    ),
    Setting(
        name="print_config",
        section="Debugging",
        cli=("--print-config",),
        action="store_true",
        validator=validators.boolean,
        default=False,
        desc="Print every setting's resolved value, then exit as check_config does.",
        details=(
            "The output lists one `name = value` line per setting, sorted by name, after all sources "
            "(defaults, config file, `PRONGHORN_CMD_ARGS`, command line) have been applied.",
        ),
    ),
)
