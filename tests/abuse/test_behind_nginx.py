"""Behind the distribution's nginx: two pronghorn instances on Unix sockets, each reloaded (HUP) and
upgraded (USR2, then TERM of the old master) in turn while load runs through nginx. No request may
fail, and nginx may not have needed to retry one: its error log must hold no upstream error.

nginx runs with the site file of ``deploy/nginx/pronghorn.conf`` (the nginx guide's), in a main
configuration this test writes (``daemon off``, every file in the test's directory). ``.ci/run``
installs nginx where it is missing; elsewhere the test is skipped when there is no nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from serving import REPO, Server, children_of, free_port, process_alive, pronghorn_cmd, wait_until

from abuse.clients import RequestLoad
from abuse.harness import CaseFigures, stop_pid, write_app

NGINX = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
SITE = REPO / "deploy" / "nginx" / "pronghorn.conf"
WORKERS = 2

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")


def site_config(directory: Path, port: int) -> str:
    """The guide's site file with its socket directory and listen address replaced, nothing else."""
    text = SITE.read_text()
    assert text.count("/run/pronghorn/") == 2 and text.count("listen 80;") == 1, "the guide's file changed shape"
    return text.replace("/run/pronghorn/", f"{directory}/").replace("listen 80;", f"listen 127.0.0.1:{port};")


def main_config(directory: Path, port: int) -> Path:
    (directory / "site.conf").write_text(site_config(directory, port))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers of a root nginx would be "nobody"
    temp = "".join(f"    {kind}_temp_path {directory}/{kind}-temp;\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = directory / "nginx.conf"
    conf.write_text(f"""daemon off;
{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$status $upstream_addr';
    access_log {directory}/access.log upstream;
{temp}    include {directory}/site.conf;
}}
""")
    return conf


class Instance:
    """One pronghorn on a Unix socket; follows its master through USR2 upgrades."""

    def __init__(self, directory: Path, name: str) -> None:
        self.socket = directory / f"{name}.sock"
        self.pidfile = directory / f"{name}.pid"
        self.server = Server(pronghorn_cmd("abuseapp:app", "-b", f"unix:{self.socket}", "-w", str(WORKERS),
                                           "-p", str(self.pidfile), "--graceful-timeout", "10"),
                             cwd=directory, log=directory / f"{name}.log")
        self.master = self.server.pid
        self.masters = [self.master]

    def workers(self) -> set[int]:
        return set(children_of(self.master))

    def wait_workers(self, excluding: frozenset[int] = frozenset(), timeout: float = 20.0) -> bool:
        def ready() -> bool:
            pids = self.workers()
            return len(pids) == WORKERS and not pids & excluding
        return wait_until(ready, timeout)

    def reload(self, figures: CaseFigures) -> None:
        old = self.workers()
        began = time.monotonic()
        os.kill(self.master, signal.SIGHUP)
        figures.check(self.wait_workers(excluding=frozenset(old)),
                      f"{self.socket.name}: HUP replaced every worker ({time.monotonic() - began:.2f} s)")

    def upgrade(self, figures: CaseFigures) -> None:
        began = time.monotonic()
        os.kill(self.master, signal.SIGUSR2)
        new_pidfile = Path(f"{self.pidfile}.2")
        wait_until(new_pidfile.exists, 20)
        new_master = int(new_pidfile.read_text()) if new_pidfile.exists() else 0
        if new_master:
            self.masters.append(new_master)
        old_master, self.master = self.master, new_master
        ready = bool(new_master) and self.wait_workers()
        os.kill(old_master, signal.SIGTERM)
        gone = wait_until(lambda: not process_alive(old_master), 20)
        figures.check(ready and gone,
                      f"{self.socket.name}: USR2 started a new master, TERM stopped the old one "
                      f"({time.monotonic() - began:.2f} s)")

    def stop(self) -> None:
        for pid in reversed(self.masters[1:]):
            stop_pid(pid)
        self.server.stop()


@pytest.mark.slow
@needs_nginx
def test_reloads_and_upgrades_behind_nginx_fail_no_request(tmp_path: Path, figures: CaseFigures) -> None:
    write_app(tmp_path)
    port = free_port()
    instances: list[Instance] = []
    nginx: Server | None = None
    try:
        instances = [Instance(tmp_path, "a"), Instance(tmp_path, "b")]
        for instance in instances:
            assert instance.wait_workers(), instance.server.output()
        conf = main_config(tmp_path, port)
        assert NGINX is not None
        nginx = Server([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                       cwd=tmp_path, log=tmp_path / "nginx.out")
        nginx.wait_for_port(port)

        load = RequestLoad(port, threads=8, mode="mixed", duration=120, timeout=15)
        load.start()
        try:
            time.sleep(1.0)
            for instance in instances:
                instance.reload(figures)
                time.sleep(0.5)
            for instance in instances:
                instance.upgrade(figures)
                time.sleep(0.5)
            time.sleep(0.5)
        finally:
            result = load.stop()
        figures.note(f"8 clients through nginx: {result.summary()}")
        figures.check(result.failed == 0 and result.retried == 0,
                      f"no request failed ({result.failed}) or needed a retry ({result.retried})")
        figures.check(result.completed > 1000, f"{result.completed} requests answered")

        upstream_errors = [line for line in (tmp_path / "error.log").read_text().splitlines()
                           if "upstream" in line or "[error]" in line or "[crit]" in line]
        figures.check(not upstream_errors, f"nginx logged {len(upstream_errors)} upstream error(s)"
                      + (f", first: {upstream_errors[0][:200]}" if upstream_errors else ""))
        served = Counter()
        statuses = Counter()
        for line in (tmp_path / "access.log").read_text().splitlines():
            status, _, upstream = line.partition(" ")
            statuses[status] += 1
            for address in re.split(r"[ ,:]+", upstream):  # a retried request lists every upstream tried
                if address.endswith(".sock"):
                    served[Path(address).name] += 1
        figures.note(f"nginx access log: statuses {dict(statuses)}, by instance {dict(served)}")
        figures.check(set(statuses) == {"200"}, "every request nginx logged was answered 200")
        figures.check(all(served[f"{name}.sock"] > 100 for name in ("a", "b")), "both instances served")
        figures.check(all(process_alive(instance.master) for instance in instances), "both upgraded masters serve on")
    finally:
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            instance.stop()
    figures.assert_all()


def test_the_nginx_guide_shows_the_tested_file() -> None:
    guide = (REPO / "docs" / "deploy-nginx.md").read_text()
    block = guide.split("```nginx\n", 1)[1].split("```", 1)[0]
    body = SITE.read_text().split("\n\n", 1)[1]  # the file without its opening comment
    assert block == body
