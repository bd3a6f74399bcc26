"""The Master's log feed: a line logged in a worker thread reaches a loop's listener on
that loop's thread (the D-Bus connection is not thread-safe: found in the QEMU guest,
where a UDS flash's worker logging sent LogLine and dbus-daemon dropped the Master)."""

from __future__ import annotations

import asyncio
import logging
import threading

from redstone_agent.master.controller import LogRing


def test_a_line_from_a_worker_thread_is_delivered_on_the_listeners_loop() -> None:
    ring = LogRing()
    logger = logging.getLogger("redstone-test-log-ring")
    logger.propagate = False
    logger.addHandler(ring)
    seen: list[tuple[str, int]] = []

    async def main() -> None:
        loop_thread = threading.get_ident()
        ring.listen(lambda line: seen.append((line, threading.get_ident())))
        await asyncio.to_thread(logger.warning, "flashing block 7")
        logger.warning("on the loop")
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert {thread for _, thread in seen} == {loop_thread}

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(ring)
    assert [line.rsplit(": ", 1)[1] for line, _ in seen] == ["flashing block 7", "on the loop"]
    assert len(ring.lines) == 2


def test_a_listener_that_fails_is_dropped_and_logging_goes_on() -> None:
    ring = LogRing()
    calls: list[str] = []

    def broken(line: str) -> None:
        calls.append(line)
        raise OSError("bus gone")

    ring.listen(broken)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "one", None, None)
    ring.emit(record)
    ring.emit(record)
    assert len(calls) == 1 and len(ring.lines) == 2
