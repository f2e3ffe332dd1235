"""What the tests of the three deployment guides share: docs/deploy-systemd.md (test_systemd_guide),
docs/deploy-kubernetes.md (test_kubernetes_guide) and docs/deploy-container.md (test_container_guide).

Every one of those tests reads the example files in deploy/ (never a copy of them) and runs the
command they run, with only these stand-ins, the same in every test:

- the ``pronghorn`` executable (a virtualenv's, or the image's) is this interpreter's
  ``python -m pronghorn``;
- the application reference, the last argument (``myproject.wsgi:application``), is the test's
  ``deployapp:app``, served from a temporary directory that is also the working directory; the
  container image's own app (``pronghorn.demo:app``) is kept;
- a config file path is the repository file the guide installs there (for the systemd unit,
  deploy/systemd/pronghorn.conf.py; inside the image, whatever the Containerfile COPYs there);
- a listening address on every interface (``0.0.0.0:N``, a bare port) is 127.0.0.1 on a free
  port, and a Unix socket path is one in the temporary directory;
- a preStop ``sleep N`` runs as ``sleep 1``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from serving import REPO, child_env, children_of, process_alive, pronghorn_cmd

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES = DEPLOY / "kubernetes"
CONTAINER = DEPLOY / "container"
DOCS = REPO / "docs"

APP_REFERENCE = "deployapp:app"
DEPLOY_APP = '''
import os, time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "2"))
    body = f"{os.getpid()}|{path}|{environ['wsgi.url_scheme']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def effective_settings(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """What ``--print-config`` says the command line resolves to (it also loads the app)."""
    done = subprocess.run([*cmd, "--print-config"], cwd=cwd, env=child_env(env), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"--print-config failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    settings = {}
    for line in done.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return False
    except ProcessLookupError:
        return True


# --- the Containerfile (the Kubernetes tests run its image's command, ENV and USER) ----------------

Stage = list[tuple[str, str]]


def read_containerfile(path: Path = CONTAINER / "Containerfile") -> list[Stage]:
    """Build stages, each a list of (INSTRUCTION, arguments); the last one is the image."""
    stages: list[Stage] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        elif instruction == "ARG" and not stages:
            continue  # a global ARG, before the first FROM
        assert stages, f"{path.name}: {instruction} before FROM"
        stages[-1].append((instruction, arguments.strip()))
    return stages


def instructions(stage: Stage, name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def image_environment(stage: Stage) -> dict[str, str]:
    """The image's ENV (KEY=VALUE forms, ``$VAR`` expanded as the builder does)."""
    env: dict[str, str] = {}
    for arguments in instructions(stage, "ENV"):
        for assignment in shlex.split(arguments):
            name, sep, value = assignment.partition("=")
            assert sep, f"ENV {arguments}: use the KEY=VALUE form"
            env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], os.environ.get(m[1], "")), value)
    return env


def image_files(stage: Stage) -> dict[str, Path]:
    """Paths in the image that a COPY from the build context (the repository root) puts there."""
    files = {}
    for arguments in instructions(stage, "COPY"):
        words = [word for word in arguments.split() if not word.startswith("--")]
        if "--from" in arguments or len(words) != 2:
            continue
        files[words[1]] = REPO / words[0]
    return files


def in_image_to_local(argv: list[str], stage: Stage, addresses: dict[str, str] | None = None) -> list[str]:
    """An image's command line run here: pronghorn from this interpreter, COPYd files from the
    repository, and ``0.0.0.0:N`` replaced as ``addresses`` says."""
    assert argv[0] == "pronghorn", argv
    files = image_files(stage)
    local = pronghorn_cmd()
    for arg in argv[1:]:
        for in_image, source in files.items():
            arg = arg.replace(in_image, str(source))
        for address, replacement in (addresses or {}).items():
            arg = arg.replace(address, replacement)
        local.append(arg)
    return local


def live_children(pid: int) -> list[int]:
    """Children of ``pid`` that are not zombies."""
    return [child for child in children_of(pid) if process_alive(child)]
