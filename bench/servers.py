"""The servers ``bench/run.py`` compares: where their programs are, their command lines, the
variants (a server with a thread count) that make the rows, and one running server's life (start,
readiness, worker processes, their memory and CPU affinity, stop).

Every server serves ``apps:app`` (bench/apps.py) on 127.0.0.1 with 2 worker processes, except
waitress, which has no multi-process mode and runs as one process. In the ASGI workloads every
server serves ``apps:asgi_app`` instead (pronghorn and Gunicorn with ``-k asgi``, Granian with
``--interface asgi``, uvicorn), with no application threads: waitress sits those out, and uvicorn,
which is there for them, sits out the WSGI ones. A server is started in a session of its own (so it
leads a process group), its output goes to a log file, and ``stop()`` sends SIGINT to its pid,
waits, then SIGKILLs its process group, whatever happened before.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APP = "apps:app"
ASGI_APP = "apps:asgi_app"
UNVERIFIED = ssl._create_unverified_context()  # the self-signed benchmark certificate
WORKERS = 2
# Idle keep-alive connections must survive the whole "idle" workload (Gunicorn's default is 2 s).
KEEP_ALIVE = 75

SERVERS = ("pronghorn", "gunicorn", "granian", "waitress", "uvicorn")
WSGI_ONLY = ("waitress",)  # sit out the ASGI workloads
ASGI_ONLY = ("uvicorn",)  # sit out the WSGI workloads
# The headline rows: pronghorn inline and with a pool, Granian with as many blocking threads as each,
# Gunicorn and waitress with 4 (their best for apps that do not wait, see docs/benchmark.md); uvicorn
# for the ASGI workloads (where every server has one row, under its first variant).
DEFAULT_VARIANTS = "pronghorn:1,pronghorn:4,granian:1,granian:4,gunicorn:4,waitress:4,uvicorn:1"
PEER_PROGRAMS = {"gunicorn": "gunicorn", "granian": "granian", "waitress": "waitress-serve", "uvicorn": "uvicorn"}
PEER_PACKAGES = {"gunicorn": "gunicorn", "granian": "granian", "waitress": "waitress", "uvicorn": "uvicorn"}
INSTALL_PEERS = ("python3 -m venv /tmp/bench-peers && /tmp/bench-peers/bin/pip install gunicorn granian waitress "
                 "matplotlib 'uvicorn[standard]'")
INSTALL_WRK = "apt-get update && apt-get install -y wrk"


def serves(name: str, asgi: bool) -> bool:
    """Whether server ``name`` has rows in the ASGI workloads (``asgi``) or in the WSGI ones."""
    return name not in (WSGI_ONLY if asgi else ASGI_ONLY)


@dataclass(frozen=True)
class Variant:
    """One configured row of the matrix: a server with its application threads per worker."""

    server: str
    threads: int


def parse_variants(text: str) -> list[Variant]:
    """``"pronghorn:1,granian:4"`` -> variants; ValueError naming the bad item."""
    variants: list[Variant] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, threads = item.partition(":")
        if name not in SERVERS or not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"{item!r}: expected SERVER:THREADS with SERVER one of {', '.join(SERVERS)}, THREADS >= 1")
        variant = Variant(name, int(threads))
        if variant not in variants:
            variants.append(variant)
    if not variants:
        raise ValueError("no variant given")
    return variants


@dataclass
class Server:
    """One server under test: its name, the program that starts it, and how to label it."""

    name: str
    program: str  # a python interpreter for pronghorn, the console script for a peer
    worker: str = ""  # pronghorn's worker class
    version: str = ""
    note: str = ""
    from_src: bool = False  # pronghorn: run from the checkout's src/ (it is not installed for ``program``)

    def effective_threads(self, threads: int) -> int:
        # pronghorn -k sync with more threads would mean gthread (as in Gunicorn): keep it sync.
        # uvicorn has no application threads.
        return 1 if (self.name == "pronghorn" and self.worker == "sync") or self.name == "uvicorn" else threads

    @property
    def serves_wsgi(self) -> bool:
        return serves(self.name, asgi=False)

    @property
    def serves_asgi(self) -> bool:
        return serves(self.name, asgi=True)

    def label(self, threads: int, asgi: bool = False) -> str:
        """The row's name: the server and how its application threads are set (or, for ASGI, how it
        serves ASGI: there are no application threads)."""
        plural = "" if threads == 1 else "s"
        if self.name == "uvicorn":
            return "uvicorn (httptools, uvloop)"
        if asgi:
            return {"pronghorn": "pronghorn -k asgi", "gunicorn": "gunicorn -k asgi",
                    "granian": "granian ASGI"}.get(self.name, f"{self.name} ASGI")
        if self.name == "pronghorn":
            if self.worker != "gthread":
                return f"pronghorn -k {self.worker}" + (f" --threads {threads}" if threads > 1 else "")
            return "pronghorn inline" if threads == 1 else f"pronghorn --threads {threads}"
        if self.name == "granian":
            return f"granian, {threads} blocking thread{plural}"
        if self.name == "gunicorn":
            return f"gunicorn gthread, {threads} thread{plural}"
        return f"{self.name}, {threads} thread{plural}"

    @property
    def serves_tls(self) -> bool:
        return self.name != "waitress"

    def command(self, port: int, threads: int, tls: TlsFiles | None = None, asgi: bool = False) -> list[str]:
        if asgi:
            return self._asgi_command(port, tls)
        if self.name == "pronghorn":
            return [self.program, "-m", "pronghorn", APP, "-b", f"127.0.0.1:{port}", "-w", str(WORKERS),
                    "-k", self.worker, "--threads", str(threads), "--keep-alive", str(KEEP_ALIVE),
                    "--log-level", "warning", "--graceful-timeout", "5", *_tls_args("--certfile", "--keyfile", tls)]
        if self.name == "gunicorn":
            return [self.program, APP, "-b", f"127.0.0.1:{port}", "-w", str(WORKERS), "-k", "gthread",
                    "--threads", str(threads), "--keep-alive", str(KEEP_ALIVE), "--log-level", "warning",
                    "--graceful-timeout", "5", *_tls_args("--certfile", "--keyfile", tls)]
        if self.name == "granian":
            return [self.program, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(WORKERS), "--blocking-threads", str(threads), "--http", "1",
                    "--no-ws", "--backlog", "2048", "--log-level", "warning",
                    *_tls_args("--ssl-certificate", "--ssl-keyfile", tls), APP]
        if self.name == "waitress":
            assert tls is None, "waitress does not serve TLS"
            # One process. poll() instead of select() so that more than 1024 sockets work; the
            # connection limit (default 100) is raised for the 1,000 idle connections.
            return [self.program, "--listen", f"127.0.0.1:{port}", f"--threads={threads}",
                    "--connection-limit=2000", "--asyncore-use-poll", "--backlog=2048", APP]
        raise ValueError(f"{self.name} does not serve WSGI here")

    def _asgi_command(self, port: int, tls: TlsFiles | None) -> list[str]:
        """``apps:asgi_app`` with 2 workers, no application threads; the app has no lifespan handler,
        so lifespan is off where a flag says so (Granian's ``--interface asgi`` runs it, and the app
        returns at once)."""
        if self.name == "pronghorn":
            return [self.program, "-m", "pronghorn", ASGI_APP, "-b", f"127.0.0.1:{port}", "-w", str(WORKERS),
                    "-k", "asgi", "--asgi-lifespan", "off", "--keep-alive", str(KEEP_ALIVE),
                    "--log-level", "warning", "--graceful-timeout", "5", *_tls_args("--certfile", "--keyfile", tls)]
        if self.name == "gunicorn":
            return [self.program, ASGI_APP, "-b", f"127.0.0.1:{port}", "-w", str(WORKERS), "-k", "asgi",
                    "--asgi-lifespan", "off", "--keep-alive", str(KEEP_ALIVE), "--log-level", "warning",
                    "--graceful-timeout", "5", *_tls_args("--certfile", "--keyfile", tls)]
        if self.name == "granian":
            return [self.program, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(WORKERS), "--http", "1", "--no-ws", "--backlog", "2048",
                    "--log-level", "warning", *_tls_args("--ssl-certificate", "--ssl-keyfile", tls), ASGI_APP]
        if self.name == "uvicorn":
            return [self.program, ASGI_APP, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
                    "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                    "--lifespan", "off", *_tls_args("--ssl-certfile", "--ssl-keyfile", tls)]
        raise ValueError(f"{self.name} does not serve ASGI")

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(BENCH_DIR)]
        if self.from_src:
            paths.append(str(REPO / "src"))
        if env.get("PYTHONPATH") and self.name != "pronghorn":  # pronghorn: exactly what was found
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed P-256 certificate for 127.0.0.1 (wrk does not verify it); the key in PKCS#8,
    which Granian requires."""
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(files.key), "-out", str(files.cert)], check=True, capture_output=True)
    return files


