"""Per-message costs someipy 2.1.2 pays for nothing, removed (docs/someip.md §10.1).

A method call crosses four processes (client, local someipyd, remote
someipyd, service), and in each someipy spent more on bookkeeping than on the
message (``tools/bench/someip.py``, py-spy):

* ``create_uds_message`` checks every message's keys against
  ``typing.get_type_hints`` of its TypedDict, computed afresh each time. We
  keep the check and compute each type's keys once.
* ``get_logger`` calls ``Logger.setLevel`` on every use, and ``setLevel``
  clears the logging module's level cache for *every* logger, under its lock.
  Ours sets the level only when it differs.
* The transmit loops of the client library and the daemon wait on their queue
  through ``asyncio.wait_for(..., 0.2)`` "for a periodic cancellation check":
  a task and a timer per message, and five wake-ups a second per idle
  connection. A plain ``await queue.get()`` is cancellable as it is.

Behaviour is unchanged: same messages, same checks, same order, same
cancellation. :func:`install` is idempotent and pinned to 2.1.2's layout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, get_type_hints


@functools.cache
def _keys(message_type: type) -> frozenset[str]:
    return frozenset(get_type_hints(message_type))


def create_uds_message(message_python_type: type, **kwargs: Any) -> dict[str, Any]:
    """someipy's constructor, with its key check against the type's cached keys."""
    message = {"type": message_python_type.__name__, **kwargs}
    if message.keys() != _keys(message_python_type):
        raise RuntimeError(
            f"Invalid data passed to create_uds_message for type {message_python_type.__name__}"
        )
    return message


_loggers: dict[str, logging.Logger] = {}


@functools.cache
def _someipy_level() -> Callable[[], int]:
    from someipy.someipy_logging import get_someipy_log_level

    level: Callable[[], int] = get_someipy_log_level
    return level


def get_logger(name: str) -> logging.Logger:
    """someipy's logger lookup: a console handler if it has none, its level set on change."""
    level = _someipy_level()()
    logger = _loggers.get(name)
    if logger is None:
        from someipy._internal.logging import setup_console_handler

        logger = logging.getLogger(f"someipy.{name}")
        if not any(isinstance(handler, logging.StreamHandler) for handler in logger.handlers):
            formatter = logging.Formatter(
                "%(asctime)s.%(msecs)03d %(name)s [%(levelname)s]: %(message)s",
                datefmt="%Y-%m-%d,%H:%M:%S",
            )
            logger.addHandler(setup_console_handler(formatter, level))
        _loggers[name] = logger
    if logger.level != level:
        logger.setLevel(level)
    return logger


async def _client_transmit(self: Any, writer: asyncio.StreamWriter) -> None:
    """``SomeIpDaemonClient.transmit_data_task`` without the per-message ``wait_for``."""
    log = get_logger("someipyd_client")
    try:
        while True:
            data = await self._tx_queue.get()
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError as exc:
                log.error(f"Connection error: {exc}")
                break
            finally:
                self._tx_queue.task_done()
    except asyncio.CancelledError:
        log.debug("Daemon client TX task cancelled")


async def daemon_transmit(self: Any, client: Any) -> None:
    """``SomeipDaemon.tx_task`` (one per local client) without the per-message ``wait_for``."""
    tx_queue = self._tx_queues[client.id]
    try:
        while True:
            data = await tx_queue.get()
            try:
                await client.send(data)
            except ConnectionError as exc:
                self.logger.error(f"Error sending data in tx task: {exc}")
                break
            finally:
                tx_queue.task_done()
    except asyncio.CancelledError:
        try:
            await client.close()
        except Exception as exc:
            self.logger.error(f"Error closing writer: {exc}")
    finally:
        self._tx_queues.pop(client.id, None)


def install() -> None:
    """Rebind the three hot paths in every someipy module that imported them."""
    import someipy.client_service_instance as client_instance
    import someipy.server_service_instance as server_instance
    import someipy.someipyd as daemon
    from someipy._internal import tcp_connection
    from someipy._internal._daemon import someipy_daemon_client as daemon_client
    from someipy._internal._daemon import uds_messages

    for module in (uds_messages, client_instance, server_instance, daemon_client, daemon):
        module.create_uds_message = create_uds_message
    for module in (client_instance, daemon_client, tcp_connection):
        module.get_logger = get_logger
    daemon_client.SomeIpDaemonClient.transmit_data_task = _client_transmit
