"""Settings whose mechanism has not landed warn once at start-up; deferred names in a file are reported."""

from __future__ import annotations

from pathlib import Path

from serving import free_port, http_get, pronghorn_cmd, running


def test_pending_and_deferred_settings_warn_once(project: Path) -> None:
    (project / "conf.py").write_text("syslog = True\ndirty_workers = 2\nproxy_allow_ips = '*'\n")
    port = free_port()
    args = ["exampleapi:app", "-c", "conf.py", "-b", f"127.0.0.1:{port}", "-w", "2", "--reuse-port"]
    with running(pronghorn_cmd(*args), cwd=project, port=port) as server:
        assert http_get(port)[0] == 200
        out = server.wait_for_output("Booting worker")
    for name in ("syslog", "reuse_port", "proxy_allow_ips"):
        assert out.count(f"Setting {name} has no effect yet") == 1, name
    assert out.count("Setting dirty_workers is not supported yet") == 1
    assert "Setting workers" not in out and "Setting bind" not in out
