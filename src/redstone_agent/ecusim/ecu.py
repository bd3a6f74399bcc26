"""The simulated ECU's UDS server: an I/O-free state machine.

``handle(request, now)`` returns a :class:`Reply`: the responses to send, each
after a delay (so NRC 0x78 "response pending" can precede a slow answer), and
whether the ECU resets or loses power afterwards. Transports (ISO-TP, DoIP)
only move bytes; all behaviour — sessions with S3, SecurityAccess lockout, the
flash model, fault memory (DTCs), injected faults — lives here and is testable
byte by byte.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from redstone_agent.ecusim.config import SimConfig
from redstone_agent.ecusim.dtc import ACTIVE_STATUS, FaultMemory, encode_records
from redstone_agent.ecusim.flash import FlashFault, FlashMemory
from redstone_agent.uds.blocks import COMPRESSION_METHODS
from redstone_agent.uds.config import Region
from redstone_agent.uds.diagnostics import (
    DTC_FORMAT_ISO14229_1,
    REPORT_DTC_BY_STATUS_MASK,
    REPORT_NUMBER_OF_DTC_BY_STATUS_MASK,
    REPORT_SUPPORTED_DTC,
)
from redstone_agent.uds.security import compute_key

log = logging.getLogger(__name__)

DEFAULT, PROGRAMMING, EXTENDED = 0x01, 0x02, 0x03
SESSION_DID, ACTIVE_BANK_DID = 0xF186, 0xFD00
POSITIVE = 0x40
SUPPRESS = 0x80

NRC_SERVICE_NOT_SUPPORTED = 0x11
NRC_SUBFUNCTION = 0x12
NRC_LENGTH = 0x13
NRC_BUSY = 0x21
NRC_CONDITIONS = 0x22
NRC_SEQUENCE = 0x24
NRC_RANGE = 0x31
NRC_DENIED = 0x33
NRC_INVALID_KEY = 0x35
NRC_ATTEMPTS = 0x36
NRC_DELAY = 0x37
NRC_NOT_ACCEPTED = 0x70
NRC_SUSPENDED = 0x71
NRC_PROGRAMMING = 0x72
NRC_COUNTER = 0x73
NRC_PENDING = 0x78
NRC_NOT_IN_SESSION = 0x7F


class Negative(Exception):
    """Raised inside a service handler to answer ``7F sid code``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"NRC 0x{code:02X}")
        self.code = code


@dataclass
class Reply:
    """What the transport does with one request."""

    responses: list[tuple[float, bytes]] = field(default_factory=list)
    """``(seconds to wait first, payload)`` in order."""
    reset: bool = False
    """Restart after the responses: transports drop their connections."""
    power_loss: float = 0.0
    """Seconds of silence starting now (nothing is answered, connections die)."""


@dataclass
class Download:
    """An active RequestDownload."""

    region: Region
    offset: int
    size: int
    block_data: int
    inflater: zlib._Decompress | None
    received: int = 0
    accepted: int = 0
    """Counter of the last accepted block (0 before the first)."""
    expected: int = 1


