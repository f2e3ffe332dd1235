"""Settings whose mechanism has not landed stop start-up when set; none is accepted and ignored.

Each case runs the real ``pronghorn`` command: a refused start exits 1 with one line on stderr that
names the setting, before anything is bound.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from serving import child_env, free_port, http_get, pronghorn_cmd, running


def _start(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A start that must end by itself (refused, or --check-config); killed by its pid on timeout."""
    return subprocess.run(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{free_port()}", *args), cwd=project,
                          env=child_env(), capture_output=True, text=True, timeout=60)


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("how", "name", "waits_for"), [
    (["--http-parser", "fast"], "http_parser", "one built-in parser"),
    ("http_parser = 'python'\n", "http_parser", "one built-in parser"),
])
def test_a_pending_setting_given_a_value_stops_start_up(project: Path, how: list[str] | str, name: str,
                                                       waits_for: str) -> None:
    if isinstance(how, str):
        (project / "conf.py").write_text(how)
        how = ["-c", "conf.py"]
    for extra in ([], ["--check-config"]):
        result = _start(project, *how, *extra)
        assert result.returncode == 1, (extra, result.stdout, result.stderr)
        lines = _error_lines(result)
        assert len(lines) == 1, (extra, lines)
        assert lines[0].startswith(f"Error: Setting {name} is not available yet ("), lines
        assert waits_for in lines[0], lines
        assert "Listening at" not in result.stdout + result.stderr


def test_a_pending_setting_at_its_default_is_accepted(project: Path) -> None:
    (project / "conf.py").write_text("syslog = False\nhttp_parser = 'auto'\nsuppress_ragged_eofs = True\n")
    result = _start(project, "-c", "conf.py", "--check-config")
    assert result.returncode == 0, result.stderr


def test_a_deferred_gunicorn_setting_stops_start_up_unless_at_gunicorns_default(project: Path) -> None:
    (project / "conf.py").write_text("protocol = 'http'\nroot_path = ''\n")
    assert _start(project, "-c", "conf.py", "--check-config").returncode == 0

    (project / "conf.py").write_text("dirty_workers = 2\n")
    result = _start(project, "-c", "conf.py")
    assert result.returncode == 1
    assert _error_lines(result) == [
        "Error: Setting dirty_workers is not available yet (it arrives with dirty arbiters): 2 given"
    ]


def test_help_says_which_settings_are_not_available_yet(project: Path) -> None:
    result = subprocess.run(pronghorn_cmd("--help"), cwd=project, env=child_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    assert "--http-parser STRING Not available yet (pronghorn has one built-in parser, which `auto` selects): " \
           "setting it stops start-up." in flat
    assert "--ssl-version SSL_VERSION Deprecated: ignored, as in Gunicorn;" in flat
    assert "--workers INT Number of worker processes the master keeps running." in flat  # no prefix


def test_deprecated_ssl_version_warns_once_and_serves(project: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}", "--ssl-version", "5"),
                 cwd=project, port=port) as server:
        assert http_get(port)[0] == 200
        out = server.wait_for_output("Booting worker")
    assert out.count("Setting ssl_version is deprecated: ignored, as in Gunicorn;") == 1


def test_a_reload_that_sets_a_pending_setting_keeps_the_running_configuration(project: Path) -> None:
    conf = project / "conf.py"
    conf.write_text("workers = 1\n")
    port = free_port()
    with running(pronghorn_cmd("exampleapi:app", "-c", "conf.py", "-b", f"127.0.0.1:{port}"),
                 cwd=project, port=port) as server:
        server.wait_for_output("Booting worker")
        conf.write_text("workers = 1\nhttp_parser = 'python'\n")
        server.signal(signal.SIGHUP)
        out = server.wait_for_output("Setting http_parser is not available yet")
        assert http_get(port)[0] == 200
        assert out.count("Booting worker") == 1, out  # nothing was restarted with the refused configuration
