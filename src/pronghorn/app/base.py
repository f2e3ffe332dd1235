"""The embedding API, at Gunicorn's path: ``BaseApplication`` and the command-line ``Application``.

Subclass ``BaseApplication`` to run pronghorn inside your own program: fill ``self.cfg`` in
``load_config()``, return the WSGI callable from ``load()``, then call ``run()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from pronghorn.config import Config
from pronghorn.config import cli, sources
from pronghorn.errors import ONE_LINE_LOAD_ERRORS, ConfigError
from pronghorn.master.daemon import daemonize


class BaseApplication:
    """An application pronghorn can serve; the subclass supplies configuration and the app."""

    def __init__(self, usage: str | None = None, prog: str | None = None) -> None:
        self.usage = usage
        self.cfg: Config = None  # type: ignore[assignment]  # set by do_load_config()
        self.callable: Callable[..., Any] | None = None
        self.prog = prog
        self.logger: Any = None
        self.config_file: str | None = None
        self.env_args_variable: str | None = None  # PRONGHORN_CMD_ARGS or GUNICORN_CMD_ARGS, if set
        self.env_args_text = ""
        self.do_load_config()

    def do_load_config(self) -> None:
        """Build ``cfg`` from the defaults, then ``load_config()``; a bad value stops the program."""
        try:
            self.load_default_config()
            self.load_config()
            self.cfg.validate()
        except Exception as exc:
            _fail(exc)

    def settings_sources(self) -> list[str]:
        """What the start-up log says the settings came from, besides defaults and the command line."""
        lines = [f"Config file: {self.config_file}"] if self.config_file else []
        if self.env_args_variable and self.env_args_text:
            lines.append(f"Arguments from {self.env_args_variable}: {self.env_args_text}")
        return lines

    def load_default_config(self) -> None:
        self.cfg = Config(self.usage, prog=self.prog)

    def init(self, parser: argparse.ArgumentParser, opts: argparse.Namespace, args: list[str]) -> Any:
        """Return a dict of settings to apply before the config file (framework defaults)."""
        raise NotImplementedError

    def load(self) -> Callable[..., Any]:
        """Return the WSGI callable to serve."""
        raise NotImplementedError

    def load_config(self) -> None:
        """Fill ``self.cfg``, typically with ``self.cfg.set(name, value)``."""
        raise NotImplementedError

    def reload(self) -> None:
        """Re-read the configuration (HUP). On failure the previous one stays and the error is raised."""
        previous = self.cfg, self.callable
        try:
            self.load_default_config()
            self.load_config()
            self.cfg.validate()
            self.callable = None  # new workers load the application again
        except BaseException:
            self.cfg, self.callable = previous
            raise

    def wsgi(self) -> Callable[..., Any]:
        if self.callable is None:
            self.callable = self.load()
        return self.callable

    def run(self) -> None:
        from pronghorn.master.arbiter import Arbiter

        if self.cfg.spew:
            from pronghorn.spew import install_spew  # here: a master imports it only with --spew

            install_spew()
        if self.cfg.daemon:
            if "NOTIFY_SOCKET" in os.environ:
                print("Warning: daemon mode under systemd (NOTIFY_SOCKET is set) detaches from the service.",
                      file=sys.stderr)
            daemonize(self.cfg.enable_stdio_inheritance)
        try:
            Arbiter(self).run()
        except (ConfigError, RuntimeError) as exc:
            _fail(exc)


class Application(BaseApplication):
    """An application configured from the command line, ``PRONGHORN_CMD_ARGS`` and a config file."""

    def chdir(self) -> None:
        os.chdir(self.cfg.chdir)
        if self.cfg.chdir not in sys.path:
            sys.path.insert(0, self.cfg.chdir)

    def get_config_from_filename(self, filename: str) -> dict[str, Any]:
        return sources.read_config_location(f"file:{filename}")

    def get_config_from_module_name(self, module_name: str) -> dict[str, Any]:
        return sources.read_config_location(f"python:{module_name}")

    def load_config_from_module_name_or_filename(self, location: str) -> dict[str, Any]:
        """Apply every module-level name of the config that is a setting; others are ignored, except
        Gunicorn settings pronghorn does not serve yet, which stop start-up unless at their default."""
        from pronghorn.config.deferred import deferred_refusal  # here: only a server with a config file
        from pronghorn.config.misspelt import suggestion

        values = sources.read_config_location(location)
        for name, value in values.items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)
            elif (refusal := deferred_refusal(name, value)) is not None:
                raise ConfigError(refusal)
            elif (meant := suggestion(name, self.cfg.settings)) is not None and meant not in values:
                self.cfg.file_warnings.append(f"{location}: {name!r} is not a setting and is ignored; did you "
                                              f"mean {meant!r}?")
        return values

    def load_config_from_file(self, filename: str) -> dict[str, Any]:
        return self.load_config_from_module_name_or_filename(filename)

    def load_config(self) -> None:
        # Precedence, lowest first: defaults < init() < config file < PRONGHORN_CMD_ARGS (else
        # GUNICORN_CMD_ARGS) < command line.
        parser = cli.build_parser(self.usage, self.prog)
        args = cli.parse(parser, sys.argv[1:])
        framework = self.init(parser, args, args.args)
        self.chdir()
        if framework:
            for name, value in framework.items():
                self.cfg.set(name.lower(), value)

        self.env_args_variable, extra = sources.env_args(self.cfg.environ)
        env_args = cli.parse(parser, extra)
        self.env_args_text = " ".join(extra)
        location = args.config or env_args.config
        if location is None:
            location = sources.find_default_config_file(os.getcwd())
            if location is not None:
                self.cfg.set("config", location)  # what --print-config shows: the file read
        if location is not None:
            self.config_file = location
            self.load_config_from_module_name_or_filename(location)

        self.cfg.apply(cli.given_options(env_args))
        self.cfg.apply(cli.given_options(args))
        self.chdir()

    def run(self) -> None:
        if self.cfg.pythonpath:
            sources.prepend_pythonpath(self.cfg.pythonpath)
        if self.cfg.print_config:
            print(self.cfg)
        if self.cfg.print_config or self.cfg.check_config:
            self.check()
        super().run()

    def check(self) -> NoReturn:
        """``--check-config``: load the app and exit 0, or say why not and exit 1."""
        from pronghorn.master.arbiter import Arbiter

        try:
            Arbiter.check_settings(self.cfg)
        except ConfigError as exc:
            _fail(exc)  # one line, as when the server itself starts with it
        try:
            self.wsgi()
        except Exception as exc:
            print("\nError while loading the application:\n", file=sys.stderr)
            if isinstance(exc, (ConfigError, *ONE_LINE_LOAD_ERRORS)):
                print(str(exc), file=sys.stderr)
            else:
                traceback.print_exc()
            sys.stderr.flush()
            sys.exit(1)
        sys.exit(0)


def _fail(exc: BaseException) -> NoReturn:
    print(f"Error: {exc}", file=sys.stderr)
    sys.stderr.flush()
    sys.exit(getattr(exc, "exit_status", 1))
