"""systemd's readiness protocol: with ``NOTIFY_SOCKET`` set (a ``Type=notify`` service), the master
tells the service manager when it is ready, reloading and stopping.

Each message is one datagram of ``KEY=VALUE`` lines on that unix socket (``@name`` is in the abstract
namespace). Without the variable nothing is sent; a message that cannot be sent is logged, never
raised: the server serves whether or not anyone listens.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping


class ServiceNotifier:
    def __init__(self, environ: Mapping[str, str], log: Callable[..., None]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.log = log
        self.stopped = False

    def ready(self, status: str) -> None:
        self._send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # systemd 253 and later wait for READY=1 after RELOADING=1 with the time the reload began.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", "STATUS=reloading", f"MONOTONIC_USEC={now}")

    def stopping(self) -> None:
        if not self.stopped:  # a quick stop passes here twice
            self.stopped = True
            self._send("STOPPING=1", "STATUS=stopping")

    def _send(self, *lines: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            self.log("Could not notify the service manager at %s: %s", self.address.replace("\0", "@"), exc)
