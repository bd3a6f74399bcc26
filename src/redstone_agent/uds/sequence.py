"""The ISO 14229 programming sequence, step by step, with resumable TransferData.

Order (DESIGN.md §4): extended session, DTC setting off, communication control,
programming session, SecurityAccess, fingerprint, erase, RequestDownload,
TransferData…, RequestTransferExit, check memory, check dependencies. The
caller resets the ECU afterwards.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from udsoncan import DataFormatIdentifier, MemoryLocation
from udsoncan.client import Client

from redstone_agent.uds import blocks
from redstone_agent.uds.config import EcuConfig, Region
from redstone_agent.uds.errors import (
    FlashCancelledError,
    NegativeResponseError,
    SecurityAccessError,
    TransportError,
    VerificationError,
)
from redstone_agent.uds.security import compute_key
from redstone_agent.uds.session import Channel

log = logging.getLogger(__name__)

EXTENDED_SESSION = 0x03
PROGRAMMING_SESSION = 0x02
DTC_OFF = 0x02
DISABLE_RX_AND_TX = 0x03
NORMAL_MESSAGES = 0x01
SESSION_LOST_NRCS = {0x24, 0x33, 0x7E, 0x7F, 0x22}
"""NRCs to a resent block that mean the ECU forgot our download: restart the sequence."""
REQUEST_OUT_OF_RANGE = 0x31
ROUTINE_OK = 0x00


class SessionLostError(TransportError):
    """The ECU no longer knows our download (reset, power loss): restart from the top."""


@dataclass
class TransferStats:
    """What happened on the wire, for the report."""

    blocks_resent: int = 0
    restarts: int = 0
    payload_bytes: int = 0


ProgressFn = Callable[[str, int, int], None]


class ProgrammingSequence:
    """Programs one image into one region of one ECU over ``channel``."""

    def __init__(
        self,
        channel: Channel,
        fingerprint: bytes,
        progress: ProgressFn,
        cancel: threading.Event,
        stats: TransferStats,
    ) -> None:
        self.channel = channel
        self.ecu: EcuConfig = channel.ecu
        self.fingerprint = fingerprint
        self.progress = progress
        self.cancel = cancel
        self.stats = stats

    def run(self, image: bytes, region: Region) -> None:
        """Program ``image``; restart the whole sequence when the ECU lost our session."""
        for attempt in range(self.ecu.timing.restart_attempts + 1):
            try:
                self._program(image, region)
                return
            except TransportError as exc:  # includes SessionLostError
                if attempt == self.ecu.timing.restart_attempts:
                    raise
                self.stats.restarts += 1
                log.warning("%s: %s; restarting the programming sequence", self.ecu.name, exc)
                self.channel.reconnect(self.ecu.timing.reconnect_delay)

    def check_cancel(self) -> None:
        """Stop between two requests when asked to."""
        if self.cancel.is_set():
            raise FlashCancelledError(f"ECU {self.ecu.name}: flash cancelled")

    def enter_programming(self) -> None:
        """Sessions, DTC and communication control, then the programming session."""
        prog = self.ecu.programming
        self.progress("prepare", 0, 1)
        self.change_session("extended session", EXTENDED_SESSION)
        if prog.dtc_setting:
            self.channel.call("DTC setting off", lambda c: c.control_dtc_setting(DTC_OFF))
        if prog.communication_control:
            self.channel.call(
                "communication control",
                lambda c: c.communication_control(DISABLE_RX_AND_TX, NORMAL_MESSAGES),
            )
        self.change_session("programming session", PROGRAMMING_SESSION)
        self.unlock()

    def change_session(self, step: str, session: int) -> None:
        """DiagnosticSessionControl, adopting the P2/P2* the ECU announces."""
        response = self.channel.call(step, lambda c: c.change_session(session))
        data = response.service_data
        self.channel.session.adopt_timing(data.p2_server_max, data.p2_star_server_max)

    def unlock(self) -> None:
        """SecurityAccess with the configured seed→key plug-in.

        A lost answer to the key is not repeated blindly (the ECU has dropped
        the seed): a fresh seed request tells, all zeros meaning "unlocked".
        """
        sec = self.ecu.security
        for attempt in range(self.ecu.timing.transfer_retries + 1):
            seed = self.channel.call(
                "security seed", lambda c: c.request_seed(sec.level)
            ).service_data.seed
            if not any(seed):
                return
            key = compute_key(sec.algorithm, sec.level, bytes(seed), sec.params)
            try:
                send_key = functools.partial(Client.send_key, level=sec.level + 1, key=key)
                self.channel.call("security key", send_key, retry=False)
                return
            except NegativeResponseError as exc:
                raise SecurityAccessError(
                    f"ECU {self.ecu.name}: security access denied ({exc}); check the "
                    f"algorithm {sec.algorithm!r} and its parameters"
                ) from None
            except TransportError:
                if attempt == self.ecu.timing.transfer_retries:
                    raise
                self.channel.reconnect(self.ecu.timing.reconnect_delay)

    def routine(self, step: str, routine_id: int, data: bytes | None = None) -> None:
        """Start a routine and insist on status 0x00 in its status record."""
        response = self.channel.call(step, lambda c: c.start_routine(routine_id, data))
        status = response.service_data.routine_status_record
        if status and status[0] != ROUTINE_OK:
            raise VerificationError(
                f"ECU {self.ecu.name}: {step} routine 0x{routine_id:04X} failed "
                f"(status 0x{status[0]:02X})"
            )

    def _program(self, image: bytes, region: Region) -> None:
        prog = self.ecu.programming
        self.check_cancel()
        self.enter_programming()
        self.check_cancel()
        self.channel.call(
            "write fingerprint",
            lambda c: c.write_data_by_identifier(self.ecu.dids.fingerprint, self.fingerprint),
        )
        self.progress("erase", 0, 1)
        self.routine(
            "erase",
            self.ecu.routines.erase,
            blocks.address_and_length(
                region.address, region.size, prog.address_bytes, prog.size_bytes
            ),
        )
        payload, max_length = self._request_download(image, region)
        log.info(
            "%s: downloading %d bytes (format 0x%02X) to %s in blocks of %d",
            self.ecu.name,
            len(payload.data),
            payload.data_format,
            region.name,
            max_length - 2,
        )
        self._transfer(payload.data, blocks.data_per_block(max_length))
        # a repeated exit or download request would meet a changed ECU state (0x24):
        # a lost answer to either restarts the sequence instead
        self.channel.call("transfer exit", lambda c: c.request_transfer_exit(), retry=False)
        self.progress("check", 0, 1)
        self.routine("check memory", self.ecu.routines.check_memory, blocks.crc32(image))
        self.routine("check dependencies", self.ecu.routines.check_dependencies)

    def _request_download(self, image: bytes, region: Region) -> tuple[blocks.Payload, int]:
        """RequestDownload, compressed when configured; plain if the ECU refuses compression."""
        prog = self.ecu.programming
        location = MemoryLocation(
            region.address,
            len(image),
            address_format=prog.address_bytes * 8,
            memorysize_format=prog.size_bytes * 8,
        )
        methods = [prog.compression, "none"] if prog.compression != "none" else ["none"]
        for method in methods:
            payload = blocks.encode_payload(image, method)
            dfi = DataFormatIdentifier.from_byte(payload.data_format)
            try:
                max_length = self.channel.call(
                    "request download",
                    functools.partial(_request_download, location, dfi),
                    retry=False,
                )
            except NegativeResponseError as exc:
                if exc.code == REQUEST_OUT_OF_RANGE and method != "none":
                    log.info("%s: refuses %s compression, sending plain", self.ecu.name, method)
                    continue
                raise
            return payload, max_length
        raise AssertionError("unreachable")  # pragma: no cover

    def _transfer(self, data: bytes, block_data: int) -> None:
        """TransferData every block; after a loss resend the unacknowledged block."""
        total = len(data)
        for index, chunk in blocks.iter_blocks(data, block_data):
            self.check_cancel()
            self._send_block(blocks.block_counter(index), chunk)
            self.stats.payload_bytes += len(chunk)
            self.progress("download", min((index + 1) * block_data, total), total)

    def _send_block(self, counter: int, chunk: bytes) -> None:
        timing = self.ecu.timing
        for attempt in range(timing.transfer_retries + 1):
            try:
                self.channel.call(
                    "transfer data", lambda c: c.transfer_data(counter, chunk), retry=False
                )
                return
            except NegativeResponseError as exc:
                if exc.code in SESSION_LOST_NRCS:
                    raise SessionLostError(
                        f"ECU {self.ecu.name} lost the download ({exc})"
                    ) from None
                raise
            except TransportError as exc:
                if attempt == timing.transfer_retries:
                    raise
                self.stats.blocks_resent += 1
                log.warning("%s: %s; resending block %d", self.ecu.name, exc, counter)
                self.channel.reconnect(timing.reconnect_delay)
        raise AssertionError("unreachable")  # pragma: no cover


def _request_download(
    location: MemoryLocation, dfi: DataFormatIdentifier, client: Client
) -> int | None:
    """RequestDownload; the ECU's maxNumberOfBlockLength."""
    response = client.request_download(location, dfi=dfi)
    return None if response is None else int(response.service_data.max_length)


def read_raw(client: Client, did: int) -> bytes:
    """ReadDataByIdentifier of a DID the session decodes as raw bytes."""
    response = client.read_data_by_identifier(did)
    return b"" if response is None else bytes(response.service_data.values[did])
