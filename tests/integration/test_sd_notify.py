"""systemd readiness messages (sd_notify), read from a datagram socket the test owns."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from serving import free_port, http_get, pronghorn_cmd, running, sd_notifications


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_reloading_and_stopping_reach_the_service_manager(project: Path, abstract: bool) -> None:
    name = f"pronghorn-test-{time.monotonic_ns()}"
    address = "\0" + name if abstract else str(project / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        port = free_port()
        env = {"NOTIFY_SOCKET": "@" + name if abstract else address}
        with running(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}"), cwd=project, port=port,
                     env=env) as server:
            ready = sd_notifications(listener, "READY")[-1]
            assert ready["READY"] == "1" and ready["MAINPID"] == str(server.pid)
            assert http_get(port)[0] == 200

            server.signal(signal.SIGHUP)
            reload = sd_notifications(listener, "READY")
            assert reload[0]["RELOADING"] == "1" and int(reload[0]["MONOTONIC_USEC"]) > 0
            assert reload[-1]["READY"] == "1" and len(reload) == 2

            server.signal(signal.SIGTERM)
            assert sd_notifications(listener, "STOPPING")[-1]["STOPPING"] == "1"
            server.proc.wait(timeout=30)


def test_no_notify_socket_sends_nothing_and_an_unreachable_one_is_only_logged(project: Path) -> None:
    port = free_port()
    env = {"NOTIFY_SOCKET": str(project / "nobody-listens.sock")}
    with running(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}"), cwd=project, port=port,
                 env=env) as server:
        assert http_get(port)[0] == 200
        out = server.wait_for_output("Could not notify the service manager")
    assert "nobody-listens.sock" in out and "Traceback" not in out


def test_an_upgrade_hands_the_service_to_the_new_master(project: Path) -> None:
    """USR2: the new master reports READY=1 with its own MAINPID; the old master, stopped after it,
    does not report the service as stopping (with NotifyAccess=all systemd would believe it)."""
    address = str(project / "notify.sock")
    pidfile = project / "app.pid"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        port = free_port()
        cmd = pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}", "-p", str(pidfile))
        with running(cmd, cwd=project, port=port, env={"NOTIFY_SOCKET": address}) as server:
            assert sd_notifications(listener, "READY")[-1]["MAINPID"] == str(server.pid)
            server.signal(signal.SIGUSR2)
            new_ready = sd_notifications(listener, "READY")[-1]
            new_master = int(new_ready["MAINPID"])
            assert new_master != server.pid
            try:
                server.signal(signal.SIGTERM)
                assert server.proc.wait(timeout=30) == 0
                with pytest.raises(AssertionError, match="no STOPPING notification"):
                    sd_notifications(listener, "STOPPING", timeout=1.0)
                assert http_get(port)[0] == 200
                os.kill(new_master, signal.SIGTERM)
                assert sd_notifications(listener, "STOPPING")[-1]["STOPPING"] == "1"
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(new_master, signal.SIGKILL)
