"""``TCP_NODELAY`` on the sockets of a machine's pasta.

pasta splices a machine's loopback connections to the host's (NATS's) with sockets of its own,
and Debian's pasta does not set ``TCP_NODELAY`` on them. Then Nagle meets delayed ACKs: when the
daemon writes twice with no answer in between (a publish, then a flush's PING), pasta holds the
second segment until the first is ACKed, and the receiver delays that ACK by Linux's 40 ms
minimum. Measured: "publish + flush, twice" p90 44 to 50 ms through pasta against 0.3 ms on the
host; a warm-pool claim took ~80 ms more with its own network than without.

The provider copies each of pasta's sockets with ``pidfd_getfd`` (Linux 5.6) and sets the
option on the copy: a socket option belongs to the socket, not to the descriptor. It is done
once pasta is up, before the daemon connects: the connection to NATS is made from pasta's
pre-opened socket pool, or accepted from its listener (an accepted socket inherits the option).
Sockets pasta opens later (its pool's refill, after the first connections) do not have it.
Where the copy is refused (no ptrace access to pasta), nothing changes but the latency.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from socket import AF_INET, AF_INET6

import structlog

from base import procinfo

log = structlog.get_logger(__name__)

_SYS_PIDFD_GETFD = 438  # the same number on every architecture (it is after the unification)


def no_delay(pid: int) -> int:
    """Set ``TCP_NODELAY`` on every TCP socket process ``pid`` holds; how many. Raises
    OSError when the process cannot be reached (gone, or no ptrace access to it)."""
    done = 0
    for sock in tcp_sockets(pid):
        with sock, contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done += 1
    return done


def tcp_sockets(pid: int) -> Iterator[socket.socket]:
    """A copy of each TCP socket process ``pid`` holds (the caller closes each); OSError when
    the process cannot be reached."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for fd in _socket_fds(pid):
            copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if copy < 0:
                err = ctypes.get_errno()
                if err == errno.EBADF:  # closed since it was listed
                    continue
                raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
            sock = socket.socket(fileno=copy)
            if sock.type == socket.SOCK_STREAM and sock.family in (AF_INET, AF_INET6):
                yield sock
            else:
                sock.close()
    finally:
        os.close(pidfd)


def _socket_fds(pid: int) -> list[int]:
    return [fd for fd, link in procinfo.fd_links(pid).items() if link.startswith("socket:")]
