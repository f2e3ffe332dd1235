"""``docs/settings.md``, rendered from the setting declarations.

``python -m pronghorn.config.docs`` prints the page; ``--write`` stores it as ``docs/settings.md`` at
the root of the repository this package lives in. The output depends only on the declarations:
defaults that vary with the environment, the working directory or the user are shown through their
``default_doc`` text, never computed.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.setting import SECTIONS, Setting

DOCS_PATH = Path(__file__).parents[3] / "docs" / "settings.md"
DIFFERS_PREFIX = "Differs from Gunicorn:"

_INTRO = """\
pronghorn understands Gunicorn's settings under Gunicorn's names, with the same command-line flags \
and the same defaults, so an existing Gunicorn config file or command line works with `gunicorn` \
replaced by `pronghorn`. Where pronghorn deliberately does something else, the \
setting says so under "Differs from Gunicorn".

## Where settings come from

Each source overrides the ones before it:

1. the defaults listed below (a few of them read the environment: `PORT`, `WEB_CONCURRENCY`, \
`FORWARDED_ALLOW_IPS`);
2. what an embedding application's `init()` returns;
3. the config file: Python code whose module-level names set settings (`workers = 4`), chosen with \
`-c` or found as `./pronghorn.conf.py`, else `./gunicorn.conf.py`;
4. the `PRONGHORN_CMD_ARGS` environment variable, read as extra command-line arguments \
(`PRONGHORN_CMD_ARGS="--workers=3 --bind=127.0.0.1:9000"`);
5. the command line.

Every value goes through its setting's check, whatever its source; an invalid one stops start-up \
with a line such as `Invalid value for workers: 'many' (expected a non-negative integer)`. Names a \
config file sets that are not settings are ignored. `-v`/`--version` prints the version; it is a \
command-line option, not a setting.

Some settings are marked "Not available yet": the feature behind them has not landed. Left at \
their default they change nothing; set to anything else they stop start-up (and `--check-config`) \
with one line naming the setting, so that no configuration is served as if they applied. \
Gunicorn's HTTP/2, uWSGI, PasteDeploy, dirty-arbiter and control-socket settings are not \
declared yet: a config file that gives one of them a value other than Gunicorn's default stops \
start-up the same way. A setting marked "Deprecated" is accepted and ignored, as Gunicorn does, \
with a warning at start-up.
"""


def render_settings_markdown(settings: Iterable[Setting] = ALL_SETTINGS) -> str:
    """The whole settings page, as Markdown."""
    settings = tuple(settings)
    sections = [section for section in SECTIONS if any(s.section == section for s in settings)]
    lines = [
        "# Settings",
        "",
        "<!-- Generated from src/pronghorn/config/declared/ by `python -m pronghorn.config.docs --write`. "
        "Do not edit by hand. -->",
        "",
        _INTRO.rstrip("\n"),
        "",
        f"{len(settings)} settings, by section:",
        "",
    ]
    for section in sections:
        count = sum(1 for s in settings if s.section == section)
        lines.append(f"- [{section}](#{_anchor(section)}) ({count})")
    for section in sections:
        lines += ["", f"## {section}"]
        for setting in settings:
            if setting.section == section:
                lines += ["", *_render_setting(setting)]
    return "\n".join(lines) + "\n"


def _render_setting(setting: Setting) -> list[str]:
    lines = [f"### `{setting.name}`", ""]
    if _is_hook(setting):
        lines.append(f"- Called as: `{_call_signature(setting)}`")
    lines.append(f"- Command line: {_command_line(setting)}")
    lines.append(f"- Default: {_default(setting)}")
    lines += ["", setting.desc]
    differences = [line for line in setting.details if line.startswith(DIFFERS_PREFIX)]
    for paragraph in setting.details:
        if paragraph not in differences:
            lines += ["", paragraph]
    for paragraph in differences:
        lines += ["", paragraph]
    if setting.pending:
        lines += ["", f"> Not available yet: {setting.pending}. Setting it stops start-up."]
    if setting.deprecated:
        lines += ["", f"> Deprecated: {setting.deprecated}. Setting it logs a warning at start-up."]
    return lines


def _command_line(setting: Setting) -> str:
    if not setting.cli:
        return "none (config file only)"
    action = setting.action or "store"
    if action in ("store", "append"):
        # argparse shows the destination in upper case when no metavar is given.
        meta = setting.meta or setting.name.upper()
        argument = f"[{meta}]" if setting.nargs == "?" else meta
        flags = [f"`{flag} {argument}`" for flag in setting.cli]
    else:
        flags = [f"`{flag}`" for flag in setting.cli]
    text = ", ".join(flags)
    if action == "append":
        text += " (repeatable)"
    if setting.nargs == "?":
        text += f"; the flag alone means `{setting.const}`"
    return text


def _default(setting: Setting) -> str:
    if setting.default_doc is not None:
        return setting.default_doc
    return f"`{setting.default!r}`"


def _is_hook(setting: Setting) -> bool:
    return setting.section == "Server Hooks" and callable(setting.default)


def _call_signature(setting: Setting) -> str:
    parameters = inspect.signature(setting.default).parameters
    return f"{setting.name}({', '.join(parameters)})"


def _anchor(heading: str) -> str:
    """The fragment GitHub-style renderers give a heading."""
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pronghorn.config.docs", description="Render the settings reference (docs/settings.md)."
    )
    parser.add_argument("--write", action="store_true", help=f"write it to {DOCS_PATH} instead of printing it")
    args = parser.parse_args(argv)
    text = render_settings_markdown()
    if args.write:
        DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOCS_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOCS_PATH}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