def _tls_args(cert_flag: str, key_flag: str, tls: TlsFiles | None) -> list[str]:
    return [] if tls is None else [cert_flag, str(tls.cert), key_flag, str(tls.key)]


def _peer_python(program: str) -> str | None:
    """The interpreter named on a console script's #! line."""
    try:
        with open(program, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return None
    return first[2:].split()[0] if first.startswith("#!") else None


def _version(python: str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        out = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def pronghorn_installed(python: str) -> bool:
    """Whether ``python`` imports pronghorn by itself (an install, compiled where it could be)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run([python, "-c", "import pronghorn"], check=False, capture_output=True, timeout=30,
                             env=env, cwd=BENCH_DIR)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def pronghorn_facts(python: str, worker: str, from_src: bool) -> tuple[str, str, str, str]:
    """pronghorn's version, the worker class ``-k worker`` really runs, its event loop, and whether
    the modules on the request path are compiled (mypyc)."""
    code = ("import importlib.util, pronghorn, pronghorn.http.parser as p\n"
            "from pronghorn.workers.registry import resolve_worker_class as r\n"
            f"c = r({worker!r})\n"
            "c = c[0] if isinstance(c, tuple) else c\n"
            "print(pronghorn.__version__); print(c.__module__ + '.' + c.__name__)\n"
            "print('uvloop' if importlib.util.find_spec('uvloop') else 'asyncio (uvloop is not installed)')\n"
            "print('compiled with mypyc' if not p.__file__.endswith('.py') else 'pure Python')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if from_src:
        env["PYTHONPATH"] = str(REPO / "src")
    try:
        out = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=30,
                             env=env, cwd=BENCH_DIR)
    except (OSError, subprocess.TimeoutExpired):
        return "?", "?", "?", "?"
    lines = out.stdout.splitlines() + ["?"] * 4
    return lines[0], lines[1], lines[2], lines[3]


def find_servers(names: list[str], peers_bin: str, python: str, worker: str,
                 asgi: bool = False) -> tuple[list[Server], list[str]]:
    """The servers that can run, and a note for each one that cannot. ``asgi``: ASGI workloads will
    run (pronghorn's note then also says what ``-k asgi`` runs)."""
    servers: list[Server] = []
    notes: list[str] = []
    for name in names:
        if name == "pronghorn":
            from_src = not pronghorn_installed(python)
            version, cls, loop, build = pronghorn_facts(python, worker, from_src)
            where = "the checkout's src/ (not installed for this interpreter)" if from_src else "installed"
            note = f"-k {worker} runs {cls}" + (f", event loop: {loop}" if worker != "sync" else "")
            if asgi:
                _, asgi_cls, asgi_loop, _ = pronghorn_facts(python, "asgi", from_src)
                note += f"; -k asgi runs {asgi_cls}, event loop: {asgi_loop}"
            note += f"; {where}, {build}"
            servers.append(Server(name, python, worker=worker, version=version, note=note, from_src=from_src))
            continue
        program = PEER_PROGRAMS[name]
        path = os.path.join(peers_bin, program) if peers_bin else ""
        if not (path and os.access(path, os.X_OK)):
            path = shutil.which(program) or ""
        if not path:
            notes.append(f"{name}: skipped, `{program}` not found in {peers_bin or 'PATH'} or PATH "
                         f"(install: {INSTALL_PEERS})")
            continue
        peer_python = _peer_python(path) or sys.executable
        server = Server(name, path, version=_version(peer_python, PEER_PACKAGES[name]))
        if name == "waitress":
            server.note = ("one process (waitress has no worker processes), so its thread count is its total, "
                           "and its RSS is that of the whole server")
        if name == "uvicorn":
            server.note = ("ASGI workloads only; its supervisor spawns the 2 workers (and multiprocessing's "
                           "resource tracker, which is not counted as a worker)")
        servers.append(server)
    return servers, notes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def _helper_process(pid: int) -> bool:
    """multiprocessing's resource tracker, which a server that spawns its workers (uvicorn) also
    starts: a child that serves nothing."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.resource_tracker" in f.read()
    except OSError:
        return False


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _affinity(pid: int) -> set[int]:
    """The CPUs any thread of ``pid`` may run on (threads can be re-pinned one by one)."""
    cpus: set[int] = set()
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return cpus
    for tid in tids:
        try:
            cpus |= os.sched_getaffinity(tid)
        except OSError:  # the thread ended meanwhile
            pass
    return cpus


def parse_cpu_list(text: str) -> set[int]:
    """A taskset CPU list (``0``, ``0,2``, ``0-3``) as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid``, those that ended included."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass
class RunningServer:
    """A started server. Use as a context manager: it is always stopped on the way out."""

    server: Server
    port: int
    threads: int
    log_path: Path
    # A session of its own (the default) also puts the server in a scheduler autogroup of its own
    # where the kernel has them (kernel.sched_autogroup_enabled): while wrk is busy too, the server
    # and wrk each get about half of the CPU, whatever their thread counts.
    own_session: bool = True
    cpus: str = ""  # a taskset CPU list the server (and every process it forks) is confined to
    tls: TlsFiles | None = None
    asgi: bool = False  # serve apps:asgi_app (see Server.command)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss: dict[int, int] = field(default_factory=dict)  # worker pid -> max VmRSS in KiB
    _sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def __enter__(self) -> RunningServer:
        log = open(self.log_path, "wb")
        try:
            command = self.server.command(self.port, self.threads, self.tls, asgi=self.asgi)
            if self.cpus:
                command = ["taskset", "-c", self.cpus, *command]
            self.proc = subprocess.Popen(command, cwd=BENCH_DIR,
                                         env=self.server.environ(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session,
                                         process_group=None if self.own_session else 0)
        finally:
            log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until GET / answers 200 and the expected number of workers is up."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/", timeout=2, context=UNVERIFIED) as resp:
                    if resp.status == 200 and len(self.worker_pids()) >= self.expected_workers():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.server.name} not ready after {timeout:.0f} s: {self.log_tail()}")

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def expected_workers(self) -> int:
        return 1 if self.server.name == "waitress" else WORKERS

    def worker_pids(self) -> list[int]:
        """The processes serving requests: the master's children, or the server itself if it has none."""
        assert self.proc is not None
        children = [pid for pid in _children(self.proc.pid) if not _helper_process(pid)]
        if self.server.name == "waitress" or not children:
            return [self.proc.pid]
        return children

    def stray_cpus(self) -> set[int]:
        """CPUs outside ``cpus`` that the server's master, workers or any of their threads may use."""
        if not self.cpus or self.proc is None:
            return set()
        allowed = parse_cpu_list(self.cpus)
        pids = {self.proc.pid, *self.worker_pids()}
        return set().union(*(_affinity(pid) for pid in pids)) - allowed

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's master and workers (all their threads)."""
        if self.proc is None:
            return 0.0
        return sum(_cpu_seconds(pid) for pid in {self.proc.pid, *self.worker_pids()})

    def fd_counts(self) -> list[int]:
        return [_fd_count(pid) for pid in self.worker_pids()]

    def start_sampling(self, interval: float = 0.2) -> None:
        self.peak_rss.clear()
        self._sampling.clear()

        def sample() -> None:
            while not self._sampling.is_set():
                for pid in self.worker_pids():
                    self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), _rss_kib(pid))
                self._sampling.wait(interval)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> float:
        """Stop sampling; the peak VmRSS of any one worker, in MiB."""
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join()
        return max(self.peak_rss.values(), default=0) / 1024

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        self._sampling.set()
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # quick stop for all of them
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its own process group only
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
