"""The installed build compiles what setup.py lists: a mypyc failure only warns at install time (and
installs plain Python), so without this check a change mypyc cannot compile would ship uncompiled."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import pronghorn
from serving import REPO

INSTALLED = Path(pronghorn.__file__).resolve().parents[1] != (REPO / "src").resolve()


def compiled_modules() -> list[str]:
    listed = re.findall(r'"src/(pronghorn/[\w/]+)\.(?:py|c)"', (REPO / "setup.py").read_text())
    assert listed, "setup.py lists no compiled modules"
    return [path.replace("/", ".") for path in listed]


@pytest.mark.skipif(not INSTALLED, reason="pronghorn runs from src/ (an editable install is never compiled)")
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the install falls back to plain Python")
@pytest.mark.skipif(os.environ.get("PRONGHORN_COMPILE") == "0", reason="built with PRONGHORN_COMPILE=0")
@pytest.mark.parametrize("name", compiled_modules())
def test_listed_module_is_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), (
        f"{name} was installed as {module.__file__}: compiling it failed (pip install -v . shows why)"
    )


def test_the_installed_build_says_what_it_is() -> None:
    from pronghorn import build

    parser_file = importlib.import_module("pronghorn.http.parser").__file__ or ""
    assert build.compiled() == parser_file.endswith(tuple(EXTENSION_SUFFIXES))
    assert build.description() == ("compiled" if build.compiled() else "pure Python")
    if not INSTALLED:  # the sources on the path: a development setup, never warned about
        assert build.from_source() and build.uncompiled_warning() is None


def _source_copy(destination: Path) -> Path:
    """What a release is built from (a build writes build/ and *.egg-info next to its sources)."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(REPO / "src", destination / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    return destination


def _wheel_into_fresh_venv(source: Path, tmp_path: Path, name: str, env: dict[str, str]) -> Path:
    dist = tmp_path / f"dist-{name}"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], check=True,
                   env=env, capture_output=True, timeout=600)
    (wheel,) = dist.glob("pronghorn-*.whl")
    venv = tmp_path / f"venv-{name}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    return venv


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the wheel is pure Python")
def test_a_wheel_built_by_python_m_build_is_compiled_and_says_so(tmp_path: Path) -> None:
    """``python -m build`` on a clean copy gives a compiled wheel (mypyc run once); installed into a
    fresh virtual environment, ``pronghorn --version`` says "compiled" and no warning is due. The
    same sources built with ``PRONGHORN_COMPILE=0`` say "pure Python", and warn."""
    pytest.importorskip("build")
    (tmp_path / "source").mkdir()
    source = _source_copy(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if k != "PRONGHORN_COMPILE"}
    venv = _wheel_into_fresh_venv(source, tmp_path, "compiled", env)
    version = subprocess.run([str(venv / "bin" / "pronghorn"), "--version"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert version.stdout.strip() == f"pronghorn (version {pronghorn.__version__}, compiled)", version.stdout
    check = ("from pronghorn import build; import pronghorn.workers.loop_io as m; "
             "print(build.uncompiled_warning(), m.__file__.endswith('.py'))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.stdout.split() == ["None", "False"], out.stdout + out.stderr

    pure = _wheel_into_fresh_venv(source, tmp_path, "pure", {**env, "PRONGHORN_COMPILE": "0"})
    version = subprocess.run([str(pure / "bin" / "pronghorn"), "--version"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert version.stdout.strip().endswith(", pure Python)")
    warning = subprocess.run([str(pure / "bin" / "python"), "-c", "from pronghorn import build; "
                              "print(build.uncompiled_warning())"], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert warning.stdout.startswith("pronghorn is installed as pure Python")
