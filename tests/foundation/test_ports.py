"""A port chosen for a server that binds later is one no outgoing connection can be given meanwhile.

The suite once failed with ``EADDRINUSE``: a test took a port from the kernel (ephemeral), released it,
ran the orchestrator's start-up (Kafka and database connections, seconds under a loaded run) and only
then bound it; one of the run's outgoing connections had been given that port in between.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

import pytest

from shared import ports
from shared.ports import ephemeral_low, free_port, server_ports


def test_ports_are_drawn_below_the_ephemeral_range_and_are_free() -> None:
    low = ephemeral_low()
    drawn = [free_port() for _ in range(200)]
    assert all(1024 < port < low for port in drawn), sorted(p for p in drawn if not 1024 < p < low)
    assert len(set(drawn)) > 150  # drawn at random, not one port handed out again and again
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", drawn[-1]))  # free when handed out


def test_seeding_the_random_module_does_not_repeat_the_draws() -> None:
    # Two processes seeded alike (each test worker replaying one seed) must not draw the same ports.
    state = random.getstate()
    try:
        random.seed(12)
        first = [free_port() for _ in range(5)]
        random.seed(12)
        again = [free_port() for _ in range(5)]
        assert first != again
        random.seed(12)
        free_port()
        assert random.random() == random.Random(12).random()  # a draw leaves the seeded sequence alone
    finally:
        random.setstate(state)


def test_a_port_a_server_holds_is_never_handed_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A machine whose servers' span is 64 ports, every one of them held (by this test, or by something
    # else already): half listened on, half bound as a server binds before its start-up and listens
    # after it (SO_REUSEADDR). No draw may return one of them; the kernel's pick is all that is left.
    first = random.randrange(server_ports().start, server_ports().stop - 64)
    span = range(first, first + 64)
    held = []
    try:
        for port in span:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            held.append(sock)
            with contextlib.suppress(OSError):  # in use already: just as unavailable
                sock.bind(("127.0.0.1", port))
                if port % 2:
                    sock.listen()
        setting = tmp_path / "ip_local_port_range"
        setting.write_text(f"{span.stop}\t60999\n")
        monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", setting)
        monkeypatch.setattr(ports, "_SPAN", 64)
        assert server_ports() == span
        assert free_port() not in span
    finally:
        for sock in held:
            sock.close()


def test_a_machine_with_no_room_below_its_ephemeral_range_gets_a_kernel_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("1024\t65535\n")
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", setting)
    assert len(server_ports()) == 0
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_without_linux_setting_the_iana_dynamic_range_is_assumed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", tmp_path / "absent")
    assert ephemeral_low() == 49152
    assert free_port() < 49152
