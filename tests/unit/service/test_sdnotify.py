"""sd_notify datagrams reach a real AF_UNIX socket, and are no-ops without one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from redstone_agent.service.sdnotify import Notifier, watchdog_interval


def test_messages_arrive_as_systemd_expects(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier(str(path))
        notifier.ready("IDLE")
        notifier.watchdog()
        notifier.status("TRANSFERRING x")
        assert server.recv(256) == b"READY=1\nSTATUS=IDLE"
        assert server.recv(256) == b"WATCHDOG=1"
        assert server.recv(256) == b"STATUS=TRANSFERRING x"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("IDLE")  # must not raise


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    notifier.status("READY")  # must not raise: a transition is never lost to systemd
    notifier.watchdog()
