"""Listeners on real sockets: loopback TCP (v4 and v6), unix sockets and adopted descriptors."""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pronghorn.net.addresses import Address, FdAddress, TcpAddress, UnixAddress
from pronghorn.net.listeners import Listener, create_listener, create_listeners, listeners_from_fds

BACKLOG = 16


@pytest.fixture
def opened() -> Iterator[list[Listener]]:
    """Collects listeners made by a test and closes them whatever happens."""
    listeners: list[Listener] = []
    try:
        yield listeners
    finally:
        for listener in listeners:
            listener.close(last_owner=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # sun_path holds ~104 bytes; pytest's tmp_path can be longer than that on some hosts.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ph-") as name:
        yield Path(name)


def _round_trip(listener: Listener) -> None:
    """Connect, accept and exchange a byte, proving the socket really listens."""
    if isinstance(listener.bound, TcpAddress):
        client = socket.create_connection((listener.bound.host, listener.bound.port), timeout=5)
    else:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(listener.bound.path)
    try:
        listener.socket.settimeout(5)
        server_side, _ = listener.socket.accept()
        try:
            client.sendall(b"x")
            assert server_side.recv(1) == b"x"
        finally:
            server_side.close()
    finally:
        client.close()
        listener.socket.setblocking(False)


def test_tcp_port_zero(opened: list[Listener]) -> None:
    listener = create_listener(TcpAddress("127.0.0.1", 0), backlog=BACKLOG)
    opened.append(listener)
    assert listener.address == TcpAddress("127.0.0.1", 0)
    assert isinstance(listener.bound, TcpAddress)
    assert listener.bound.host == "127.0.0.1" and listener.bound.port > 0
    assert str(listener) == f"http://127.0.0.1:{listener.bound.port}"
    assert listener.server_name == ("127.0.0.1", listener.bound.port)
    assert listener.fileno() == listener.socket.fileno()
    assert listener.socket.family == socket.AF_INET
    _round_trip(listener)


def test_tcp_socket_options(opened: list[Listener]) -> None:
    listener = create_listener(TcpAddress("127.0.0.1", 0), backlog=BACKLOG)
    opened.append(listener)
    sock = listener.socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getblocking() is False
    assert sock.get_inheritable() is False
    if hasattr(socket, "SO_REUSEPORT"):
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port_allows_two_listeners(opened: list[Listener]) -> None:
    first = create_listener(TcpAddress("127.0.0.1", 0), backlog=BACKLOG, reuse_port=True)
    opened.append(first)
    assert first.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    assert isinstance(first.bound, TcpAddress)
    second = create_listener(first.bound, backlog=BACKLOG, reuse_port=True)
    opened.append(second)
    assert second.bound == first.bound


def test_hostname_prefers_ipv4(opened: list[Listener]) -> None:
    listener = create_listener(TcpAddress("localhost", 0), backlog=BACKLOG)
    opened.append(listener)
    assert listener.socket.family == socket.AF_INET
    _round_trip(listener)


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback(opened: list[Listener]) -> None:
    listener = create_listener(TcpAddress("::1", 0), backlog=BACKLOG)
    opened.append(listener)
    assert listener.socket.family == socket.AF_INET6
    assert isinstance(listener.bound, TcpAddress) and listener.bound.host == "::1"
    assert str(listener) == f"http://[::1]:{listener.bound.port}"
    _round_trip(listener)


def test_unresolvable_host_fails_clearly() -> None:
    with pytest.raises(OSError, match=r"^Can't bind no-such-host\.invalid:80: "):
        create_listeners([TcpAddress("no-such-host.invalid", 80)], backlog=BACKLOG, attempts=1)


def test_unix_socket(opened: list[Listener], short_tmp: Path) -> None:
    path = str(short_tmp / "app.sock")
    listener = create_listener(UnixAddress(path), backlog=BACKLOG)
    opened.append(listener)
    assert listener.bound == UnixAddress(path)
    assert str(listener) == f"unix:{path}"
    assert listener.server_name == path and listener.is_unix
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert listener.socket.getblocking() is False
    _round_trip(listener)


def test_unix_socket_umask(opened: list[Listener], short_tmp: Path) -> None:
    path = str(short_tmp / "private.sock")
    before = os.umask(0o022)
    try:
        opened.append(create_listener(UnixAddress(path), backlog=BACKLOG, umask=0o077))
        assert os.umask(0o022) == 0o022  # the process umask is restored afterwards
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def test_close_unlinks_only_when_asked(short_tmp: Path) -> None:
    path = short_tmp / "a.sock"
    kept = create_listener(UnixAddress(str(path)), backlog=BACKLOG)
    kept.close(last_owner=False)
    assert path.exists()
    removed = create_listener(UnixAddress(str(path)), backlog=BACKLOG)  # stale file replaced
    removed.close(last_owner=True)
    assert not path.exists()
    removed.close(last_owner=True)  # closing twice is harmless


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a socket filter drops the handshakes (Linux)")
def test_the_last_owner_closing_a_tcp_socket_keeps_the_queue_and_takes_no_newcomer() -> None:
    """As when a server stops: the master closes its socket, its worker (here a duplicate
    descriptor) still takes what was queued; a connection made after that is never queued."""
    listener = create_listener(TcpAddress("127.0.0.1", 0), backlog=BACKLOG)
    port = listener.socket.getsockname()[1]
    worker_copy = socket.socket(fileno=os.dup(listener.fileno()))
    queued = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        queued.sendall(b"ping")
        listener.close(last_owner=True)
        with pytest.raises(TimeoutError):  # the SYN is dropped: no connection to reset later
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        worker_copy.settimeout(2)
        taken, _ = worker_copy.accept()
        with taken:
            assert taken.recv(4) == b"ping"
        worker_copy.setblocking(False)
        with pytest.raises(BlockingIOError):
            worker_copy.accept()
        worker_copy.close()
        with pytest.raises(ConnectionRefusedError):  # once no process holds it
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        queued.close()
        worker_copy.close()


def test_stale_unix_socket_is_replaced(opened: list[Listener], short_tmp: Path) -> None:
    path = str(short_tmp / "stale.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old.bind(path)  # bound but never listening, then closed: a leftover file
    finally:
        old.close()
    assert os.path.exists(path)
    listener = create_listener(UnixAddress(path), backlog=BACKLOG)
    opened.append(listener)
    _round_trip(listener)


def test_live_unix_socket_is_not_stolen(short_tmp: Path) -> None:
    path = str(short_tmp / "live.sock")
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        owner.bind(path)
        owner.listen(1)  # tiny backlog: the liveness probes fill it and must not block
        inode = os.stat(path).st_ino
        with pytest.raises(OSError, match="Address already in use") as info:
            create_listeners([UnixAddress(path)], backlog=BACKLOG, attempts=3, retry_delay=0.01)
        assert info.value.errno == errno.EADDRINUSE
        assert os.stat(path).st_ino == inode
        owner.settimeout(5)
        probe, _ = owner.accept()  # a probe reached the owner: the path is still its socket
        probe.close()
    finally:
        owner.close()


def test_regular_file_is_not_removed(short_tmp: Path) -> None:
    path = short_tmp / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(OSError, match="exists and is not a socket"):
        create_listeners([UnixAddress(str(path))], backlog=BACKLOG, attempts=1)
    assert path.read_text() == "precious"


def test_fd_adoption_calls_listen(opened: list[Listener]) -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.bind(("127.0.0.1", 0))
    fd = raw.detach()  # ownership moves to the listener
    try:
        listener = create_listener(FdAddress(fd), backlog=BACKLOG)
    except BaseException:
        os.close(fd)
        raise
    opened.append(listener)
    assert listener.address == FdAddress(fd)
    assert isinstance(listener.bound, TcpAddress) and listener.bound.port > 0
    assert listener.fileno() == fd
    assert listener.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    assert listener.socket.getblocking() is False
    assert listener.socket.get_inheritable() is False
    _round_trip(listener)


def test_fd_adoption_of_listening_unix_socket(opened: list[Listener], short_tmp: Path) -> None:
    path = str(short_tmp / "inherited.sock")
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.bind(path)
    raw.listen(4)
    raw.set_inheritable(True)
    fd = raw.detach()
    try:
        listener = create_listener(FdAddress(fd), backlog=BACKLOG)
    except BaseException:
        os.close(fd)
        raise
    opened.append(listener)
    assert listener.bound == UnixAddress(path)
    assert listener.socket.get_inheritable() is False
    _round_trip(listener)


def test_fd_that_is_not_a_socket_is_left_open() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError, match=f"^Can't bind fd://{read_end}: "):
            create_listeners([FdAddress(read_end)], backlog=BACKLOG, attempts=1)
        os.fstat(read_end)  # still ours, still open
    finally:
        os.close(read_end)
        os.close(write_end)


def test_datagram_fd_is_rejected_and_left_open() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError, match="not a stream socket"):
            create_listener(FdAddress(raw.fileno()), backlog=BACKLOG)
        raw.getsockname()  # still open
    finally:
        raw.close()


