"""Build pronghorn: pure Python, with the modules on every request's path compiled by mypyc, and two
small C modules: ``pronghorn.http._head``, the parser's quick path for the usual request head, and
``pronghorn.workers._mallopt``, which spares the workers ctypes.

Those modules stay ordinary typed Python (the sources are what the tests and the docs describe);
compiled, a request costs about a third less CPU. Compiling needs a C compiler: where there is none,
or mypyc fails, or ``PRONGHORN_COMPILE=0`` is set, the same modules are installed as plain Python,
with a warning. Editable installs (``pip install -e .``) are never compiled, so that an edited source
is what runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The modules with the most Python run per request; the rest (configuration, the master, logging,
# rarely used framing) stays Python. Compiled code is mapped into every worker, so its size counts:
# -O2 without alignment padding (docs/performance.md: -Os is a fifth smaller and 9 % slower).
COMPILED = [
    "src/pronghorn/http/dates.py",
    "src/pronghorn/http/fields.py",
    "src/pronghorn/http/framing.py",
    "src/pronghorn/http/parser.py",
    "src/pronghorn/http/request_line.py",
    "src/pronghorn/http/response.py",
    "src/pronghorn/apps/asgi.py",
    "src/pronghorn/apps/cycle.py",
    "src/pronghorn/apps/forwarding.py",
    "src/pronghorn/apps/environ.py",
    "src/pronghorn/apps/wsgi.py",
    "src/pronghorn/net/tls.py",
    "src/pronghorn/metrics.py",
    "src/pronghorn/workers/admission.py",
    "src/pronghorn/workers/app_threads.py",
    "src/pronghorn/workers/asgi_connection.py",
    "src/pronghorn/workers/gthread.py",
    "src/pronghorn/workers/http_connection.py",
    "src/pronghorn/workers/loop_io.py",
    "src/pronghorn/workers/worker_loop.py",
]


# No alignment padding: about 5 % less code than plain -O2, and as fast here.
_NO_PADDING = ["-falign-functions=1", "-falign-jumps=1", "-falign-loops=1", "-falign-labels=1"]


def _warn(message: str) -> None:
    print(f"pronghorn: {message}; installing those modules as plain Python", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """If compiling fails, the modules are left as Python instead of failing the install."""

    def finalize_options(self) -> None:
        # mypyc here, not when setup.py is loaded: a build loads it once per step (requirements,
        # metadata, the wheel), and only the step that builds extensions needs the compiled modules.
        # Once: the command may be finalized again (a re-initialised build_ext), on the same list.
        # (egg_info finalizes build_ext too, only to list the sources: nothing to compile then)
        modules = self.distribution.ext_modules or []
        building = bool(set(self.distribution.commands) & {"bdist_wheel", "build", "build_ext", "install"})
        if building and not any(getattr(module, "_pronghorn_mypyc", False) for module in modules):
            compiled = compiled_modules()
            for module in compiled:
                module._pronghorn_mypyc = True
            self.distribution.ext_modules = [*compiled, *modules]
        super().finalize_options()

    def run(self) -> None:
        # An earlier build's modules left in build/ would ship with this one: only this build's go.
        wanted = {Path(self.get_ext_fullpath(ext.name)).resolve() for ext in self.extensions}
        for suffix in ("*.so", "*.pyd"):
            for path in Path(self.build_lib).rglob(suffix):
                if path.resolve() not in wanted:
                    path.unlink()
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler, missing headers...
            _warn(f"compiling with mypyc failed ({exc})")
            # Nothing compiled may ship, not even an earlier build's leftovers in build/: the
            # compiled modules share one runtime library, and a stale one would run old code.
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)


def compiling() -> bool:
    return os.environ.get("PRONGHORN_COMPILE", "1") != "0" and not any(arg.startswith("editable") for arg in sys.argv)


def native_modules() -> list[Any]:
    """Plain C: the usual request head recognised in one pass (the parser takes the general path for
    every head without it), and glibc's mallopt() for the workers (allocator.py, else ctypes)."""
    if not compiling():
        return []
    return [
        Extension("pronghorn.http._head", ["src/pronghorn/http/_head.c"]),
        Extension("pronghorn.workers._mallopt", ["src/pronghorn/workers/_mallopt.c"]),
    ]


def compiled_modules() -> list[Any]:
    if not compiling():
        return []
    print("pronghorn: compiling the request path with mypyc (about 30 s)", file=sys.stderr)
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not available")
        return []
    try:
        # Not the project's mypy settings: optional imports (uvloop, setproctitle) are absent here.
        extensions = list(mypycify(["--config-file=", "--ignore-missing-imports", *COMPILED], opt_level="2"))
        for extension in extensions:
            extension.extra_compile_args = [*extension.extra_compile_args, *_NO_PADDING]
        return extensions
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - mypyc exits on type errors
        _warn(f"mypyc could not compile them ({exc})")
        return []


# The C modules make this a platform build; build_ext adds mypyc's to them (OptionalBuildExt.run).
setup(ext_modules=native_modules(), cmdclass={"build_ext": OptionalBuildExt})
