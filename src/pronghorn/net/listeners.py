"""Listening sockets: bind TCP (v4/v6) and unix addresses, adopt inherited file descriptors.

Every socket returned here is listening, non-blocking and not inheritable: workers choose their own
blocking mode, and whoever re-executes the master marks the sockets it passes on as inheritable.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import sys
import time
from typing import Callable, Sequence

from pronghorn.ip_literals import packed_address
from pronghorn.net.addresses import Address, FdAddress, TcpAddress, UnixAddress

__all__ = ["Listener", "create_listener", "create_listeners", "listeners_from_fds"]

DEFAULT_BACKLOG = 2048
# struct tcp_info: eight one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, ...
_TCPI_UNACKED_OFFSET = 24
_TCP_INFO_SIZE = 104


class Listener:
    """A listening socket plus the address it was asked for and the address it really has."""

    def __init__(self, sock: socket.socket, address: Address, bound: TcpAddress | UnixAddress):
        self.socket = sock
        self.address = address  # as configured (may be fd://N or port 0)
        self.bound = bound  # as the kernel reports it

    @property
    def is_unix(self) -> bool:
        return isinstance(self.bound, UnixAddress)

    @property
    def server_name(self) -> tuple[str, int] | str:
        """``(host, port)`` for TCP, the socket path for unix (WSGI's SERVER_NAME/SERVER_PORT)."""
        if isinstance(self.bound, TcpAddress):
            return (self.bound.host, self.bound.port)
        return self.bound.path

    def fileno(self) -> int:
        return self.socket.fileno()

    def queued_connections(self) -> int | None:
        """Connections waiting in the accept queue right now (Linux TCP only), else None."""
        if self.is_unix or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        except OSError:
            return None
        # For a listening socket the kernel reports the accept-queue length as tcpi_unacked.
        return int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0]) if len(info) >= 28 else None

    def close(self, last_owner: bool = False) -> None:
        """Close the socket. ``last_owner``: the socket ends with this server (no upgraded master or
        systemd keeps it), so no new connection may join the queue its workers are about to take,
        and a unix socket's file goes."""
        if last_owner:
            _refuse_handshakes(self.socket)
        self.socket.close()
        if last_owner and isinstance(self.bound, UnixAddress) and _is_filesystem_path(self.bound.path):
            try:
                os.unlink(self.bound.path)
            except FileNotFoundError:
                pass

    def __str__(self) -> str:
        if isinstance(self.bound, TcpAddress):
            return f"http://{self.bound}"
        return str(self.bound)

    def __repr__(self) -> str:
        return f"<Listener {self} fd={self.socket.fileno()}>"


def create_listener(
    address: Address, *, backlog: int, reuse_port: bool = False, umask: int = 0
) -> Listener:
    """Bind and listen on one address (or adopt ``fd://N``). Raises ``OSError`` on failure."""
    if isinstance(address, FdAddress):
        return _adopt(address.fd, address, backlog)
    if isinstance(address, UnixAddress):
        return _bind_unix(address, backlog=backlog, umask=umask)
    return _bind_tcp(address, backlog=backlog, reuse_port=reuse_port)


