"""docs/deploy-container.md's Containerfile (deploy/container/): what it builds, and its CMD with its
ENV run here, plainly and as PID 1 of its own PID namespace; the image itself is built and run only
where a Docker daemon answers. The stand-ins are in ``deploy.common``'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import REPO, Server, child_env, children_of, free_port, http_get, running, wait_until

from deploy.common import (CONTAINER, Stage, effective_settings, group_gone, image_environment, image_files,
                           in_image_to_local, instructions, live_children, read_containerfile)


def image_command(stage: Stage) -> list[str]:
    cmd = instructions(stage, "CMD")
    assert len(cmd) == 1 and cmd[0].startswith("["), "CMD in exec form (a JSON array)"
    argv = json.loads(cmd[0])
    assert not instructions(stage, "ENTRYPOINT"), "no ENTRYPOINT: CMD is the whole command"
    return argv


def test_containerfile_builds_what_the_guide_says() -> None:
    stages = read_containerfile()
    assert len(stages) >= 2, "a multi-stage build"
    build, image = stages[:-1], stages[-1]
    build_runs = " ".join(arguments for stage in build for arguments in instructions(stage, "RUN"))
    assert "gcc" in build_runs and "pip wheel" in build_runs, "the build stage compiles the wheel"
    image_runs = " ".join(instructions(image, "RUN"))
    assert "gcc" not in image_runs and "--no-index" in image_runs, "the runtime installs built wheels only"
    assert "slim" in instructions(image, "FROM")[0]
    user = instructions(image, "USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root USER (Kubernetes' runAsNonRoot checks it)"
    assert instructions(image, "STOPSIGNAL") == ["SIGTERM"]
    argv = image_command(image)
    config = argv[argv.index("--config") + 1]
    assert image_files(image)[config] == CONTAINER / "pronghorn.conf.py"
    assert "WEB_CONCURRENCY" in image_environment(image)


def test_container_config_loads(guide_dir: Path) -> None:
    image = read_containerfile()[-1]
    command, env = in_image_to_local(image_command(image), image), image_environment(image)
    done = subprocess.run([*command, "--check-config"], cwd=guide_dir, env=child_env(env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    settings = effective_settings(command, guide_dir, env)
    exposed = {int(port.split("/")[0]) for arguments in instructions(image, "EXPOSE") for port in arguments.split()}
    assert settings["bind"] == str([f"0.0.0.0:{port}" for port in sorted(exposed)])
    assert settings["workers"] == env["WEB_CONCURRENCY"]
    assert settings["accesslog"] == "-" and settings["errorlog"] == "-", "logs to stdout and stderr"
    # docker stop and podman stop send SIGKILL 10 s after the STOPSIGNAL unless told otherwise.
    assert float(settings["graceful_timeout"]) + 2 <= 10


@contextlib.contextmanager
def _serve_container_command(guide_dir: Path, wrapper: list[str]) -> Iterator[tuple[Server, int, int]]:
    image = read_containerfile()[-1]
    port = free_port()
    # The config file binds 0.0.0.0:8000; a --bind added to the command line (which wins over
    # the config file) puts it on loopback here.
    command = in_image_to_local(image_command(image), image) + ["--bind", f"127.0.0.1:{port}"]
    with running([*wrapper, *command], cwd=guide_dir, port=port, env=image_environment(image)) as server:
        yield server, port, int(image_environment(image)["WEB_CONCURRENCY"])


def test_container_command_serves_and_stops(guide_dir: Path) -> None:
    """The image's CMD with its ENV: serves the demo app, logs each request, stops on SIGTERM."""
    with _serve_container_command(guide_dir, []) as (server, port, workers):
        status, _, body = http_get(port, "/hello")
        assert status == 200 and b"It works" in body
        assert wait_until(lambda: len(live_children(server.pid)) == workers, 10), children_of(server.pid)
        assert wait_until(lambda: '"GET /hello HTTP/1.1" 200' in server.output(), 5), "access log on stdout"
        server.signal(signal.SIGTERM)  # the STOPSIGNAL
        assert server.wait(timeout=10) == 0
        assert group_gone(server.pid)


def _can_unshare_pid() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def test_container_command_as_pid_1(guide_dir: Path) -> None:
    """As in a container: the CMD is PID 1 of its own PID namespace. It adopts and reaps orphans
    (a `docker exec` leftover here) and SIGTERM still stops it with status 0."""
    if shutil.which("nsenter") is None or not _can_unshare_pid():
        pytest.skip("needs unshare --pid --mount-proc and nsenter (as root) to run pronghorn as PID 1")
    with _serve_container_command(guide_dir, ["unshare", "--pid", "--fork", "--mount-proc"]) as (server, port, workers):
        (master,) = children_of(server.pid)  # unshare's child: PID 1 inside
        assert re.search(r"NSpid:\s+\d+\s+1$", Path(f"/proc/{master}/status").read_text(), re.M)
        assert http_get(port)[0] == 200
        assert wait_until(lambda: len(live_children(master)) == workers, 10)
        # A process whose parent exits inside the namespace is handed to PID 1.
        subprocess.run(["nsenter", "--target", str(master), "--pid", "--", "/bin/sh", "-c", "sleep 1.5 & exit 0"],
                       timeout=10, check=True)

        def orphans() -> list[int]:
            return [pid for pid in children_of(master) if _cmdline(pid) == ["sleep", "1.5"]]

        assert wait_until(orphans, 1.0), "the orphan was adopted by pronghorn's master"
        assert wait_until(lambda: not orphans(), 5), "and reaped once it exited (no zombie left)"
        assert len(live_children(master)) == workers == len(children_of(master))
        assert http_get(port)[0] == 200
        os.kill(master, signal.SIGTERM)  # what docker stop sends to PID 1
        assert server.wait(timeout=10) == 0  # unshare exits with its child's status
        assert "Shutting down: Master" in server.output()


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
def test_container_image_builds_and_runs() -> None:
    if not _docker_daemon():
        pytest.skip("no Docker daemon (`docker info` fails): the image is not built")
    tag = f"pronghorn-deploy-test:{os.getpid()}"
    built = subprocess.run(["docker", "build", "-f", str(CONTAINER / "Containerfile"), "-t", tag, str(REPO)],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    port = free_port()
    container = ""
    try:
        started = subprocess.run(["docker", "run", "-d", "-p", f"127.0.0.1:{port}:8000", tag],
                                 capture_output=True, text=True, timeout=60, check=True)
        container = started.stdout.strip()
        assert wait_until(lambda: _try_get(port), 30)
        assert subprocess.run(["docker", "stop", container], capture_output=True, timeout=30).returncode == 0
        inspect = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container],
                                 capture_output=True, text=True, timeout=30)
        assert inspect.stdout.strip() == "0"
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


def _try_get(port: int) -> bool:
    try:
        return http_get(port, timeout=2)[0] == 200
    except OSError:
        return False