class SimulatedEcu:
    """One ECU: application or bootloader mode, sessions, security, flash, faults."""

    def __init__(
        self, config: SimConfig, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.config = config
        self.faults = config.faults
        self.random_bytes = random_bytes
        self.memory = FlashMemory(config.memory.regions, config.memory.dual_bank)
        self.memory.load_image(0, self.first_region.name, self._factory_image())
        self.mode = "application"
        self.session = DEFAULT
        self.unlocked = False
        self.seed = b""
        self.failed_keys = 0
        self.locked_until = 0.0
        self.last_request = 0.0
        self.silent_until = 0.0
        self.fingerprint = b""
        self.download: Download | None = None
        self.responses_sent = 0
        self.blocks_seen = 0
        self.busy_left = self.faults.busy_repeat
        self.boot_failures_left = self.faults.boot_failure
        self.reset_armed = self.faults.reset_after_blocks > 0
        self.power_loss_armed = self.faults.power_loss_after_blocks > 0
        self.fresh_bank: int | None = None
        """Bank flashed since the last reset, for the boot-failure fault."""
        self.fault_memory = FaultMemory(config.diagnostics, known=self.faults.dtcs_after_flash)
        self.identification = config.diagnostics.did_values()
        self.max_block_length = 0xFFF
        self.services: dict[int, Callable[[bytes, float, Reply], bytes | None]] = {
            0x10: self._session_control,
            0x11: self._ecu_reset,
            0x14: self._clear_diagnostic_information,
            0x19: self._read_dtc_information,
            0x22: self._read_did,
            0x27: self._security_access,
            0x28: self._communication_control,
            0x2E: self._write_did,
            0x31: self._routine_control,
            0x34: self._request_download,
            0x36: self._transfer_data,
            0x37: self._transfer_exit,
            0x3E: self._tester_present,
            0x85: self._dtc_setting,
        }
        """Handler per service id (built once: every TransferData block looks it up)."""

    @property
    def first_region(self) -> Region:
        return self.config.memory.regions[0]

    def _factory_image(self) -> bytes:
        mem = self.config.memory
        version = mem.initial_version.encode("ascii")[: mem.version_length]
        return bytes(mem.version_offset) + version.ljust(mem.version_length, b"\x00")

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: bytes, now: float, *, max_block_length: int = 0xFFF) -> Reply:
        """Answer one UDS request received at monotonic time ``now``."""
        if now < self.silent_until or not request:
            return Reply()
        self.max_block_length = max_block_length
        self._expire_session(now)
        self.last_request = now
        sid = request[0]
        handler = self.services.get(sid)
        reply = Reply()
        try:
            if handler is None:
                raise Negative(NRC_SERVICE_NOT_SUPPORTED)
            payload = handler(request, now, reply)
            if payload is not None:
                reply.responses.append((0.0, bytes([sid + POSITIVE]) + payload))
        except Negative as exc:
            reply.responses.append((0.0, bytes([0x7F, sid, exc.code])))
        return self._apply_faults(sid, reply, now)

    def _expire_session(self, now: float) -> None:
        if self.session != DEFAULT and now - self.last_request > self.config.s3:
            log.info("%s: S3 expired, back to default session", self.config.name)
            self._enter_session(DEFAULT)

    def _enter_session(self, session: int) -> None:
        self.session = session
        self.unlocked = False
        self.seed = b""
        if session != PROGRAMMING:
            self.download = None

    def _require(self, *sessions: int, unlocked: bool = False) -> None:
        if self.session not in sessions:
            raise Negative(NRC_NOT_IN_SESSION)
        if unlocked and not self.unlocked:
            raise Negative(NRC_DENIED)

    # ------------------------------------------------------------------ services

    def _session_control(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) != 2:
            raise Negative(NRC_LENGTH)
        target = request[1] & 0x7F
        if target not in (DEFAULT, PROGRAMMING, EXTENDED):
            raise Negative(NRC_SUBFUNCTION)
        if target == PROGRAMMING and self.mode == "application" and self.session != EXTENDED:
            raise Negative(NRC_CONDITIONS)
        if target == PROGRAMMING:
            self.mode = "bootloader"
        self._enter_session(target)
        timing = self.config.p2_ms.to_bytes(2, "big") + (self.config.p2_star_ms // 10).to_bytes(
            2, "big"
        )
        return None if request[1] & SUPPRESS else bytes([target]) + timing

    def _ecu_reset(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) != 2:
            raise Negative(NRC_LENGTH)
        if request[1] & 0x7F not in (0x01, 0x02, 0x03):
            raise Negative(NRC_SUBFUNCTION)
        reply.reset = True
        return None if request[1] & SUPPRESS else bytes([request[1] & 0x7F])

    def reset(self, now: float) -> None:
        """Restart: start the pending bank, fall back if the new image fails to boot."""
        mem = self.memory
        previous = mem.active
        if mem.pending is not None:
            mem.active, mem.pending = mem.pending, None
        if self.boot_failures_left and self.fresh_bank == mem.active:
            self.boot_failures_left -= 1
            log.info("%s: injected boot failure of bank %d", self.config.name, mem.active)
            mem.banks[mem.active].valid = False
            if mem.dual_bank and mem.banks[previous].valid:
                mem.active = previous
        if self.fresh_bank == mem.active and mem.banks[mem.active].valid:
            for code in self.faults.dtcs_after_flash:
                log.info("%s: the new image sets DTC 0x%06X", self.config.name, code)
                self.fault_memory.record(code, ACTIVE_STATUS)
        self.fresh_bank = None
        self.mode = "application" if mem.banks[mem.active].valid else "bootloader"
        self._enter_session(DEFAULT)
        self.silent_until = max(self.silent_until, now + self.config.reset_time)
        log.info("%s: reset, now in %s (bank %d)", self.config.name, self.mode, mem.active)

    def _read_did(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) < 3 or len(request) % 2 == 0:
            raise Negative(NRC_LENGTH)
        out = b""
        for i in range(1, len(request), 2):
            did = int.from_bytes(request[i : i + 2], "big")
            out += request[i : i + 2] + self._did_value(did)
        return out

    def _did_value(self, did: int) -> bytes:
        mem = self.config.memory
        if did == self.config.version_did:
            raw = self.memory.read_active(
                self.first_region.name, mem.version_offset, mem.version_length
            )
            return raw if self.memory.banks[self.memory.active].valid else b""
        if did == self.config.fingerprint_did:
            return self.fingerprint
        if did == SESSION_DID:
            return bytes([self.session])
        if did == ACTIVE_BANK_DID:
            return bytes([self.memory.active])
        if did in self.identification:
            return self.identification[did]
        raise Negative(NRC_RANGE)

    def _write_did(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) < 4:
            raise Negative(NRC_LENGTH)
        did = int.from_bytes(request[1:3], "big")
        if did != self.config.fingerprint_did:
            raise Negative(NRC_RANGE)
        self._require(PROGRAMMING, unlocked=True)
        self.fingerprint = bytes(request[3:])
        return request[1:3]

    def _read_dtc_information(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        """0x19 sub-functions 0x01 (count), 0x02 (by status mask), 0x0A (supported)."""
        self._require_application()
        if len(request) < 2:
            raise Negative(NRC_LENGTH)
        sub, memory = request[1], self.fault_memory
        lengths = {
            REPORT_NUMBER_OF_DTC_BY_STATUS_MASK: 3,
            REPORT_DTC_BY_STATUS_MASK: 3,
            REPORT_SUPPORTED_DTC: 2,
        }
        if sub not in lengths:  # no suppress bit: 0x19 sub-functions use all 8 bits
            raise Negative(NRC_SUBFUNCTION)
        if len(request) != lengths[sub]:
            raise Negative(NRC_LENGTH)
        head = bytes([sub, memory.availability])
        if sub == REPORT_SUPPORTED_DTC:
            return head + encode_records(memory.supported())
        matching = memory.matching(request[2])
        if sub == REPORT_DTC_BY_STATUS_MASK:
            return head + encode_records(matching)
        return head + bytes([DTC_FORMAT_ISO14229_1]) + len(matching).to_bytes(2, "big")

    def _clear_diagnostic_information(
        self, request: bytes, now: float, reply: Reply
    ) -> bytes | None:
        """0x14 groupOfDTC: 0xFFFFFF = all, else one supported DTC."""
        self._require_application()
        if len(request) != 4:
            raise Negative(NRC_LENGTH)
        if not self.fault_memory.clear(int.from_bytes(request[1:4], "big")):
            raise Negative(NRC_RANGE)
        return b""

    def _require_application(self) -> None:
        """The fault memory belongs to the application: a bootloader does not know 0x19/0x14."""
        if self.mode != "application":
            raise Negative(NRC_SERVICE_NOT_SUPPORTED)

    def _security_access(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        sec = self.config.security
        self._require(EXTENDED, PROGRAMMING)
        if len(request) < 2:
            raise Negative(NRC_LENGTH)
        level = request[1] & 0x7F
        if level == sec.level:
            if now < self.locked_until:
                raise Negative(NRC_DELAY)
            self.seed = bytes(sec.seed_length) if self.unlocked else self._fresh_seed()
            return bytes([level]) + self.seed
        if level == sec.level + 1:
            if not self.seed:
                raise Negative(NRC_SEQUENCE)
            expected = compute_key(sec.algorithm, sec.level, self.seed, sec.params)
            self.seed = b""
            if bytes(request[2:]) != expected:
                self.failed_keys += 1
                if self.failed_keys >= sec.max_attempts:
                    self.failed_keys = 0
                    self.locked_until = now + sec.lockout
                    raise Negative(NRC_ATTEMPTS)
                raise Negative(NRC_INVALID_KEY)
            self.failed_keys = 0
            self.unlocked = True
            return bytes([level])
        raise Negative(NRC_SUBFUNCTION)

    def _fresh_seed(self) -> bytes:
        seed = self.random_bytes(self.config.security.seed_length)
        return seed if any(seed) else b"\x01" + seed[1:]

    def _communication_control(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        self._require(EXTENDED, PROGRAMMING)
        if len(request) < 3:
            raise Negative(NRC_LENGTH)
        return None if request[1] & SUPPRESS else bytes([request[1] & 0x7F])

    def _dtc_setting(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        self._require(EXTENDED, PROGRAMMING)
        if len(request) < 2:
            raise Negative(NRC_LENGTH)
        if request[1] & 0x7F not in (0x01, 0x02):
            raise Negative(NRC_SUBFUNCTION)
        return None if request[1] & SUPPRESS else bytes([request[1] & 0x7F])

    def _tester_present(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) != 2:
            raise Negative(NRC_LENGTH)
        return None if request[1] & SUPPRESS else b"\x00"

    def _routine_control(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        if len(request) < 4:
            raise Negative(NRC_LENGTH)
        if request[1] != 0x01:
            raise Negative(NRC_SUBFUNCTION)
        routine = int.from_bytes(request[2:4], "big")
        option = bytes(request[4:])
        ids = self.config.routines
        if routine == ids.check_dependencies and self.session == EXTENDED:
            status = 0 if self.memory.banks[self.memory.active].valid else 1
        elif routine in (ids.erase, ids.check_memory, ids.check_dependencies, ids.switch_bank):
            self._require(PROGRAMMING, unlocked=True)
            status = self._programming_routine(routine, option, reply)
        else:
            raise Negative(NRC_RANGE)
        return request[1:4] + bytes([status])

    def _programming_routine(self, routine: int, option: bytes, reply: Reply) -> int:
        ids, mem = self.config.routines, self.memory
        if routine == ids.erase:
            region = self._parse_region(option)
            mem.erase(region.name)
            self.download = None
            if self.config.erase_time > 0:
                reply.responses.append((0.0, bytes([0x7F, 0x31, NRC_PENDING])))
                reply.responses.append((self.config.erase_time, b""))  # filled by handle()
            return 0
        if routine == ids.check_memory:
            if len(option) != 4:
                raise Negative(NRC_LENGTH)
            bank = mem.banks[mem.target]
            ok = not self.faults.wrong_checksum
            for name, written in bank.written.items():
                if written:
                    match = mem.crc(name) == int.from_bytes(option, "big")
                    bank.checked[name] = match and ok
                    ok = ok and match
            return 0 if ok else 1
        if routine == ids.check_dependencies:
            bank = mem.banks[mem.target]
            if not any(bank.written.values()) or not all(
                bank.checked.get(n, False) for n, w in bank.written.items() if w
            ):
                return 1
            bank.valid = True
            self.fresh_bank = mem.target
            if mem.dual_bank:
                mem.pending = mem.target
            return 0
        # switch bank
        if not mem.dual_bank:
            raise Negative(NRC_RANGE)
        other = 1 - mem.active
        if not mem.banks[other].valid:
            return 1
        mem.pending = other
        return 0

    def _parse_region(self, record: bytes) -> Region:
        """addressAndLengthFormatIdentifier + address + size → the region it names."""
        if not record:
            raise Negative(NRC_LENGTH)
        size_len, addr_len = record[0] >> 4, record[0] & 0x0F
        if (
            not (1 <= addr_len <= 4 and 1 <= size_len <= 4)
            or len(record) != 1 + addr_len + size_len
        ):
            raise Negative(NRC_LENGTH)
        address = int.from_bytes(record[1 : 1 + addr_len], "big")
        size = int.from_bytes(record[1 + addr_len :], "big")
        region = self.memory.region_at(address, max(size, 1))
        if region is None:
            raise Negative(NRC_RANGE)
        return region

    def _request_download(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        self._require(PROGRAMMING, unlocked=True)
        if len(request) < 4:
            raise Negative(NRC_LENGTH)
        if self.busy_left > 0:
            self.busy_left -= 1
            raise Negative(NRC_BUSY)
        compression, encryption = request[1] >> 4, request[1] & 0x0F
        supported = {COMPRESSION_METHODS[c] for c in self.config.compression}
        if encryption or compression not in supported:
            raise Negative(NRC_RANGE)
        region = self._parse_region(bytes(request[2:]))
        address_len = request[2] & 0x0F
        address = int.from_bytes(request[3 : 3 + address_len], "big")
        size = int.from_bytes(request[3 + address_len :], "big")
        offset = address - region.address
        if size == 0:
            raise Negative(NRC_RANGE)
        if not self.memory.is_erased(region.name, offset, size):
            raise Negative(NRC_NOT_ACCEPTED)
        self.download = Download(
            region,
            offset,
            size,
            self.max_block_length - 2,
            zlib.decompressobj() if compression == COMPRESSION_METHODS["zlib"] else None,
        )
        length_bytes = 2 if self.max_block_length <= 0xFFFF else 4
        return bytes([length_bytes << 4]) + self.max_block_length.to_bytes(length_bytes, "big")

    def _transfer_data(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        self._require(PROGRAMMING, unlocked=True)
        download = self.download
        if download is None:
            raise Negative(NRC_SEQUENCE)
        if len(request) < 2 or len(request) - 2 > download.block_data:
            raise Negative(NRC_LENGTH)
        counter = request[1]
        if counter == download.accepted and download.received:
            return bytes([counter])  # a repeat of the block we already have
        if counter != download.expected:
            raise Negative(NRC_COUNTER)
        data = bytes(request[2:])
        if download.inflater is not None:
            try:
                data = download.inflater.decompress(data, download.size - download.received + 1)
            except zlib.error:
                raise Negative(NRC_PROGRAMMING) from None
        if download.received + len(data) > download.size:
            raise Negative(NRC_SUSPENDED)
        try:
            self.memory.program(download.region.name, download.offset + download.received, data)
        except FlashFault:
            raise Negative(NRC_PROGRAMMING) from None
        download.received += len(data)
        download.accepted, download.expected = counter, (counter + 1) & 0xFF
        self._count_block(now, reply)
        return bytes([counter])

    def _count_block(self, now: float, reply: Reply) -> None:
        self.blocks_seen += 1
        faults = self.faults
        if self.power_loss_armed and self.blocks_seen >= faults.power_loss_after_blocks:
            self.power_loss_armed = False
            log.info("%s: injected power loss for %.1f s", self.config.name, faults.power_loss_time)
            self.reset(now)
            reply.power_loss = faults.power_loss_time  # handle() sends nothing then
            self.silent_until = now + faults.power_loss_time
        elif self.reset_armed and self.blocks_seen >= faults.reset_after_blocks:
            self.reset_armed = False
            log.info("%s: injected reset mid-transfer", self.config.name)
            reply.reset = True

    def _transfer_exit(self, request: bytes, now: float, reply: Reply) -> bytes | None:
        self._require(PROGRAMMING, unlocked=True)
        download = self.download
        if download is None or download.received != download.size:
            raise Negative(NRC_SEQUENCE)
        self.download = None
        return b""

    # ------------------------------------------------------------------ faults

    def _apply_faults(self, sid: int, reply: Reply, now: float) -> Reply:
        faults = self.faults
        if reply.power_loss:
            reply.responses = []
            return reply
        final = [r for r in reply.responses if r[1]]
        timed = self._fill_pending(sid, reply.responses)
        if faults.pending_storm and sid in faults.pending_services and final:
            storm = [
                (faults.pending_interval, bytes([0x7F, sid, NRC_PENDING]))
            ] * faults.pending_storm
            timed = timed[:-1] + storm + timed[-1:]
        if faults.delay and timed:
            timed[0] = (timed[0][0] + faults.delay, timed[0][1])
        if (
            faults.drop_every
            and timed
            and (not faults.drop_services or sid in faults.drop_services)
        ):
            self.responses_sent += 1
            if self.responses_sent % faults.drop_every == 0:
                log.info("%s: injected drop of the response to 0x%02X", self.config.name, sid)
                timed = []
        reply.responses = timed
        return reply

    @staticmethod
    def _fill_pending(sid: int, responses: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """An empty payload placeholder carries the delay of the final answer behind 0x78."""
        out: list[tuple[float, bytes]] = []
        carry = 0.0
        for delay, payload in responses:
            if not payload:
                carry += delay
                continue
            out.append((delay + carry, payload))
            carry = 0.0
        return out