def create_listeners(
    addresses: Sequence[Address],
    *,
    backlog: int,
    reuse_port: bool = False,
    umask: int = 0,
    attempts: int = 5,
    retry_delay: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> list[Listener]:
    """Create a listener per address, retrying ``EADDRINUSE`` up to ``attempts`` times.

    On failure every listener already created is closed and an ``OSError`` is raised whose message
    names the address, e.g. ``Can't bind 127.0.0.1:8000: [Errno 98] Address already in use``; its
    ``errno`` is the one of the last bind error.
    """
    listeners: list[Listener] = []
    try:
        for address in addresses:
            listeners.append(
                _create_with_retries(
                    address, backlog, reuse_port, umask, max(1, attempts), retry_delay, log
                )
            )
    except BaseException:
        for listener in listeners:
            listener.close(last_owner=listener.is_unix)
        raise
    return listeners


def listeners_from_fds(fds: Sequence[int], *, backlog: int = DEFAULT_BACKLOG) -> list[Listener]:
    """Adopt inherited listening sockets (re-exec, systemd socket activation).

    Family and address come from each socket; ``address`` and ``bound`` are both the real address.
    ``listen(backlog)`` is called only on a socket that is not listening yet.
    """
    listeners: list[Listener] = []
    try:
        for fd in fds:
            listener = _adopt(fd, None, backlog)
            listeners.append(listener)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _create_with_retries(
    address: Address,
    backlog: int,
    reuse_port: bool,
    umask: int,
    attempts: int,
    retry_delay: float,
    log: Callable[[str], None] | None,
) -> Listener:
    for attempt in range(1, attempts + 1):
        try:
            return create_listener(address, backlog=backlog, reuse_port=reuse_port, umask=umask)
        except OSError as exc:
            retry = exc.errno == errno.EADDRINUSE and attempt < attempts
            if not retry:
                error = OSError(f"Can't bind {address}: {exc}")
                error.errno = exc.errno
                raise error from exc
            if log is not None:
                log(f"Can't bind {address}: {exc}; retrying in {retry_delay:g}s "
                    f"(attempt {attempt} of {attempts})")
            time.sleep(retry_delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _bind_tcp(address: TcpAddress, *, backlog: int, reuse_port: bool) -> Listener:
    family, sockaddr = _resolve(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            except OSError:
                pass  # kernel without it: the master's socket is shared instead
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        bound = _bound_address(sock)
        _finish(sock)
    except BaseException:
        sock.close()
        raise
    return Listener(sock, address, bound)


def _resolve(address: TcpAddress) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """Pick the family and sockaddr to bind; a name with both kinds of address binds IPv4."""
    flags: int = socket.AI_PASSIVE
    family = socket.AF_UNSPEC
    literal = packed_address(address.host.partition("%")[0])
    if literal is not None:  # else a name: let the resolver answer
        flags |= socket.AI_NUMERICHOST
        family = socket.AF_INET6 if len(literal) == 16 else socket.AF_INET
    # A str host goes through the "idna" codec, which imports encodings.idna, stringprep and
    # unicodedata (~0.3 MiB that every forked worker inherits); an ASCII name needs no encoding.
    host: str | bytes = address.host.encode("ascii") if address.host.isascii() else address.host
    infos = socket.getaddrinfo(host, address.port, family, socket.SOCK_STREAM, 0, flags)
    usable = [info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not usable:
        raise OSError(errno.EADDRNOTAVAIL, f"no IPv4 or IPv6 address for {address.host!r}")
    usable.sort(key=lambda info: info[0] != socket.AF_INET)  # stable: IPv4 first
    return usable[0][0], tuple(usable[0][4])


def _bind_unix(address: UnixAddress, *, backlog: int, umask: int) -> Listener:
    _remove_stale_socket(address.path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(umask)  # the socket file's mode comes from the process umask
        try:
            sock.bind(address.path)
        finally:
            os.umask(previous)
        sock.listen(backlog)
        _finish(sock)
    except BaseException:
        sock.close()
        raise
    return Listener(sock, address, UnixAddress(address.path))


def _remove_stale_socket(path: str) -> None:
    """Delete ``path`` only if it is a socket file that no process accepts on."""
    if not _is_filesystem_path(path):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path!r} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a live server with a full backlog must not block us
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    except OSError:
        pass  # live (EAGAIN), or not ours to judge (EACCES...): let bind() report it
    finally:
        probe.close()


def _adopt(fd: int, address: Address | None, backlog: int) -> Listener:
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM:
            raise OSError(errno.ENOTSOCK, f"fd {fd} is not a stream socket")
        if not _is_listening(sock):
            sock.listen(backlog)
        bound = _bound_address(sock)
        _finish(sock)
    except BaseException:
        sock.detach()  # never close a descriptor we failed to adopt: it still belongs to the caller
        raise
    return Listener(sock, bound if address is None else address, bound)


def _is_listening(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return False  # listen() again is harmless, it only resets the backlog
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False


def _bound_address(sock: socket.socket) -> TcpAddress | UnixAddress:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return UnixAddress(os.fsdecode(name) if isinstance(name, bytes) else str(name))
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return TcpAddress(str(name[0]), int(name[1]))
    raise OSError(errno.EAFNOSUPPORT, f"unsupported socket family {sock.family!r}")


def _finish(sock: socket.socket) -> None:
    sock.set_inheritable(False)
    sock.setblocking(False)


# A classic BPF program of one instruction, "return 0" (BPF_RET | BPF_K): every packet is dropped.
_DROP_EVERY_PACKET = struct.pack("HBBI", 0x06, 0, 0, 0)
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def _refuse_handshakes(sock: socket.socket) -> None:
    """Linux TCP: drop new handshakes from now on; connections already queued stay to be accepted.

    Without it, every connection the kernel completes while the workers drain (up to
    ``graceful_timeout``) waits in a queue nobody takes and is reset, request sent, when the last
    worker exits. A dropped SYN is retried by the client and refused once the socket is gone.
    """
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    import ctypes

    program = ctypes.create_string_buffer(_DROP_EVERY_PACKET)
    try:  # struct sock_fprog: the program's length, then a pointer to it (copied by the kernel)
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("HP", 1, ctypes.addressof(program)))
    except OSError:
        pass


def _is_filesystem_path(path: str) -> bool:
    # Linux abstract-namespace names start with NUL and have no file to stat or unlink.
    return bool(path) and not path.startswith("\0")
