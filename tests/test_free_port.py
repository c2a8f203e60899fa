"""`free_port`: ports for children to bind (the mock backend; the tests' and the bench's
processes), which no outgoing connection can take first and no two callers share."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from extproc import launcher
from extproc.launcher import free_port


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_ports_are_below_the_range_the_kernel_gives_outgoing_connections() -> None:
    low, _ = ephemeral_range()
    assert all(free_port() < low for _ in range(50))


def test_a_port_is_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_port_something_is_bound_to_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        held = holder.getsockname()[1]
        # The held port is offered first; after it, random picks as usual.
        offered, pick = iter([held]), launcher.random.randrange
        monkeypatch.setattr(launcher.random, "randrange",
                            lambda *bounds: next(offered, None) or pick(*bounds))
        port = launcher.free_port()
    assert port != held
    with socket.socket() as child:
        child.bind(("127.0.0.1", port))  # what the child process does with it
