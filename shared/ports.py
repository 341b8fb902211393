"""Choosing a loopback port for a server that binds it later.

A port taken with ``bind(("127.0.0.1", 0))`` and released comes from the kernel's ephemeral range, the
same range every outgoing connection's local port is drawn from. Between the release and the server's
own ``bind`` (a broker subprocess starting, a service running its start-up first) any connection made on
the machine can be handed that port, and the server then fails with ``EADDRINUSE``. A port below the
ephemeral range is never handed to an outgoing connection, so only another server choosing the same
port in the same moment can take it; :func:`free_port` draws at random from a wide range, and checks it
is free, to make that as unlikely as it can.

Where the caller can hold the socket until the server uses it (uvicorn's ``sockets=``), it should: then
there is no moment at which the port is free at all.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Linux's setting; elsewhere (macOS, Windows) the ephemeral range is IANA's 49152–65535.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_IANA_DYNAMIC_LOW = 49152
#: How many ports below the ephemeral range to draw from.
_SPAN = 16384
_ATTEMPTS = 64
#: The OS's entropy, not the ``random`` module's shared state: processes that seed that state alike (a
#: seeded test, Hypothesis's examples) would otherwise draw the same ports, and a draw here would shift
#: the sequence such code replays.
_DRAW = random.SystemRandom()


def ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _IANA_DYNAMIC_LOW


def server_ports() -> range:
    """Ports no outgoing connection is given: the span just below the ephemeral range, above 1024."""
    low = ephemeral_low()
    return range(max(1025, low - _SPAN), low)


def _bindable(host: str, port: int) -> bool:
    """Whether nothing holds ``port``. Without ``SO_REUSEADDR``: a socket another server has bound but not
    yet listened on (bound with it, as servers are) refuses this bind, where with it the bind succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free now and that no outgoing connection will be given meanwhile.

    Falls back to one the kernel picks (ephemeral) when the machine leaves no room below its ephemeral
    range, or none of the draws was free."""
    candidates = server_ports()
    if len(candidates) >= _ATTEMPTS:
        for port in _DRAW.sample(candidates, _ATTEMPTS):
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