def test_listeners_from_fds(opened: list[Listener], short_tmp: Path) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    unix_path = str(short_tmp / "sd.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)  # not listening yet: listeners_from_fds must listen()
    fds = [tcp.detach(), unix.detach()]
    try:
        listeners = listeners_from_fds(fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    opened.extend(listeners)
    tcp_listener, unix_listener = listeners
    assert isinstance(tcp_listener.bound, TcpAddress)
    assert tcp_listener.address == tcp_listener.bound
    assert unix_listener.bound == UnixAddress(unix_path) == unix_listener.address
    for listener in listeners:
        _round_trip(listener)


def test_eaddrinuse_retries_then_fails_clearly() -> None:
    owner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    messages: list[str] = []
    try:
        owner.bind(("127.0.0.1", 0))
        owner.listen(1)
        port = owner.getsockname()[1]
        with pytest.raises(OSError) as info:
            create_listeners(
                [TcpAddress("127.0.0.1", port)],
                backlog=BACKLOG,
                attempts=2,
                retry_delay=0.05,
                log=messages.append,
            )
    finally:
        owner.close()
    assert str(info.value) == (
        f"Can't bind 127.0.0.1:{port}: [Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}"
    )
    assert info.value.errno == errno.EADDRINUSE
    assert isinstance(info.value.__cause__, OSError)
    assert len(messages) == 1 and f"127.0.0.1:{port}" in messages[0]


def test_failure_closes_listeners_already_made(short_tmp: Path) -> None:
    path = short_tmp / "first.sock"
    owner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        owner.bind(("127.0.0.1", 0))
        owner.listen(1)
        busy = TcpAddress("127.0.0.1", owner.getsockname()[1])
        with pytest.raises(OSError, match="Can't bind"):
            create_listeners([UnixAddress(str(path)), busy], backlog=BACKLOG, attempts=1)
    finally:
        owner.close()
    assert not path.exists()  # the first listener was closed and unlinked


def test_create_listeners_in_order(opened: list[Listener], short_tmp: Path) -> None:
    addresses: list[Address] = [TcpAddress("127.0.0.1", 0), UnixAddress(str(short_tmp / "b.sock"))]
    listeners = create_listeners(addresses, backlog=BACKLOG)
    opened.extend(listeners)
    assert [listener.address for listener in listeners] == addresses
