"""Updating the U-Boot boot script through two copies and one env switch (docs/boot.md).

The compiled script (``boot.scr``) lives twice, in copies ``A`` and ``B`` (raw
partitions, device regions or files). One U-Boot env variable (``variable``,
default ``redstone_script``) names the copy the first stage sources; the first
stage falls back to the other copy when the named one fails its CRC checks.

The update sequence, each step journaled (``<state_dir>/bootscript-<variable>.json``)
before it changes anything, and each step convergent (it reads where the
copies and the env stand and does only what is missing):

1. ``install``: check the image (length, SHA-256, mkimage header and CRCs);
   journal ``writing``; write **only the copy the first stage does not run**;
   fsync; read it back and check hash and header again.
2. ``activate``: check the written copy once more; journal ``activating``; one
   ``fw_setenv`` sets ``variable`` to it — the atomic step.
3. ``commit``: forget the journal: the selected copy is the known-good one and
   the other copy is free for the next install.
4. ``rollback``: one ``fw_setenv`` selects the previous copy again, which was
   never written; then forget the journal.

A power cut during 1 leaves a torn *unselected* copy: the board boots the
selected one as before. During 2 it leaves the env old or new (a redundant env
keeps the previous copy valid; on a single-copy env a torn block makes U-Boot
take its defaults, which select copy A, and the fallback covers an invalid A).
So a cut at any byte still boots a complete script, old or new.

Where the store stands is derived from the devices, the journal only names
the intent (:func:`derive_state`):

============  =========================================================
idle          nothing pending; the selected copy is committed
interrupted   a write into the other copy did not finish (nothing switched)
installed     the other copy holds the verified new image; not selected
activated     the env selects the new copy; commit or rollback pending
============  =========================================================
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from redstone_agent.journal import Journal, JournalCorrupt
from redstone_agent.slots import bootscript_copy as copies
from redstone_agent.slots.bootloader.uboot import UBootEnv
from redstone_agent.slots.bootscript_config import (
    COPIES,
    BootScriptConfig,
    CopyConfig,
)
from redstone_agent.slots.bootscript_errors import (
    BadBootScript,
    BootScriptError,
    BootScriptRefused,
    CopyIOError,
    NoRedundancy,
)
from redstone_agent.slots.bootscript_image import HEADER_SIZE, check_script, header_length

__all__ = [
    "BadBootScript",
    "BootScriptConfig",
    "BootScriptError",
    "BootScriptRefused",
    "BootScriptState",
    "BootScriptStatus",
    "BootScriptStore",
    "CopyConfig",
    "CopyView",
    "NoRedundancy",
    "Pending",
    "derive_state",
    "first_stage_choice",
]

DEFAULT_COPY = "A"
"""What the first stage sources when the variable is unset (a blank or default env)."""


class BootScriptState(StrEnum):
    IDLE = "idle"
    INTERRUPTED = "interrupted"
    INSTALLED = "installed"
    ACTIVATED = "activated"


@dataclass(frozen=True)
class CopyView:
    """What one copy holds, checked as the first stage checks it."""

    name: str
    device: str
    sha256: str = ""
    """SHA-256 of the whole image (header + data); empty when the copy is invalid."""
    length: int = 0
    script_name: str = ""
    problem: str = ""
    """Why the first stage would reject the copy; empty when it is valid."""

    @property
    def valid(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Pending:
    """The journaled intent: which image goes into which copy, and what it replaces."""

    phase: str
    """``writing`` or ``activating``."""
    target: str
    previous: str
    sha256: str
    length: int

    def to_dict(self) -> dict[str, str | int]:
        return {
            "phase": self.phase,
            "target": self.target,
            "previous": self.previous,
            "sha256": self.sha256,
            "length": self.length,
        }


@dataclass(frozen=True)
class BootScriptStatus:
    state: BootScriptState
    selected: str
    """The copy the env names (``A`` when the variable is unset)."""
    booting: str
    """The copy the first stage would run now (the selected one unless it is invalid);
    empty when neither is valid."""
    copies: Mapping[str, CopyView]
    pending: Pending | None

    def holds(self, copy: str, sha256: str) -> bool:
        view = self.copies[copy]
        return view.valid and view.sha256 == sha256


def other(copy: str) -> str:
    return "B" if copy == "A" else "A"


def first_stage_choice(selected: str, valid: Mapping[str, bool]) -> str:
    """The copy the first stage sources: the selected one if valid, else the other, else ""."""
    for copy in (selected, other(selected)):
        if valid.get(copy):
            return copy
    return ""


def derive_state(
    pending: Pending | None, selected: str, copies_: Mapping[str, CopyView]
) -> BootScriptState:
    """Where the store stands: the journal's intent checked against the env and the copies."""
    if pending is None:
        return BootScriptState.IDLE
    if selected == pending.target:
        return BootScriptState.ACTIVATED
    view = copies_.get(pending.target)
    if view is not None and view.valid and view.sha256 == pending.sha256:
        return BootScriptState.INSTALLED
    return BootScriptState.INTERRUPTED


