"""The command-line parser, generated from the setting declarations.

Every option defaults to ``None`` so that "not given" can be told apart from "given the default
value": only options actually present override the config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from pronghorn import __version__, build
from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.setting import Setting
from pronghorn.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``ConfigError`` instead of exiting, so callers decide how to stop."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, minus its ``import shutil`` (for the terminal width) in every instance.

    argparse makes a formatter for each ``add_argument()``, and shutil imports zlib, bz2 and lzma:
    ~0.5 MiB in the master that every forked worker inherits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) < 4 and kwargs.get("width") is None:
            kwargs["width"] = _terminal_columns() - 2
        super().__init__(*args, **kwargs)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def build_parser(
    usage: str | None = None, prog: str | None = None, settings: Iterable[Setting] = ALL_SETTINGS
) -> argparse.ArgumentParser:
    parser = _Parser(usage=usage, prog=prog, formatter_class=_Formatter)
    parser.add_argument(
        "-v", "--version", action="version", version=f"%(prog)s (version {__version__}, {build.description()})"
    )
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    for setting in settings:
        if setting.cli:
            _add_option(parser, setting)
    return parser


def _add_option(parser: argparse.ArgumentParser, setting: Setting) -> None:
    kwargs: dict[str, Any] = {
        "dest": setting.name,
        "default": None,
        # argparse %-formats help text; settings such as access_log_format contain '%'.
        "help": _help_text(setting).replace("%", "%%"),
    }
    action = setting.action or "store"
    kwargs["action"] = action
    if action in ("store", "append"):
        if setting.meta:
            kwargs["metavar"] = setting.meta
        if setting.cli_type is not None:
            kwargs["type"] = setting.cli_type
        if setting.nargs is not None:
            kwargs["nargs"] = setting.nargs
            kwargs["const"] = setting.const
    elif action == "store_const":
        kwargs["const"] = setting.const
    parser.add_argument(*setting.cli, **kwargs)


def _default_text(setting: Setting) -> str:
    return setting.default_doc.replace("`", "") if setting.default_doc else repr(setting.default)


def _help_text(setting: Setting) -> str:
    text = f"{setting.desc} (default: {_default_text(setting)})"
    if setting.pending:
        return f"Not available yet ({setting.pending}): setting it stops start-up. {text}"
    if setting.deprecated:
        return f"Deprecated: {setting.deprecated}. {text}"
    return text


def given_options(namespace: argparse.Namespace, settings: Iterable[Setting] = ALL_SETTINGS) -> dict[str, Any]:
    """The settings actually given on this command line (name -> raw value)."""
    values = vars(namespace)
    return {s.name: values[s.name] for s in settings if s.cli and values.get(s.name) is not None}


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    return parser.parse_args(list(argv))