class BootScriptStore:
    """Two copies of the boot script, the env switch between them, and the journal."""

    def __init__(self, config: BootScriptConfig, bootenv: UBootEnv) -> None:
        self.config = config
        self.bootenv = bootenv
        self._journal = Journal(config.journal)

    @classmethod
    def open(cls, config: BootScriptConfig) -> BootScriptStore:
        """The store with the U-Boot env the config names."""
        return cls(config, UBootEnv(config.uboot))

    # -- queries ---------------------------------------------------------------

    def status(self) -> BootScriptStatus:
        """Read the env, both copies and the journal (no writes)."""
        selected = self._selected()
        views = {name: self._view(name) for name in COPIES if name in self.config.copies}
        pending = self._pending()
        booting = first_stage_choice(selected, {n: v.valid for n, v in views.items()})
        return BootScriptStatus(
            derive_state(pending, selected, views), selected, booting, views, pending
        )

    def check_redundancy(self) -> None:
        """:class:`NoRedundancy` (one line) unless an update can survive a power cut."""
        names = [n for n in COPIES if n in self.config.copies]
        if len(names) < 2:
            raise NoRedundancy(
                f"boot script has only copy {names[0]}: an update needs two copies (A and B)"
            )
        a, b = (self.config.copies[n] for n in COPIES)
        if copies.overlaps(a, b):
            raise NoRedundancy(
                f"boot script copies A ({copies.describe(a)}) and B ({copies.describe(b)}) "
                "share bytes of one device: no redundancy"
            )
        if self.config.require_redundant_env:
            lines = env_copies(self.config.uboot.fw_env_config)
            if len(lines) < 2 or lines[0] == lines[1]:
                raise NoRedundancy(
                    f"{self.config.uboot.fw_env_config} names {len(set(lines))} env copy: "
                    "the switch needs a redundant U-Boot env (two lines; docs/boot.md)"
                )

    # -- steps -----------------------------------------------------------------

    def install(self, path: Path, sha256: str, length: int) -> str:
        """Write the image at ``path`` into the copy the first stage does not run; verify it.

        Returns what was done, one line. Nothing is switched: see :meth:`activate`.
        """
        self.check_redundancy()
        data = self._read_source(path, sha256, length)
        with self._locked():
            status = self.status()
            pending = status.pending
            if status.state is BootScriptState.ACTIVATED and pending is not None:
                if pending.sha256 == sha256:
                    return f"copy {pending.target} already holds it and is selected"
                raise BootScriptRefused(
                    f"copy {pending.target} is activated and awaits commit or rollback; "
                    "refusing to install another boot script"
                )
            if pending is None and status.holds(status.selected, sha256):
                return f"copy {status.selected} already holds it and is selected"
            selected = self._settle_selection(status)
            target = other(selected)
            intent = Pending("writing", target, selected, sha256, length)
            if status.holds(target, sha256):
                self._journal.save(intent.to_dict())
                return f"copy {target} already holds it"
            room = copies.capacity(self.config.copies[target])
            if length > room:
                raise BootScriptRefused(
                    f"boot script of {length} bytes does not fit copy {target} ({room} bytes)"
                )
            self._journal.save(intent.to_dict())
            copies.write(self.config.copies[target], data)
            view = self._view(target)
            if not view.valid or view.sha256 != sha256:
                raise BootScriptError(
                    f"copy {target} ({copies.describe(self.config.copies[target])}) does not "
                    f"read back what was written: {view.problem or 'SHA-256 differs'}"
                )
            return (
                f"wrote {length} bytes into copy {target} "
                f"({copies.describe(self.config.copies[target])}), read back and checked"
            )

    def activate(self, sha256: str | None = None) -> str:
        """Select the installed copy with one env write (the atomic switch).

        With ``sha256``, the image the caller means: refused if another one is
        installed; already done if nothing is pending and the selected copy holds it.
        """
        self.check_redundancy()
        with self._locked():
            status = self.status()
            pending = status.pending
            if pending is None:
                if sha256 is not None and status.holds(status.selected, sha256):
                    return f"copy {status.selected} already holds it and is selected"
                raise BootScriptRefused("no boot script installed to activate")
            if sha256 is not None and pending.sha256 != sha256:
                raise BootScriptRefused(
                    f"copy {pending.target} holds another boot script ({pending.sha256[:16]}…)"
                )
            if status.state is BootScriptState.ACTIVATED:
                return f"copy {pending.target} is already selected"
            if status.state is not BootScriptState.INSTALLED:
                raise BootScriptRefused(
                    f"copy {pending.target} does not hold the installed boot script "
                    f"({status.copies[pending.target].problem or 'another image'}); install again"
                )
            self._journal.save({**pending.to_dict(), "phase": "activating"})
            self.bootenv.write({self.config.variable: pending.target})
            return f"{self.config.variable}={pending.target}: copy {pending.target} boots next"

    def commit(self) -> str:
        """Make the selected new copy the known-good one (the other becomes free)."""
        with self._locked():
            status = self.status()
            pending = status.pending
            if pending is None:
                return f"nothing pending; copy {status.selected} is committed"
            if status.state is not BootScriptState.ACTIVATED:
                raise BootScriptRefused(
                    f"copy {pending.target} is not selected ({status.state.value}); "
                    "activate it before commit"
                )
            self._journal.clear()
            return f"copy {pending.target} committed"

    def rollback(self) -> str:
        """Select the previous copy again (it was never written) and forget the update."""
        with self._locked():
            status = self.status()
            pending = status.pending
            if pending is None:
                return f"nothing pending; copy {status.selected} stays selected"
            if status.selected != pending.previous:
                if not status.copies[pending.previous].valid:
                    raise BootScriptError(
                        f"copy {pending.previous} to roll back to is invalid "
                        f"({status.copies[pending.previous].problem}); keeping {status.selected}"
                    )
                self.bootenv.write({self.config.variable: pending.previous})
            self._journal.clear()
            return f"{self.config.variable}={pending.previous}: copy {pending.previous} boots again"

    # -- internals -------------------------------------------------------------

    def _settle_selection(self, status: BootScriptStatus) -> str:
        """Make the env name the copy that actually boots before writing the other one.

        If the selected copy is invalid the first stage runs the other one; writing
        "the other copy" would then overwrite what boots. Selecting the copy that
        boots changes nothing at boot and makes the rule "never write the selected
        copy" enough.
        """
        if status.booting and status.booting != status.selected:
            self.bootenv.write({self.config.variable: status.booting})
            return status.booting
        return status.selected

    def _selected(self) -> str:
        value = self.bootenv.read().get(self.config.variable, "") or DEFAULT_COPY
        if value not in COPIES:
            raise BootScriptError(
                f"{self.bootenv.description}: {self.config.variable}={value!r} is neither A nor B"
            )
        return value

    def _view(self, name: str) -> CopyView:
        config = self.config.copies[name]
        where = copies.describe(config)
        try:
            head = copies.read(config, HEADER_SIZE)
            length = header_length(head)
            if length is None:
                return CopyView(name, where, problem="no valid U-Boot image header")
            if length > copies.capacity(config):
                return CopyView(name, where, problem=f"header says {length} bytes, copy is smaller")
            data = copies.read(config, length)
            image = check_script(data)
        except (BadBootScript, CopyIOError) as exc:
            return CopyView(name, where, problem=str(exc))
        return CopyView(name, where, hashlib.sha256(data).hexdigest(), len(data), image.name)

    def _pending(self) -> Pending | None:
        try:
            raw = self._journal.load()
        except JournalCorrupt as exc:
            raise BootScriptError(str(exc)) from None
        if raw is None:
            return None
        try:
            return Pending(
                str(raw["phase"]),
                str(raw["target"]),
                str(raw["previous"]),
                str(raw["sha256"]),
                int(raw["length"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BootScriptError(f"{self._journal.path}: not a boot-script record") from None

    def _read_source(self, path: Path, sha256: str, length: int) -> bytes:
        """The image, checked against the caller's (signed) length and hash and as a script."""
        limit = max((copies.capacity(c) for c in self.config.copies.values()), default=0)
        if length > limit:
            raise BootScriptRefused(f"boot script of {length} bytes is larger than a copy")
        try:
            with path.open("rb") as handle:
                data = handle.read(length + 1)
        except OSError as exc:
            raise BootScriptError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if len(data) != length:
            raise BadBootScript(f"{path}: {len(data)} bytes, expected {length}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.lower():
            raise BadBootScript(
                f"{path}: SHA-256 {digest[:16]}… is not the expected {sha256[:16]}…"
            )
        try:
            check_script(data)
        except BadBootScript as exc:
            raise BadBootScript(f"{path}: {exc}") from None
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One store operation at a time (across processes)."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        lock = self.config.journal.with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def env_copies(fw_env_config: Path) -> list[tuple[str, str]]:
    """The env copies ``fw_env.config`` names: (device, offset) of each line."""
    try:
        text = fw_env_config.read_text()
    except OSError as exc:
        raise NoRedundancy(f"{fw_env_config}: cannot read ({exc.strerror or exc})") from None
    found = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            found.append((fields[0], fields[1] if len(fields) > 1 else "0"))
    return found
